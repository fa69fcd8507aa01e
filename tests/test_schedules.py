"""Schedules without a runner: cron lines, when each tenant's run of a period is due, how
runs spread over a period, and what a module or a tenant may write."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tenantry.endpoint import job
from tenantry.jobs.cron import CronError, parse_cron
from tenantry.jobs.schedules import Schedule, module_schedules, tenant_schedules


@job
def purge():
    return None


def not_a_job():
    return None


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_cron_lines_fire_when_cron_would():
    now = at("2026-12-07T19:41:30")  # a Monday
    cases = {
        "* * * * *": ("2026-12-07T19:41:00", "2026-12-07T19:42:00"),
        "0 3 * * *": ("2026-12-07T03:00:00", "2026-12-08T03:00:00"),
        "*/15 * * * *": ("2026-12-07T19:30:00", "2026-12-07T19:45:00"),
        "30 2 * * mon": ("2026-12-07T02:30:00", "2026-12-14T02:30:00"),
        "0 0 1 jan *": ("2026-01-01T00:00:00", "2027-01-01T00:00:00"),
        "5 4 * * 7": ("2026-12-06T04:05:00", "2026-12-13T04:05:00"),  # 7 is Sunday too
        "0 12 13 * fri": ("2026-12-04T12:00:00", "2026-12-11T12:00:00"),  # 13th or a Friday
    }
    for line, (last, following) in cases.items():
        cron = parse_cron(line)
        assert cron.last_fire(now) == at(last), line
        assert cron.next_fire(now) == at(following), line


@pytest.mark.parametrize(
    "line",
    ["0 0 31 2 *", "61 * * * *", "* * *", "a * * * *", "*/0 * * * *", "5-1 * * * *", 7],
)
def test_a_bad_cron_line_is_refused(line):
    with pytest.raises(CronError):
        parse_cron(line)


def test_each_period_has_one_due_moment_per_tenant():
    schedule = Schedule("notes.purge", purge, every=60)
    seen = [schedule.due("acme", at("2026-12-07T00:00:00") + second) for second in range(600)]
    assert seen == sorted(seen)  # never back to an earlier period
    assert len(set(seen)) in (10, 11)  # one per minute
    assert all(period % 60 == 0 for period in seen)


def test_tenants_runs_are_spread_over_the_period():
    """A thousand tenants' hourly runs: each tenant's moment in the hour is its own, and
    they cover the hour, not its start."""
    schedule = Schedule("notes.purge", purge, every=3600)
    start = at("2026-12-07T10:00:00")
    moments = []
    for n in range(1000):
        # the second of the hour at which the tenant's period of 10:00 becomes due
        moments.append(
            next(s for s in range(0, 3601, 5) if schedule.due(f"t{n}", start + s) >= start)
        )
    quarters = [sum(1 for m in moments if q * 900 <= m < (q + 1) * 900) for q in range(4)]
    assert all(200 < count < 300 for count in quarters), quarters


def test_a_cron_schedule_spreads_over_at_most_an_hour():
    schedule = Schedule("notes.report", purge, cron=parse_cron("0 3 * * *"))
    three = at("2026-12-07T03:00:00")
    for n in range(50):
        assert schedule.due(f"t{n}", three + 3600) == three  # all ran by 4 am
        assert schedule.due(f"t{n}", three - 1) == three - 86400


def test_what_a_module_may_declare():
    declared, problems = module_schedules(
        "notes",
        {"purge": {"every": 3600, "job": purge}, "report": {"cron": "0 3 * * *", "job": purge}},
    )
    assert problems == [] and [s.name for s in declared] == ["notes.purge", "notes.report"]
    for bad, message in [
        ({"purge": {"every": 3600, "job": not_a_job}}, "must be a @job function"),
        ({"purge": {"every": 0, "job": purge}}, "at least 1 second"),
        ({"purge": {"every": True, "job": purge}}, "number of seconds"),
        ({"purge": {"cron": "0 0 31 2 *", "job": purge}}, "never fires"),
        ({"purge": {"every": 5, "cron": "* * * * *", "job": purge}}, "one of"),
        ({"purge": {"job": purge}}, "one of"),
        ({"purge": {"every": 5, "job": purge, "at": 3}}, "unknown keys at"),
        ({"Purge": {"every": 5, "job": purge}}, "lower_case"),
        ([("purge", 5)], "must be a dict"),
    ]:
        _declared, problems = module_schedules("notes", bad)
        assert len(problems) == 1 and message in problems[0], (bad, problems)


def test_a_tenant_changes_or_turns_off_a_schedule_by_name():
    declared, _ = module_schedules(
        "notes", {"purge": {"every": 3600, "job": purge}, "report": {"every": 60, "job": purge}}
    )
    kept, problems = tenant_schedules(
        declared, {"notes.purge": {"cron": "*/5 * * * *"}, "notes.report": None}
    )
    assert problems == [] and [s.name for s in kept] == ["notes.purge"]
    assert kept[0].cron.line == "*/5 * * * *" and kept[0].job is purge
    for overrides, message in [
        ({"notes.nope": None}, "which no enabled module has (notes.purge, notes.report)"),
        ({"notes.purge": {"every": -1}}, "at least 1 second"),
        ({"notes.purge": {"job": purge, "every": 5}}, "unknown keys job"),
        (["notes.purge"], "must be a dict"),
    ]:
        kept, problems = tenant_schedules(declared, overrides)
        assert kept == declared and len(problems) == 1 and message in problems[0], problems


def test_a_tenant_config_with_a_bad_schedule_is_refused(home, make_tenant, tenantry):
    make_tenant("acme")
    path = home.config_file("acme")
    path.write_text(path.read_text() + '    SCHEDULES = {"notes.purge": None}\n')
    checked = tenantry("tenants", "check", "acme")
    assert checked.exit_code != 0 and "SCHEDULES names 'notes.purge'" in checked.output
    path.write_text(path.read_text().replace('    SCHEDULES = {"notes.purge": None}\n', ""))
    path.write_text(path.read_text() + "    BACKUP_EVERY = 5\n")
    checked = tenantry("tenants", "check", "acme")
    assert checked.exit_code != 0 and "BACKUP_EVERY must be None or" in checked.output
