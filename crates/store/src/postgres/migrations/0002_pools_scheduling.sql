-- 2: pools, the columns the scheduler selects runnable tasks by, and the
-- node each task runs on. (SQLite's migration also fills the new columns
-- from existing rows; a PostgreSQL database starts empty at 1.)
CREATE TABLE pools (
    key           text COLLATE "C" PRIMARY KEY,
    id            text COLLATE "C" NOT NULL,
    state         text COLLATE "C" NOT NULL,
    creation_time text COLLATE "C" NOT NULL,
    etag          text COLLATE "C" NOT NULL,
    last_modified text COLLATE "C" NOT NULL,
    doc           text NOT NULL
);
ALTER TABLE jobs ADD COLUMN pool text COLLATE "C";
ALTER TABLE jobs ADD COLUMN priority bigint NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_pool ON jobs (pool, state, priority);
ALTER TABLE tasks ADD COLUMN node text COLLATE "C";
CREATE INDEX tasks_by_node ON tasks (node) WHERE node IS NOT NULL;
