"""CPU-bound work that must not stop a gevent worker's other requests.

Under gevent workers a greenlet keeps the worker until it waits for I/O: a password hash
(tens of milliseconds of CPU) holds up every other request of the worker, so a flood of
logins to one tenant queued every other tenant behind it (`make stress`: p99 1.7 s).
:func:`in_thread` runs such work in a native thread of gevent's pool, where the GIL is
released while hashing, and the worker goes on serving meanwhile. Without gevent (sync
workers, tests, the CLI) it just calls the function.

Only pure computations belong here: nothing that takes a lock or a database connection,
which are gevent's and not for native threads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_thread(function: Callable[..., T], *args) -> T:
    """``function(*args)``, in a native thread when gevent serves this process."""
    if _gevent_serving():
        # lazy: gevent only where it serves this process
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


def _gevent_serving() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")
