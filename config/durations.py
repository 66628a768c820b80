"""Durations in the form Go's ``time.Duration.String()`` prints them.

The Docker provider stores a container's health-check durations as Go durations and reads
them back on refresh in that form (``150s`` comes back as ``2m30s``), without normalising
what the program declared. A duration written any other way therefore shows as a change on
every preview after a refresh. Every duration mailstack declares goes through
:func:`go_duration`; :func:`parse_go_duration` reads one back (used by the tests and by the
read-back rules in ``tools/readback.py``). See ``docs/upstream.md`` for the provider source.
"""

from __future__ import annotations

import re

NANOSECOND = 1
MICROSECOND = 1_000 * NANOSECOND
MILLISECOND = 1_000 * MICROSECOND
SECOND = 1_000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign, as Go prints it
    "μs": MICROSECOND,  # U+03BC Greek mu, which Go also accepts
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def _fraction(value: int, unit: int) -> str:
    """``value / unit`` as Go prints it: integer part, then the fraction without trailing zeros."""
    whole, rest = divmod(value, unit)
    if rest == 0:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(rest).rjust(digits, '0').rstrip('0')}"


def format_nanoseconds(ns: int) -> str:
    """Format a duration in nanoseconds exactly as Go's ``time.Duration.String()`` does."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < SECOND:
        for unit, suffix in ((MILLISECOND, "ms"), (MICROSECOND, "µs")):
            if ns >= unit:
                return f"{sign}{_fraction(ns, unit)}{suffix}"
        return f"{sign}{ns}ns"
    hours, ns = divmod(ns, HOUR)
    minutes, ns = divmod(ns, MINUTE)
    seconds = _fraction(ns, SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def go_duration(seconds: float) -> str:
    """A duration of ``seconds`` in Go's form: ``go_duration(150) == "2m30s"``, ``go_duration(10) == "10s"``."""
    return format_nanoseconds(round(seconds * SECOND))


def parse_go_duration(text: str) -> int:
    """Parse a duration as Go's ``time.ParseDuration`` does (``"150s"``, ``"2m30s"``, ``"1.5h"``); nanoseconds.

    Raises ``ValueError`` for anything Go would refuse (no unit, unknown unit, empty string).
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid duration {text!r}")
    body, sign = text, 1
    if body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    total, pos = 0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        whole, _, frac = match.group(1).partition(".")
        unit = _UNITS[match.group(2)]
        total += int(whole or "0") * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        pos = match.end()
    return sign * total


def normalise(text: str) -> str:
    """What the provider reads back for the duration ``text``: Go's own form of the same value."""
    return format_nanoseconds(parse_go_duration(text))
