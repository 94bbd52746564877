-- 9: certificates (documents, like pools; keyed by thumbprint).
CREATE TABLE certificates (
    key           text COLLATE "C" PRIMARY KEY,
    id            text COLLATE "C" NOT NULL,
    state         text COLLATE "C" NOT NULL,
    creation_time text COLLATE "C" NOT NULL,
    etag          text COLLATE "C" NOT NULL,
    last_modified text COLLATE "C" NOT NULL,
    doc           text NOT NULL
);
