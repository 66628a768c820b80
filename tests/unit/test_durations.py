"""config.durations: Go's time.Duration form, which the Docker provider reads health checks back in."""

from __future__ import annotations

import pytest

from config.durations import (
    HOUR,
    MILLISECOND,
    SECOND,
    format_nanoseconds,
    go_duration,
    normalise,
    parse_go_duration,
)

# What Go 1.2x prints for time.Duration(x).String() (the examples of Go's time package docs and
# its time_test.go durationTests table).
GO_STRINGS = [
    (0, "0s"),
    (1, "1ns"),
    (1100, "1.1µs"),
    (2200 * 1000, "2.2ms"),
    (3300 * MILLISECOND, "3.3s"),
    (10 * SECOND, "10s"),
    (60 * SECOND, "1m0s"),
    (90 * SECOND, "1m30s"),
    (150 * SECOND, "2m30s"),
    (300 * SECOND, "5m0s"),
    (4 * 60 * SECOND + 5 * SECOND + 1 * MILLISECOND, "4m5.001s"),
    (5 * HOUR + 6 * 60 * SECOND + 7001 * MILLISECOND, "5h6m7.001s"),
    (8 * 60 * SECOND + 1, "8m0.000000001s"),
    (HOUR, "1h0m0s"),
    (-(1 * SECOND + 500 * MILLISECOND), "-1.5s"),
]


@pytest.mark.parametrize(("ns", "text"), GO_STRINGS)
def test_format_matches_go(ns: int, text: str) -> None:
    assert format_nanoseconds(ns) == text
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(150, "2m30s"), (90, "1m30s"), (10, "10s"), (3, "3s"), (0.5, "500ms"), (3600, "1h0m0s")],
)
def test_go_duration_from_seconds(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("declared", "read_back"),
    [
        ("150s", "2m30s"),
        ("90s", "1m30s"),
        ("10s", "10s"),
        ("1.5h", "1h30m0s"),
        ("2m30s", "2m30s"),
        ("0", "0s"),
    ],
)
def test_normalise_is_what_the_provider_reads_back(declared: str, read_back: str) -> None:
    assert normalise(declared) == read_back


@pytest.mark.parametrize("bad", ["", "10", "1x", "s", ".s", "1.5", "--1s", "1s ", 10])
def test_parse_refuses_what_go_refuses(bad) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(bad)
