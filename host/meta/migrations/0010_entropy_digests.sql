-- Incremental anti-entropy. Each version gets its partition of the key
-- space (by a hash of bucket and key) and a 64-bit mark (a hash of bucket,
-- key and version), both computed by the server; NULL until a row written
-- before this migration is filled in at start.
--
-- entropy_digests holds, for each peer and partition, the XOR and count of
-- the marks of the versions this node holds there whose placement lists
-- that peer. Two nodes compare their tables for each other, and read
-- version rows only in partitions that differ. The triggers keep the table
-- in step with every insert, delete and change of placement, in the same
-- transaction, whatever path (or hand edit) makes it.
ALTER TABLE versions ADD COLUMN part INTEGER;
ALTER TABLE versions ADD COLUMN mark INTEGER;
CREATE INDEX versions_by_part ON versions (part) WHERE part IS NOT NULL;
CREATE INDEX versions_unmarked ON versions (id) WHERE mark IS NULL;

CREATE TABLE entropy_digests (
    peer INTEGER NOT NULL,
    part INTEGER NOT NULL,
    digest INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (peer, part)
) WITHOUT ROWID;

-- XOR is written (a | b) & ~(a & b): SQLite has no XOR operator.
CREATE TRIGGER versions_entropy_add AFTER INSERT ON versions
WHEN NEW.mark IS NOT NULL AND NEW.replicas != '[]' BEGIN
    INSERT OR IGNORE INTO entropy_digests (peer, part) SELECT value, NEW.part FROM json_each(NEW.replicas);
    UPDATE entropy_digests SET digest = (digest | NEW.mark) & ~(digest & NEW.mark), n = n + 1
     WHERE part = NEW.part AND peer IN (SELECT value FROM json_each(NEW.replicas));
END;

CREATE TRIGGER versions_entropy_remove AFTER DELETE ON versions
WHEN OLD.mark IS NOT NULL AND OLD.replicas != '[]' BEGIN
    UPDATE entropy_digests SET digest = (digest | OLD.mark) & ~(digest & OLD.mark), n = n - 1
     WHERE part = OLD.part AND peer IN (SELECT value FROM json_each(OLD.replicas));
END;

CREATE TRIGGER versions_entropy_move AFTER UPDATE OF replicas, part, mark ON versions
WHEN OLD.replicas IS NOT NEW.replicas OR OLD.mark IS NOT NEW.mark OR OLD.part IS NOT NEW.part BEGIN
    UPDATE entropy_digests SET digest = (digest | OLD.mark) & ~(digest & OLD.mark), n = n - 1
     WHERE OLD.mark IS NOT NULL AND part = OLD.part AND peer IN (SELECT value FROM json_each(OLD.replicas));
    INSERT OR IGNORE INTO entropy_digests (peer, part)
     SELECT value, NEW.part FROM json_each(NEW.replicas) WHERE NEW.mark IS NOT NULL;
    UPDATE entropy_digests SET digest = (digest | NEW.mark) & ~(digest & NEW.mark), n = n + 1
     WHERE NEW.mark IS NOT NULL AND part = NEW.part AND peer IN (SELECT value FROM json_each(NEW.replicas));
END;
