"""``tenantry operators``: add, list, passwd, disable, enable and delete the home's
operators; their file (0600, hashes and never a password); the tokens a new password, a
disable or a delete ends; and bad input, which exits 2 and writes nothing."""

from __future__ import annotations

import json
import re
import stat

import pytest

from tenantry.data.users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from tenantry.home.layout import DATABASE_URL_ENV_VAR
from tenantry.platform.operators import MAX_FAILURES, Operators, SignInRefused


@pytest.fixture
def database_url(monkeypatch):
    """SQLite only: operators live in a file of the home, whatever the tenants' database
    (tests/test_e2e_platform_api.py runs the API on both databases)."""
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    return None


PASSWORD = "operator-pass-1"
NEW_PASSWORD = "operator-pass-2"


@pytest.fixture
def add(tenantry):
    """``tenantry operators add NAME --password-stdin [...]``, asserting success."""

    def add_operator(name: str, *options: str, password: str = PASSWORD) -> None:
        result = tenantry("operators", "add", name, "--password-stdin", *options,
                          input=f"{password}\n")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert password not in result.output

    return add_operator


def listed(tenantry) -> list[dict]:
    result = tenantry("operators", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def token_of(home, name: str, password: str = PASSWORD) -> str:
    token = Operators(home).sign_in(name, password)
    assert Operators(home).operator_of(token).name == name
    return token


def test_add_and_list(home, tenantry, add):
    assert listed(tenantry) == []
    assert tenantry("operators", "list").output == ""

    add("ops")
    add("viewer", "--read-only")
    rows = listed(tenantry)
    assert [(row["name"], row["read_only"], row["active"]) for row in rows] == [
        ("ops", False, True),
        ("viewer", True, True),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["created"]) for row in rows)
    lines = tenantry("operators", "list").output.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["ops", "read-write", "active"],
        ["viewer", "read-only", "active"],
    ]
    assert Operators(home).get("viewer").read_only is True
    assert Operators(home).operator_of(token_of(home, "ops")).read_only is False


def test_the_file_is_private_and_holds_no_password(home, add):
    add("ops")
    add("viewer", "--read-only", password=NEW_PASSWORD)
    path = Operators(home).path
    assert path == home.tenants_dir / ".operators"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and NEW_PASSWORD not in text
    rows = json.loads(text)["operators"]
    assert rows["ops"]["hash"].startswith("$pbkdf2-sha512$")
    assert rows["ops"]["hash"] != rows["viewer"]["hash"]
    token_of(home, "ops")  # a failure count written keeps the mode
    with pytest.raises(SignInRefused):
        Operators(home).sign_in("ops", "wrong-password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_prompts_for_the_password_twice(home, tenantry):
    differ = tenantry("operators", "add", "ops", input="first-password-1\nother-password-1\n")
    assert differ.exit_code != 0
    assert Operators(home).get("ops") is None
    result = tenantry("operators", "add", "ops", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    token_of(home, "ops")


def test_passwd_ends_the_tokens_and_lifts_a_lock_out(home, tenantry, add):
    add("ops")
    token = token_of(home, "ops")
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused) as refused:
            Operators(home).sign_in("ops", "wrong-password")
        assert refused.value.retry_after is None
    with pytest.raises(SignInRefused) as refused:
        Operators(home).sign_in("ops", PASSWORD)
    assert refused.value.retry_after > 0  # locked out

    result = tenantry("operators", "passwd", "ops", "--password-stdin", input=f"{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert Operators(home).operator_of(token) is None
    with pytest.raises(SignInRefused):
        Operators(home).sign_in("ops", PASSWORD)
    token_of(home, "ops", NEW_PASSWORD)

    prompted = tenantry("operators", "passwd", "ops", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    token_of(home, "ops", PASSWORD)


def test_disable_and_enable(home, tenantry, add):
    add("ops")
    add("other")
    token, others = token_of(home, "ops"), token_of(home, "other")

    result = tenantry("operators", "disable", "ops")
    assert result.exit_code == 0, result.output
    assert {row["name"]: row["active"] for row in listed(tenantry)} == {
        "ops": False,
        "other": True,
    }
    assert "ops\tread-write\tdisabled" in tenantry("operators", "list").output
    assert Operators(home).operator_of(token) is None
    assert Operators(home).operator_of(others).name == "other"
    with pytest.raises(SignInRefused, match="disabled"):
        Operators(home).sign_in("ops", PASSWORD)

    assert tenantry("operators", "enable", "ops").exit_code == 0
    assert listed(tenantry)[0]["active"] is True
    assert Operators(home).operator_of(token) is None  # the old token stays ended
    token_of(home, "ops")


def test_delete_ends_the_tokens_even_of_a_name_added_again(home, tenantry, add):
    add("ops", "--read-only")
    token = token_of(home, "ops")
    result = tenantry("operators", "delete", "ops")
    assert result.exit_code == 0, result.output
    assert listed(tenantry) == []
    assert Operators(home).operator_of(token) is None
    with pytest.raises(SignInRefused):
        Operators(home).sign_in("ops", PASSWORD)

    # another operator of that name (read-write now): the old read-only token is not its
    add("ops")
    assert Operators(home).operator_of(token) is None
    assert Operators(home).operator_of(token_of(home, "ops")).read_only is False


@pytest.mark.parametrize(
    "name", ["", "Ops", "1ops", "-ops", "op s", "../ops", "ops/x", "ops\x00", "o" * 65, "ópś"]
)
def test_a_bad_name_exits_2_and_writes_nothing(home, tenantry, name):
    result = tenantry("operators", "add", "--password-stdin", "--", name, input=f"{PASSWORD}\n")
    assert result.exit_code == 2, result.output
    assert "operator name" in result.output
    assert not Operators(home).path.exists()


@pytest.mark.parametrize(
    "password",
    [
        "",
        "short",
        "x" * (MIN_PASSWORD_LENGTH - 1),
        "x" * (MAX_PASSWORD_LENGTH + 1),
        "pass\x00word-123",
    ],
)
def test_a_bad_password_exits_2_and_changes_nothing(home, tenantry, add, password):
    refused = tenantry("operators", "add", "other", "--password-stdin", input=f"{password}\n")
    assert refused.exit_code == 2, refused.output
    assert not Operators(home).path.exists()

    add("ops")
    before = Operators(home).path.read_bytes()
    refused = tenantry("operators", "passwd", "ops", "--password-stdin", input=f"{password}\n")
    assert refused.exit_code == 2, refused.output
    assert "password" in refused.output
    assert Operators(home).path.read_bytes() == before
    token_of(home, "ops")


def test_a_duplicate_exits_2_before_asking_for_a_password(home, tenantry, add):
    add("ops", "--read-only")
    before = Operators(home).path.read_bytes()
    for options in ((), ("--password-stdin",)):
        result = tenantry("operators", "add", "ops", *options, input=f"{NEW_PASSWORD}\n")
        assert result.exit_code == 2, result.output
        assert "exists" in result.output
        assert "Password" not in result.output
    assert Operators(home).path.read_bytes() == before
    assert listed(tenantry)[0]["read_only"] is True
    token_of(home, "ops")


@pytest.mark.parametrize("command", ["passwd", "disable", "enable", "delete"])
def test_an_unknown_operator_exits_2(home, tenantry, add, command):
    add("ops")
    before = Operators(home).path.read_bytes()
    result = tenantry("operators", command, "nobody", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 2, result.output
    assert "nobody" in result.output
    assert Operators(home).path.read_bytes() == before


def test_sign_in_attempts_are_counted_before_the_password_is_checked(home):
    """Thirty wrong passwords at once: at most MAX_FAILURES of them are checked (401), the
    rest are refused locked out (429), however the threads interleave."""
    from concurrent.futures import ThreadPoolExecutor

    operators = Operators(home)
    operators.add("alice", PASSWORD)

    def attempt(_):
        try:
            operators.sign_in("alice", "wrong-password-1")
        except SignInRefused as exc:
            return 429 if exc.retry_after else 401
        return 200

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(30)))
    assert answers.count(401) <= MAX_FAILURES
    assert answers.count(429) >= 30 - MAX_FAILURES
    assert 200 not in answers


def test_a_name_that_does_not_exist_locks_out_as_one_that_does(home):
    operators = Operators(home)
    operators.add("alice", PASSWORD)
    for name in ("alice", "nobody"):
        answers = []
        for _ in range(MAX_FAILURES + 1):
            try:
                operators.sign_in(name, "wrong-password-1")
            except SignInRefused as exc:
                answers.append((str(exc).replace(name, "NAME"), exc.retry_after is not None))
        assert answers[:MAX_FAILURES] == [("wrong operator name or password", False)] * 10
        assert answers[-1] == ("too many failed sign-ins for NAME; try again later", True)
    stored = json.loads((home.tenants_dir / ".operators").read_text())
    assert "nobody" not in stored["operators"]
