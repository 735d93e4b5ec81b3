-- Composite blobs: an S3 multipart upload completed without copying its
-- parts. A composite has a `blobs` row (its refcount counts the versions
-- naming it) but no file and no inline data: its bytes are its parts', in
-- order. Each part is an ordinary blob holding one reference per
-- `blob_parts` row naming it, dropped when GC removes the composite.
ALTER TABLE blobs ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE blob_parts (
    digest BLOB NOT NULL,   -- the composite
    idx INTEGER NOT NULL,   -- 0, 1, ... in byte order
    part BLOB NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (digest, idx)
) WITHOUT ROWID;
CREATE INDEX blob_parts_by_part ON blob_parts (part);
