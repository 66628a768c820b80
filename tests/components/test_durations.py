"""Every health-check duration of every container is written in Go's form, as the provider reads it back.

A duration in any other form (``150s``) comes back from ``pulumi refresh`` as Go prints it
(``2m30s``) and shows as a change on every later preview.
"""

from __future__ import annotations

import pytest

from config.durations import normalise
from tests.components.harness import Program, unwrap

CONTAINER = "docker:index/container:Container"
DURATION_FIELDS = ("interval", "timeout", "startPeriod", "startInterval")


def durations(program: Program) -> list[tuple[str, str, str]]:
    """``(container, field, value)`` of every health-check duration the program declares."""
    found = []
    for reg in program.of_type(CONTAINER):
        check = unwrap(reg.inputs.get("healthcheck")) or {}
        for name in DURATION_FIELDS:
            if name in check:
                found.append((reg.name, name, check[name]))
    return found


@pytest.mark.parametrize("which", ["dev_program", "three_program", "prod_program"])
def test_every_duration_round_trips_through_go(which: str, request: pytest.FixtureRequest) -> None:
    program: Program = request.getfixturevalue(which)
    found = durations(program)
    long_running = [r for r in program.of_type(CONTAINER) if not unwrap(r.inputs.get("attach"))]
    # every long-running container has a health check with at least interval, timeout and start period
    assert len(found) >= 3 * len(long_running), found
    assert [f for f in found if normalise(f[2]) != f[2]] == []


def test_a_seconds_only_duration_would_be_caught() -> None:
    assert normalise("150s") != "150s"
