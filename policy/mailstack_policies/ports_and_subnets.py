"""unique-host-ports-and-subnets: no two containers bind one host port, and no networks overlap."""

from __future__ import annotations

import ipaddress
from typing import Final

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from .mailfiles import wireguard_networks
from .resources import NETWORK, VPN, WG_CONF_DIR, Container, Port, as_text, elements, get, parse_containers

_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


def _vpn_networks(c: Container) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for u in c.uploads:
        if u.path.startswith(WG_CONF_DIR) and u.path.endswith(".conf") and u.content is not None:
            nets.extend(wireguard_networks(u.content))
    if not nets and c.env.get("INTERNAL_SUBNET"):
        raw = c.env["INTERNAL_SUBNET"].strip()
        try:
            nets.append(ipaddress.ip_network(raw if "/" in raw else f"{raw}/24", strict=False))
        except ValueError:
            pass
    return nets


def validate_ports_and_subnets(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report two containers publishing the same host port, and overlapping network or VPN subnets."""
    containers = parse_containers(args.resources)
    taken: list[tuple[Port, Container]] = []
    for c in containers:
        for p in c.ports:
            if p.external is None or p.ip is None:
                continue
            for q, owner in taken:
                same_ip = p.ip == q.ip or p.ip in _WILDCARDS or q.ip in _WILDCARDS
                if q.external == p.external and q.protocol == p.protocol and same_ip:
                    report_violation(
                        f"Container '{c.display}' publishes {p.ip}:{p.external}/{p.protocol}, which "
                        f"'{owner.display}' already publishes ({q.ip}:{q.external}): only one can bind it, so "
                        "the second never starts. Give one of them another host port (mailstack:domains[].ports, "
                        "webmail.port or vpn.port).",
                        c.urn,
                    )
                    break
            else:
                taken.append((p, c))
    subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, str]] = []
    for r in sorted(args.resources, key=lambda r: (as_text(get(r.props, "name")) or r.name, r.urn)):
        if r.resource_type != NETWORK:
            continue
        label = f"Docker network '{as_text(get(r.props, 'name')) or r.name}'"
        for ipam in elements(get(r.props, "ipamConfigs")):
            subnet = as_text(get(ipam, "subnet"))
            if subnet:
                try:
                    subnets.append((ipaddress.ip_network(subnet, strict=False), label, r.urn))
                except ValueError:
                    continue
    for c in containers:
        if c.role == VPN:
            subnets.extend((net, f"VPN '{c.display}'", c.urn) for net in _vpn_networks(c))
    for i, (net, label, urn) in enumerate(subnets):
        for other, other_label, _ in subnets[:i]:
            if net.version == other.version and net.overlaps(other):
                report_violation(
                    f"{label} uses {net}, which overlaps {other_label} ({other}): packets for the shared "
                    "addresses go to the wrong side (VPN peers cannot reach the servers). Pick ranges that do "
                    "not overlap (mailstack:network.subnet, mailstack:vpn.subnet).",
                    urn,
                )
                break


unique_ports_and_subnets = StackValidationPolicy(
    name="unique-host-ports-and-subnets",
    description="No two containers publish the same host port, and no two networks (Docker or VPN) overlap.",
    validate=validate_ports_and_subnets,
    severity=Severity.HIGH,
)
