-- Which versions each version supersedes, so that concurrent writes of a
-- key on a cluster can be told apart. `parents` is a JSON list of version
-- ids: a write's holds the newest version its coordinator saw ([] when it
-- saw none), a resolution's every head it resolved; NULL where unknown (a
-- single node's writes, rows from before). `head` is 1 while no recorded
-- version names the version as a parent: two heads of one key are
-- siblings, written without seeing each other.
ALTER TABLE versions ADD COLUMN parents TEXT;
ALTER TABLE versions ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
CREATE INDEX versions_heads ON versions (bucket, key, version) WHERE head = 1;
