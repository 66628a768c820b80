"""Small helpers shared by the components."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import pulumi_docker as docker

from config.durations import go_duration

LabelArgs = TypeVar("LabelArgs")


def docker_labels(values: Mapping[str, str], cls: type[LabelArgs]) -> list[LabelArgs]:
    """Docker labels as the provider's label args (``ContainerLabelArgs``, ``VolumeLabelArgs``...), sorted."""
    return [cls(label=k, value=v) for k, v in sorted(values.items())]


def healthcheck(
    tests: Sequence[str], *, interval: float, timeout: float, retries: int, start_period: float
) -> docker.ContainerHealthcheckArgs:
    """A container health check, every duration (given in seconds) in Go's ``time.Duration`` form.

    The provider reads health-check durations back as Go prints them (``2m30s``, never ``150s``)
    and does not normalise what was declared, so any other spelling drifts on every refresh.
    """
    return docker.ContainerHealthcheckArgs(
        tests=list(tests),
        interval=go_duration(interval),
        timeout=go_duration(timeout),
        retries=retries,
        start_period=go_duration(start_period),
    )
