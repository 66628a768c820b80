"""The whole policy pack against the real program, as ``pulumi preview --policy-pack policy`` runs it.

``tests/policy/packrun.py`` explains the mirroring: the program runs under mocks with a recording
``MockMonitor``; each registration becomes the ``AnalyzeRequest`` / ``AnalyzeStackRequest`` the
engine would send (camelCase inputs, secrets as secret objects that the SDK unwraps, ``protect``
and the other options, parents and dependencies); the SDK's own analyzer servicer evaluates every
policy, configured from ``policy/config/<stack>.json`` the way the CLI reconciles it.

The production stack (``Pulumi.prod.yaml``) passes every mandatory policy, in a full run and in a
first preview (unknown values); the dev lab is only warned (advisory) about its password123
accounts; and each broken variant of production produces exactly the expected violations. A
variant is a configuration change where the config model lets the mistake through; where
``load_stack`` already refuses the configuration (asserted here), the variant tampers with the
registered resources instead, as a regression in a component would, so the pack is the second
line of defence.
"""

from __future__ import annotations

import copy
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from config.errors import ConfigError
from config.model import load_stack
from policy.mailstack_policies import POLICIES
from tests.components.harness import (
    DEV_PASSWORDS,
    Program,
    Registration,
    Secret,
    dev_config,
    load_stack_file,
    run_program,
    unwrap,
)
from tests.policy.packrun import Violation, evaluate, load_config, run_preview

SECRET_KEYS = ("mailstack:passwords",)


def prod_config() -> dict[str, Any]:
    """``Pulumi.prod.yaml`` with the one password a person would set as a secret (made fresh per run)."""
    config = load_stack_file("prod")
    config["passwords"] = {"admin@example.org": secrets.token_urlsafe(18)}
    return config


def run(config: dict[str, Any], stack: str) -> Program:
    """Run the real program once under mocks (secrets marked as the CLI marks them)."""
    return run_program(copy.deepcopy(config), stack=stack, secret_keys=SECRET_KEYS)


def summary(found: list[Violation]) -> Counter[tuple[str, str]]:
    """``(policy, resource)`` of every diagnostic, counted."""
    return Counter((v.policy, v.resource) for v in found)


@pytest.fixture(scope="module")
def prod_program() -> Program:
    return run(prod_config(), "prod")


@pytest.fixture(scope="module")
def dev_program() -> Program:
    return run(dev_config(), "dev")


# --- the production and dev stacks ---------------------------------------------------------------


def test_prod_stack_passes_every_mandatory_policy(prod_program: Program) -> None:
    containers = {unwrap(r.inputs["name"]).rsplit("-config-", 1)[0] for r in prod_program.of_type(CONTAINER)}
    assert containers == {
        "mailstack-prod-mx1",
        "mailstack-prod-mx2",
        "mailstack-prod-vpn",
        "mailstack-prod-edge",
        "mailstack-prod-webmail-mx1",
        "mailstack-prod-webmail-mx2",
        "mailstack-prod-mx1-certificate-wait",
        "mailstack-prod-mx2-certificate-wait",
    }
    assert evaluate(prod_program, load_config("prod")) == []
    # Without a config file every policy is mandatory and prod-only policies assume production.
    assert evaluate(prod_program, None) == []


def test_prod_stack_passes_in_a_first_preview() -> None:
    program = run_preview(prod_config(), "prod", SECRET_KEYS)
    writer = program.named("example.org-config-writer")
    accounts = next(u for u in writer.inputs["uploads"] if u["file"].endswith("postfix-accounts.cf"))
    assert unwrap(accounts["content"]) == UNKNOWN, "the preview must see the account file as unknown"
    assert unwrap(writer.inputs["name"]) == UNKNOWN
    found = evaluate(program, load_config("prod"))
    assert [v for v in found if v.skipped] == [], "a validator tripped over an unknown value"
    assert found == []


def test_dev_stack_is_only_warned_about_its_lab_passwords(dev_program: Program) -> None:
    found = evaluate(dev_program, load_config("dev"))
    assert {v.level for v in found} == {"advisory"}
    assert summary(found) == Counter(
        {
            ("no-weak-credentials", "example1.local-config-writer"): 2,
            ("no-weak-credentials", "example2.local-config-writer"): 2,
        }
    )
    warned = sorted(v.message.split("\n", 1)[1].split("account ")[1].split(":")[0] for v in found)
    assert warned == sorted(DEV_PASSWORDS)
    assert all("password123" not in v.message.split("\n", 1)[1] for v in found)


def test_dev_stack_preview_is_clean() -> None:
    found = evaluate(run_preview(dev_config(), "dev", SECRET_KEYS), load_config("dev"))
    assert found == []


def test_dev_stack_under_the_prod_config_is_blocked(dev_program: Program) -> None:
    found = evaluate(dev_program, load_config("prod"))
    assert {v.level for v in found} == {"mandatory"}
    # the lab does not sign, and its webmails speak plain HTTP without the HTTPS edge in front of them
    assert {v.policy for v in found} == {"no-weak-credentials", "dkim-signing", "webmail-behind-edge"}
    assert summary(found)[("dkim-signing", "example1.local-server")] == 1


# --- one broken production stack per policy -------------------------------------------------------

CONTAINER = "docker:index/container:Container"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _registration(program: Program, name: str) -> Registration:
    return program.named(name)


def _set_env(reg: Registration, key: str, value: str) -> None:
    envs = [e for e in reg.inputs["envs"] if not e.startswith(f"{key}=")]
    reg.inputs["envs"] = sorted([*envs, f"{key}={value}"])


def _replace_upload(reg: Registration, file_name: str, edit: Callable[[str], str]) -> None:
    for upload in reg.inputs["uploads"]:
        if upload["file"].endswith("/" + file_name):
            content = upload["content"]
            if isinstance(content, Secret):
                upload["content"] = Secret(edit(unwrap(content)))
            else:
                upload["content"] = edit(content)
            return
    raise AssertionError(f"{reg.name} uploads no {file_name}")


def _hostname_of_mx1(program: Program) -> None:
    _registration(program, "example.net-server").inputs["hostname"] = "mail.example.org"


def _drop_route(program: Program) -> None:
    writer = _registration(program, "example.org-config-writer")
    _replace_upload(
        writer, "postfix-transport.cf", lambda text: text.replace("example.net smtp:[mx2]:25\n", "")
    )


def _same_address(program: Program) -> None:
    for port in _registration(program, "example.net-server").inputs["ports"]:
        port["ip"] = "203.0.113.10"


def _relay_password(program: Program) -> None:
    _set_env(_registration(program, "example.org-server"), "RELAY_PASSWORD", secrets.token_urlsafe(12))


def _no_vpn_healthcheck(program: Program) -> None:
    del _registration(program, "vpn-container").inputs["healthcheck"]


def _vpn_logs_configs(program: Program) -> None:
    _set_env(_registration(program, "vpn-container"), "LOG_CONFS", "true")


def _edge_forgets_webmail(program: Program) -> None:
    writer = _registration(program, "edge-config-writer")
    upload = writer.inputs["uploads"][0]
    upload["content"] = upload["content"].replace("reverse_proxy webmail-mx2:80", "respond 404")


def _image_tag(name: str, reference: str) -> Callable[[Program], None]:
    def tamper(program: Program) -> None:
        _registration(program, name).inputs["name"] = reference

    return tamper


def _prod_with(**changes: Any) -> dict[str, Any]:
    config = prod_config()
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


@dataclass
class Broken:
    """A production stack with one mistake, and the diagnostics it must produce."""

    id: str
    expected: dict[tuple[str, str], int]
    config: dict[str, Any] = field(default_factory=prod_config)
    tamper: Callable[[Program], None] | None = None
    refused_by_model: dict[str, Any] | None = None
    """A configuration with the same mistake, which ``load_stack`` must refuse (why a tamper is needed)."""


def _domains_with(index: int, **changes: Any) -> list[dict[str, Any]]:
    domains = copy.deepcopy(load_stack_file("prod")["domains"])
    domains[index].update(changes)
    return domains


BROKEN = [
    Broken(
        "images-pinned: a major-version tag",
        {("images-pinned", "mailstack-mailserver-image"): 1},
        tamper=_image_tag("mailstack-mailserver-image", "docker.io/mailserver/docker-mailserver:15"),
        refused_by_model={"images": {"mailserver": "docker.io/mailserver/docker-mailserver:15"}},
    ),
    Broken(
        "mail-data-protected: protectData off (production switched off to get past validation)",
        {
            ("mail-data-protected", "example.org-mail"): 1,
            ("mail-data-protected", "example.org-state"): 1,
            ("mail-data-protected", "example.net-mail"): 1,
            ("mail-data-protected", "example.net-state"): 1,
        },
        config=_prod_with(production=False, protectData=False, dkim={"enabled": True}),
        refused_by_model={"protectData": False},
    ),
    Broken(
        "no-open-relay: restriction overrides that permit everybody",
        {
            ("no-open-relay", "example.org-config-writer"): 1,
            ("no-open-relay", "example.net-config-writer"): 1,
        },
        config=_prod_with(
            postfix={
                "smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated permit",
                "smtpd_recipient_restrictions": "permit",
                "smtpd_client_restrictions": "permit",
            }
        ),
    ),
    Broken(
        "mailserver-hostnames: two servers share a hostname",
        {("mailserver-hostnames", "example.net-server"): 1},
        tamper=_hostname_of_mx1,
        refused_by_model={"domains": _domains_with(1, hostname="mail.example.org")},
    ),
    Broken(
        "mail-routing: a missing route",
        {("mail-routing", "example.org-config-writer"): 1},
        tamper=_drop_route,
        refused_by_model={"postfix": {"transport_maps": "texthash:/tmp/mine.cf"}},
    ),
    Broken(
        "unique-host-ports-and-subnets: both servers on one address",
        {("unique-host-ports-and-subnets", "example.net-server"): 3},
        tamper=_same_address,
        refused_by_model={"domains": _domains_with(1, bindAddress="203.0.113.10")},
    ),
    Broken(
        "no-plaintext-exposure: TLS off on public addresses",
        {
            ("no-plaintext-exposure", "example.org-server"): 1,
            ("no-plaintext-exposure", "example.net-server"): 1,
        },
        config=_prod_with(tls="none", edge={**prod_config()["edge"], "enabled": True}),
    ),
    Broken(
        "webmail-behind-edge: the edge does not proxy one webmail",
        {("webmail-behind-edge", "example.net-webmail-container"): 1},
        tamper=_edge_forgets_webmail,
    ),
    Broken(
        "no-secrets-in-env: a relay password in the environment",
        {("no-secrets-in-env", "example.org-server"): 1},
        tamper=_relay_password,
    ),
    Broken(
        "no-weak-credentials: password123 (production switched off to get past validation)",
        {("no-weak-credentials", "example.org-config-writer"): 1},
        config=_prod_with(
            production=False, dkim={"enabled": True}, passwords={"alice@example.org": "password123"}
        ),
        refused_by_model={"passwords": {"alice@example.org": "password123"}},
    ),
    Broken(
        "dkim-signing: DKIM off (production switched off to get past validation)",
        {("dkim-signing", "example.org-server"): 1, ("dkim-signing", "example.net-server"): 1},
        config=_prod_with(production=False, dkim={"enabled": False}),
        refused_by_model={"dkim": {"enabled": False}},
    ),
    Broken(
        "health-and-restart: the VPN without a health check",
        {("health-and-restart", "vpn-container"): 1},
        tamper=_no_vpn_healthcheck,
    ),
    Broken(
        "wireguard-hardening: LOG_CONFS=true",
        {("wireguard-hardening", "vpn-container"): 1},
        tamper=_vpn_logs_configs,
    ),
]


def test_every_policy_has_a_broken_stack() -> None:
    covered = {policy for case in BROKEN for policy, _ in case.expected}
    assert covered == {p.name for p in POLICIES}


@pytest.mark.parametrize("case", BROKEN, ids=[c.id.split(":")[0] for c in BROKEN])
def test_broken_prod_stack_produces_exactly_the_expected_violation(case: Broken) -> None:
    if case.refused_by_model is not None:
        raw = {k: v for k, v in prod_config().items() if ":" not in k and k != "passwords"}
        passwords = case.refused_by_model.get("passwords", prod_config()["passwords"])
        raw.update({k: v for k, v in case.refused_by_model.items() if k != "passwords"})
        with pytest.raises(ConfigError):
            load_stack("prod", raw, passwords)
    program = run(case.config, "prod")
    if case.tamper is not None:
        case.tamper(program)
    found = evaluate(program, load_config("prod"))
    assert summary(found) == Counter(case.expected), "\n".join(v.message for v in found)
    assert {v.level for v in found} == {"mandatory"}
    for v in found:
        description, _, message = v.message.partition("\n")
        assert description == next(p.description for p in POLICIES if p.name == v.policy)
        assert message, "every violation carries a message naming the resource and the fix"


def test_a_broken_dev_stack_is_only_advisory() -> None:
    program = run(dev_config(), "dev")  # the model refuses a wildcard tag, so the image is tampered
    _image_tag("mailstack-webmail-image", "docker.io/roundcube/roundcubemail:1.6.x-apache")(program)
    found = evaluate(program, load_config("dev"))
    assert {v.level for v in found} == {"advisory"}
    assert summary(found)[("images-pinned", "mailstack-webmail-image")] == 1
