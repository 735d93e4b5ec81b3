-- Versioning per bucket (S3's PutBucketVersioning): 1 keeps old versions,
-- 0 does not; NULL follows the server's [metadata] enable_versioning.
ALTER TABLE buckets ADD COLUMN versioning INTEGER;
