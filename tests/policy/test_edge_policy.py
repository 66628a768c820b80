"""webmail-behind-edge: in production every webmail is served over HTTPS by the stack's edge."""

from __future__ import annotations

from typing import Any

from policy.mailstack_policies import edge as mp
from policy.mailstack_policies.resources import CONTAINER
from tests.policy.builders import labels, policy_resource, run, stack_args, webmail

PROD = {"production": True}
CADDYFILE = "webmail.example1.local {\n\treverse_proxy webmail-mta1:80\n}\n"


def behind_edge() -> dict[str, Any]:
    props = webmail()
    props.pop("ports")
    props["networksAdvanced"] = [
        {"name": "mailstack-dev", "aliases": ["webmail-mta1"], "ipv4Address": "172.28.1.5"}
    ]
    return props


def edge(ip: str = "203.0.113.10") -> dict[str, Any]:
    return {
        "name": "mailstack-dev-edge",
        "ports": [
            {"internal": 80.0, "external": 80.0, "ip": ip},
            {"internal": 443.0, "external": 443.0, "ip": ip},
        ],
        "labels": labels(mailstack_role="edge", mailstack_stack="dev"),
    }


def edge_writer(caddyfile: str | None = CADDYFILE) -> dict[str, Any]:
    return {
        "name": "mailstack-dev-edge-config-0123",
        "uploads": [{"file": "/mailstack/staging/Caddyfile", "content": caddyfile}],
        "labels": labels(mailstack_role="edge-config-writer", mailstack_stack="dev"),
    }


def check(*props: dict[str, Any], config: dict[str, Any] | None = PROD) -> list[tuple[str, str | None]]:
    resources = [policy_resource(p, CONTAINER, f"c{i}") for i, p in enumerate(props)]
    return run(mp.validate_webmail_behind_edge, stack_args(*resources, config=config))


def test_a_webmail_the_edge_proxies_on_a_public_address_passes():
    assert check(behind_edge(), edge(), edge_writer()) == []


def test_the_upstream_may_be_the_webmails_fixed_address():
    assert check(behind_edge(), edge(), edge_writer(CADDYFILE.replace("webmail-mta1", "172.28.1.5"))) == []


def test_a_webmail_without_an_edge_is_reported():
    found = check(behind_edge())
    assert len(found) == 1 and "has no HTTPS edge on a public address" in found[0][0]
    assert found[0][1].endswith("::c0")


def test_an_edge_on_loopback_only_does_not_count_in_production():
    found = check(behind_edge(), edge(ip="127.0.0.1"), edge_writer())
    assert len(found) == 1 and "has no HTTPS edge on a public address" in found[0][0]


def test_a_webmail_the_edge_does_not_proxy_is_reported():
    found = check(behind_edge(), edge(), edge_writer(CADDYFILE.replace("webmail-mta1", "webmail-mta2")))
    assert len(found) == 1 and "is not among the upstreams" in found[0][0]
    assert "webmail-mta1" in found[0][0]


def test_an_unknown_caddyfile_is_not_judged_in_a_preview():
    assert check(behind_edge(), edge(), edge_writer(None)) == []


def test_the_lab_is_not_checked():
    assert check(webmail(), config={"production": False}) == []
