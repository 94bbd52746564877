-- 7: named leases (leader election). `token` is the fencing token of
-- the latest grant and never decreases: a released lease keeps its row.
-- `expires` is in milliseconds since the Unix epoch.
CREATE TABLE leases (
    name    text COLLATE "C" PRIMARY KEY,
    holder  text COLLATE "C",                   -- NULL when released
    token   bigint NOT NULL,
    expires bigint NOT NULL
);
