"""A tenant's stored files: on local disk (:mod:`.local`) or on an S3-compatible store
several hosts share (:mod:`.s3`, :mod:`.objects`). :func:`.objects.tenant_storage` picks
the backend from what :mod:`.location` parses."""
