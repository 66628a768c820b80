"""Stacks with an HTTPS edge, built by the real validation, for the edge's unit and contract tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.edge import EdgeConfig
from config.model import StackConfig, load_stack

ROOT = Path(__file__).resolve().parents[1]


def prod_raw() -> dict[str, Any]:
    """``Pulumi.prod.yaml``'s ``mailstack:*`` keys without the namespace."""
    data = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("mailstack:")}


def edge_raw(
    *,
    tls: str = "acme",
    ca: str = "acme",
    webmail: bool = True,
    well_known: bool = False,
    mode: str = "testing",
    pop3: bool = False,
) -> dict[str, Any]:
    """The production example, varied: webmail on example.org only, both domains' MTA-STS and autoconfig."""
    raw = prod_raw()
    raw["tls"] = tls
    raw["edge"] = {**raw["edge"], "enabled": True, "mtaSts": {"mode": mode}}
    if ca == "internal":
        raw["edge"]["ca"] = "internal"
        raw["production"] = False
    if tls == "manual":
        raw["certificatesPath"] = "/etc/mailstack-certs"
    if ca != "acme" and tls != "acme":
        raw.pop("acmeEmail", None)
    for i, d in enumerate(raw["domains"]):
        d.pop("webmail", None)
        if webmail and i == 0:
            d["webmail"] = {"host": f"webmail.{d['domain']}"}
        if pop3:
            d["ports"]["pop3"] = 110
        if well_known:
            d["autoconfig"] = {"wellKnown": True}
    return raw


def edge_stack(**kwargs: Any) -> tuple[StackConfig, EdgeConfig]:
    """``load_stack`` of :func:`edge_raw` (same keywords), and its edge."""
    stack = load_stack("prod", edge_raw(**kwargs))
    assert stack.edge is not None
    return stack, stack.edge
