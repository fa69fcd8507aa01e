"""A tenant's storage root: the only code that turns names into paths under it."""

from __future__ import annotations

import os
from pathlib import Path


class TenantStorage:
    """Files of one tenant, all under ``root``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def ensure(self) -> None:
        """Create the storage root if it is missing."""
        self.root.mkdir(parents=True, exist_ok=True)

    def check(self) -> bool:
        """Whether the root exists and this process may create and remove files there."""
        return self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)
