-- Each version's parents as rows, one an edge, kept by triggers from
-- `versions.parents`. Whether a version that arrives after its children is
-- a head is then a lookup of edges naming it, not a scan of every newer
-- version of its key with a parse of their parents (quadratic for a key
-- with thousands of versions arriving out of order). Filled in once from
-- the rows already there.
CREATE TABLE version_parents (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY (bucket, key, parent, child)
) WITHOUT ROWID;

INSERT OR IGNORE INTO version_parents (bucket, key, parent, child)
SELECT v.bucket, v.key, p.value, v.version FROM versions v, json_each(v.parents) p WHERE v.parents IS NOT NULL;

CREATE TRIGGER versions_parents_add AFTER INSERT ON versions
WHEN NEW.parents IS NOT NULL AND NEW.parents != '[]' BEGIN
    INSERT OR IGNORE INTO version_parents (bucket, key, parent, child)
    SELECT NEW.bucket, NEW.key, value, NEW.version FROM json_each(NEW.parents);
END;

-- A version removed names its parents no more.
CREATE TRIGGER versions_parents_remove AFTER DELETE ON versions
WHEN OLD.parents IS NOT NULL AND OLD.parents != '[]' BEGIN
    DELETE FROM version_parents WHERE bucket = OLD.bucket AND key = OLD.key AND child = OLD.version
    AND parent IN (SELECT value FROM json_each(OLD.parents));
END;
