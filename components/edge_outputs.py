"""The HTTPS edge's part of the stack outputs and of the stack's memory."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from config import caddy
from config.edge import EDGE_KEY, webmail_key
from config.model import StackConfig
from config.roundcube import webmail_url

if TYPE_CHECKING:
    from components.edge import HttpsEdge


def remembered_addresses(stack: StackConfig) -> dict[str, IPv4Address]:
    """The fixed addresses the edge's containers got, for the memory (so they never move)."""
    if stack.edge is None:
        return {}
    addresses = {webmail_key(d): a for d, a in stack.edge.webmail_addresses.items()}
    addresses[EDGE_KEY] = stack.edge.address
    return addresses


def edge_output(stack: StackConfig, edge: HttpsEdge) -> dict[str, Any]:
    """The ``edge`` output: container, data volume and the served URLs per domain (records: ``dns``)."""
    cfg = stack.edge
    assert cfg is not None
    port = "" if cfg.https_port == 443 else f":{cfg.https_port}"
    result: dict[str, Any] = {
        "container": edge.container_name,
        "dataVolume": edge.data_volume_name,
        "ca": cfg.ca,
        "addresses": list(cfg.addresses),
        "domains": {},
    }
    for d in stack.domains:
        e = cfg.domain(d.domain)
        urls = {"mtaSts": f"https://{e.mta_sts_host}{port}/.well-known/mta-sts.txt"}
        if e.autoconfig:
            urls["autoconfig"] = f"https://{e.autoconfig_host}{port}/mail/config-v1.1.xml"
        if d.webmail is not None and e.webmail_host is not None:
            urls["webmail"] = webmail_url(d, stack)
        result["domains"][d.domain] = {"urls": urls}
    if cfg.lab:
        result["rootCertificate"] = (
            f"docker cp {stack.prefix()}-edge:{caddy.DATA_DIR}/caddy/pki/authorities/local/root.crt ."
        )
    return result
