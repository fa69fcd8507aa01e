"""Schedules: a module's jobs that run once per period for every tenant that enables it.

A module declares them in ``schedules``::

    schedules = {
        "purge": {"every": 3600, "job": purge_old_notes},
        "report": {"cron": "0 3 * * *", "job": nightly_report},
    }

and a tenant changes or turns one off by ``<module>.<name>`` in its ``SCHEDULES``
(``{"notes.purge": {"every": 600}}``, ``{"notes.report": None}``).

When a tenant's run of a period is due is decided here, from the tenant's slug and the
clock alone, so every runner on every host computes the same answer; the job store then
lets exactly one of them take each period (:meth:`tenantry.jobs.store.JobStore.enqueue_scheduled`).
Runs are spread over the period (a hash of tenant and schedule picks each tenant's moment
in it), so 1 000 tenants' hourly jobs do not all start on the hour. A schedule runs for the
first time as soon as a tenant has it, then once in each period.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenantry.jobs.cron import Cron, CronError, parse_cron
from tenantry.jobs.spec import JobSpec

NAME = re.compile(r"[a-z][a-z0-9_]*")
# A cron schedule's runs are spread over at most its first hour: "0 3 * * *" means
# around 3 am, not any time of the day.
CRON_SPREAD_SECONDS = 3600.0
MIN_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Schedule:
    """One schedule: ``name`` as a tenant's ``SCHEDULES`` names it (``notes.purge``), the
    ``@job`` it runs, and how often (``every`` seconds, or a ``cron`` line)."""

    name: str
    job: Callable
    every: float | None = None
    cron: Cron | None = None

    def due(self, tenant: str, now: float) -> int:
        """The latest period (its start, in whole seconds since the epoch) whose run for
        ``tenant`` is due at ``now``: the one to queue, unless it was queued already."""
        share = _share(tenant, self.name)
        if self.every is not None:
            offset = share * self.every
            return int(math.floor((now - offset) / self.every) * self.every)
        start = self.cron.last_fire(now)
        spread = min(self.cron.next_fire(start) - start, CRON_SPREAD_SECONDS)
        if now >= start + share * spread:
            return int(start)
        return int(self.cron.last_fire(start - 1))

    def with_timing(self, timing: Mapping) -> Schedule:
        """This schedule, run as ``timing`` (``{"every": N}`` or ``{"cron": line}``) says.
        :raises ValueError: a timing that is not exactly one of those."""
        every, cron = parse_timing(timing, allowed=("every", "cron"))
        return Schedule(self.name, self.job, every, cron)


def _share(tenant: str, name: str) -> float:
    """Where in a period ``tenant``'s run of ``name`` falls, in [0, 1)."""
    digest = hashlib.sha256(f"{tenant}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_timing(spec: object, allowed: tuple[str, ...]) -> tuple[float | None, Cron | None]:
    """``every`` seconds or a ``cron`` line from a schedule's dict.

    :raises ValueError: not a dict, another key than ``allowed``, both or neither timing,
        or a bad value.
    """
    if not isinstance(spec, Mapping):
        raise ValueError('must be a dict such as {"every": 3600} or {"cron": "0 3 * * *"}')
    unknown = sorted(str(key) for key in spec if key not in allowed)
    if unknown:
        raise ValueError(f"has unknown keys {', '.join(unknown)} (it takes {', '.join(allowed)})")
    if ("every" in spec) == ("cron" in spec):
        raise ValueError('takes one of "every" (seconds) and "cron" (a cron line)')
    if "cron" in spec:
        try:
            return None, parse_cron(spec["cron"])
        except CronError as exc:
            raise ValueError(str(exc)) from None
    every = spec["every"]
    if isinstance(every, bool) or not isinstance(every, int | float):
        raise ValueError('"every" must be a number of seconds')
    if not math.isfinite(every) or every < MIN_EVERY_SECONDS:
        raise ValueError(f'"every" must be at least {MIN_EVERY_SECONDS:g} second')
    return float(every), None


def module_schedules(module: str, schedules: object) -> tuple[tuple[Schedule, ...], list[str]]:
    """The schedules a module named ``module`` declares, and what is wrong with them."""
    if schedules is None:
        return (), []
    if not isinstance(schedules, Mapping):
        return (), ['`schedules` must be a dict: {"name": {"every": SECONDS, "job": f}}']
    found, problems = [], []
    for name, spec in schedules.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.append(f"schedule {name!r}: a name is lower_case letters, digits and _")
            continue
        if not isinstance(spec, Mapping) or not _is_job(spec.get("job")):
            problems.append(f'schedule {name!r}: "job" must be a @job function')
            continue
        try:
            every, cron = parse_timing(spec, allowed=("every", "cron", "job"))
        except ValueError as exc:
            problems.append(f"schedule {name!r} {exc}")
            continue
        found.append(Schedule(f"{module}.{name}", spec["job"], every, cron))
    return tuple(found), problems


def tenant_schedules(
    declared: tuple[Schedule, ...], overrides: object
) -> tuple[tuple[Schedule, ...], list[str]]:
    """A tenant's schedules: those its modules declare, changed or turned off by its
    ``SCHEDULES``; and the problems of ``SCHEDULES`` (a name no module declares, a bad
    timing)."""
    if not isinstance(overrides, Mapping):
        return declared, ['SCHEDULES must be a dict such as {"notes.purge": {"every": 600}}']
    by_name = {schedule.name: schedule for schedule in declared}
    problems = []
    for name, timing in overrides.items():
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            problems.append(f"SCHEDULES names {name!r}, which no enabled module has ({known})")
        elif timing is not None:
            try:
                by_name[name] = by_name[name].with_timing(timing)
            except ValueError as exc:
                problems.append(f"SCHEDULES[{name!r}] {exc}")
    if problems:
        return declared, problems
    kept = tuple(
        by_name[s.name] for s in declared if not (s.name in overrides and overrides[s.name] is None)
    )
    return kept, []


def _is_job(function: object) -> bool:
    return isinstance(getattr(function, "tenantry_job", None), JobSpec)
