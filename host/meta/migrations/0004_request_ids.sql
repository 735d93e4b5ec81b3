-- The request ids of recent puts, so a retried put returns the version the
-- first one made instead of storing a second. Written in the version's
-- transaction; the compaction pass drops rows older than a day.
CREATE TABLE requests (
    bucket TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (bucket, request_id)
) WITHOUT ROWID;
CREATE INDEX requests_age ON requests (created_ms);
