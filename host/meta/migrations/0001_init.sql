-- Strata metadata, schema 1.

-- This node's identity, made on first start.
CREATE TABLE node (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per blob on disk. A blob file without a row is never served.
CREATE TABLE blobs (
    digest BLOB PRIMARY KEY,
    size INTEGER NOT NULL,          -- plaintext bytes
    stored_size INTEGER NOT NULL,   -- bytes of the file on disk
    refcount INTEGER NOT NULL,      -- versions that point here
    state TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'corrupt')),
    tier TEXT NOT NULL DEFAULT 'local',
    created_ms INTEGER NOT NULL,
    unreferenced_ms INTEGER,        -- when refcount last fell to 0
    verified_ms INTEGER             -- last successful scrub
) WITHOUT ROWID;
CREATE INDEX blobs_unreferenced ON blobs (unreferenced_ms) WHERE refcount = 0;
-- The stored bytes of small blobs, kept here instead of in files: they
-- commit with their metadata. A row of its own, so refcount updates do not
-- rewrite the data.
-- (A rowid table: WITHOUT ROWID suits small rows only.)
CREATE TABLE blob_data (
    digest BLOB PRIMARY KEY REFERENCES blobs (digest) DEFERRABLE INITIALLY DEFERRED,
    data BLOB NOT NULL
);
CREATE INDEX blobs_corrupt ON blobs (state) WHERE state = 'corrupt';

-- Every version of every key, delete markers included.
CREATE TABLE versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,          -- client-visible id: stamp and node
    stamp INTEGER NOT NULL,         -- hybrid logical clock
    node TEXT NOT NULL,             -- node that wrote it; breaks stamp ties
    digest BLOB,                    -- NULL for a delete marker
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    attributes TEXT NOT NULL,       -- JSON object
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    replicas TEXT NOT NULL DEFAULT '[]'  -- nodes holding the blob (cluster)
);
CREATE INDEX versions_by_key ON versions (bucket, key, id);
CREATE UNIQUE INDEX versions_by_version ON versions (bucket, key, version);
CREATE INDEX versions_by_digest ON versions (digest) WHERE digest IS NOT NULL;

-- The live object of each key: a listing is a range over this table.
CREATE TABLE objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions (id),
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
-- Foreign-key checks on version deletes look objects up by version_id.
CREATE INDEX objects_by_version ON objects (version_id);

-- Running totals, so stats never scan.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES
    ('objects', 0), ('live_bytes', 0), ('versions', 0), ('version_bytes', 0),
    ('blobs', 0), ('blob_bytes', 0), ('stored_bytes', 0);

INSERT INTO buckets (name, created_ms) VALUES ('default', CAST(unixepoch('subsec') * 1000 AS INTEGER));
