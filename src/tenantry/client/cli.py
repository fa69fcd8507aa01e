"""``tenantry client``: the SDK on the command line.

Exit status: 0 success, 1 the API (or the connection) said no, 2 bad usage or not logged in.
``login`` keeps the token per base URL and tenant in ``<config dir>/tenantry/tokens.json``
(mode 0600); later commands use it and store it again when it was refreshed. ``--json`` (print
JSON) goes before the subcommand or after it.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from tenantry.client import TenantClient, TenantryError

PROGRESS_THRESHOLD = 1024 * 1024


class NotLoggedIn(click.ClickException):
    exit_code = 2


def config_dir() -> Path:
    """Where tokens are kept: $TENANTRY_CONFIG_DIR, else $XDG_CONFIG_HOME/tenantry, else
    ~/.config/tenantry."""
    explicit = os.environ.get("TENANTRY_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "tenantry"


class TokenStore:
    """Tokens by ``<base url> <tenant>``, in one 0600 JSON file."""

    def __init__(self, directory: Path):
        self.path = directory / "tokens.json"

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, token: str | None) -> None:
        tokens = self._load()
        if token is None:
            tokens.pop(key, None)
        else:
            tokens[key] = token
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.path.with_name(f".tokens.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(tokens, handle)
        os.chmod(temp, 0o600)
        os.replace(temp, self.path)


class Context:
    def __init__(self, url: str, tenant: str | None, as_json: bool):
        self.url = url.rstrip("/")
        self.tenant = tenant
        self.as_json = as_json
        self.key = f"{self.url} {tenant or ''}"
        self.tokens = TokenStore(config_dir())

    @contextmanager
    def client(self, logged_in: bool = True) -> Iterator[TenantClient]:
        token = self.tokens.get(self.key)
        if logged_in and token is None:
            raise NotLoggedIn(f"not logged in to {self.key.strip()}: run `tenantry client login`")
        client = TenantClient(self.url, self.tenant, token=token)
        try:
            yield client
        except TenantryError as exc:
            raise click.ClickException(f"{exc.status} {exc.error}: {exc.message}") from exc
        finally:
            if client.token and client.token != token:
                self.tokens.put(self.key, client.token)  # refreshed on the way
            client.close()

    def emit(self, data: object, text: str) -> None:
        click.echo(json.dumps(data, indent=2) if self.as_json else text)


@contextmanager
def progress_bar(total: int | None, label: str) -> Iterator:
    """A rich progress bar on stderr for transfers over 1 MiB on a terminal."""
    console = Console(stderr=True)
    if not total or total < PROGRESS_THRESHOLD or not console.is_terminal:
        yield None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda count: progress.advance(task, count)


pass_context = click.make_pass_decorator(Context)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Context).as_json = True


def json_flag(command: Callable) -> Callable:
    """``--json`` after a subcommand too: ``client ls --json`` is ``client --json ls``."""
    return click.option("--json", is_flag=True, expose_value=False, callback=_set_json,
                        help="Print JSON, for scripts.")(command)  # fmt: skip


class QuietAliases(click.Option):
    """An option that also takes its later spellings (old names kept for scripts) but shows
    only the first one in ``--help``."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = copy.copy(self)
        shown.opts = self.opts[:1]
        return click.Option.get_help_record(shown, ctx)


@click.group("client")
@click.option("--url", envvar="TENANTRY_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--tenant", envvar="TENANTRY_TENANT", help="Tenant slug (omit under host routing).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@click.pass_context
def client(ctx: click.Context, url: str, tenant: str | None, as_json: bool) -> None:
    """Use a tenant's API: files, links, datasets."""
    ctx.obj = Context(url, tenant, as_json)


@client.command()
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@json_flag
@pass_context
def login(ctx: Context, username: str, password_stdin: bool) -> None:
    """Log in and keep the token for later commands."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    with ctx.client(logged_in=False) as api:
        api.login(username, password)  # kept by ctx.client on the way out
    ctx.emit({"logged_in": username}, f"logged in as {username}")


@client.command()
@json_flag
@pass_context
def logout(ctx: Context) -> None:
    """Revoke the kept token and forget it."""
    with ctx.client() as api:
        api.logout()
    ctx.tokens.put(ctx.key, None)
    ctx.emit({"logged_out": True}, "logged out")


@client.command()
@json_flag
@pass_context
def me(ctx: Context) -> None:
    """Who the kept token belongs to."""
    with ctx.client() as api:
        user = api.me()
    ctx.emit(user, f"{user['username']} ({', '.join(user['roles'])}) at {user['tenant']}")


@client.command("ls")
@json_flag
@pass_context
def list_files(ctx: Context) -> None:
    """List files."""
    with ctx.client() as api:
        listing = api.list_files()
    lines = [f"{f['size']:>12}  {f['modified']}  {f['name']}" for f in listing["files"]]
    ctx.emit(listing, "\n".join([*lines, f"{listing['total']} files"]))


@client.command()
@click.argument("name")
@click.argument("path", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@json_flag
@pass_context
def put(ctx: Context, name: str, path: str | None) -> None:
    """Upload PATH (default: NAME; '-' for stdin) as NAME."""
    path = path or name
    source = sys.stdin.buffer if path == "-" else Path(path)
    if path != "-" and not source.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="PATH")
    size = None if path == "-" else source.stat().st_size
    with ctx.client() as api, progress_bar(size, f"put {name}") as progress:
        stored = api.upload(name, source, progress=progress)
    ctx.emit(stored, f"stored {stored['name']} ({stored['size']} bytes, sha256 {stored['sha256']})")


@client.command()
@click.argument("name")
@click.argument("dest", required=False, type=click.Path(dir_okay=False))
@json_flag
@pass_context
def get(ctx: Context, name: str, dest: str | None) -> None:
    """Download NAME to DEST (default: NAME), resuming after a cut."""
    dest = dest or name
    with ctx.client() as api:
        size = api.info(name)["size"]
        with progress_bar(size, f"get {name}") as progress:
            api.download(name, dest, progress=progress)
    ctx.emit({"name": name, "dest": dest, "size": size}, f"saved {name} to {dest}")


@client.command()
@click.argument("name")
@json_flag
@pass_context
def info(ctx: Context, name: str) -> None:
    """Size, modification time and sha256 of NAME."""
    with ctx.client() as api:
        details = api.info(name)
    ctx.emit(details, "\n".join(f"{key}: {value}" for key, value in details.items()))


@client.command("rm")
@click.argument("name")
@json_flag
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Delete NAME."""
    with ctx.client() as api:
        api.delete(name)
    ctx.emit({"deleted": name}, f"deleted {name}")


@client.command()
@click.argument("name")
@click.option("--download", is_flag=True, help="Serve as an attachment.")
@click.option("--ttl", default=300, show_default=True, type=click.IntRange(1, 86400))
@json_flag
@pass_context
def link(ctx: Context, name: str, download: bool, ttl: int) -> None:
    """Make a one-time link to NAME; prints its address."""
    with ctx.client() as api:
        addr = api.link(name, download=download, ttl=ttl)
    ctx.emit({"addr": addr}, addr)


@client.command()
@click.argument("addr")
@click.argument("dest", required=False, type=click.Path(dir_okay=False))
@json_flag
@pass_context
def redeem(ctx: Context, addr: str, dest: str | None) -> None:
    """Fetch a one-time link's bytes to DEST (default: stdout). Needs no login."""
    with ctx.client(logged_in=False) as api:
        result = api.redeem(addr, dest)
    if dest is None:
        sys.stdout.buffer.write(result)
    else:
        ctx.emit({"dest": dest}, f"saved to {dest}")


@client.group()
def datasets() -> None:
    """The datasets catalogue."""


@datasets.command("list")
@click.option("--use", "--uses", "uses", cls=QuietAliases, multiple=True,
              help="Only datasets having this use (repeatable: all must match).")  # fmt: skip
@click.option("--q", help="Text in the name or description.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@json_flag
@pass_context
def datasets_list(ctx: Context, uses, q, limit, offset) -> None:
    """List datasets."""
    with ctx.client() as api:
        page = api.datasets(uses=uses, q=q, limit=limit, offset=offset)
    lines = [f"{d['name']}\t{d['size']}\t{','.join(d['uses'])}\t{d['description']}"
             for d in page["data"]]  # fmt: skip
    ctx.emit(page, "\n".join([*lines, f"{page['total']} datasets"]))


@datasets.command("show")
@click.argument("name")
@json_flag
@pass_context
def datasets_show(ctx: Context, name: str) -> None:
    """One dataset."""
    with ctx.client() as api:
        dataset = api.dataset(name)
    ctx.emit(dataset, json.dumps(dataset, indent=2))


@datasets.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--use", "--uses", "uses", cls=QuietAliases, multiple=True,
              help="A use of the dataset (repeatable).")  # fmt: skip
@click.option("--file", "files", multiple=True, help="A stored file in it (repeatable).")
@json_flag
@pass_context
def datasets_create(ctx: Context, name, description, uses, files) -> None:
    """Create a dataset (admin)."""
    with ctx.client() as api:
        dataset = api.create_dataset(name, description, uses=uses, files=files)
    ctx.emit(dataset, f"created dataset {name}")


@datasets.command("rm")
@click.argument("name")
@json_flag
@pass_context
def datasets_remove(ctx: Context, name: str) -> None:
    """Delete a dataset (admin)."""
    with ctx.client() as api:
        api.delete_dataset(name)
    ctx.emit({"deleted": name}, f"deleted dataset {name}")


@datasets.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--dest", required=True, type=click.Path(dir_okay=False), help="Zip to write.")
@json_flag
@pass_context
def datasets_download(ctx: Context, names, dest: str) -> None:
    """Download datasets as one zip of <dataset>/<file>."""
    with ctx.client() as api:
        api.download_datasets(names, dest)
    ctx.emit({"dest": dest}, f"saved {', '.join(names)} to {dest}")
