"""The whole policy pack against production and the lab with backups on (job, sidecars, marker accounts).

The backup job and the webmail-export sidecars are long-running containers: they must pass
``health-and-restart``, ``images-pinned``, ``no-secrets-in-env`` (the restic password and the sftp key are
files) and every other mandatory policy, in a full run and in a first preview with unknown values.
"""

from __future__ import annotations

import copy
import secrets
from collections import Counter
from typing import Any

from tests.components.harness import Program, dev_config, load_stack_file, run_program, unwrap
from tests.policy.packrun import evaluate, load_config, run_preview

SECRET_KEYS = ("mailstack:passwords", "mailstack:backupSecrets")
CONTAINER = "docker:index/container:Container"
KNOWN_HOSTS = (
    "backup.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAApolicytest\n-----END OPENSSH PRIVATE KEY-----\n"


def prod_with_backups() -> dict[str, Any]:
    config = load_stack_file("prod")
    config["passwords"] = {"admin@example.org": secrets.token_urlsafe(18)}
    config["backup"] = {
        "enabled": True,
        "repository": "sftp:mailstack@backup.example.net:/srv/restic/mailstack-prod",
        "knownHosts": KNOWN_HOSTS,
    }
    config["backupSecrets"] = {"password": secrets.token_urlsafe(24), "sshKey": SSH_KEY}
    return config


def run(config: dict[str, Any], stack: str) -> Program:
    return run_program(copy.deepcopy(config), stack=stack, secret_keys=SECRET_KEYS)


def roles(program: Program) -> Counter[str]:
    found: Counter[str] = Counter()
    for r in program.of_type(CONTAINER):
        labels = {i["label"]: i["value"] for i in unwrap(r.inputs.get("labels", []))}
        found[labels.get("mailstack.role", "")] += 1
    return found


def test_prod_with_backups_passes_every_mandatory_policy() -> None:
    program = run(prod_with_backups(), "prod")
    assert roles(program)["backup"] == 1
    assert evaluate(program, load_config("prod")) == []
    assert evaluate(program, None) == []  # without a config file everything is mandatory


def test_prod_with_backups_passes_in_a_first_preview() -> None:
    program = run_preview(prod_with_backups(), "prod", SECRET_KEYS)
    found = evaluate(program, load_config("prod"))
    assert [v for v in found if v.skipped] == [], "a validator tripped over an unknown value"
    assert found == []


def test_the_lab_with_backups_and_webmail_sidecars_adds_no_diagnostic() -> None:
    plain = evaluate(run(dev_config(), "dev"), load_config("dev"))
    config = dev_config()
    config["backup"] = {"enabled": True, "repository": "/srv/restic/mailstack-dev"}
    config["backupSecrets"] = {"password": "lab-only-restic-password"}
    program = run(config, "dev")
    assert roles(program)["webmail-export"] == 2 and roles(program)["backup"] == 1
    found = evaluate(program, load_config("dev"))
    # the lab's password123 accounts stay the only findings: the marker accounts have generated passwords
    assert Counter((v.policy, v.resource) for v in found) == Counter((v.policy, v.resource) for v in plain)
