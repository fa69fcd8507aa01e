"""Users, revoked tokens and login throttling of one tenant, in that tenant's database.

Everything a gunicorn worker must agree on with the others (who is active, which tokens are
revoked, who is locked out) lives here, not in process memory.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.data import audit
from tenantry.data.db import Base, TenantDatabase
from tenantry.support.errors import InputRefused

ROLES = ("admin", "user")
MIN_PASSWORD_LENGTH = 10
# passlib refuses longer secrets (PasswordSizeError); nobody types more.
MAX_PASSWORD_LENGTH = 1024
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}")


class UserError(InputRefused, ValueError):
    """A user could not be created or changed; the message says why."""


class UserExists(UserError):
    pass


class UnknownUser(UserError):
    def __init__(self, username: object):
        super().__init__(f"no user named {username!r}")


class LastAdmin(UserError):
    """The change would leave the tenant without an active admin."""

    def __init__(self, username: str):
        super().__init__(
            f"{username!r} is the tenant's last active admin: make another user an admin first"
        )


class User(Base):
    """A tenant's user; also flask-praetorian's user class for that tenant's guard."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Tokens carry it (claim "gen"); disabling the user or a new password moves it on, so
    # every token issued before stops working for good.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Tokens carry it too (claim "ukey"): random per user, so a user id handed out again
    # (after a restore of an older archive) is not the user an old token names.
    token_key: Mapped[str] = mapped_column(String(32), default="", server_default="")

    # flask-praetorian's user-class protocol
    @property
    def identity(self) -> int:
        return self.id

    @property
    def rolenames(self) -> list[str]:
        return role_names(self.roles)

    @property
    def password(self) -> str:
        return self.password_hash

    def is_valid(self) -> bool:
        return self.active

    @classmethod
    def lookup(cls, username: str) -> User | None:
        return find_user(current_app.extensions["tenantry.db"], username)

    @classmethod
    def identify(cls, user_id: int) -> User | None:
        with current_app.extensions["tenantry.db"].transaction() as session:
            return session.get(cls, user_id)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "username": self.username,
            "roles": self.rolenames,
            "active": self.active,
        }


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer)


class TokenRefresh(Base):
    """How many times a token family (a login's jti) was refreshed: its tokens carry their
    place in it (claim ``seq``), and only the latest may be refreshed."""

    __tablename__ = "token_refreshes"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)


class LoginFailure(Base):
    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(150), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float | None] = mapped_column(Float, nullable=True)


def is_username(value: object) -> bool:
    """Whether ``value`` could name a user (checked before it reaches the database)."""
    return isinstance(value, str) and USERNAME_PATTERN.fullmatch(value) is not None


def is_usable_password(value: object) -> bool:
    """Whether ``value`` is a password that may be hashed (any length policy aside)."""
    if not isinstance(value, str) or len(value) > MAX_PASSWORD_LENGTH:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # lone surrogates, e.g. undecodable bytes on stdin
        return False
    return True


def user_row_problem(table: str, row: dict) -> str | None:
    """What is wrong with a row of the ``users`` table that an archive brings (its
    username and roles, as the API would take them); None for any other table's."""
    if table != User.__tablename__:
        return None
    if "username" in row and not is_username(row["username"]):
        return f"username {str(row['username'])[:60]!r} is not a username"
    roles = row.get("roles")
    if roles is not None and not set(str(roles).split(",")) <= set(ROLES):
        return f"roles {str(roles)[:60]!r} are not {', '.join(ROLES)}"
    return None


def validate_new_user(username: object, password: object, roles: object) -> None:
    """:raises UserError: naming the first field that is wrong."""
    if not is_username(username):
        raise UserError(
            "username must be 1-150 characters of letters, digits and . _ @ + - "
            "starting with a letter or digit"
        )
    _validate_password(password)
    _validate_roles(roles)


def _validate_password(password: object) -> None:
    if not is_usable_password(password) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(
            f"password must be valid text of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            "characters"
        )


def _validate_roles(roles: object) -> None:
    if (
        not isinstance(roles, list)
        or not roles
        or not all(isinstance(role, str) and role in ROLES for role in roles)
    ):
        raise UserError(f"roles must be a non-empty list of: {', '.join(ROLES)}")


def _roles_column(roles: list[str]) -> str:
    return ",".join(role for role in ROLES if role in roles)


def role_names(column: str | None) -> list[str]:
    """The roles a ``users.roles`` column holds (the reverse of :func:`_roles_column`)."""
    return [role for role in (column or "").split(",") if role]


def create_user(
    database: TenantDatabase,
    password_hash_of,
    username,
    password,
    roles,
    audit_action: str = "user.create",
) -> User:
    """Add a user; ``password_hash_of`` is the tenant guard's ``hash_password``; the audit
    log records ``audit_action`` (the operator's command records ``user.add``).

    :raises UserError: invalid username, password (< 10 characters) or roles.
    :raises UserExists: the username is taken.
    """
    validate_new_user(username, password, roles)
    user = User(
        username=username,
        token_key=secrets.token_hex(16),
        password_hash=password_hash_of(password),
        roles=_roles_column(roles),
        active=True,
        created_at=datetime.now(UTC),
    )
    try:
        with database.transaction() as session:
            session.add(user)
            audit.record(session, audit_action, username)
    except IntegrityError:
        if find_user(database, username) is None:
            raise  # not the username: another constraint (or trigger) refused the row
        raise UserExists(f"user {username!r} already exists") from None
    return user


def find_user(database: TenantDatabase, username: str) -> User | None:
    if not is_username(username):
        return None
    with database.transaction() as session:
        return session.scalars(select(User).where(User.username == username)).first()


def user_rows(database: TenantDatabase) -> list[tuple[str, list[str], bool]]:
    """(username, roles, active) of every user, by name: only the columns every schema
    revision has, so it reads a database not yet migrated (read-only commands)."""
    query = select(User.username, User.roles, User.active).order_by(
        database.by_bytes(User.username)
    )
    with database.engine.connect() as connection:
        rows = connection.execute(query).all()
    return [(name, role_names(roles), bool(active)) for name, roles, active in rows]


def list_users(database: TenantDatabase) -> list[User]:
    with database.transaction() as session:
        return list(session.scalars(select(User).order_by(database.by_bytes(User.username))))


def update_user(
    database: TenantDatabase,
    password_hash_of,
    username: str,
    *,
    password: str | None = None,
    active: bool | None = None,
    roles: list[str] | None = None,
    keep_an_admin: bool = True,
) -> User:
    """Change a user's password, active state and/or roles, all at once or none; the
    one place the CLI and the admin routes change a user. A new password also lifts a
    lock-out. ``password_hash_of`` is the tenant guard's ``hash_password`` (used only
    with ``password``). ``keep_an_admin`` False lets the operator disable or demote the
    last admin (a stolen account must be stoppable; the CLI can always enable it again).

    :raises UserError: an invalid value. :raises UnknownUser:
    :raises LastAdmin: it would leave the tenant without an active admin.
    """
    if password is not None:
        _validate_password(password)
    if active is not None and not isinstance(active, bool):
        raise UserError("active must be true or false")
    if roles is not None:
        _validate_roles(roles)
    if not is_username(username):
        raise UnknownUser(username)
    password_hash = None if password is None else password_hash_of(password)
    with database.transaction() as session:
        user = _user_for_change(session, username)
        still_admin = (user.active if active is None else active) and "admin" in (
            user.rolenames if roles is None else roles
        )
        if keep_an_admin and not still_admin:
            _keep_an_admin(session, user)
        if password_hash is not None or (active is False and user.active):
            user.token_generation += 1  # the tokens issued so far die, for good
        changes = []
        if password_hash is not None:
            user.password_hash = password_hash
            session.execute(delete(LoginFailure).where(LoginFailure.username == username))
            changes.append("user.password")
        if active is not None and active != user.active:
            user.active = active
            changes.append("user.enable" if active else "user.disable")
        if roles is not None and _roles_column(roles) != user.roles:
            user.roles = _roles_column(roles)
            changes.append("user.roles")
        for action in changes:
            audit.record(session, action, username)
    return user


def set_user_active(database: TenantDatabase, username: str, active: bool) -> User:
    """Enable or disable a user, as the operator (the last admin too). :raises UnknownUser:"""
    return update_user(database, None, username, active=active, keep_an_admin=False)


def delete_user(database: TenantDatabase, username: str, keep_an_admin: bool = True) -> int:
    """Remove a user; its tokens stop working (they name a user that is gone: within a
    second in every worker, see ``auth.TokenHolders``).
    Returns its id.

    :raises UnknownUser: :raises LastAdmin: it is the tenant's last active admin (unless
        ``keep_an_admin`` is False).
    """
    if not is_username(username):
        raise UnknownUser(username)
    with database.transaction() as session:
        user = _user_for_change(session, username)
        if keep_an_admin:
            _keep_an_admin(session, user)
        session.delete(user)
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        audit.record(session, "user.delete", username)
        return user.id


def _user_for_change(session, username: str) -> User:
    # A write first, changing nothing: it locks every active admin's row (PostgreSQL) or
    # the database (SQLite), so two admins demoting each other at once cannot both pass
    # the last-admin rule, and SQLite never has to upgrade a stale read to a write.
    session.execute(
        update(User)
        .where(User.active.is_(True), User.roles.like("%admin%"))
        .values(active=User.active)
        .execution_options(synchronize_session=False)
    )
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise UnknownUser(username)
    return user


def _keep_an_admin(session, user: User) -> None:
    """:raises LastAdmin: ``user`` is the only active admin left."""
    if user.active and "admin" in user.rolenames and not _another_admin(session, user.id):
        raise LastAdmin(user.username)


def _another_admin(session, but: int | None = None) -> bool:
    """Whether an active admin exists other than user id ``but`` (None: any user; SQL
    renders ``id != NULL`` as ``IS NOT NULL``)."""
    active = select(User.roles).where(User.active.is_(True), User.id != but)
    return any("admin" in role_names(roles) for roles in session.scalars(active))


@dataclass(frozen=True)
class TokenHolder:
    """The user a valid token speaks for, as the database says at this request."""

    id: int
    username: str
    roles: str

    @property
    def rolenames(self) -> list[str]:
        return role_names(self.roles)


def token_holder(
    database: TenantDatabase, user_id: int, jti: str, generation: int = 0, key: str = ""
) -> TokenHolder | None:
    """The active user a token names, or None if the user is gone, inactive, disabled or
    given a new password since the token was issued (``generation``), is another user
    under the same id (``key``), or the token revoked — one query."""
    values = {"user_id": user_id, "jti": jti, "gen": generation, "key": key}
    with database.engine.connect() as connection:
        row = connection.execute(_TOKEN_HOLDER, values).first()
    return None if row is None else TokenHolder(row.id, row.username, row.roles or "")


# Every authenticated request runs this; built once, with its values bound per call.
_TOKEN_HOLDER = select(User.id, User.username, User.roles).where(
    User.id == bindparam("user_id"),
    User.active.is_(True),
    User.token_generation == bindparam("gen"),
    User.token_key == bindparam("key"),
    ~exists().where(RevokedToken.jti == bindparam("jti")),
)


def rotate_refresh(
    database: TenantDatabase, user_id: int, jti: str, seq: int, expires_at: int
) -> bool:
    """Take a refresh of the token numbered ``seq`` in family ``jti``: True when it is the
    family's latest (it is retired now: the next refresh must present the new one). False
    when a later one exists: the old token is being reused, by whoever stole it or by its
    owner after the thief; either way every token of the user is revoked (its generation
    moves on) and the family too."""
    now = int(time.time())
    with database.transaction() as session:
        session.execute(delete(TokenRefresh).where(TokenRefresh.expires_at < now))
        taken = session.execute(
            update(TokenRefresh)
            .where(TokenRefresh.jti == jti, TokenRefresh.seq == seq)
            .values(seq=seq + 1)
        ).rowcount
        if not taken and session.get(TokenRefresh, jti) is None:
            # The family's first refresh (or its row is gone: a restore does not carry
            # them): its row is made now, and the next must present this one's successor.
            taken = session.execute(
                database.insert(TokenRefresh)
                .values(jti=jti, seq=seq + 1, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=[TokenRefresh.jti])
                .returning(TokenRefresh.jti)
            ).first()
        if taken:
            return True
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(token_generation=User.token_generation + 1)
        )
        session.execute(
            database.insert(RevokedToken)
            .values(jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        )
        user = session.get(User, user_id)
        audit.record(session, "auth.refresh_reused", user.username if user else "-", audit.FAILURE)
        return False


def log_out(database: TenantDatabase, username: str, jti: str, expires_at: int) -> None:
    """Revoke ``username``'s token by its jti until ``expires_at`` (forgetting long-expired
    revocations) and record the logout."""
    with database.transaction() as session:
        session.execute(delete(RevokedToken).where(RevokedToken.expires_at < time.time()))
        session.execute(
            database.insert(RevokedToken)
            .values(jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        )
        audit.record(session, "auth.logout", username)


def begin_login(
    database: TenantDatabase, username: str, max_failures: int, lockout_seconds: float
) -> int:
    """Count a login attempt of ``username`` before its password is checked, in one
    statement every worker's attempts queue on; returns the seconds of lock-out left (0:
    the attempt may go on). The attempt counts as a failure until :func:`record_login`
    forgets them, so at most ``max_failures`` passwords are ever checked between two
    lock-outs, however many requests arrive at once."""
    now = time.time()
    count = (
        database.insert(LoginFailure)
        .values(username=username, failures=1, last_failure=now)
        .on_conflict_do_update(
            index_elements=[LoginFailure.username],
            set_={"failures": LoginFailure.failures + 1, "last_failure": now},
        )
        .returning(LoginFailure.failures, LoginFailure.locked_until)
    )
    with database.transaction() as session:
        # A lock-out that ended starts the count afresh.
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.username == username, LoginFailure.locked_until <= now
            )
        )
        failures, locked_until = session.execute(count).one()
        if locked_until is None and failures > max_failures:
            locked_until = now + lockout_seconds
            session.execute(
                update(LoginFailure)
                .where(LoginFailure.username == username)
                .values(locked_until=locked_until)
            )
        return 0 if locked_until is None else max(1, round(locked_until - now))


def record_login_failure(
    database: TenantDatabase, username: str, max_failures: int, lockout_seconds: float
) -> None:
    """Record a failed login (counted already by :func:`begin_login`); the attempt that
    reaches ``max_failures`` locks the username out."""
    now = time.time()
    with database.transaction() as session:
        session.execute(
            update(LoginFailure)
            .where(
                LoginFailure.username == username,
                LoginFailure.failures >= max_failures,
                LoginFailure.locked_until.is_(None),
            )
            .values(locked_until=now + lockout_seconds)
        )
        # Failures of names nobody used for a day are forgotten, so guesses cannot pile up.
        session.execute(delete(LoginFailure).where(LoginFailure.last_failure < now - 86400))
        audit.record(session, "auth.login_failed", username, audit.FAILURE)


def record_login(database: TenantDatabase, username: str) -> None:
    """Forget ``username``'s failed logins and record that it logged in."""
    with database.transaction() as session:
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        audit.record(session, "auth.login", username, actor_name=username)


def has_active_admin(database: TenantDatabase) -> bool:
    with database.transaction() as session:
        return _another_admin(session)
