"""The pack's layout, metadata and per-stack enforcement files."""

from __future__ import annotations

import ast
import os
import re
import select
import subprocess
import sys
from importlib import metadata

import pytest
import yaml
from pulumi_policy import EnforcementLevel, StackValidationPolicy

from policy.mailstack_policies import DEFAULT_ENFORCEMENT, POLICIES, PROD_ONLY
from tests.policy.packrun import POLICY_DIR, load_config, reconcile

NAMES = {p.name for p in POLICIES}


def test_policies_have_unique_names_and_one_sentence_descriptions() -> None:
    assert len(NAMES) == len(POLICIES) == 13
    for p in POLICIES:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", p.name), p.name
        assert p.description.endswith(".") and p.description.count(". ") == 0, p.description
        assert p.severity is not None


def test_stack_policies_are_the_graph_rules() -> None:
    stack = {p.name for p in POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack == {
        "mail-data-protected",
        "mailserver-hostnames",
        "mail-routing",
        "unique-host-ports-and-subnets",
        "dkim-signing",
        "webmail-behind-edge",
    }


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_config_files_name_only_real_policies_and_properties(name: str) -> None:
    config = load_config(name)
    assert config is not None
    assert set(config) - {"all"} <= NAMES
    reconcile(config)  # raises on an unknown property or a wrong type


def test_dev_is_advisory_and_not_production() -> None:
    result = reconcile(load_config("dev"))
    assert {level for level, _ in result.values()} == {EnforcementLevel.ADVISORY}
    assert {name: props for name, (_, props) in result.items() if props} == {
        p: {"production": False} for p in PROD_ONLY
    }


def test_prod_is_mandatory_and_production() -> None:
    result = reconcile(load_config("prod"))
    assert {level for level, _ in result.values()} == {EnforcementLevel.MANDATORY}
    assert {name: props for name, (_, props) in result.items() if props} == {
        p: {"production": True} for p in PROD_ONLY
    }


def test_without_a_config_file_the_pack_is_strict() -> None:
    assert DEFAULT_ENFORCEMENT == EnforcementLevel.MANDATORY
    result = reconcile(None)
    assert {level for level, _ in result.values()} == {EnforcementLevel.MANDATORY}
    assert all(result[p][1] == {"production": True} for p in PROD_ONLY)


def test_reconcile_rejects_typos() -> None:
    with pytest.raises(ValueError, match="unknown policy config property"):
        reconcile({"no-plaintext-exposure": {"prod": True}})
    with pytest.raises(ValueError, match="expected a boolean"):
        reconcile({"no-plaintext-exposure": {"production": "yes"}})
    with pytest.raises(ValueError, match="not an enforcement level"):
        reconcile({"all": "blocking"})


def test_pulumi_policy_yaml_and_requirements() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["description"]
    pins = dict(
        line.split("==")
        for line in (POLICY_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["pulumi-policy"] == "1.21.0" == metadata.version("pulumi-policy")
    assert pins["passlib"] == metadata.version("passlib")
    assert pins["pulumi"] == metadata.version("pulumi")


def test_main_only_builds_the_pack() -> None:
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    names = [ast.unparse(c.value.func) for c in calls]
    assert names == ["sys.path.insert", "PolicyPack"], names
    assert all(isinstance(n, ast.Import | ast.ImportFrom | ast.Expr) for n in tree.body)


def test_main_starts_the_policy_server() -> None:
    """``policy/__main__.py`` builds the pack (names, policies valid) and serves it, printing its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    proc = subprocess.Popen(
        [sys.executable, str(POLICY_DIR / "__main__.py")],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the policy pack printed no port within 30 s"
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit() and int(line) > 0, line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
