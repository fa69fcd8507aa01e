"""The home's operators: who may use the platform API and the console.

They live in one file of the home, ``tenants/.operators`` (mode 0600): each operator's
password hash (never the password), whether it is read-only or disabled, its token
generation, and its failed sign-ins; beside them the key the operators' tokens are signed
with (random, 64 bytes, made with the first operator). Every change is one atomic replace
under a file lock, so workers, hosts sharing the home and the CLI agree on it.

Tokens are JWTs (HS256) valid :data:`TOKEN_MINUTES` minutes, for the audience
:data:`AUDIENCE` only: a tenant's token (another key, no such audience) is never one. A
new password, a disable or a delete moves the operator's generation on, which every token
carries, so the tokens issued before stop working at once.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass

import jwt
from passlib.context import CryptContext

from tenantry.data.users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from tenantry.home.layout import LOCKS_FOLDER, TenantHome
from tenantry.support.atomic import PRIVATE_DIR, PRIVATE_FILE, write_atomically
from tenantry.support.errors import InputRefused, PlatformError
from tenantry.support.locking import file_lock

OPERATORS_FILE = ".operators"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
TOKEN_MINUTES = 15
AUDIENCE = "tenantry-platform"
# As a tenant's logins: this many failures in a row lock the name out.
MAX_FAILURES = 10
LOCKOUT_SECONDS = 300

_hashing = CryptContext(schemes=["pbkdf2_sha512"])
# Verified against when the name is unknown, so that answers take as long either way.
_DUMMY_HASH = _hashing.hash(secrets.token_hex(16))


class OperatorError(InputRefused, ValueError):
    """An operator could not be added or changed; the message says why."""


class UnknownOperator(OperatorError):
    def __init__(self, name: str):
        super().__init__(f"no operator named {name!r}")


class SignInRefused(PlatformError):
    """Wrong name or password (one message for both), or locked out: ``retry_after``."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Operator:
    name: str
    read_only: bool
    active: bool
    created: float

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "read_only": self.read_only,
            "active": self.active,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise OperatorError(
            "an operator name is 1-64 characters: lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter"
        )
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or not (
        MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    ):
        raise OperatorError(
            f"a password is {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if "\0" in password:
        raise OperatorError("a password cannot hold a NUL character")
    return password


class Operators:
    """The operators of ``home`` (read from the file at each call: it is small)."""

    def __init__(self, home: TenantHome):
        self.path = home.tenants_dir / OPERATORS_FILE
        self.lock_path = home.tenants_dir / LOCKS_FOLDER / "operators"

    # --- reading -------------------------------------------------------------------------

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"key": None, "operators": {}}
        except (OSError, ValueError) as exc:
            raise PlatformError(f"{self.path} cannot be read: {exc}") from None
        return data

    def list(self) -> list[Operator]:
        return [_operator(name, row) for name, row in sorted(self._read()["operators"].items())]

    def get(self, name: str) -> Operator | None:
        row = self._read()["operators"].get(name)
        return None if row is None else _operator(name, row)

    def any(self) -> bool:
        return bool(self._read()["operators"])

    # --- changing ------------------------------------------------------------------------

    def _change(self, change) -> object:
        """Apply ``change(data)`` to the file under its lock, in one atomic replace."""
        self.lock_path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            data = self._read()
            result = change(data)
            write_atomically(self.path, json.dumps(data, indent=1), mode=PRIVATE_FILE)
        return result

    def add(self, name: str, password: str, read_only: bool = False) -> Operator:
        """:raises OperatorError: a bad name or password, or the name is taken."""
        check_name(name)
        hashed = _hashing.hash(check_password(password))

        def add(data: dict) -> Operator:
            if name in data["operators"]:
                raise OperatorError(f"operator {name!r} exists")
            data["key"] = data.get("key") or secrets.token_hex(64)
            row = {
                "hash": hashed,
                "read_only": bool(read_only),
                "active": True,
                # past a deleted namesake's: the tokens it was given stay ended
                "generation": data.get("retired", {}).pop(name, 0),
                "created": time.time(),
            }
            data["operators"][name] = row
            return _operator(name, row)

        return self._change(add)

    def _update(self, name: str, **fields) -> None:
        def update(data: dict) -> None:
            row = data["operators"].get(name)
            if row is None:
                raise UnknownOperator(name)
            if fields.pop("new_generation", False):
                row["generation"] += 1
            row.update(fields)

        self._change(update)

    def set_password(self, name: str, password: str) -> None:
        """A new password: its old tokens end, a lock-out is lifted."""
        hashed = _hashing.hash(check_password(password))
        self._update(name, hash=hashed, new_generation=True)

        def unlock(data: dict) -> None:
            data.get("attempts", {}).pop(name, None)

        self._change(unlock)

    def set_active(self, name: str, active: bool) -> None:
        """Disable (its tokens end) or enable an operator."""
        self._update(name, active=bool(active), new_generation=not active)

    def delete(self, name: str) -> None:
        """Delete an operator: its tokens end, and stay ended for another of its name."""

        def delete(data: dict) -> None:
            row = data["operators"].pop(name, None)
            if row is None:
                raise UnknownOperator(name)
            data.setdefault("retired", {})[name] = row["generation"] + 1

        self._change(delete)

    # --- signing in ----------------------------------------------------------------------

    def sign_in(self, name: object, password: object) -> str:
        """A token for ``name`` if ``password`` is its own and it is active and not locked
        out. Each attempt is counted before its password is checked, atomically (under the
        file's lock), for any name an operator could have, known or not: at most
        :data:`MAX_FAILURES` passwords are checked between two lock-outs however many
        requests arrive at once, and a name that does not exist locks out as one that does
        (the answers do not tell them apart).

        :raises SignInRefused:
        """
        wrong = SignInRefused("wrong operator name or password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise wrong
        if not NAME_PATTERN.fullmatch(name) or len(password) > MAX_PASSWORD_LENGTH:
            _hashing.verify("", _DUMMY_HASH)
            raise wrong
        # One read under the lock: the attempt counted, and the operator as it is now.
        locked, row, key = self._change(
            lambda data: (_begin_attempt(data, name), data["operators"].get(name), data.get("key"))
        )
        if locked:
            raise SignInRefused(
                f"too many failed sign-ins for {name}; try again later", retry_after=locked
            )
        if not _hashing.verify(password, row["hash"] if row else _DUMMY_HASH) or row is None:
            raise wrong  # the attempt stays counted
        self._change(lambda data: data.get("attempts", {}).pop(name, None))
        if not row["active"]:
            raise SignInRefused(f"operator {name} is disabled")
        return _token(name, row["generation"], key)

    def seconds_left(self, token: str) -> float:
        """Seconds before a token :meth:`operator_of` accepted expires."""
        claims = jwt.decode(token, options={"verify_signature": False})
        return float(claims.get("exp", 0)) - time.time()

    def renew(self, token: str) -> str | None:
        """A new token for the operator of a valid ``token`` (the console renews its
        session while the operator works); None if it is not valid."""
        operator = self.operator_of(token)
        if operator is None:
            return None
        data = self._read()
        return _token(operator.name, data["operators"][operator.name]["generation"], data["key"])

    def operator_of(self, token: str) -> Operator | None:
        """The active operator ``token`` speaks for, or None (expired, forged, another
        audience, an old generation, a disabled or deleted operator)."""
        data = self._read()
        if not data.get("key") or not isinstance(token, str):
            return None
        try:
            claims = jwt.decode(token, data["key"], algorithms=["HS256"], audience=AUDIENCE)
        except jwt.PyJWTError:
            return None
        name = claims.get("sub")
        row = data["operators"].get(name) if isinstance(name, str) else None
        if row is None or not row["active"] or claims.get("gen") != row["generation"]:
            return None
        return _operator(name, row)


MAX_TRACKED_NAMES = 10_000


def _token(name: str, generation: int, key: str) -> str:
    now = int(time.time())
    claims = {
        "sub": name,
        "gen": generation,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TOKEN_MINUTES * 60,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def _begin_attempt(data: dict, name: str) -> int:
    """Count an attempt to sign in as ``name`` in ``data``; returns the seconds of lock-out
    left (0: the attempt may go on). The attempt that makes :data:`MAX_FAILURES` in a row
    starts a lock-out of :data:`LOCKOUT_SECONDS`."""
    now = time.time()
    attempts = data.setdefault("attempts", {})
    entry = attempts.setdefault(name, {"count": 0, "locked_until": 0.0, "last": now})
    if entry["locked_until"] > now:
        return int(entry["locked_until"] - now) + 1
    entry["count"] += 1
    entry["last"] = now
    if entry["count"] > MAX_FAILURES:
        entry["count"], entry["locked_until"] = 0, now + LOCKOUT_SECONDS
        return LOCKOUT_SECONDS
    if len(attempts) > MAX_TRACKED_NAMES:  # the oldest quiet names go first
        quiet = sorted(
            (n for n, e in attempts.items() if e["locked_until"] <= now and n != name),
            key=lambda n: attempts[n]["last"],
        )
        for old in quiet[: len(attempts) - MAX_TRACKED_NAMES]:
            del attempts[old]
    return 0


def _operator(name: str, row: dict) -> Operator:
    return Operator(name, bool(row["read_only"]), bool(row["active"]), float(row["created"]))
