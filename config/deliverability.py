"""Deliverability settings of the whole stack: DKIM, egress, public addresses, DMARC and TLS-RPT per domain.

``parse_deliverability`` is called by ``config.model.load_stack`` once the domains are parsed; it reads the
stack-wide keys (``dkim``, ``dmarc``, ``tlsrpt``, ``egress``) and each domain's overrides (``dkim``,
``dmarc``, ``tlsrpt``, ``egress``, ``publicAddress``), reports every problem with the item it comes from,
and returns a ``Deliverability`` that the renderers and components read. Plain Python, no Pulumi import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.dkim import DkimSettings, Problems, parse_dkim
from config.dns import (
    CLIENT_SERVICES,
    EGRESS_WARNING,
    DnsDomain,
    DomainDns,
    Egress,
    Record,
    helo_conflicts,
    is_public,
    parse_dmarc,
    parse_egress,
    parse_public_address,
    parse_tlsrpt,
    records_for,
)

STACK_KEYS = frozenset({"dkim", "dmarc", "tlsrpt", "egress"})
"""``mailstack:*`` keys read here (``config.model`` accepts them)."""
DOMAIN_KEYS = frozenset({"dkim", "dmarc", "tlsrpt", "egress", "publicAddress"})
"""Keys of a domain entry read here."""


class DomainLike(Protocol):
    """The parts of ``config.model.Domain`` this module reads."""

    domain: str
    hostname: str
    bind_address: str
    ports: Mapping[str, int]


@dataclass(frozen=True)
class DomainAuth:
    """DKIM and DNS settings of one domain."""

    dkim: DkimSettings
    dns: DomainDns
    client_ports: Mapping[str, int] = field(default_factory=dict)
    """Client services (submission, imap, pop3) reachable on the public address, with their host ports."""
    warnings: tuple[str, ...] = ()
    """What preview should say about this domain (its own egress needs Docker Engine 28)."""


@dataclass(frozen=True)
class Deliverability:
    """Everything about how the stack's mail is signed and which DNS records it needs."""

    egress: Egress | None = None
    """``mailstack:egress``: the stack's shared egress address and HELO name."""
    domains: Mapping[str, DomainAuth] = field(default_factory=dict)

    def of(self, domain: str) -> DomainAuth:
        """Settings of ``domain`` (DKIM off, no egress when the domain is unknown: a stack built by hand)."""
        return self.domains.get(domain) or DomainAuth(DkimSettings(enabled=False), DomainDns(None, None))

    def warnings(self) -> tuple[str, ...]:
        """Every domain's warnings, in domain order (the program shows them at preview)."""
        return tuple(w for auth in self.domains.values() for w in auth.warnings)

    def helo_name(self, domain: str) -> str | None:
        """The name ``domain``'s server says in HELO (its egress name), or ``None`` (Postfix's default)."""
        egress = self.of(domain).dns.egress
        return egress.name if egress is not None else None

    def dns_domains(
        self, hostnames: Mapping[str, str], dkim_values: Mapping[str, Mapping[str, str]]
    ) -> list[DnsDomain]:
        """Inputs of ``records_for``: ``hostnames`` by domain, and the DKIM TXT values by domain and selector."""
        return [
            DnsDomain(
                domain=name,
                hostname=hostnames[name],
                dns=auth.dns,
                client_ports=auth.client_ports,
                dkim_selectors=dict(dkim_values.get(name, {})) if auth.dkim.enabled else {},
            )
            for name, auth in self.domains.items()
        ]

    def records(
        self, hostnames: Mapping[str, str], dkim_values: Mapping[str, Mapping[str, str]]
    ) -> dict[str, list[Record]]:
        """The records to publish, by zone (see ``config.dns.records_for``)."""
        return records_for(self.dns_domains(hostnames, dkim_values), self.egress)


class _Once:
    """Passes each distinct problem on once: a stack-wide value is merged into every domain's settings."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.seen: set[tuple[str, str]] = set()

    def add(self, where: str, message: str) -> None:
        if (where, message) not in self.seen:
            self.seen.add((where, message))
            self.problems.add(where, message)


def _where(raw_domains: Sequence[Any], item: Any, name: str) -> str:
    index = next(i for i, r in enumerate(raw_domains) if r is item)
    return f"mailstack:domains[{index}] ({name})"


def parse_deliverability(
    raw: Mapping[str, Any],
    raw_domains: Sequence[Any],
    usable_raw: Sequence[Mapping[str, Any]],
    domains: Sequence[DomainLike],
    production: bool,
    problems: Problems,
) -> Deliverability:
    """Validate the deliverability keys of the stack and of each parsed domain.

    ``usable_raw[i]`` is the raw entry of ``domains[i]``; ``raw_domains`` is the whole ``mailstack:domains``
    list, used to name the items.
    """
    problems = _Once(problems)
    stack_egress = parse_egress(raw.get("egress"), "mailstack:egress", problems, production)
    if production and raw.get("egress") is None:
        problems.add(
            "mailstack:egress",
            "is required in a production stack: give {address, name}, the public address outgoing mail "
            "leaves from (the Docker host's default-route address, not the published one) and the name its PTR "
            "record gives; SPF, HELO and the PTR advice use them",
        )
    result: dict[str, DomainAuth] = {}
    for item, d in zip(usable_raw, domains, strict=True):
        where = _where(raw_domains, item, d.domain)
        dkim = parse_dkim(
            raw.get("dkim"), item.get("dkim"), "mailstack:dkim", f"{where}.dkim", production, problems
        )
        own = parse_egress(item.get("egress"), f"{where}.egress", problems, production)
        warnings = (f"{where}.egress: " + EGRESS_WARNING.format(domain=d.domain),) if own else ()
        public = parse_public_address(item.get("publicAddress"), d.bind_address, where, production, problems)
        client_ports = {}
        if public is not None and is_public(public) and d.bind_address in (public, "0.0.0.0"):
            client_ports = {s: d.ports[s] for s, _ in CLIENT_SERVICES if s in d.ports}
        result[d.domain] = DomainAuth(
            dkim=dkim,
            dns=DomainDns(
                public_address=public,
                egress=own or stack_egress,
                own_egress=own is not None,
                dmarc=parse_dmarc(
                    raw.get("dmarc"), item.get("dmarc"), "mailstack:dmarc", f"{where}.dmarc", problems
                ),
                tlsrpt=parse_tlsrpt(
                    raw.get("tlsrpt"), item.get("tlsrpt"), "mailstack:tlsrpt", f"{where}.tlsrpt", problems
                ),
            ),
            client_ports=client_ports,
            warnings=warnings,
        )
    auth = Deliverability(egress=stack_egress, domains=result)
    hostnames = {d.domain: d.hostname for d in domains}
    for message in helo_conflicts(auth.dns_domains(hostnames, {})):
        problems.add("mailstack:egress", message)
    return auth
