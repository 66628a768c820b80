"""mailserver-hostnames and mail-routing: the servers find each other, and none mistakes itself for another.

Both are stack policies over the mail servers and their configuration files (the server's own
uploads and its config writer's): hostnames must be distinct FQDNs that are not mail domains, and
every server's transport map must route every other domain to a server alias on a shared network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from .mailfiles import (
    ACCOUNTS,
    MAIN_CF,
    TRANSPORT,
    VIRTUAL,
    domain_of,
    parse_accounts,
    parse_main_cf,
    parse_next_hop,
    parse_table,
)
from .resources import CONFIG_WRITER, MAILSERVER, UNKNOWN, Container, Upload, get, parse_containers

# --- stack helpers: servers, domains, configuration files -----------------------------------------


@dataclass
class _Server:
    container: Container
    domain: str
    files: dict[str, tuple[Upload, Container]]
    own: set[str]


def _servers(containers: list[Container]) -> list[_Server]:
    """Mail servers with their configuration files (their own and their config writer's uploads)."""
    servers = []
    for c in containers:
        if c.role != MAILSERVER or not c.domain:
            continue
        files: dict[str, tuple[Upload, Container]] = {}
        for other in containers:
            if other.domain == c.domain and other.role in (CONFIG_WRITER, MAILSERVER):
                for name, upload in other.files().items():
                    if name not in files or other is c:
                        files[name] = (upload, other)
        own = {c.domain.lower()}
        accounts = files.get(ACCOUNTS)
        if accounts and accounts[0].content:
            own |= {d for a, _ in parse_accounts(accounts[0].content) if (d := domain_of(a))}
        virtual = files.get(VIRTUAL)
        if virtual and virtual[0].content:
            own |= {d for key in parse_table(virtual[0].content) if (d := domain_of(key))}
        servers.append(_Server(c, c.domain.lower(), files, own))
    return servers


# --- mailserver-hostnames ---------------------------------------------------------------------------

_LABEL_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def is_fqdn(name: str) -> bool:
    """True for a fully qualified host name: two or more valid labels, 253 characters at most."""
    labels = name.lower().rstrip(".").split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(_LABEL_RE.match(label) for label in labels)


def _hostname(c: Container) -> Any:
    override = c.env.get("OVERRIDE_HOSTNAME")
    if override:
        return override
    host = get(c.props, "hostname")
    domainname = get(c.props, "domainname")
    if host is UNKNOWN or domainname is UNKNOWN:
        return UNKNOWN
    if isinstance(host, str) and isinstance(domainname, str) and domainname:
        return f"{host}.{domainname}"
    return host if isinstance(host, str) and host else None


def validate_hostnames(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report mail server hostnames that are not FQDNs, are shared, or equal a mail domain."""
    servers = _servers(parse_containers(args.resources))
    mail_domains = set().union(*(s.own for s in servers)) if servers else set()
    seen: dict[str, str] = {}
    for s in servers:
        c = s.container
        host = _hostname(c)
        if host is UNKNOWN:
            continue
        if host is None:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has no hostname, so docker-mailserver sees the "
                f"container id and refuses to start: set hostname to an FQDN such as mail.{s.domain}.",
                c.urn,
            )
            continue
        lowered = host.lower().rstrip(".")
        if not is_fqdn(lowered):
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', which is not a fully "
                f"qualified name, so docker-mailserver refuses to start: use a name such as mail.{s.domain}.",
                c.urn,
            )
        if lowered in mail_domains:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', which is a mail domain of this "
                "stack: Postfix then treats that domain as local and mail to it bounces as 'User unknown'. "
                f"Use a name such as mail.{lowered}.",
                c.urn,
            )
        if lowered in seen:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', like '{seen[lowered]}': "
                "Postfix then sees its own name on the other side and bounces with 'mail loops back to "
                "myself'. Give every server its own hostname.",
                c.urn,
            )
        else:
            seen[lowered] = c.display


mailserver_hostnames = StackValidationPolicy(
    name="mailserver-hostnames",
    description="Every mail server hostname is a fully qualified name, unique, and not a mail domain.",
    validate=validate_hostnames,
    severity=Severity.HIGH,
)


# --- mail-routing ----------------------------------------------------------------------------------


def validate_routing(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report servers that miss a route, route their own domain, or route to a non-server."""
    servers = _servers(parse_containers(args.resources))
    if not servers:
        return
    mail_domains = set().union(*(s.own for s in servers))
    for s in servers:
        c = s.container
        transport = s.files.get(TRANSPORT)
        main = s.files.get(MAIN_CF)
        others = sorted(mail_domains - s.own)
        where = transport[1] if transport else (main[1] if main else c)
        if transport is None:
            if others:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) has no {TRANSPORT}, so mail to "
                    f"{', '.join(others)} goes to MX lookups that fail inside Docker: generate the transport "
                    "map with one 'domain smtp:[server]:25' line per other domain.",
                    where.urn,
                )
            continue
        if main is not None and main[0].content is not None:
            maps = parse_main_cf(main[0].content).get("transport_maps", "")
            if others and TRANSPORT not in maps and "inline:" not in maps:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) uploads {TRANSPORT} but its {MAIN_CF} does not "
                    f"use it (transport_maps = {maps or 'unset'}), so the routes are ignored: set "
                    f"transport_maps = texthash:/tmp/docker-mailserver/{TRANSPORT}.",
                    main[1].urn,
                )
        if transport[0].content is None:
            continue
        routes = parse_table(transport[0].content)
        networks = {a.network for a in c.networks if a.network}
        for domain in others:
            if domain.lstrip(".") not in {k.lstrip(".") for k in routes}:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) has no route for {domain}, so its users' mail to "
                    f"{domain} is deferred: add '{domain} smtp:[<server of {domain}>]:25' to its {TRANSPORT}.",
                    where.urn,
                )
        for key, value in sorted(routes.items()):
            domain = key.lstrip(".")
            if domain in s.own:
                report_violation(
                    f"Mail server '{c.display}' routes its own domain {domain} ({value}) in {TRANSPORT}: "
                    "transport_maps overrides local delivery, so the mail loops. Remove that line.",
                    where.urn,
                )
                continue
            _check_target(s, servers, networks, domain, value, where, report_violation)


def _check_target(
    s: _Server,
    servers: list[_Server],
    networks: set[str],
    domain: str,
    value: str,
    where: Container,
    report_violation: ReportViolation,
) -> None:
    c = s.container
    hop = parse_next_hop(value)
    if hop is None or hop.transport not in ("smtp", "relay"):
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{value}', which is not an SMTP next hop: use "
            f"'smtp:[<server alias>]:25'.",
            where.urn,
        )
        return
    if not hop.bracketed:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{value}' without brackets, so Postfix looks up MX "
            f"records of '{hop.host}', which Docker's DNS does not have: write 'smtp:[{hop.host}]:25'.",
            where.urn,
        )
    if hop.port not in (None, 25):
        report_violation(
            f"Mail server '{c.display}' routes {domain} to port {hop.port}; servers accept mail from each "
            f"other on port 25: write 'smtp:[{hop.host}]:25'.",
            where.urn,
        )
    matches = []
    for t in servers:
        for a in t.container.networks:
            shared = not networks or a.network is None or a.network in networks
            if shared and (hop.host.lower() in (x.lower() for x in a.aliases) or hop.host == a.ipv4):
                matches.append(t)
                break
    if not matches:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{hop.host}', which is not the network alias of a "
            f"mail server on a network '{c.display}' shares: route it to the alias of the server of {domain}.",
            where.urn,
        )
        return
    target = matches[0]
    if target.container is c:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to itself ('{hop.host}'), so the mail loops: route it to "
            f"the server of {domain}.",
            where.urn,
        )
    elif domain not in target.own:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{hop.host}' ('{target.container.display}'), which "
            f"serves {target.domain}, not {domain}: route it to the server of {domain}.",
            where.urn,
        )


mail_routing = StackValidationPolicy(
    name="mail-routing",
    description=(
        "Every mail domain is routed from every other server to a server alias on the shared network, "
        "and no server routes its own domain."
    ),
    validate=validate_routing,
    severity=Severity.HIGH,
)
