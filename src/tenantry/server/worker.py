"""The gunicorn worker ``tenantry serve`` runs: gunicorn's gevent worker, with downloads
sent by ``os.sendfile`` again.

gevent's sockets implement ``sendfile()`` as a loop of 8 KiB ``send`` calls (``os.sendfile``
is not cooperative as such), which halved download throughput under gevent. Here the file
goes out by ``os.sendfile`` on the non-blocking socket: when the socket's buffer is full
the greenlet waits in gevent's hub for it to drain, so a slow reader holds its greenlet,
never the worker; and a fast reader yields to the others every :data:`FAIR_SHARE` bytes.
"""

from __future__ import annotations

import errno
import io
import os

import gevent
from gevent import socket as gevent_socket
from gunicorn.workers.ggevent import GeventWorker

# Bytes one os.sendfile call may send; and how many a greenlet sends before it lets the
# others of the worker run (a fast client on loopback would otherwise take the worker).
SENDFILE_BLOCK = 1024 * 1024
FAIR_SHARE = 8 * 1024 * 1024
# os.sendfile cannot do this file (a filesystem without it): send it the slow way
NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK}
# The class of plain TCP sockets under gevent; gevent's TLS socket is a subclass
PLAIN_SOCKET = gevent_socket.socket


def cooperative_sendfile(sock, file, offset: int = 0, count: int | None = None) -> int:
    """Send ``count`` bytes (default: to the end) of ``file`` from ``offset`` on the gevent
    socket ``sock`` with os.sendfile, waiting in the hub while the socket cannot take more;
    leaves the file's position after the last byte sent, like ``socket.sendfile``. A file
    without a real descriptor goes gevent's own way."""
    sock._check_sendfile_params(file, offset, count)
    if type(sock) is not PLAIN_SOCKET:  # TLS (the bytes must be encrypted) or another kind
        return sock._sendfile_use_send(file, offset, count)
    try:
        source = file.fileno()
        os.fstat(source)
    except (AttributeError, io.UnsupportedOperation, OSError):
        return sock._sendfile_use_send(file, offset, count)
    target, timeout = sock.fileno(), sock.gettimeout()
    total = since_yield = 0
    try:
        while count is None or total < count:
            size = SENDFILE_BLOCK if count is None else min(count - total, SENDFILE_BLOCK)
            try:
                sent = os.sendfile(target, source, offset + total, size)
            except BlockingIOError:
                gevent_socket.wait_write(target, timeout=timeout)
                since_yield = 0
                continue
            except OSError as exc:
                if total == 0 and exc.errno in NO_SENDFILE:  # as socket.sendfile does
                    return sock._sendfile_use_send(file, offset, count)
                raise
            if sent == 0:  # the end of the file
                break
            total += sent
            since_yield += sent
            if since_yield >= FAIR_SHARE:
                gevent.sleep(0)
                since_yield = 0
        return total
    finally:
        if total > 0:
            file.seek(offset + total)


class Worker(GeventWorker):
    """gunicorn's gevent worker whose sockets send files with :func:`cooperative_sendfile`."""

    def patch(self):
        super().patch()
        gevent_socket.socket.sendfile = cooperative_sendfile
