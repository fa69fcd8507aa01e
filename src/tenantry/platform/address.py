"""Which requests are the admin address's: by the listening socket they came in on."""

from __future__ import annotations

import socket


def admin_address(bind: str) -> tuple[set[str], str]:
    """The addresses (as a listening socket names them) and port of ``HOST:PORT``.

    :raises ValueError: not HOST:PORT, or a host that does not resolve.
    """
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--admin-bind {bind}: expected HOST:PORT")
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"--admin-bind {bind}: {exc.strerror or exc}") from None
    return {info[4][0] for info in found}, port


class AddressSplit:
    """``admin`` for requests that came in on the admin listener, ``tenants`` for every
    other. gunicorn names the listener in SERVER_NAME and SERVER_PORT (its address, not the
    Host header: the header is only used for UNIX sockets, which ``--admin-bind`` is not)."""

    def __init__(self, tenants, admin, bind: str):
        self.tenants, self.admin = tenants, admin
        self.hosts, self.port = admin_address(bind)

    def __call__(self, environ, start_response):
        if environ.get("SERVER_PORT") == self.port and environ.get("SERVER_NAME") in self.hosts:
            return self.admin(environ, start_response)
        return self.tenants(environ, start_response)
