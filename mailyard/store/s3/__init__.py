"""BlobStore on an S3-compatible object store (Ceph radosgw, AWS S3, ...)."""
