"""The ``dns`` stack output: every record each mail domain needs, as data (``make dns`` prints it).

Shape: zone (a mail domain, or an egress name outside them) to a list of ``{name, type, value, ttl}``
(TXT values as lists of strings of at most 255 octets; a PTR carries ``advice``: it is set where the
address is hosted, not in the zone). Public data: nothing secret goes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from components.maildomain import MailDomain
from config import edge_dns
from config.model import StackConfig


def dns_records(config: StackConfig, domains: Mapping[str, MailDomain]) -> pulumi.Output[dict[str, Any]]:
    """The ``dns`` output of the stack from the validated config and the domains' DKIM keys."""
    names = [d.domain for d in config.domains]
    keyed = [n for n in names if domains[n].dkim is not None]
    hostnames = {d.domain: d.hostname for d in config.domains}

    def build(values: list[dict[str, str]]) -> dict[str, Any]:
        dkim_values = dict(zip(keyed, values, strict=True))
        zones = config.deliverability.records(hostnames, dkim_values)
        out = {zone: [r.as_output() for r in records] for zone, records in zones.items()}
        if config.edge is not None:  # the HTTPS edge's names and MTA-STS record, before any advice (PTR)
            for d in config.domains:
                records = out.setdefault(d.domain, [])
                at = next((i for i, r in enumerate(records) if r.get("advice")), len(records))
                records[at:at] = edge_dns.edge_records(config.edge, d.domain)
        return out

    return pulumi.Output.all(*(domains[n].dkim.records for n in keyed)).apply(build)  # type: ignore[union-attr]
