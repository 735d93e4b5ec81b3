-- Tiers: a blob whose `tier` is not 'local' lives on that object-store
-- tier (its local file, if any, is a cached copy). `read_ms` is when it was
-- last read, for policies on idle data (NULL: never read since written).
ALTER TABLE blobs ADD COLUMN read_ms INTEGER;
CREATE INDEX blobs_by_tier ON blobs (tier) WHERE tier != 'local';
-- Bytes of blob files kept on tiers (part of stored_bytes, not on local disk).
INSERT INTO counters (name, value) VALUES ('tier_bytes', 0);
