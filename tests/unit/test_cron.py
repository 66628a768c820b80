"""config.cron: parsing, Vixie cron's day rule, next and previous run (checked against a minute-by-minute scan)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from config.cron import CronError, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scan_next(schedule, after: datetime, limit_days: int = 800) -> datetime:
    """The reference: step minute by minute and ask matches()."""
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(limit_days * 1440):
        if schedule.matches(t):
            return t
        t += timedelta(minutes=1)
    raise AssertionError("no run found")


def test_fields_expand_to_explicit_sets():
    s = parse_cron("*/15 3,15 1-5 jan-mar/2 MON-fri")
    assert s.minutes == {0, 15, 30, 45}
    assert s.hours == {3, 15}
    assert s.days == {1, 2, 3, 4, 5}
    assert s.months == {1, 3}
    assert s.weekdays == {1, 2, 3, 4, 5}
    assert s.day_or is True


def test_sunday_is_0_and_7_and_a_start_with_a_step_runs_to_the_end():
    assert parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == {0, 5, 6}
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize(
    ("macro", "fields"),
    [("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@hourly", "0 * * * *")],
)
def test_macros(macro, fields):
    assert parse_cron(macro).minutes == parse_cron(fields).minutes
    assert parse_cron(macro).weekdays == parse_cron(fields).weekdays
    assert parse_cron(macro).days == parse_cron(fields).days


def test_vixie_rule_either_day_field_matches_when_both_are_restricted():
    s = parse_cron("0 0 13 * 5")  # the 13th, and every Friday
    assert s.matches(at("2026-11-13T00:00"))  # a Friday 13th
    assert s.matches(at("2026-12-13T00:00"))  # a Sunday
    assert s.matches(at("2026-12-04T00:00"))  # a Friday
    assert not s.matches(at("2026-12-05T00:00"))


def test_a_day_field_starting_with_a_star_makes_both_required():
    s = parse_cron("0 0 */2 * 5")  # odd days that are Fridays (Vixie: '*' first means unrestricted)
    assert s.day_or is False
    assert s.matches(at("2026-12-11T00:00"))  # Friday the 11th
    assert not s.matches(at("2026-12-04T00:00"))  # Friday the 4th
    assert not s.matches(at("2026-12-13T00:00"))  # Sunday the 13th


def test_matches_reads_the_time_in_utc():
    s = parse_cron("0 3 * * *")
    from datetime import timezone

    berlin_winter = timezone(timedelta(hours=1))
    assert s.matches(datetime(2026, 12, 1, 4, 0, tzinfo=berlin_winter))
    assert not s.matches(datetime(2026, 12, 1, 3, 0, tzinfo=berlin_winter))
    with pytest.raises(ValueError, match="aware"):
        s.matches(datetime(2026, 12, 1, 3, 0))


def test_next_and_previous_run_of_the_default_schedule():
    s = parse_cron("0 3 * * *")
    assert s.next_run(at("2026-12-01T02:59:59")) == at("2026-12-01T03:00")
    assert s.next_run(at("2026-12-01T03:00")) == at("2026-12-02T03:00")  # strictly after
    assert s.previous_run(at("2026-12-01T03:00")) == at("2026-11-30T03:00")  # strictly before
    assert s.previous_run(at("2026-12-01T03:00:30")) == at("2026-12-01T03:00")
    assert s.next_run(at("2026-12-31T12:00")) == at("2027-01-01T03:00")


def test_leap_day_and_month_ends():
    s = parse_cron("30 1 31 * *")
    assert s.next_run(at("2026-04-15T00:00")) == at("2026-05-31T01:30")  # April has no 31st
    feb = parse_cron("0 0 28-29 2 *")
    assert feb.next_run(at("2027-02-28T12:00")) == at("2028-02-28T00:00")
    assert feb.next_run(at("2028-02-28T12:00")) == at("2028-02-29T00:00")


EXPRESSIONS = [
    "0 3 * * *",
    "17 */6 * * *",
    "0 0 13 * 5",
    "0 0 */2 * 5",
    "45 23 1,15 * *",
    "0 12 * jun-aug,dec sat,sun",
    "5 4 31 * *",
    "0 0 * * 0",
    "59 0 1-7 * 1",
    "0 22 * 2,5,8,11 *",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_next_and_previous_agree_with_a_minute_scan(expression):
    schedule = parse_cron(expression)
    rng = random.Random(expression)  # fixed per expression: reproducible
    start = at("2025-01-01T00:00")
    for _ in range(6):
        when = start + timedelta(minutes=rng.randrange(3 * 366 * 1440), seconds=rng.randrange(60))
        expected = scan_next(schedule, when)
        assert schedule.next_run(when) == expected, when
        assert schedule.previous_run(expected + timedelta(seconds=1)) == expected
        assert schedule.previous_run(schedule.next_run(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "is empty"),
        ("0 3 * *", "has 4 field(s), cron needs 5"),
        ("0 3 * * * *", "has 6 field(s)"),
        ("60 3 * * *", "minute field: 60 is outside 0-59"),
        ("0 24 * * *", "hour field: 24 is outside 0-23"),
        ("0 3 0 * *", "day of month field: 0 is outside 1-31"),
        ("0 3 * 13 *", "month field: 13 is outside 1-12"),
        ("0 3 * * 8", "day of week field: 8 is outside 0-7"),
        ("0 5-2 * * *", "the range '5-2' runs backwards; write 2-5"),
        ("*/0 * * * *", "the step in '*/0' must be a positive number"),
        ("0 3 * * fri-mon", "runs backwards"),
        ("0 3 * foo *", "'foo' is not a number or a name such as jan"),
        ("0 3,,4 * * *", "empty item"),
        ("@reboot", "@reboot has no time to back up at"),
        ("@often", "unknown macro"),
        ("0 0 30 2 *", "never runs"),
        ("0 0 31 4,6,9,11 *", "never runs"),
        ("0 0 29 2 *", "only on 29 February"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression, message):
    with pytest.raises(CronError) as err:
        parse_cron(expression)
    assert message in str(err.value)


def test_february_30th_with_a_weekday_still_runs_by_the_weekday():
    # Both restricted: the weekday alone selects days, so this is a valid (Monday) schedule.
    s = parse_cron("0 0 30 2 1")
    assert s.next_run(at("2026-12-01T00:00")) == at("2027-02-01T00:00")


def test_shell_fields_are_padded_sets():
    fields = parse_cron("*/20 3 1,15 * 0").shell_fields()
    assert fields == {
        "SCHEDULE_MINUTES": " 0 20 40 ",
        "SCHEDULE_HOURS": " 3 ",
        "SCHEDULE_DAYS": " 1 15 ",
        "SCHEDULE_MONTHS": " " + " ".join(str(m) for m in range(1, 13)) + " ",
        "SCHEDULE_WEEKDAYS": " 0 ",
        "SCHEDULE_DAY_OR": "1",
    }
