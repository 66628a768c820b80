"""The DNS records the HTTPS edge needs, per mail domain, in the ``dns`` output's shape.

Each record is ``{name, type, value, ttl}`` with ``name`` without the trailing dot and a TXT ``value``
as a list of strings: the ``_mta-sts`` TXT announcing the current policy (RFC 8461 §3.1) and an A record
for every web name the edge serves for the domain, pointing at the domain's public address (where the
edge publishes 80 and 443) when that address is known. The MX host's own A record is among the
domain's mail records (``config.dns``); ``components/dnsoutput.py`` adds these to the ``dns`` output, which
``make dns`` prints and ``make verify`` checks. No Pulumi import.
"""

from __future__ import annotations

from typing import Any

from config import mtasts
from config.dns import DEFAULT_TTL
from config.edge import EdgeConfig


def edge_records(edge: EdgeConfig, domain: str, ttl: int = DEFAULT_TTL) -> list[dict[str, Any]]:
    """The records of ``domain``'s web names and MTA-STS policy, in a stable order."""
    e = edge.domain(domain)
    policy = mtasts.render_policy(e.hostname, e.mta_sts)
    records: list[dict[str, Any]] = [
        {"name": f"_mta-sts.{e.domain}", "type": "TXT", "value": [mtasts.record_value(policy)], "ttl": ttl}
    ]
    if e.public_address is not None:
        records += [
            {"name": host, "type": "A", "value": e.public_address, "ttl": ttl} for host in e.web_hosts()
        ]
    return records
