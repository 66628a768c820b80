"""The pack's package loads the way the Pulumi CLI loads it, and holds the pack's thirteen policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from policy.mailstack_policies import POLICIES
from tests.policy.packrun import POLICY_DIR

PACK_POLICIES = [
    "images-pinned",
    "mail-data-protected",
    "no-open-relay",
    "mailserver-hostnames",
    "mail-routing",
    "unique-host-ports-and-subnets",
    "no-plaintext-exposure",
    "webmail-behind-edge",
    "no-secrets-in-env",
    "no-weak-credentials",
    "health-and-restart",
    "wireguard-hardening",
    "dkim-signing",
]
"""The policies of the pack, in the order the pack reports them (the first eleven from before it became a
package with webmail-behind-edge after no-plaintext-exposure, then dkim-signing)."""

# Run from policy/ as the working directory, the project root not on sys.path (as `pulumi preview
# --policy-pack policy` runs __main__.py), with PolicyPack made to fail loudly: building it would start
# the policy server and block.
_IMPORT_EVERY_MODULE = """
import importlib, json, os, pkgutil, sys
root_on_path = [p for p in sys.path if os.path.abspath(p or '.') == os.path.dirname(os.getcwd())]
import pulumi_policy
def refuse(*args, **kwargs):
    raise SystemExit('PolicyPack was built on import: that starts the policy server')
pulumi_policy.PolicyPack.__init__ = refuse
import mailstack_policies
modules = sorted(m.name for m in pkgutil.iter_modules(mailstack_policies.__path__))
for name in modules:
    importlib.import_module('mailstack_policies.' + name)
import config.rules
print(json.dumps({
    'modules': modules,
    'policies': [p.name for p in mailstack_policies.POLICIES],
    'rules': config.rules.__file__,
    'root_on_path_before': root_on_path,
}))
"""


def test_pack_holds_the_same_thirteen_policies() -> None:
    assert [p.name for p in POLICIES] == PACK_POLICIES


def test_every_module_imports_from_the_pack_directory_without_starting_the_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PULUMI_")}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERY_MODULE],
        cwd=POLICY_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded["modules"] == [
        "credentials",
        "data_protection",
        "edge",
        "env_secrets",
        "health",
        "images",
        "mailfiles",
        "plaintext",
        "ports_and_subnets",
        "production",
        "relay",
        "resources",
        "routing",
        "shared_rules",
        "signing",
        "wireguard",
    ]
    assert loaded["policies"] == PACK_POLICIES
    assert loaded["root_on_path_before"] == []
    # config.rules comes from the project root (the package's one sys.path insertion), not policy/config/
    assert loaded["rules"] == str(POLICY_DIR.parent / "config" / "rules.py")
