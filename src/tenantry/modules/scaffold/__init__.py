"""``tenantry new module NAME``: a new endpoint module, as an installable package that passes
its own tests the moment it is made.

The package's files are templates kept as real files under ``templates/`` beside this module
(package data, ``*.tmpl``: so that neither ruff nor pytest takes them for the platform's
code), in the shape of ``examples/notes``. They are filled in with :class:`string.Template`
(``$module``, ``${Camel}Item``): see :func:`template_values` for every name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from string import Template

import tenantry
from tenantry.modules.loader import (
    BUILTIN_NAMES,
    ENTRY_POINT_GROUP,
    INTERNAL_NAMES,
    VERSION_TABLE_PREFIX,
    settings_problems,
)
from tenantry.support.errors import InputRefused

TEMPLATES = Path(__file__).with_name("templates")

# Lowercase, letters and digits in words joined by single underscores: a Python identifier
# (the package is tenantry_NAME), and a valid distribution name (tenantry-NAME).
NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# At most 27, for PostgreSQL, which enforces what SQLite lets pass: a revision id (NAME_0001)
# fits alembic's version_num, a VARCHAR(32); and the module's version table,
# alembic_version_tenantry_NAME, leaves room in a 63-byte name for its key's "_pkc".
MIN_LENGTH = 2
MAX_LENGTH = min(32 - len("_0001"), 63 - len(f"{VERSION_TABLE_PREFIX}tenantry__pkc"))
# Names a module cannot take: the built-ins' (module names and blueprint names), and the
# first path segments of their routes (a module's route is /NAME).
# /healthz on a tenant's own host is the platform's health check.
RESERVED = frozenset((*BUILTIN_NAMES, *INTERNAL_NAMES, "api", "audit", "jobs", "users", "healthz"))


class ScaffoldError(InputRefused):
    """The module cannot be made as asked: a bad name, or a target that is in the way."""


def names(module: str) -> dict[str, str]:
    """The names of the module ``module`` (e.g. ``inventory``) in its package."""
    return {
        "module": module,
        "package": f"tenantry_{module}",
        "distribution": f"tenantry-{module.replace('_', '-')}",
    }


def check_name(module: str) -> None:
    """:raises ScaffoldError: ``module`` is not a name a new endpoint module may have."""
    if not (MIN_LENGTH <= len(module) <= MAX_LENGTH and NAME.fullmatch(module)):
        raise ScaffoldError(
            f"invalid module name {module!r}: {MIN_LENGTH} to {MAX_LENGTH} lowercase letters, "
            "digits and single underscores between them, starting with a letter (e.g. inventory)"
        )
    if module in RESERVED:
        raise ScaffoldError(
            f"{module!r} is taken by tenantry's built-in modules and routes "
            f"({', '.join(sorted(RESERVED))}): choose another name"
        )
    setting = f"{module.upper()}_MAX_NAME_LENGTH"
    if settings_problems({setting: 1}):
        raise ScaffoldError(
            f"{module!r} would make the module's settings ({setting}) look like the "
            "platform's own: choose another name"
        )
    installed = {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}
    if module in installed:
        point = installed[module]
        where = f" (package {point.dist.name})" if point.dist is not None else ""
        raise ScaffoldError(
            f"an installed package already registers the endpoint module {module!r}{where}: "
            "choose another name"
        )


def template_values(module: str) -> dict[str, str]:
    """What the templates' ``$names`` stand for, for the module ``module``."""
    return {
        **names(module),
        "Camel": "".join(part.capitalize() for part in module.split("_")),
        "prefix": module.upper(),  # of its settings: INVENTORY_MAX_NAME_LENGTH
        "table": f"{module}_items",
        "revision": f"{module}_0001",
        "tenantry_version": tenantry.__version__,
    }


def files(module: str) -> dict[str, str]:
    """The package of the module ``module``: its files' paths (relative to its folder) and
    their text."""
    values = template_values(module)
    package, table = values["package"], values["table"]
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        ".gitignore": "gitignore.tmpl",
        f"{package}/__init__.py": "package/__init__.py.tmpl",
        f"{package}/blueprint.py": "package/blueprint.py.tmpl",
        f"{package}/resources.py": "package/resources.py.tmpl",
        f"{package}/models.py": "package/models.py.tmpl",
        f"{package}/migrations/{module}_0001_{table}.py": "package/migrations/0001.py.tmpl",
        f"tests/test_{module}.py": "tests/test_module.py.tmpl",
    }
    return {
        path: Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)
        for path, template in layout.items()
    }


def default_target(module: str) -> Path:
    """Where ``tenantry new module NAME`` makes the package without ``--dir``."""
    return Path(names(module)["distribution"])


def new_module(module: str, target: str | os.PathLike[str] | None = None) -> Path:
    """Make the package of a new endpoint module ``module`` in the folder ``target``
    (default: ``./tenantry-<module>``), which must not exist or be empty. Written into a
    temporary folder beside it, then renamed: there is the whole package or nothing.

    :returns: the package's folder.
    :raises ScaffoldError: a bad name, or ``target`` is in the way (nothing written).
    :raises OSError: the files could not be written (nothing left behind).
    """
    check_name(module)
    target = Path(target) if target is not None else default_target(module)
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} is a file: choose another --dir")
    if target.is_dir() and any(target.iterdir()):
        raise ScaffoldError(f"{target} is a folder that is not empty: choose another --dir")
    contents = files(module)
    target = target.absolute()
    # The first folder on the way that is not there yet: made here, removed on failure.
    missing = next((path for path in reversed(target.parents) if not path.exists()), None)
    staging = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        for path, text in contents.items():
            destination = staging / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's is 0700
        os.rename(staging, target)  # replaces an empty folder, refuses any other
    except BaseException:
        for made in (staging, missing):
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
        raise
    return target


__all__ = ["ScaffoldError", "check_name", "default_target", "files", "names", "new_module"]
