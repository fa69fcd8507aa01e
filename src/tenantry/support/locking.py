"""A lock across threads, greenlets and processes, on a lock file.

``fcntl.flock`` blocks the calling OS thread. Under gevent workers that is every greenlet
of the worker: one greenlet waiting for a lock that another greenlet of the same worker
holds (while that one waits for the database) would never wake up. So the lock is taken
in two steps: first a lock of this process (cooperative once gevent has patched
``threading``), then the file lock without blocking, polled with a sleep that yields.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

POLL_SECONDS = 0.002
MAX_POLL_SECONDS = 0.05

_process_locks: dict[str, threading.Lock] = {}
_process_locks_lock = threading.Lock()


def _lock_exclusive(handle, deadline: float | None) -> bool:
    """Take ``handle``'s exclusive flock, polling without blocking (the sleep yields to
    other greenlets under gevent), until ``deadline`` (monotonic; None: no limit);
    returns whether it was taken."""
    pause = POLL_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (created if missing) for the block."""
    key = str(path)
    with _process_locks_lock:
        local = _process_locks.setdefault(key, threading.Lock())
    with local, open(path, "a") as handle:
        _lock_exclusive(handle, deadline=None)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock_if_free(path: Path) -> Iterator[bool]:
    """Hold the exclusive lock of ``path`` for the block if no one else holds it: yields
    whether it does (a job one process of several should run, and the others skip)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_lock_if_free(path: Path) -> int | None:
    """A shared lock of ``path`` (created if missing), taken without waiting: the open
    file's descriptor, to close when done (which releases it), or None when another
    process holds the lock exclusively. Every caller opens its own descriptor, so each
    request's lock is its own (``flock`` locks belong to an open file)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


@contextlib.contextmanager
def exclusive_lock_within(path: Path, seconds: float) -> Iterator[bool]:
    """Hold the exclusive lock of ``path`` for the block, waiting at most ``seconds`` for
    its shared holders to let go: yields whether it holds it."""
    with open(path, "a") as handle:
        if not _lock_exclusive(handle, deadline=time.monotonic() + seconds):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
