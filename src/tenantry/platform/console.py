"""The operator console at ``/`` of the admin address: pages rendered on the server, plain
forms, readable with JavaScript off; nothing is loaded from elsewhere.

Signing in sets the session cookie (the operator's token: HttpOnly, SameSite=Strict, 15
minutes, renewed while the operator works). Every form carries a CSRF token that must
match the ``tenantry_csrf`` cookie (HttpOnly, SameSite=Strict too); a form without it is
refused with 403. Each change calls what the platform API calls, as the operator.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import Forbidden, HTTPException

from tenantry.config import ALL_BLUEPRINTS, TenantConfigError
from tenantry.data import audit as audit_log
from tenantry.data.db import tenant_database
from tenantry.data.users import ROLES, UserError
from tenantry.home.loader import load_config_class
from tenantry.ops.backup_schedule import queue_backup
from tenantry.ops.backups import list_backups
from tenantry.ops.errors import TenantError
from tenantry.ops.jobs import tenant_jobs
from tenantry.ops.lifecycle import set_enabled, set_maintenance
from tenantry.platform import shared as platform_api
from tenantry.platform.actions import change_user, create_as_operator, users_of
from tenantry.platform.operators import TOKEN_MINUTES, SignInRefused
from tenantry.support.errors import PlatformError
from tenantry.web.errors import error_name

console = Blueprint("console", __name__, template_folder="templates", static_folder="static")

SESSION_COOKIE = "tenantry_console"
CSRF_COOKIE = "tenantry_csrf"
PAGE_SIZE = 50
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIAL")


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )


def csrf_token() -> str:
    """The CSRF token of this browser (made on its first page)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) != 43:
        token = g.get("new_csrf") or secrets.token_urlsafe(32)
        g.new_csrf = token
    return token


@console.after_app_request
def _set_cookies(response: Response) -> Response:
    if g.get("new_csrf"):
        _cookie(response, CSRF_COOKIE, g.new_csrf, 12 * 3600)
    renewed = g.get("renewed_session")
    if renewed:
        _cookie(response, SESSION_COOKIE, renewed, TOKEN_MINUTES * 60)
    return response


@console.before_request
def _check_csrf():
    if request.method != "POST":
        return None
    sent = request.form.get("csrf", "")
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("The form's CSRF token is missing or wrong: reload the page.")
    return None


@console.app_context_processor
def _template_globals() -> dict:
    return {"csrf_token": csrf_token, "operator": g.get("operator"), "human_bytes": human_bytes}


@console.errorhandler(HTTPException)
def _error_page(exc: HTTPException):
    """The console's own refusals as a page (the API answers JSON)."""
    code = exc.code or 500
    page = render_template(
        "error.html", code=code, name=error_name(code).replace("_", " "), message=exc.description
    )
    return page, code


def signed_in(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        operators = platform_api.operators()
        token = request.cookies.get(SESSION_COOKIE, "")
        operator = operators.operator_of(token) if token else None
        if operator is None:
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        g.operator = operator
        if operators.seconds_left(token) < TOKEN_MINUTES * 60 / 2:
            g.renewed_session = operators.renew(token)
        with platform_api.acting_operator(operator):
            return view(*args, **kwargs)

    return wrapped


def changing(view):
    """A change: refused to a read-only operator."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.operator.read_only:
            raise Forbidden(f"Operator {g.operator.name} is read-only.")
        return view(*args, **kwargs)

    return wrapped


def human_bytes(value) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _back_to(default: str) -> str:
    target = request.args.get("next") or request.form.get("next") or default
    # Only a path of this address: never a redirect elsewhere.
    return target if target.startswith("/") and not target.startswith("//") else default


# --- signing in and out ------------------------------------------------------------------


@console.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            token = platform_api.operators().sign_in(
                request.form.get("name", ""), request.form.get("password", "")
            )
        except SignInRefused as exc:
            error = str(exc)  # the page again, with why (a browser's form is answered 200)
        else:
            response = redirect(_back_to(url_for("console.tenants")))
            _cookie(response, SESSION_COOKIE, token, TOKEN_MINUTES * 60)
            return response
    return render_template("login.html", error=error, next=_back_to(""))


@console.post("/logout")
def logout():
    response = redirect(url_for("console.login"))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@console.get("/favicon.ico")
def favicon():
    return redirect(url_for("console.static", filename="favicon.svg"))


@console.get("/")
def index():
    return redirect(url_for("console.tenants"))


# --- tenants -----------------------------------------------------------------------------


@console.get("/tenants")
@signed_in
def tenants():
    search = request.args.get("q", "")[:200].replace("\0", "")
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 10**6 else 1
    rows, total = platform_api.overview().page(search, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))

    def link(number: int) -> str:
        return url_for("console.tenants") + "?" + urlencode({"q": search, "page": number})

    return render_template(
        "tenants.html",
        rows=rows,
        total=total,
        search=search,
        page=page,
        pages=pages,
        previous=link(page - 1) if page > 1 else None,
        next_page=link(page + 1) if page < pages else None,
    )


@console.route("/tenants/new", methods=["GET", "POST"])
@signed_in
@changing
def new_tenant():
    blueprints = ALL_BLUEPRINTS
    form = {"slug": "", "name": "", "hosts": "", "blueprints": list(blueprints)}
    error = None
    if request.method == "POST":
        form = {
            "slug": request.form.get("slug", "").strip(),
            "name": request.form.get("name", "").strip(),
            "hosts": request.form.get("hosts", "").strip(),
            "blueprints": request.form.getlist("blueprints"),
        }
        home = platform_api.home()
        hosts = tuple(host.strip() for host in form["hosts"].replace(",", " ").split() if host)
        try:
            create_as_operator(
                home,
                form["slug"],
                name=form["name"] or None,
                hosts=hosts,
                blueprints=tuple(form["blueprints"]),
            )
        except (TenantError, ValueError) as exc:
            error = str(exc)
        else:
            return redirect(url_for("console.tenant", slug=form["slug"]))
    return render_template("new.html", form=form, blueprints=blueprints, error=error)


@console.get("/tenants/<slug>")
@signed_in
def tenant(slug: str):
    home = platform_api.home()
    platform_api.known(slug)
    detail = platform_api.tenant_detail(slug)
    database = tenant_database(home, slug, read_only=True)
    try:
        logged = database.exists() and audit_log.has_log(database)
        recent = audit_log.entries(database, limit=20)[0] if logged else []
    finally:
        database.dispose()
    try:
        jobs = tenant_jobs(home, slug).list(limit=20)[0]
    except PlatformError as exc:
        jobs, detail["jobs_error"] = [], str(exc)
    return render_template(
        "tenant.html",
        tenant=detail,
        settings=_settings(slug),
        users=users_of(home, slug),
        roles=ROLES,
        audit=recent,
        verdict=platform_api.verdict_of(slug),
        jobs=jobs,
        backups=list_backups(home, slug),
        message=request.args.get("done", "")[:200],
    )


def _settings(slug: str) -> list[tuple[str, str]]:
    """The settings the tenant's config module sets, never one that looks secret."""
    try:
        config_class = load_config_class(platform_api.home(), slug)
    except TenantConfigError as exc:
        return [("error", "; ".join(exc.problems))]
    shown = []
    for name, value in sorted(vars(config_class).items()):
        if not name.isupper() or any(word in name for word in SECRET_WORDS):
            continue
        shown.append((name, repr(value)[:200]))
    return shown


@console.post("/tenants/<slug>/state")
@signed_in
@changing
def change_state(slug: str):
    home = platform_api.home()
    platform_api.known(slug)
    action = request.form.get("action", "")
    if action in ("enable", "disable"):
        set_enabled(home, slug, action == "enable")
    elif action in ("down", "up"):
        set_maintenance(home, slug, 300 if action == "down" else None)
    elif action == "backup":
        return _backup(slug)
    else:
        raise Forbidden("Unknown action.")
    platform_api.overview().forget(slug)
    return redirect(url_for("console.tenant", slug=slug, done=f"{slug}: {action} done"))


def _backup(slug: str):
    job = queue_backup(platform_api.home(), slug, g.operator.name)
    return redirect(url_for("console.tenant", slug=slug, done=f"backup queued as job {job}"))


@console.post("/tenants/<slug>/users/<username>")
@signed_in
@changing
def change_a_user(slug: str, username: str):
    platform_api.known(slug)
    action = request.form.get("action", "")
    changes = {"enable": {"active": True}, "disable": {"active": False}}.get(action)
    if changes is None:
        raise Forbidden("Unknown action.")
    try:
        change_user(platform_api.home(), slug, username, keep_an_admin=True, **changes)
    except UserError as exc:
        return redirect(url_for("console.tenant", slug=slug, done=f"refused: {exc}"))
    platform_api.overview().forget(slug)
    return redirect(url_for("console.tenant", slug=slug, done=f"{username}: {action}d"))
