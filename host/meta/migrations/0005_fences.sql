-- The highest fencing token a conditional write on a cluster has shown for
-- each key (the Raft log index of its lock grant). A write or a fencing
-- read with a lower token is refused: once a newer conditional writer has
-- read a key here, an older one can no longer change it here.
CREATE TABLE fences (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
