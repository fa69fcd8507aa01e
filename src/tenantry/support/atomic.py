"""Atomic file writes: a reader (another worker, the CLI) sees the old file or the new one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# A tenant's files (stored bytes, database, secrets) are its alone: no group or other
# access, whatever the umask.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one rename, the file created with ``mode``."""
    temp = path.with_name(f".{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
