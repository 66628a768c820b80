"""Small helpers shared by the components."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import pulumi
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


def one_shot_failure(stack: str, what: str, logs: str | None, urn: str, cause: str = "") -> str:
    """The error of an ``up`` whose run-once container failed: what happened, its output, how to retry.

    The provider records a run-once container as created whatever its exit code, so the next ``up`` sees
    no diff and fails the same way until its inputs change or it is replaced explicitly.
    """
    output = "\n".join(f"    | {line}" for line in (logs or "").rstrip().splitlines()) or "    (no output)"
    return (
        f"{what}.\n  Its output:\n{output}\n"
        + (f"  {cause}\n" if cause else "")
        + "  Fix the cause, then run it again; it stays in the state as created, so a plain `pulumi up` "
        "does not retry it:\n"
        f"    pulumi up --stack {stack} --replace '{urn}'"
    )


def gate_on_success(
    name: str,
    container: docker.Container,
    value: pulumi.Input[str],
    failure: Callable[[int, str | None, str], str],
    parent: pulumi.Resource,
) -> tuple[pulumi.Output[str], pulumi.Stash]:
    """``value`` once the run-once ``container`` exited 0, and a gate (``pulumi.Stash``) holding it.

    Dependants that must wait for the container's *success* depend on the gate, never on the container's
    outputs (an input taken from it would replace them whenever it re-runs). When the container exited
    non-zero, ``failure(code, output, urn)`` is the error the run stops with, before the gate and anything
    depending on it are registered.
    """

    def check(values: list) -> str:
        code, logs, urn, result = values
        if code not in (0, None):
            raise pulumi.RunError(failure(code, logs, urn))
        return result

    checked = pulumi.Output.all(container.exit_code, container.container_logs, container.urn, value).apply(
        check
    )
    return checked, pulumi.Stash(name, input=checked, opts=pulumi.ResourceOptions(parent=parent))
