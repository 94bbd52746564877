-- 8: pool usage (GET /poolusagemetrics): core-hours per pool and hour.
-- `hour` is the interval's start in Unix seconds (a multiple of 3600).
CREATE TABLE pool_usage (
    hour       bigint NOT NULL,
    pool       text COLLATE "C" NOT NULL,
    vm_size    text NOT NULL,
    core_hours double precision NOT NULL,
    PRIMARY KEY (hour, pool)
);
