-- 6: job schedules (documents, like pools).
CREATE TABLE job_schedules (
    key           text COLLATE "C" PRIMARY KEY,
    id            text COLLATE "C" NOT NULL,
    state         text COLLATE "C" NOT NULL,
    creation_time text COLLATE "C" NOT NULL,
    etag          text COLLATE "C" NOT NULL,
    last_modified text COLLATE "C" NOT NULL,
    doc           text NOT NULL
);
