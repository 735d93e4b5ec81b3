-- Versioning per bucket (S3's PutBucketVersioning): -1 keeps versions;
-- a stamp (>= 0) means suspended since then, so a write replaces only a
-- live version written since (versions kept before stay); NULL follows
-- the server's [metadata] enable_versioning.
ALTER TABLE buckets ADD COLUMN versioning INTEGER;
