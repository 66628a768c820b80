"""Fixtures for the component tests: the real program under Pulumi mocks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.components.harness import (
    Program,
    StackMocks,
    dev_config,
    prod_config,
    run_program,
    three_domain_config,
    unwrap,
)


def run(config: dict[str, Any], stack: str = "dev", memory: Any = None) -> Program:
    """Run the program with ``config`` (passwords marked secret, as the CLI does).

    ``memory`` is the ``memory`` output of the stack's last completed update, as the engine would
    answer the program's read of its own stack (``None``: the stack has none, a first deployment).
    """
    outputs = {} if memory is None else {"memory": unwrap(memory)}
    return run_program(
        copy.deepcopy(config),
        stack=stack,
        secret_keys=("mailstack:passwords",),
        mocks=StackMocks(stack_outputs=outputs),
    )


@pytest.fixture(scope="module")
def dev_program() -> Program:
    """The dev stack, run once per module."""
    return run(dev_config())


@pytest.fixture(scope="module")
def three_program() -> Program:
    """The three-domain stack, run once per module."""
    return run(three_domain_config())


@pytest.fixture(scope="module")
def prod_program() -> Program:
    """The production example stack, run once per module."""
    return run(prod_config(), stack="prod")
