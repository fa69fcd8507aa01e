"""Token authentication: one flask-praetorian guard per tenant app, held to the design rules.

flask-praetorian hashes passwords and signs and validates tokens. Around it tenantry adds
what it lacks (docs/design-rules.md says why): a strict ``Authorization: Bearer <token>``
parser (no cookies, no query string, nothing after the token), a tenant claim set on every
token and checked on every request, a pinned algorithm, refresh of current tokens, and a
check of the user and of revocation in the tenant database (at most a second old per
worker: TokenHolders). Every failure becomes a 401 (403 for a missing role) in tenantry's
JSON error shape.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import time
from dataclasses import dataclass

import jwt
from flask import Flask, current_app, g, request
from flask_praetorian import Praetorian
from flask_praetorian.constants import REFRESH_EXPIRATION_CLAIM, AccessType
from flask_praetorian.exceptions import ExpiredAccessError
from passlib.hash import pbkdf2_sha512
from werkzeug.exceptions import BadRequest, Conflict, Forbidden, NotFound, Unauthorized

from tenantry.data.users import (
    LastAdmin,
    TokenHolder,
    UnknownUser,
    User,
    UserError,
    UserExists,
    is_usable_password,
    token_holder,
)
from tenantry.support.blocking import in_thread

ALGORITHM = "HS512"
HASH_SCHEME = "pbkdf2_sha512"
BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")

MAX_DB_INT = 2**31 - 1  # ids and times go into 32-bit database columns
MAX_JTI_LENGTH = 64
# The user's token generation when the token was issued (see users.User.token_generation)
GENERATION_CLAIM = "gen"
# The user's random key (users.User.token_key): a user id reused after a restore of an
# older archive is another user, with another key, and the old tokens do not name it.
USER_KEY_CLAIM = "ukey"
# A token's place in its family (the tokens refreshed from one login, one jti): 0 for the
# login's, then 1, 2, ... Only the latest may be refreshed (users.rotate_refresh).
REFRESH_SEQ_CLAIM = "seq"

INVALID_TOKEN = "The token is missing, malformed, expired or not valid here."  # noqa: S105


def _is_int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def issuer(slug: str) -> str:
    return f"tenantry:{slug}"


@dataclass(frozen=True)
class Identity:
    """Who a request's token speaks for, as the tenant database said (at most a second ago)."""

    user: TokenHolder
    claims: dict

    @property
    def roles(self) -> list[str]:
        return self.user.rolenames


def init_praetorian(app: Flask) -> Praetorian:
    """Give ``app`` its own guard, keyed with its own SECRET_KEY."""
    app.config.update(
        JWT_ALGORITHM=ALGORITHM,
        JWT_ALLOWED_ALGORITHMS=[ALGORITHM],
        JWT_PLACES=["header"],
        PRAETORIAN_HASH_SCHEME=HASH_SCHEME,
        PRAETORIAN_HASH_ALLOWED_SCHEMES=[HASH_SCHEME],
        DISABLE_PRAETORIAN_ERROR_HANDLER=True,
    )
    guard = Praetorian()
    # Revocation is checked with the user in one query (token_holder), not by the guard.
    guard.init_app(app, user_class=User)
    app.extensions["tenantry.tokens"] = VerifiedTokens()
    app.extensions["tenantry.holders"] = TokenHolders()
    return guard


def guard_of(app: Flask) -> Praetorian:
    return app.extensions["praetorian"]


def issue_token(user: User) -> str:
    """A new access token for ``user``, naming the current tenant."""
    slug = current_app.config["SLUG"]
    claims = {GENERATION_CLAIM: user.token_generation, USER_KEY_CLAIM: user.token_key}
    return guard_of(current_app).encode_jwt_token(user, iss=issuer(slug), tenant=slug, **claims)


def refreshed_token(claims: dict, user: TokenHolder) -> str:
    """A new access token of the same family (jti) and the same refresh deadline, the
    next in the family (claim ``seq``): only it may be refreshed from now on.

    flask-praetorian refuses to refresh a token whose access has not expired yet; the
    design rules allow it, so the token is built here from the same parts.
    """
    guard = guard_of(current_app)
    now = int(time.time())
    lifespan = int(guard.access_lifespan.total_seconds())
    payload = {
        **claims,
        REFRESH_SEQ_CLAIM: claims.get(REFRESH_SEQ_CLAIM, 0) + 1,
        "iat": now,
        "exp": min(now + lifespan, claims[REFRESH_EXPIRATION_CLAIM]),
        "rls": ",".join(user.rolenames),
    }
    return jwt.encode(payload, guard.encode_key, guard.encode_algorithm)


def bearer_token() -> str:
    """The token of the Authorization header. :raises Unauthorized:"""
    header = request.headers.get("Authorization")
    if header is None:
        raise Unauthorized("Authorization: Bearer <token> is required.")
    match = BEARER.fullmatch(header)
    if match is None:
        raise Unauthorized("The Authorization header must be exactly 'Bearer <token>'.")
    return match.group(1)


def decode(token: str, for_refresh: bool = False) -> dict:
    """The claims of a token of this tenant, validated.

    With ``for_refresh`` an expired access token still passes while its refresh lifespan
    lasts. :raises Unauthorized:
    """
    verified = current_app.extensions["tenantry.tokens"]
    claims = verified.get(token)
    if claims is not None and claims["exp"] > time.time():
        return claims
    guard = guard_of(current_app)
    try:
        try:
            claims = guard.extract_jwt_token(token)
        except ExpiredAccessError:
            if not for_refresh:
                raise
            claims = guard.extract_jwt_token(token, access_type=AccessType.refresh)
    except Exception:
        # Any failure to decode — bad signature, algorithm, claims, types — is the same 401.
        raise Unauthorized(INVALID_TOKEN) from None
    slug = current_app.config["SLUG"]
    if (
        claims.get("iss") != issuer(slug)
        or claims.get("tenant") != slug
        or not _is_int_in(claims.get("id"), 1, MAX_DB_INT)
        or not isinstance(claims.get("jti"), str)
        or len(claims["jti"]) > MAX_JTI_LENGTH
        or not _is_int_in(claims.get(REFRESH_EXPIRATION_CLAIM), 0, MAX_DB_INT)
        or not _is_int_in(claims.get(GENERATION_CLAIM, 0), 0, MAX_DB_INT)
        or not _is_int_in(claims.get(REFRESH_SEQ_CLAIM, 0), 0, MAX_DB_INT)
        or not isinstance(claims.get(USER_KEY_CLAIM, ""), str)
        or len(claims.get(USER_KEY_CLAIM, "")) > MAX_JTI_LENGTH
    ):
        raise Unauthorized(INVALID_TOKEN)
    if claims["exp"] > time.time():
        verified.remember(token, claims)
    return claims


class VerifiedTokens:
    """Claims of tokens this app has already decoded and verified, by token: a client
    sends the same token for minutes, and checking its signature and claims again each
    time was a third of an authenticated request. A hit still needs an unexpired ``exp``,
    and the user and revocation are checked in the database (see :class:`TokenHolders`). Per app,
    so a rotated secret starts with none; bounded, oldest dropped first.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._claims: dict[str, dict] = {}

    def get(self, token: str) -> dict | None:
        return self._claims.get(token)

    def remember(self, token: str, claims: dict) -> None:
        if len(self._claims) >= self.size:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._claims[next(iter(self._claims))]
        self._claims[token] = claims


class TokenHolders:
    """Who a token speaks for, as the tenant database said less than ``seconds`` ago, by
    (user id, jti, token generation, user key): the database answers once a second per
    token and worker instead of on every request. A logout, disable, new password or
    delete is seen by every other worker within that second (the design rules allow 2 s),
    and at once by the worker that made it, which calls :meth:`forget`. Per app (a
    rotated key or a restored tenant builds a new app, with none); bounded. A token the
    database refuses is never kept: it is asked again each time.

    An answer is kept only if no :meth:`forget` came while it was read (a request that
    read the user just before a disable must not keep it for another second), and for a
    second from before it was read, not after.
    """

    def __init__(self, seconds: float = 1.0, size: int = 256):
        self.seconds = seconds
        self.size = size
        self._holders: dict[tuple, tuple[float, TokenHolder]] = {}
        self._forgets = 0

    def get(self, key: tuple) -> TokenHolder | None:
        found = self._holders.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    def asking(self) -> tuple[float, int]:
        """Call before reading the database; give the result to :meth:`remember`."""
        return time.monotonic(), self._forgets

    def remember(self, key: tuple, holder: TokenHolder, asked: tuple[float, int]) -> None:
        started, forgets = asked
        if forgets != self._forgets:
            return
        if key not in self._holders and len(self._holders) >= self.size:
            self._make_room()
        self._holders[key] = (started + self.seconds, holder)

    def _make_room(self) -> None:
        now = time.monotonic()
        expired = [key for key, (until, _) in list(self._holders.items()) if until <= now]
        for key in expired or list(self._holders)[:1]:  # else the oldest
            self._holders.pop(key, None)

    def forget(self, user_id: int | None = None, jti: str | None = None) -> None:
        """Drop what is kept for a user (by id) or a token (by jti)."""
        self._forgets += 1
        for key in list(self._holders):
            if key[0] == user_id or key[1] == jti:
                self._holders.pop(key, None)


def forget_holders(user_id: int | None = None, jti: str | None = None) -> None:
    """After this worker changed a user or revoked a token: its requests see it at once."""
    current_app.extensions["tenantry.holders"].forget(user_id, jti)


def authenticate(for_refresh: bool = False) -> Identity:
    """Check the request's token and its user. :raises Unauthorized:"""
    claims = decode(bearer_token(), for_refresh=for_refresh)
    # Tokens from before generations (or user keys) have none.
    key = (
        claims["id"],
        claims["jti"],
        claims.get(GENERATION_CLAIM, 0),
        claims.get(USER_KEY_CLAIM, ""),
    )
    holders = current_app.extensions["tenantry.holders"]
    user = holders.get(key)
    if user is None:
        asked = holders.asking()
        user = token_holder(current_app.extensions["tenantry.db"], *key)
        if user is None:
            raise Unauthorized(INVALID_TOKEN)
        holders.remember(key, user, asked)
    identity = Identity(user, claims)
    g.tenantry_identity = identity
    return identity


def current_identity() -> Identity:
    return g.tenantry_identity


@dataclass(frozen=True)
class AuthenticatedUser:
    """Who the request's token speaks for: ``id``, ``username`` and ``roles``."""

    id: int
    username: str
    roles: tuple[str, ...]


def current_user() -> AuthenticatedUser:
    """The user whose token authenticated this request (under :func:`auth_required`).

    :raises Unauthorized: the request has not been authenticated.
    """
    identity = g.get("tenantry_identity")
    if identity is None:
        raise Unauthorized("Authorization: Bearer <token> is required.")
    user = identity.user
    return AuthenticatedUser(user.id, user.username, tuple(user.rolenames))


def auth_required(*roles: str):
    """Decorator: a valid token of this tenant, and every role in ``roles``.

    :raises Unauthorized: no valid token. :raises Forbidden: a role is missing.
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            identity = authenticate()
            missing = [role for role in roles if role not in identity.roles]
            if missing:
                raise Forbidden(f"This needs the role: {', '.join(missing)}.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


@functools.cache
def _decoy_hash() -> str:

    return pbkdf2_sha512.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The current tenant guard's hash of ``password``, computed off the gevent hub (a
    hash is tens of milliseconds of CPU that would hold every request of the worker)."""
    return in_thread(guard_of(current_app).hash_password, password)


def password_matches(user: User | None, password: str) -> bool:
    """Whether ``password`` is the user's; an unknown user or an unusable password costs
    the same hashing time as a wrong one."""
    context = guard_of(current_app).pwd_ctx
    if user is None or not is_usable_password(password):
        in_thread(context.verify, "decoy password", _decoy_hash())
        return False
    return in_thread(context.verify, password, user.password_hash) and user.active


@contextlib.contextmanager
def user_errors():
    """A user that could not be made or changed, as the HTTP answer a tenant's admin routes
    and the platform API both give: 404 no such user, 409 the name is taken or the change
    would leave no active admin, 400 anything else refused."""
    try:
        yield
    except UnknownUser as exc:
        raise NotFound(str(exc)) from None
    except (UserExists, LastAdmin) as exc:
        raise Conflict(str(exc)) from None
    except UserError as exc:
        raise BadRequest(str(exc)) from None
