"""Cron lines, ``"M H DoM Mon DoW"`` in UTC, as a schedule's ``cron`` gives them.

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a list of
those separated by commas; months and weekdays may also be named (``jan``, ``mon``), and
weekday 7 is Sunday like 0. As in every cron, when both day fields are restricted a day
matches either of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (lowest, highest, names) of minute, hour, day of month, month, day of week.
FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, MONTHS), (0, 7, WEEKDAYS))
# Looking further than this for a fire time means the line never fires (``0 0 31 2 *``).
SEARCH_DAYS = 366 * 5


class CronError(ValueError):
    """Not a cron line, or one that never fires."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron line: the minutes, hours, days, months and weekdays it fires on."""

    line: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def matches_day(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def last_fire(self, now: float) -> float:
        """The latest fire time at or before ``now`` (seconds since the epoch)."""
        moment = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
        for _ in range(SEARCH_DAYS):
            if self.matches_day(moment):
                for hour in sorted((h for h in self.hours if h <= moment.hour), reverse=True):
                    last = moment.minute if hour == moment.hour else 59
                    minutes = [m for m in self.minutes if m <= last]
                    if minutes:
                        return moment.replace(hour=hour, minute=max(minutes)).timestamp()
            moment = (moment - timedelta(days=1)).replace(hour=23, minute=59)
        raise CronError(f"cron {self.line!r} never fires")

    def next_fire(self, after: float) -> float:
        """The first fire time after ``after`` (seconds since the epoch)."""
        moment = datetime.fromtimestamp(after, UTC).replace(second=0, microsecond=0)
        moment += timedelta(minutes=1)
        for _ in range(SEARCH_DAYS):
            if self.matches_day(moment):
                for hour in sorted(h for h in self.hours if h >= moment.hour):
                    first = moment.minute if hour == moment.hour else 0
                    minutes = [m for m in self.minutes if m >= first]
                    if minutes:
                        return moment.replace(hour=hour, minute=min(minutes)).timestamp()
            moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
        raise CronError(f"cron {self.line!r} never fires")


def parse_cron(line: str) -> Cron:
    """``line`` parsed. :raises CronError: not five valid fields, or it never fires."""
    if not isinstance(line, str):
        raise CronError("a cron line is a string such as '0 3 * * *'")
    parts = line.lower().split()
    if len(parts) != 5:
        raise CronError(f"cron {line!r} must have five fields: minute hour day month weekday")
    sets = [_field(part, *spec, line) for part, spec in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in sets[4])
    cron = Cron(line, *sets[:4], weekdays, parts[2] == "*", parts[4] == "*")
    cron.next_fire(0.0)  # :raises CronError: e.g. February the 31st
    return cron


def _field(text: str, low: int, high: int, names: tuple[str, ...], line: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = _number(step_text, names=(), line=line) if step_text else 1
        if step < 1:
            raise CronError(f"cron {line!r}: a step must be 1 or more")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _number(first, names, line, low), _number(last, names, line, low)
        else:
            start = _number(body, names, line, low)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise CronError(f"cron {line!r}: {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _number(text: str, names: tuple[str, ...], line: str, low: int = 0) -> int:
    if text in names:
        return names.index(text) + low
    if not text.isdigit():
        raise CronError(f"cron {line!r}: {text!r} is not a number")
    return int(text)
