"""HostIndex: which tenant a Host name belongs to, from every tenant's HOSTS.

Knowing a tenant's HOSTS means running its config module, and a home may hold thousands.
So the index is also kept on disk, in ``tenants/.hosts.json``, with the stat signature of
each module it read: a process (each gunicorn worker, the CLI) runs only the modules that
changed since any process last looked, and a worker's first request does not run every
module of the home. The file is derived data: if it is missing, unreadable or stale, the
modules themselves are the truth, and it is written anew.
"""

from __future__ import annotations

import contextlib
import json
import logging

from tenantry.config import TenantConfigError
from tenantry.home.layout import StatSignature, TenantHome, stat_signature
from tenantry.home.loader import load_config_class
from tenantry.support.atomic import write_atomically

log = logging.getLogger(__name__)

INDEX_FILE = ".hosts.json"
INDEX_VERSION = 1


def normal_host(host: str) -> str:
    """A host name in the one form every comparison uses: lower case, no port, no final
    dot (``Acme.Example:8443.`` and ``acme.example`` are one host)."""
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and not host.endswith("]"):
        host = name
    return host.rstrip(".").lower()


def normalised_hosts(hosts) -> tuple[str, ...]:
    return tuple(normal_host(str(host)) for host in hosts)


class HostIndex:
    """Host → slug for every configured tenant, refreshed from changed modules only.

    A host that two tenants claim routes to neither (``tenants check`` reports it); a
    config module that fails to load keeps the hosts it last had, so its host answers
    with that tenant's 503 rather than a 404.
    """

    def __init__(self, home: TenantHome, persist: bool = True):
        self.home = home
        # False for read-only commands: the index on disk is read, never written.
        self.persist = persist
        self.modules: dict[str, tuple[StatSignature, tuple[str, ...]]] = {}
        self.claims: dict[str, list[str]] = {}
        self.by_host: dict[str, str] = {}

    def refresh(self) -> None:
        """Bring the index up to date with ``config/``: one stat per module, and a run of
        only those modules that changed."""
        known = self.modules or self._read_saved()
        modules = {}
        for slug in self.home.slugs():
            signature = stat_signature(self.home.config_file(slug))
            entry = known.get(slug)
            if entry is None or entry[0] != signature:
                entry = (signature, self._hosts_of(slug, entry))
            modules[slug] = entry
        if modules != known and self.persist:
            self._save(modules)
        self.modules = modules
        claims: dict[str, list[str]] = {}
        for slug, (_, hosts) in modules.items():
            for host in hosts:
                claims.setdefault(host, []).append(slug)
        if claims != self.claims:
            for host, slugs in claims.items():
                if len(slugs) > 1:
                    shared = ", ".join(slugs)
                    log.error("host %s is claimed by %s: routing it to none", host, shared)
        self.claims = claims
        self.by_host = {host: slugs[0] for host, slugs in claims.items() if len(slugs) == 1}

    def _hosts_of(self, slug: str, last_known) -> tuple[str, ...]:
        try:
            return normalised_hosts(load_config_class(self.home, slug).HOSTS)
        except (TenantConfigError, TypeError):
            return last_known[1] if last_known is not None else ()

    @property
    def _path(self):
        return self.home.tenants_dir / INDEX_FILE

    def _read_saved(self) -> dict[str, tuple[StatSignature, tuple[str, ...]]]:
        try:
            saved = json.loads(self._path.read_text())
            if saved.get("version") != INDEX_VERSION:
                return {}
            return {
                slug: (tuple(signature) if signature else None, tuple(hosts))
                for slug, (signature, hosts) in saved["modules"].items()
            }
        except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError):
            return {}

    def _save(self, modules) -> None:
        """Write the index for the other processes; a read-only home just goes without."""
        data = {
            "version": INDEX_VERSION,
            "modules": {slug: [signature, hosts] for slug, (signature, hosts) in modules.items()},
        }
        with contextlib.suppress(OSError):
            write_atomically(self._path, json.dumps(data, separators=(",", ":")))
