-- 1: jobs and tasks. Each row keeps the resource's wire document in `doc`
-- (text, exactly as the API returns it); the columns beside it are the
-- indexed or aggregated properties. Text that is compared or ordered is
-- COLLATE "C" (byte order, as SQLite compares), whatever the database's
-- default collation: keyset paging and `$filter` then agree on both stores.
CREATE TABLE jobs (
    key           text COLLATE "C" PRIMARY KEY,   -- id lower-cased: ids are unique case-insensitively
    id            text COLLATE "C" NOT NULL,
    state         text COLLATE "C" NOT NULL,
    creation_time text COLLATE "C" NOT NULL,
    etag          text COLLATE "C" NOT NULL,
    last_modified text COLLATE "C" NOT NULL,
    doc           text NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, key);

CREATE TABLE tasks (
    job           text COLLATE "C" NOT NULL,      -- the job's key
    key           text COLLATE "C" NOT NULL,      -- id lower-cased
    id            text COLLATE "C" NOT NULL,
    state         text COLLATE "C" NOT NULL,
    result        text COLLATE "C",               -- success | failure once completed
    slots         bigint NOT NULL,                -- requiredSlots
    retries       bigint NOT NULL,                -- executionInfo.retryCount
    creation_time text COLLATE "C" NOT NULL,
    etag          text COLLATE "C" NOT NULL,
    last_modified text COLLATE "C" NOT NULL,
    doc           text NOT NULL,
    PRIMARY KEY (job, key)
);
CREATE INDEX tasks_by_state ON tasks (job, state, key);

-- Per job, state and result: how many tasks, slots and retries. Kept in
-- step with `tasks` by every write, so counts and job statistics never
-- scan the tasks.
CREATE TABLE task_counts (
    job     text COLLATE "C" NOT NULL,
    state   text COLLATE "C" NOT NULL,
    result  text COLLATE "C" NOT NULL,            -- '' when none
    n       bigint NOT NULL,
    slots   bigint NOT NULL,
    retries bigint NOT NULL,
    PRIMARY KEY (job, state, result)
);

-- What `$filter` reads from a document, typed as SQLite's json_extract
-- types it: absent and JSON null are NULL, a value of another JSON type
-- than the property's is NULL too.
CREATE FUNCTION ob_json_text(doc text, path text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN jsonb_extract_path_text(doc::jsonb, VARIADIC path) COLLATE "C";
CREATE FUNCTION ob_json_num(doc text, path text[]) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::numeric END
              FROM (SELECT jsonb_extract_path(doc::jsonb, VARIADIC path) AS v) AS x);
CREATE FUNCTION ob_json_bool(doc text, path text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END
              FROM (SELECT jsonb_extract_path(doc::jsonb, VARIADIC path) AS v) AS x);
