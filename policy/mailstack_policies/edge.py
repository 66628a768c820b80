"""webmail-behind-edge: in production every webmail is reached over HTTPS through the stack's edge.

The edge (``mailstack.role`` ``edge``) must publish 443 on a public address, and its Caddyfile (the
upload of the ``edge-config-writer``) must proxy to the webmail by one of its network aliases or its
address on the stack network. A webmail's own plain HTTP port is ``no-plaintext-exposure``'s business.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from .production import PRODUCTION_SCHEMA, is_production
from .resources import WEBMAIL, parse_containers

EDGE: Final = "edge"
"""``mailstack.role`` of the HTTPS edge (Caddy)."""
EDGE_WRITER: Final = "edge-config-writer"
"""``mailstack.role`` of the one-shot container that installs the edge's Caddyfile."""


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return ip == "localhost"


_REVERSE_PROXY: Final = re.compile(r"^\s*reverse_proxy\s+(\S+?)(?::(\d+))?\s*$", re.MULTILINE)


def _proxied(caddyfiles: list[str]) -> set[tuple[str, int]]:
    """``(host, port)`` of every ``reverse_proxy`` upstream in the edge's Caddyfiles (port 80 by default)."""
    found = set()
    for text in caddyfiles:
        for host, port in _REVERSE_PROXY.findall(text):
            found.add((host, int(port) if port else 80))
    return found


def validate_webmail_behind_edge(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """In production, report a webmail that is not served over HTTPS by the stack's edge on a public address."""
    if not is_production(args.get_config()):
        return
    containers = parse_containers(args.resources)
    webmails = [c for c in containers if c.role == WEBMAIL]
    if not webmails:
        return
    edges = [c for c in containers if c.role == EDGE]
    public_https = [
        p for c in edges for p in c.ports if p.internal == 443 and p.ip is not None and not _loopback(p.ip)
    ]
    caddyfiles = [
        u.content
        for c in containers
        if c.role == EDGE_WRITER
        for u in c.uploads
        if u.path.endswith("/Caddyfile")
    ]
    if any(u.content is None for c in containers if c.role == EDGE_WRITER for u in c.uploads):
        return  # a preview that does not know the Caddyfile yet: checked again on up
    upstreams = _proxied([t for t in caddyfiles if t is not None])
    for w in webmails:
        if not edges or not public_https:
            report_violation(
                f"Webmail '{w.display}' has no HTTPS edge on a public address in front of it: logins would "
                "reach it only over plain HTTP (or not at all). Enable the edge (mailstack:tls: acme, or "
                "mailstack:edge.enabled) so that it serves the webmail at https://webmail.<domain>.",
                w.urn,
            )
            continue
        names = {a for n in w.networks for a in n.aliases} | {n.ipv4 for n in w.networks if n.ipv4}
        if not any((name, 80) in upstreams for name in names):
            report_violation(
                f"Webmail '{w.display}' is not among the upstreams of the HTTPS edge's Caddyfile (reverse_proxy "
                f"to one of {', '.join(sorted(names)) or 'its network aliases'} on port 80): nobody can reach "
                "it over HTTPS. Give its domain a webmail host the edge serves.",
                w.urn,
            )


webmail_behind_edge = StackValidationPolicy(
    name="webmail-behind-edge",
    description="In production every webmail is served over HTTPS by the stack's edge on a public address.",
    validate=validate_webmail_behind_edge,
    config_schema=PRODUCTION_SCHEMA,
    severity=Severity.HIGH,
)
