"""Account hashes through the real program: reused from the stack's memory only when provably current."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from config import hashing
from config import passwords as pw
from tests.components.conftest import run
from tests.components.harness import dev_config, unwrap
from tools.bench import scale_config


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``(password, salt)`` the program hashes afresh (the dev stack hashes inline)."""
    seen: list[tuple[str, str]] = []
    real = hashing.hash_chunk

    def counting(items: list[tuple[str, str]]) -> list[str]:
        seen.extend(items)
        return real(items)

    monkeypatch.setattr(hashing, "hash_chunk", counting)
    return seen


def accounts_of(program, domain: str = "example1.local") -> str:
    uploads = unwrap(program.named(f"{domain}-config-writer").inputs)["uploads"]
    return next(u["content"] for u in uploads if u["file"].endswith("/postfix-accounts.cf"))


def test_a_first_deployment_hashes_every_account(hashed):
    run(dev_config())
    assert len(hashed) == 4


def test_an_unchanged_stack_with_its_memory_hashes_nothing_and_renders_the_same(hashed):
    first = run(dev_config())
    hashed.clear()
    second = run(dev_config(), memory=first.outputs["memory"])
    assert hashed == []
    assert accounts_of(second) == accounts_of(first)
    assert repr(second.outputs["memory"]) == repr(first.outputs["memory"])


def test_a_changed_password_or_a_new_user_costs_exactly_its_own_hash(hashed):
    first = run(dev_config())
    changed = dev_config()
    changed["passwords"]["user1@example1.local"] = "another-password-456"
    changed["domains"][1]["users"].append({"name": "user9"})
    hashed.clear()
    second = run(changed, memory=first.outputs["memory"])
    assert [p for p, _ in hashed].count("another-password-456") == 1 and len(hashed) == 2
    line = next(x for x in accounts_of(second).splitlines() if x.startswith("user1@example1.local|"))
    assert pw.verify_password("another-password-456", line.split("|", 1)[1])


def test_a_tampered_memory_costs_time_never_correctness(hashed):
    first = run(dev_config())
    memory = json.loads(unwrap(first.outputs["memory"]))
    forged = pw.hash_password("attacker", pw.derive_salt(b"x" * 32, "user1@example1.local"))
    memory["accounts"]["user1@example1.local"][0] = forged  # a valid-looking hash, the old fingerprint
    memory["accounts"]["user2@example1.local"][1] = "0" * 32  # a fingerprint made up
    hashed.clear()
    second = run(dev_config(), memory=json.dumps(memory))
    assert len(hashed) == 2  # both recomputed...
    assert accounts_of(second) == accounts_of(first)  # ...to exactly what a fresh deployment renders


def test_two_hundred_domains_register_exactly_the_expected_resources():
    program = run(scale_config(200, 1))
    counts = Counter(r.type for r in program.resources)
    assert counts == {
        "mailstack:index:MailStack": 1,
        "mailstack:index:MailDomain": 200,
        "docker:index/network:Network": 1,
        "docker:index/remoteImage:RemoteImage": 2,  # the mail server and VPN images
        "mailstack:index:WireGuardVpn": 1,
        "random:index/randomBytes:RandomBytes": 200 + 1 + 3,  # a seed per domain, the VPN's keys
        "docker:index/volume:Volume": 4 * 200,
        "docker:index/container:Container": 2 * 200 + 1,  # a writer and a server per domain, the VPN
        "pulumi:index:Stash": 200,
    }
    memory = json.loads(unwrap(program.outputs["memory"]))
    assert len(memory["addresses"]) == 200 and len(memory["accounts"]) == 200
    servers = [r for r in program.resources if r.name.endswith("-server")]
    assert len({unwrap(r.inputs)["networksAdvanced"][0]["ipv4Address"] for r in servers}) == 200
