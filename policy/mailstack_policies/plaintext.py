"""no-plaintext-exposure: in production, no password crosses the network in clear text."""

from __future__ import annotations

import ipaddress
from typing import Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .production import PRODUCTION_SCHEMA, is_production
from .resources import MAILSERVER, WEBMAIL, Port, container_of

LOGIN_PORTS: Final = {
    110: "POP3",
    143: "IMAP",
    465: "submissions",
    587: "submission",
    993: "IMAPS",
    995: "POP3S",
}
"""Container ports where docker-mailserver takes passwords; with SSL_TYPE empty none of them has TLS."""
WEBMAIL_PORTS: Final = (80, 8000)


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return ip == "localhost"


def _where(p: Port) -> str:
    return f"{p.ip}:{p.external}" if p.external is not None else f"{p.ip} (a random host port)"


def validate_plaintext(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In production, report login ports without TLS published on a non-loopback address."""
    if not is_production(args.get_config()):
        return
    c = container_of(args)
    if c is None:
        return
    exposed = [p for p in c.ports if p.ip is not None and not _loopback(p.ip)]
    if c.role == MAILSERVER:
        ssl_type = c.env.get("SSL_TYPE")
        if (ssl_type is None and not c.env_complete) or (ssl_type or "").strip():
            return
        bad = [p for p in exposed if p.internal in LOGIN_PORTS]
        if bad:
            listed = ", ".join(f"{LOGIN_PORTS[p.internal or 0]} on {_where(p)}" for p in bad)
            report_violation(
                f"Mail server '{c.display}' publishes {listed} with SSL_TYPE empty: passwords cross the network "
                "in clear text. Set mailstack:tls to letsencrypt or manual (with mailstack:certificatesPath), "
                "or bind those ports to 127.0.0.1.",
                None,
            )
    elif c.role == WEBMAIL:
        bad = [p for p in exposed if p.internal in WEBMAIL_PORTS]
        if bad:
            listed = ", ".join(_where(p) for p in bad)
            report_violation(
                f"Webmail '{c.display}' serves plain HTTP on {listed}: logins cross the network in clear text. "
                "Publish it on a loopback address behind a TLS-terminating reverse proxy, or leave webmail out "
                "of the production stack.",
                None,
            )


no_plaintext_exposure = ResourceValidationPolicy(
    name="no-plaintext-exposure",
    description="In production no IMAP, POP3, submission or webmail login port without TLS faces the network.",
    validate=validate_plaintext,
    config_schema=PRODUCTION_SCHEMA,
    severity=Severity.CRITICAL,
)
