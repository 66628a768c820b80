"""Shared helpers of the contract tests: real Debian programs run against mailstack's generated files.

Every test under ``tests/contract`` gets the ``contract`` marker. A test asks for a program with
``require_tool`` (a plain function, also available as a fixture of the same name): when the program is
missing the test is skipped with the Debian package to install, or fails when the environment variable
``MAILSTACK_REQUIRE_CONTRACT=1`` is set (CI), so a missing install step cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "MAILSTACK_REQUIRE_CONTRACT"
"""Set to ``1`` (CI) to turn a missing program into a failure instead of a skip."""

# Daemons and admin tools (postconf, postmap, wg-quick, ip) live in sbin, which a non-root PATH may lack.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_HERE = Path(__file__).resolve().parent


def contract_required() -> bool:
    """Tell whether missing programs must fail the contract tests (``MAILSTACK_REQUIRE_CONTRACT=1``)."""
    return os.environ.get(REQUIRE_ENV) == "1"


def require_tool(binary: str, package: str) -> str:
    """Return the absolute path of ``binary``; skip (or fail, in CI) naming the Debian ``package``."""
    path = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(_EXTRA_DIRS))
    if path:
        # Absolute, but symlinks kept: multi-call programs dispatch on the name they were called by.
        return os.path.abspath(path)
    message = (
        f"{binary} not found: install Debian package {package} with `make deps` "
        "(tools/install-debian-deps.sh)"
    )
    if contract_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(name="require_tool")
def require_tool_fixture() -> Callable[[str, str], str]:
    """Fixture form of ``require_tool``."""
    return require_tool


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory with ``contract``."""
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.contract)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """In CI (``MAILSTACK_REQUIRE_CONTRACT=1``) a contract test that skips for any reason fails instead."""
    outcome = yield
    report = outcome.get_result()
    if contract_required() and report.skipped and _HERE in Path(str(item.path)).resolve().parents:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"contract test skipped in CI ({REQUIRE_ENV}=1): {reason}"
