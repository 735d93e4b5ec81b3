-- Search indexes: definitions and the terms their plugins computed.

CREATE TABLE search_indexes (
    -- Never reused, so terms left by a dropped index cannot leak into a new one.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,           -- JSON array of field names
    type TEXT NOT NULL,             -- index-type plugin
    -- Every version with an id up to here has its terms in index_terms.
    watermark INTEGER NOT NULL DEFAULT 0,
    -- The newest version id when the index was made: it serves searches
    -- once the watermark reaches it.
    target INTEGER NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    -- Why the last catch-up failed, if it did.
    error TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (bucket, name)
);

-- Terms are keyed by version, and versions never change: a term row is
-- never updated, only swept once its version or index is gone. Searches
-- join terms to the live objects, so terms of superseded versions never
-- count.
CREATE TABLE index_terms (
    index_id INTEGER NOT NULL,
    term BLOB NOT NULL,
    version_id INTEGER NOT NULL,
    PRIMARY KEY (index_id, term, version_id)
) WITHOUT ROWID;
