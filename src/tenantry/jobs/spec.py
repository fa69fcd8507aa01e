"""How a ``@job`` function runs, as its decorator records it on the function (a module
of its own: the module loader checks schedules' jobs by it without loading the rest)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class JobSpec:
    """How a ``@job`` function runs: tries after a failure, and its time limit."""

    retries: int = 0
    timeout: float = DEFAULT_TIMEOUT
    # The platform's own jobs (scheduled backups) are given the home first: they work on
    # the tenant from outside its app, as the CLI does.
    platform: bool = False
