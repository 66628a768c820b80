"""health-and-restart: every long-running container has a health check and comes back after a crash."""

from __future__ import annotations

from typing import Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .resources import CONFIG_WRITER, UNKNOWN, Container, as_bool, container_of, elements, get

RESTARTING: Final = frozenset({"always", "unless-stopped", "on-failure"})


def _short_lived(c: Container) -> bool | None:
    """True for run-once containers (the config writer); ``None`` when unknown."""
    if c.role == CONFIG_WRITER:
        return True
    attach, must_run = get(c.props, "attach"), get(c.props, "mustRun")
    if attach is UNKNOWN or must_run is UNKNOWN:
        return None
    return as_bool(attach) is True or as_bool(must_run) is False


def validate_health_and_restart(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a long-running container without a health check or a restart policy."""
    c = container_of(args)
    if c is None or _short_lived(c) is not False:
        return
    what = f"Container '{c.display}'" + (f" ({c.role})" if c.role else "")
    check = get(c.props, "healthcheck")
    if check is not UNKNOWN:
        tests = [t for t in elements(get(check, "tests")) if isinstance(t, str)]
        if get(check, "tests") is not UNKNOWN and (not tests or tests[0].upper() == "NONE"):
            report_violation(
                f"{what} runs for good but has no health check, so nobody (wait=True, `docker ps`, the restart "
                "policy) learns that it hangs: add a healthcheck whose tests probe the service.",
                None,
            )
    restart = get(c.props, "restart", "no")
    if isinstance(restart, str) and restart not in RESTARTING:
        report_violation(
            f"{what} has restart policy '{restart}', so a crash or a host reboot leaves it down: set "
            "restart='unless-stopped'.",
            None,
        )


health_and_restart = ResourceValidationPolicy(
    name="health-and-restart",
    description="Every long-running container has a health check and a restart policy.",
    validate=validate_health_and_restart,
    severity=Severity.MEDIUM,
)
