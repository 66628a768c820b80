"""Fixtures for the component tests: the real program under Pulumi mocks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.components.harness import Program, dev_config, run_program


def three_domain_config() -> dict[str, Any]:
    """The dev stack plus a third domain with an alias and a user without a password."""
    config = dev_config()
    config["domains"].append(
        {
            "domain": "example3.local",
            "server": "mta3",
            "ports": {"smtp": 4525, "submission": 4587, "imap": 4143, "pop3": 4110},
            "users": [{"name": "user5", "quota": "500M"}, {"name": "user6"}],
            "aliases": {"info": ["user5@example3.local", "user1@example1.local"]},
        }
    )
    config["passwords"]["user5@example3.local"] = "s3cret-user5-pass"
    return config


def run(config: dict[str, Any], stack: str = "dev") -> Program:
    """Run the program with ``config`` (passwords marked secret, as the CLI does)."""
    return run_program(copy.deepcopy(config), stack=stack, secret_keys=("mailstack:passwords",))


@pytest.fixture(scope="module")
def dev_program() -> Program:
    """The dev stack, run once per module."""
    return run(dev_config())


@pytest.fixture(scope="module")
def three_program() -> Program:
    """The three-domain stack, run once per module."""
    return run(three_domain_config())
