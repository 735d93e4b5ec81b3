-- Copies of versions still owed to other nodes: a write's asynchronous
-- targets, synchronous targets that failed, replicas a read found stale.
-- Rows live on a node that holds the version and leave when the copy is
-- durable on the target (or the version is gone).
CREATE TABLE replication_queue (
    id INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    node INTEGER NOT NULL,          -- the target's cluster id
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER NOT NULL,        -- next attempt not before
    created_ms INTEGER NOT NULL,
    error TEXT                      -- the last attempt's failure
);
CREATE UNIQUE INDEX replication_queue_once ON replication_queue (bucket, key, version, node);
CREATE INDEX replication_queue_due ON replication_queue (due_ms);
