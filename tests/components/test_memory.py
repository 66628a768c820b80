"""The stack's memory through the real program: read from its own stack, exported secret, nothing moves."""

from __future__ import annotations

import json
import logging
from ipaddress import IPv4Address

import pytest
from pulumi import RunError

from config.addresses import hash_slot
from config.model import load_stack
from tests.components.conftest import run
from tests.components.harness import Secret, StackMocks, dev_config, run_program, unwrap

READ = "pulumi:pulumi:readStackOutputs"


def server_address(program, domain: str) -> str:
    (net,) = unwrap(program.named(f"{domain}-server").inputs)["networksAdvanced"]
    return net["ipv4Address"]


def test_the_program_reads_its_own_stack_before_declaring_anything():
    mocks = StackMocks()
    run_program(dev_config(), secret_keys=("mailstack:passwords",), mocks=mocks)
    assert mocks.calls == [(READ, {"name": "organization/mailstack/dev"})]


def test_memory_output_is_secret_versioned_and_names_every_server_address(dev_program):
    memory = dev_program.outputs["memory"]
    assert isinstance(memory, Secret) and isinstance(memory.value, str)  # compact JSON text
    value = json.loads(memory.value)
    assert value["schema"] == 1
    assert value["addresses"] == {
        f"server:{d}": server_address(dev_program, d) for d in ("example1.local", "example2.local")
    }


def test_remembered_addresses_are_used_by_the_server_and_its_peers():
    memory = json.loads(unwrap(run(dev_config()).outputs["memory"]))
    memory["addresses"]["server:example1.local"] = "172.28.77.7"  # where an earlier update put mta1
    program = run(dev_config(), memory=memory)
    assert server_address(program, "example1.local") == "172.28.77.7"
    mynetworks = {
        u["file"].rsplit("/", 1)[1]: u["content"]
        for u in unwrap(program.named("example2.local-config-writer").inputs)["uploads"]
    }["postfix-mynetworks.cidr"]
    assert "172.28.77.7/32 mta1" in mynetworks
    assert (
        json.loads(unwrap(program.outputs["memory"]))["addresses"]["server:example1.local"] == "172.28.77.7"
    )


def _colliding_domain(config: dict) -> str:
    """A domain name that hashes to example1.local's slot in the dev network's pool."""
    raw = {k: v for k, v in config.items() if k != "passwords"}
    net = load_stack("dev", raw).network
    first, last = net.static_pool()
    target = hash_slot("example1.local", first, last)
    return next(
        f"c{i}.example" for i in range(1_000_000) if hash_slot(f"c{i}.example", first, last) == target
    )


def test_a_colliding_domain_deploys_and_stays_when_the_other_goes():
    config = dev_config()
    other = _colliding_domain(config)
    config["domains"].append(
        {
            "domain": other,
            "server": "mta9",
            "ports": {"smtp": 9525, "submission": 9587, "imap": 9143},
            "users": [{"name": "u"}],
        }
    )
    first = run(config)  # no memory, yet no error: the newcomer takes the next free address
    a, b = server_address(first, "example1.local"), server_address(first, other)
    assert a == json.loads(unwrap(run(dev_config()).outputs["memory"]))["addresses"]["server:example1.local"]
    assert IPv4Address(b) == IPv4Address(a) + 1
    config["domains"].pop(0)  # example1.local leaves; its hash slot is free now
    config["passwords"] = {k: v for k, v in config["passwords"].items() if not k.endswith("@example1.local")}
    second = run(config, memory=first.outputs["memory"])
    assert server_address(second, other) == b  # remembered: it does not move into the freed slot
    without = run(config)  # without the memory the plain hash would have moved it
    assert server_address(without, other) == a


def test_a_newer_memory_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        program = run(dev_config(), memory={"schema": 99, "addresses": {}})
    assert "layout version 99" in caplog.text
    assert json.loads(unwrap(program.outputs["memory"]))["schema"] == 1  # and the run writes a fresh one


def test_a_failed_run_exports_no_memory():
    mocks = StackMocks(exits={"example1.local-config-writer": (1, "boom\n")})
    with pytest.raises(RunError) as caught:
        run_program(dev_config(), secret_keys=("mailstack:passwords",), mocks=mocks)
    # outputs are registered only when the program completes: the last completed update's memory stays
    assert caught.value.program.outputs == {}  # type: ignore[attr-defined]
