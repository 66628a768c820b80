"""Cron schedules (``0 3 * * *``): parsing, matching and the next and previous run, in UTC.

Pure Python, no Pulumi. The backup job's loop (``config/backup-job.sh``) does not parse cron itself:
:func:`parse_cron` expands each field into the explicit set of values it allows, the job's
configuration carries those sets, and the loop only checks, once a minute, whether the current
UTC minute is in them (:meth:`CronSchedule.shell_fields`). The rule for the two day fields is the
one of Vixie cron (``man 5 crontab``): when both the day of month and the day of week are
restricted (neither starts with ``*``), a day matches if *either* matches; otherwise both must.

Supported: five fields (minute, hour, day of month, month, day of week), ``*``, numbers, ranges
``a-b``, steps ``*/n`` and ``a-b/n`` (and ``a/n`` = ``a-max/n``), lists ``a,b``, month names
``jan``..``dec``, day names ``sun``..``sat``, ``7`` for Sunday, and the macros ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
SEARCH_YEARS = 9
"""How far :meth:`CronSchedule.next_run` looks: a 29 February schedule waits up to 8 years (2096 -> 2104)."""


class CronError(ValueError):
    """A schedule that does not parse or never runs; the message says what to write instead."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field schedule. Build it with :func:`parse_cron`."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    """Days of the month, 1-31."""
    months: frozenset[int]
    """Months, 1-12."""
    weekdays: frozenset[int]
    """Days of the week, 0 (Sunday) to 6."""
    day_or: bool
    """Vixie cron's rule: both day fields restricted, so a day matches when either one matches."""

    def matches(self, when: datetime) -> bool:
        """True when the schedule fires in the minute of ``when`` (read in UTC)."""
        t = _utc(when)
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        return self._day_matches(t)

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)

    def next_run(self, after: datetime) -> datetime:
        """The first minute strictly after ``after`` in which the schedule fires (UTC, seconds zero)."""
        t = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * SEARCH_YEARS)
        while t < limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise CronError(
            f"{self.expression!r} does not run in the {SEARCH_YEARS} years after {after:%Y-%m-%d}"
        )

    def previous_run(self, before: datetime) -> datetime:
        """The last minute strictly before ``before`` (at minute resolution) in which the schedule fired."""
        t = _utc(before).replace(second=0, microsecond=0)
        if t == _utc(before):
            t -= timedelta(minutes=1)
        limit = t - timedelta(days=366 * SEARCH_YEARS)
        while t > limit:
            if t.month not in self.months:
                t = t.replace(day=1, hour=0, minute=0) - timedelta(minutes=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
            elif t.minute not in self.minutes:
                t -= timedelta(minutes=1)
            else:
                return t
        raise CronError(
            f"{self.expression!r} did not run in the {SEARCH_YEARS} years before {before:%Y-%m-%d}"
        )

    def shell_fields(self) -> dict[str, str]:
        """The expanded sets as the backup job's loop reads them: space-separated values, padded with spaces.

        ``" 0 15 30 45 "`` lets the shell test membership with ``case " $value " in *" $value "*)``.
        """

        def padded(values: frozenset[int]) -> str:
            return " " + " ".join(str(v) for v in sorted(values)) + " "

        return {
            "SCHEDULE_MINUTES": padded(self.minutes),
            "SCHEDULE_HOURS": padded(self.hours),
            "SCHEDULE_DAYS": padded(self.days),
            "SCHEDULE_MONTHS": padded(self.months),
            "SCHEDULE_WEEKDAYS": padded(self.weekdays),
            "SCHEDULE_DAY_OR": "1" if self.day_or else "0",
        }


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("pass an aware datetime (UTC); schedules are evaluated in UTC")
    return when.astimezone(UTC)


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _value(text: str, index: int, low: int, high: int) -> int:
    name, _, _ = FIELDS[index]
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else ()
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + (1 if index == 3 else 0)
    if not text.isdigit():
        hint = f" or a name such as {names[0]}" if names else ""
        raise CronError(f"{name} field: {text!r} is not a number{hint}")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name} field: {number} is outside {low}-{high}")
    return number


def _field(text: str, index: int) -> frozenset[int]:
    name, low, high = FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name} field: empty item in {text!r} (two commas, or a comma at an end)")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} field: the step in {part!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, index, low, high), _value(last, index, low, high)
            if start > end:
                raise CronError(f"{name} field: the range {base!r} runs backwards; write {last}-{first}")
        else:
            start = _value(base, index, low, high)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values)


def parse_cron(expression: str) -> CronSchedule:
    """Parse a five-field cron expression (or a macro such as ``@daily``); raise :class:`CronError`."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("is empty: write five fields, e.g. '0 3 * * *' (03:00 UTC every day)")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise CronError(
                f"unknown macro {text!r}: use one of {', '.join(sorted(MACROS))}, or five fields"
                + (" (@reboot has no time to back up at)" if text.lower() == "@reboot" else "")
            )
        fields = MACROS[text.lower()].split()
    else:
        fields = text.split(" ")
        if len(fields) != 5:
            raise CronError(
                f"has {len(fields)} field(s), cron needs 5 (minute hour day-of-month month day-of-week), "
                "e.g. '0 3 * * *'"
            )
    sets = [_field(f, i) for i, f in enumerate(fields)]
    schedule = CronSchedule(
        expression=text,
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=sets[4],
        day_or=not fields[2].startswith("*") and not fields[4].startswith("*"),
    )
    if not schedule.day_or:
        # Both day fields must match: some selected month must have one of the selected days (a day of
        # the month meets every day of the week over the years, except 29 February, refused below).
        pairs = {
            (m, d) for m in schedule.months for d in schedule.days if d <= calendar.monthrange(2024, m)[1]
        }
        if not pairs:
            raise CronError(
                f"{text!r} never runs: no selected month has one of the selected days of the month"
            )
        if pairs == {(2, 29)}:
            raise CronError(f"{text!r} runs only on 29 February, in leap years: choose a day every year has")
    return schedule
