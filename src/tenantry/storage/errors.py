"""What storing a tenant's files can refuse, on either backend. A route answers each in
the platform's error shape (400, 413, 507, 503), so nothing here imports the web layer."""


class InvalidName(ValueError):
    """A file name that does not match the file-name pattern."""


class TooLarge(Exception):
    """The upload is over the tenant's MAX_CONTENT_LENGTH."""


class OverQuota(Exception):
    """The upload would take the tenant over its STORAGE_QUOTA."""


class ObjectStoreError(Exception):
    """The store refused or failed an operation; the message names it and the key."""


class NoSuchObject(ObjectStoreError):
    """No object under that key (a file replaced or deleted meanwhile, say)."""
