"""Stacks with an HTTPS edge, for the edge's unit and contract tests."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from config.edge import EdgeConfig, EdgeDomain, MtaSts
from config.model import StackConfig, load_stack

ROOT = Path(__file__).resolve().parents[1]


def prod_raw() -> dict[str, Any]:
    """``Pulumi.prod.yaml``'s ``mailstack:*`` keys without the namespace."""
    data = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("mailstack:")}


def edge_stack(
    *,
    tls: str = "acme",
    ca: str = "acme",
    webmail: bool = True,
    well_known: bool = False,
    mode: str = "testing",
    pop3: bool = False,
) -> tuple[StackConfig, EdgeConfig]:
    """The production example with an edge: webmail on example.org, both domains' MTA-STS and autoconfig."""
    raw = prod_raw()
    raw["tls"], raw["certificatesPath"] = "manual", "/etc/mailstack-certs"
    for d in raw["domains"]:
        d.pop("webmail", None)
        if pop3:
            d["ports"]["pop3"] = 110
    stack = dataclasses.replace(load_stack("prod", raw), tls=tls, certificates_path=None)
    domains = []
    for i, d in enumerate(stack.domains):
        has_webmail = webmail and i == 0
        domains.append(
            EdgeDomain(
                domain=d.domain,
                hostname=d.hostname,
                public_address=d.bind_address,
                webmail_host=f"webmail.{d.domain}" if has_webmail else None,
                webmail_upstream=f"webmail-{d.server}:80" if has_webmail else None,
                mta_sts=MtaSts(mode=mode),
                autoconfig=tls != "none",
                well_known_autoconfig=well_known,
            )
        )
    edge = EdgeConfig(
        ca=ca,
        domains=tuple(domains),
        addresses=tuple(sorted({d.public_address for d in domains})),
        address=IPv4Address("172.30.0.130"),
        webmail_addresses={domains[0].domain: IPv4Address("172.30.0.131")} if webmail else {},
        email="postmaster@example.org",
    )
    return stack, edge
