"""wireguard-hardening: the VPN never prints its keys, and only it may rewrite the host's network."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .resources import MAILSERVER, UNKNOWN, VPN, as_bool, container_of, elements, get


def validate_wireguard(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a VPN that logs its configs or lacks NET_ADMIN, and NET_ADMIN or privileged elsewhere."""
    c = container_of(args)
    if c is None:
        return
    caps = get(c.props, "capabilities")
    adds = {str(a).upper().removeprefix("CAP_") for a in elements(get(caps, "adds")) if isinstance(a, str)}
    privileged = as_bool(get(c.props, "privileged")) is True
    if c.role == VPN:
        log_confs = c.env.get("LOG_CONFS")
        if (log_confs is None and c.env_complete) or (
            log_confs is not None and log_confs.strip().lower() != "false"
        ):
            shown = "unset (the image defaults to true)" if log_confs is None else f"'{log_confs}'"
            report_violation(
                f"VPN '{c.display}' has LOG_CONFS {shown}, so linuxserver/wireguard prints every peer config "
                "with its private key (and QR code) to the container log: set LOG_CONFS=false.",
                None,
            )
        if (
            get(caps, "adds") is not UNKNOWN
            and caps is not UNKNOWN
            and "NET_ADMIN" not in adds
            and not privileged
        ):
            report_violation(
                f"VPN '{c.display}' lacks the NET_ADMIN capability, so wg-quick cannot create wg0 and the VPN "
                "never comes up: add capabilities.adds=['NET_ADMIN'].",
                None,
            )
        return
    fail2ban = c.role == MAILSERVER and c.env.get("ENABLE_FAIL2BAN", "0").strip() in ("1", "true")
    granted = sorted(adds & {"NET_ADMIN", "ALL", "SYS_ADMIN"})
    if fail2ban:
        granted = [g for g in granted if g != "NET_ADMIN"]
    if granted or privileged:
        what = "privileged mode" if privileged else f"the capabilities {', '.join(granted)}"
        report_violation(
            f"Container '{c.display}'" + (f" ({c.role})" if c.role else "") + f" gets {what}, which let it "
            "rewrite the host's network (firewall, routes, interfaces); only the VPN needs NET_ADMIN (a mail "
            "server only with ENABLE_FAIL2BAN=1): remove it.",
            None,
        )


wireguard_hardening = ResourceValidationPolicy(
    name="wireguard-hardening",
    description="The VPN never logs its peer configs or keys, and NET_ADMIN is granted only where needed.",
    validate=validate_wireguard,
    severity=Severity.HIGH,
)
