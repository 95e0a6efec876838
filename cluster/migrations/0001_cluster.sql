-- Minotaur cluster schema, version 1. PostgreSQL is the one authority of a cluster:
-- membership (nodes and their leases), ownership (the session directory: owner and
-- epoch), and the session document of record. Applied by `minotaur serve --database-url`
-- at start and by `minotaur migrate`.

-- One row per node id. A node serves only while its lease (database time) has not
-- expired; `incarnation` grows by one each time a process starts with that id.
CREATE TABLE minotaur_nodes (
    id            text PRIMARY KEY,
    incarnation   bigint      NOT NULL,
    url           text        NOT NULL,
    version       text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('serving', 'draining', 'stopped')),
    lease_expires timestamptz NOT NULL,
    sessions      integer     NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now()
);

-- The session directory and document of record. Every write of a live session is
-- conditional on (owner, epoch); a hand-off or takeover is a compare-and-set that
-- moves the owner and increments the epoch.
CREATE TABLE minotaur_sessions (
    id            text PRIMARY KEY,
    game          text        NOT NULL,
    owner         text        NOT NULL,
    epoch         bigint      NOT NULL,
    ended         boolean     NOT NULL DEFAULT false,
    -- Automerge full save; incremental saves follow in minotaur_session_chunks.
    doc           bytea,
    -- The latest acknowledged state the document does not hold yet: 8 bytes of
    -- little-endian tick, then the guest snapshot. Cleared by every document write.
    journal       bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX minotaur_sessions_live_owner ON minotaur_sessions (owner) WHERE NOT ended;

CREATE TABLE minotaur_session_chunks (
    session text   NOT NULL REFERENCES minotaur_sessions (id) ON DELETE CASCADE,
    seq     bigserial,
    chunk   bytea  NOT NULL,
    PRIMARY KEY (session, seq)
);

-- Modules by content hash (sha256 hex), never changed once written.
CREATE TABLE minotaur_modules (
    hash     text PRIMARY KEY,
    wasm     bytea       NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);

-- The games catalogue: name -> MessagePack GameRecord (current module, policy, versions).
CREATE TABLE minotaur_games (
    name       text PRIMARY KEY,
    record     bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
