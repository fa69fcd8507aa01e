"""The *Settings reference* of docs/settings.md against the code: every setting and
environment variable has a row, no row names one that does not exist, and every default is
the code's.

The checks are plain functions of the page's text (each returns the problems it finds), so
a test can also feed them an edited copy and see them fail.
"""

from __future__ import annotations

import ast
import importlib
import re
import tempfile
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

import click
import click.core
import pytest

import tenantry.cli
from tenantry.client.cli import config_dir
from tenantry.config import MIN_SECRET_BYTES, TenantConfig
from tenantry.home.layout import TenantHome
from tenantry.jobs.place import jobs_store, jobs_url
from tenantry.server.limits import RateLimits
from tenantry.server.settings import server_settings, trusted_proxies
from tenantry.storage.location import storage_location_from_environ
from tenantry.storage.s3 import ObjectStore
from tests.s3 import CREDENTIALS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "docs" / "settings.md"
SOURCE = ROOT / "src" / "tenantry"

SECTION = "## Settings reference"
CONFIG_TABLE = "### Config class attributes (config/<slug>.py)"
ENV_TABLE = "### Environment variables"

# Public UPPERCASE attributes of TenantConfig that need no row. None today: even Flask's own
# keys the base class pins (DEBUG, SESSION_COOKIE_SAMESITE, ...) are set per tenant through
# the class and refused in .env like the others, so a reader should find them listed.
INTERNAL_SETTINGS: frozenset[str] = frozenset()

SIZE_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
DURATION_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "day": "days", "days": "days"}
NO_CLICK_DEFAULT = (None, getattr(click.core, "UNSET", None))

# Environment variables: the names the source mentions (TENANTRY_*), and any other name it
# reads from os.environ or lets click read.
TENANTRY_NAME = re.compile(r"\bTENANTRY_[A-Z][A-Z0-9_]*")
ENV_READ = re.compile(
    r"\bos\.(?:environ\.get|getenv|environ\.setdefault)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
    r"|\bos\.environ\[\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\]"
    r"|\benvvar\s*=\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
)
# ``os.environ.get("NAME", default)`` with a string literal or a constant as the default.
ENV_GET_WITH_DEFAULT = re.compile(
    r"\bos\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"\s*,\s*(\"[^\"]*\"|[A-Z][A-Z0-9_]*)\s*\)"
)


def settings_section(text: str) -> str:
    """The page's *Settings reference*, up to the next ``## `` heading."""
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def table_rows(text: str, heading: str) -> list[tuple[str, str, str]]:
    """The rows (name, default, default cell) of the first table after ``heading`` in the
    settings section; name and default are the first backticked spans of their cells, the
    rest of a default cell is a remark (or, for TENANTRY_LOG_LEVEL, a second default)."""
    section = settings_section(text)
    lines = section[section.index(heading + "\n") :].splitlines()[1:]
    rows = []
    in_table = False
    for line in lines:
        if line.startswith("### "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        if len(cells) != 3 or set(cells[0]) <= set("-: ") or not cells[0].startswith("`"):
            continue  # the header and the separator
        rows.append((first_code(cells[0]), first_code(cells[1]), cells[1]))
    return rows


def first_code(cell: str) -> str:
    match = re.search(r"`([^`]*)`", cell)
    return match.group(1) if match else cell


def code_spans(cell_text: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell_text)


def parse_config_default(text: str) -> object:
    """A default as the config table writes it: ``off`` (None), ``1 GiB``, ``15 min``,
    ``30 days``, else a Python literal. :raises ValueError: none of those."""
    if text == "off":
        return None
    if match := re.fullmatch(r"(\d+) (KiB|MiB|GiB)", text):
        return int(match.group(1)) * SIZE_UNITS[match.group(2)]
    if match := re.fullmatch(r"(\d+) (s|min|h|days?)", text):
        return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"cannot read the default {text!r}") from None


def parse_env_default(text: str) -> object:
    """A default as the environment table writes it: ``none`` (unset), ``300 s``, a whole
    number, else the text itself (a path, a URL, a level)."""
    if text == "none":
        return None
    if match := re.fullmatch(r"(\d+) (s|min|h|days?)", text):
        return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if text.isdigit():
        return int(text)
    return text


def same(documented: object, actual: object) -> bool:
    """Equal and of the same type (so ``True`` is no ``1`` and ``1`` no ``1.0``); a
    read-only mapping is written as the dict it shows."""
    if isinstance(actual, MappingProxyType):
        actual = dict(actual)
    return type(documented) is type(actual) and documented == actual


def duplicates(rows) -> list[str]:
    names = [row[0] for row in rows]
    return sorted(
        {f"{name} has {names.count(name)} rows" for name in names if names.count(name) > 1}
    )


# --- the config class table -------------------------------------------------------------


def public_settings() -> set[str]:
    names = {name for name in dir(TenantConfig) if name.isupper() and not name.startswith("_")}
    return names - INTERNAL_SETTINGS


def config_problems(text: str) -> list[str]:
    rows = table_rows(text, CONFIG_TABLE)
    problems = duplicates(rows)
    documented = {name for name, _, _ in rows}
    problems += [f"{name} has no row" for name in sorted(public_settings() - documented)]
    problems += [
        f"{name} is no setting of TenantConfig" for name in sorted(documented - public_settings())
    ]
    for name, default, _ in rows:
        if name not in public_settings():
            continue
        actual = getattr(TenantConfig, name)
        try:
            documented_value = parse_config_default(default)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not same(documented_value, actual):
            problems.append(f"{name}: README says {default!r}, the code has {actual!r}")
    return problems


# --- the environment table ----------------------------------------------------------------


def source_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def source_env_names() -> set[str]:
    names = set()
    for path in source_files():
        source = path.read_text()
        names.update(TENANTRY_NAME.findall(source))
        names.update(name for groups in ENV_READ.findall(source) for name in groups if name)
    return names


def module_of(path: Path):
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    return importlib.import_module(".".join(relative.parts).removesuffix(".__init__"))


def env_source_problems(text: str) -> tuple[list[str], set[str]]:
    """Rows against the names in the source, and defaults against what the source says:
    ``os.environ.get`` defaults (literals must appear in the cell, constants must equal its
    default) and click options' defaults. Also returns the names whose default was checked."""
    rows = table_rows(text, ENV_TABLE)
    cells = {name: (default, cell) for name, default, cell in rows}
    problems = duplicates(rows)
    in_source = source_env_names()
    problems += [f"{name} has no row" for name in sorted(in_source - cells.keys())]
    problems += [f"{name} is not in src/tenantry" for name in sorted(cells.keys() - in_source)]
    checked = set()
    for path in source_files():
        for name, default in ENV_GET_WITH_DEFAULT.findall(path.read_text()):
            if name not in cells:
                continue
            checked.add(name)
            documented, cell = cells[name]
            where = path.relative_to(ROOT)
            if default.startswith('"'):
                if default[1:-1] not in code_spans(cell):
                    problems.append(f"{name}: {where} defaults to {default}, README says {cell!r}")
                continue
            actual = getattr(module_of(path), default)
            value = parse_env_default(documented)
            if isinstance(value, timedelta):
                value = value.total_seconds()
                actual = float(actual)
            if not same(value, actual):
                problems.append(
                    f"{name}: README says {documented!r}, {where} has {default} = {actual!r}"
                )
    for param in click_params(tenantry.cli.main):
        if not isinstance(param.envvar, str) or param.envvar not in cells:
            continue
        documented = cells[param.envvar][0]
        if param.default in NO_CLICK_DEFAULT:
            if param.envvar in BEHAVIOUR_CHECKS:
                continue  # the default is what the code does without it: checked below
            actual = None
        else:
            actual = param.default
        checked.add(param.envvar)
        if not same(parse_env_default(documented), actual):
            problems.append(
                f"{param.envvar}: README says {documented!r}, the --{param.name} option has "
                f"{actual!r}"
            )
    return problems, checked


def click_params(command: click.Command):
    yield from command.params
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from click_params(sub)


# What the code does when the variable is unset, for defaults that are behaviour rather
# than a literal: each takes the documented default and a MonkeyPatch with the variable
# removed and the current directory a fresh one, and returns the code's value and the
# documented one, compared as such.
def _home(documented, mp):
    return TenantHome.from_environ().root, Path(documented).resolve()


def _database_url(documented, mp):
    return TenantHome.from_environ().database_url, parse_env_default(documented)


def _redis_url(documented, mp):
    return RateLimits.shared().url, documented


def _storage_url(documented, mp):
    return storage_location_from_environ(), parse_env_default(documented)


def _s3_endpoint_url(documented, mp):
    for name, value in CREDENTIALS.items():
        mp.setenv(name, value)
    # unset: AWS's own endpoint, which the README calls "none (AWS)"
    endpoint = ObjectStore("bucket").client.meta.endpoint_url
    return endpoint.endswith(".amazonaws.com"), parse_env_default(documented) is None


def _trusted_proxies(documented, mp):
    return trusted_proxies(), parse_env_default(documented)


def _config_dir(documented, mp):
    mp.delenv("XDG_CONFIG_HOME", raising=False)
    mp.setenv("HOME", str(Path.cwd()))
    return config_dir(), Path(documented).expanduser()


def _xdg_config_home(documented, mp):
    mp.delenv("TENANTRY_CONFIG_DIR", raising=False)
    mp.setenv("HOME", str(Path.cwd()))
    return config_dir().parent, Path(documented).expanduser()


def _log_level(documented, mp):
    # the row's first default is the server's; the commands' follows it in the same cell
    commands = f"`{tenantry.cli.COMMAND_LOG_LEVEL}` (`tenantry` commands)"
    assert commands in README.read_text(), "the commands' log level is not in the table"
    return server_settings()["log_level"], documented


def _max_loaded(documented, mp):
    return server_settings()["max_loaded"], parse_env_default(documented)


def _sweep_interval(documented, mp):
    seconds = server_settings()["sweep_interval"]
    return timedelta(seconds=seconds), parse_env_default(documented)


def _metrics_tenants(documented, mp):
    from tenantry.server.metrics import labelled_tenants_limit

    return labelled_tenants_limit(), int(documented)


def _metrics_bind(documented, mp):
    from tenantry.server.hooks import METRICS_BIND_ENV_VAR, SERVE_JOBS_ENV_VAR, when_ready

    class Server:  # the master's hook starts no metrics server when none is asked for
        started = False

        class log:
            @staticmethod
            def info(*args):
                Server.started = True

    mp.delenv(METRICS_BIND_ENV_VAR, raising=False)
    mp.delenv(SERVE_JOBS_ENV_VAR, raising=False)  # no job runner either
    when_ready(Server)
    return ("none" if not Server.started else "started"), documented


def _serve_jobs(documented, mp):
    """Unset (a plain gunicorn, or serve --no-jobs): the master starts no job runner."""
    from tenantry.server import hooks

    class Server:
        class log:
            @staticmethod
            def info(*args):
                pass

    mp.delenv(hooks.SERVE_JOBS_ENV_VAR, raising=False)
    mp.delenv(hooks.METRICS_BIND_ENV_VAR, raising=False)
    mp.setattr(hooks, "_jobs", None)
    hooks.when_ready(Server)
    return ("none" if hooks._jobs is None else "started"), documented


def _jobs_url(documented, mp):
    """Unset: the jobs in the home's tenants/.jobs.db (a SQLite file)."""
    (Path.cwd() / "tenants").mkdir()
    store = jobs_store(Path.cwd() / "tenants")
    place = Path(store.engine.url.database).relative_to(Path.cwd()).as_posix()
    return (jobs_url(), place), (parse_env_default(documented), "tenants/.jobs.db")


def _admin_bind(documented, mp):
    from tenantry.platform.app import admin_application

    try:  # unset: no admin address, and the application that serves one will not start
        admin_application()
    except RuntimeError:
        return "none", documented
    return "started", documented


BEHAVIOUR_CHECKS = {
    "TENANTRY_ADMIN_BIND": _admin_bind,
    "TENANTRY_METRICS_TENANTS": _metrics_tenants,
    "TENANTRY_METRICS_BIND": _metrics_bind,
    "TENANTRY_LOG_LEVEL": _log_level,
    "TENANTRY_MAX_LOADED_APPS": _max_loaded,
    "TENANTRY_SWEEP_INTERVAL": _sweep_interval,
    "TENANTRY_HOME": _home,
    "TENANTRY_DATABASE_URL": _database_url,
    "TENANTRY_REDIS_URL": _redis_url,
    "TENANTRY_JOBS_URL": _jobs_url,
    "TENANTRY_SERVE_JOBS": _serve_jobs,
    "TENANTRY_TRUSTED_PROXIES": _trusted_proxies,
    "TENANTRY_STORAGE_URL": _storage_url,
    "TENANTRY_S3_ENDPOINT_URL": _s3_endpoint_url,
    "TENANTRY_CONFIG_DIR": _config_dir,
    "XDG_CONFIG_HOME": _xdg_config_home,
}


def env_behaviour_problems(text: str) -> tuple[list[str], set[str]]:
    problems = []
    checked = set()
    for name, default, _ in table_rows(text, ENV_TABLE):
        check = BEHAVIOUR_CHECKS.get(name)
        if check is None:
            continue
        checked.add(name)
        with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
            mp.delenv(name, raising=False)
            mp.chdir(folder)
            actual, documented = check(default, mp)
        if actual != documented:
            problems.append(f"{name}: README says {default!r}, unset the code gives {actual!r}")
    return problems, checked


def env_problems(text: str) -> list[str]:
    problems, checked = env_source_problems(text)
    behaviour, checked_by_behaviour = env_behaviour_problems(text)
    unchecked = (
        {name for name, _, _ in table_rows(text, ENV_TABLE)} - checked - checked_by_behaviour
    )
    problems += behaviour
    problems += [
        f"{name}: nothing checks its default (add a check to BEHAVIOUR_CHECKS)"
        for name in sorted(unchecked)
    ]
    return problems


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text()


def test_both_tables_are_there(readme):
    assert len(table_rows(readme, CONFIG_TABLE)) >= len(public_settings())
    assert table_rows(readme, ENV_TABLE)


def test_every_config_attribute_has_a_row_with_the_codes_default(readme):
    assert config_problems(readme) == []


def test_every_environment_variable_has_a_row_with_the_codes_default(readme):
    assert env_problems(readme) == []


def test_env_file_line_names_what_dotenv_must_hold(readme):
    section = settings_section(readme)
    assert "`SECRET_KEY`" in section
    assert f"at least {MIN_SECRET_BYTES} bytes" in section


@pytest.mark.parametrize(
    ("table", "name", "wrong"),
    [
        (CONFIG_TABLE, "STORAGE_QUOTA", "`9 GiB`"),
        (CONFIG_TABLE, "JWT_ACCESS_LIFESPAN", "`15 h`"),
        (CONFIG_TABLE, "RATE_LIMIT", '`"600/minute"`'),
        (ENV_TABLE, "TENANTRY_MAX_LOADED_APPS", "`50`"),
        (ENV_TABLE, "TENANTRY_LOG_LEVEL", "`DEBUG` (server), `WARNING` (`tenantry` commands)"),
        (ENV_TABLE, "TENANTRY_TRUSTED_PROXIES", "`1`"),
        (ENV_TABLE, "TENANTRY_URL", "`http://localhost:8000`"),
    ],
)
def test_a_wrong_default_is_caught(readme, table, name, wrong):
    edited = with_default(readme, name, wrong)
    problems = config_problems(edited) if table == CONFIG_TABLE else env_problems(edited)
    assert any(problem.startswith(f"{name}:") for problem in problems), problems


def test_a_missing_or_unknown_row_is_caught(readme):
    assert "STORAGE_QUOTA has no row" in config_problems(without_row(readme, "STORAGE_QUOTA"))
    without_sweep = without_row(readme, "TENANTRY_SWEEP_INTERVAL")
    assert "TENANTRY_SWEEP_INTERVAL has no row" in env_problems(without_sweep)
    invented = readme.replace(
        "| `TENANTRY_URL` |", "| `TENANTRY_NO_SUCH` | `none` | nothing |\n| `TENANTRY_URL` |"
    )
    assert "TENANTRY_NO_SUCH is not in src/tenantry" in env_problems(invented)
    assert "NO_SUCH is no setting of TenantConfig" in config_problems(
        readme.replace("| `NAME` |", "| `NO_SUCH` | `1` | nothing |\n| `NAME` |")
    )


def without_row(text: str, name: str) -> str:
    """``text`` without the rows of ``name`` (in any table)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(f"| `{name}` |"))


def with_default(text: str, name: str, cell: str) -> str:
    """``text`` with the default cell of ``name``'s row in the settings section replaced by
    ``cell`` (other tables of the page may have a row of that name too)."""
    section = settings_section(text)
    pattern = re.compile(rf"^(\| `{name}` \|)[^|]*(\|)", re.MULTILINE)
    edited, count = pattern.subn(lambda m: f"{m.group(1)} {cell} {m.group(2)}", section)
    assert count == 1, f"no single row for {name}"
    return text.replace(section, edited)
