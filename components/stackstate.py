"""What the program reads from Pulumi before it declares anything: the stack configuration and memory.

``read_config`` returns every ``mailstack:*`` value (so that a typo in a key name is reported, not
ignored) and the secret passwords apart. ``read_memory`` reads the stack's own outputs of its last
completed update through a stack reference to itself (the engine's ``readStackOutputs``, the call
behind ``pulumi.StackReference``, made synchronously so that the whole model, addresses included,
is known before the first resource is declared) and returns the parsed ``config.memory.Memory``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from config import memory as mem

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
"""The engine's builtin function that reads a stack's outputs (what a StackReference reads)."""


@dataclass(frozen=True)
class StackInput:
    """The stack configuration as the program reads it, with the secret maps apart from the rest."""

    raw: dict[str, Any]
    """Every ``<namespace>:*`` value (JSON decoded) except the secret maps."""
    passwords: dict[str, Any] | None
    """``<namespace>:passwords``, read once to validate it; afterwards it travels as secret Outputs."""
    backup_secrets: dict[str, Any] | None
    """``<namespace>:backupSecrets``, likewise."""
    backup_secrets_in_plain_text: bool
    """Whether ``backupSecrets`` was set without ``--secret`` (the model refuses that)."""


def read_config(namespace: str) -> StackInput:
    """Read every ``<namespace>:*`` value, so that a typo in a key name is reported instead of ignored."""
    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    raw: dict[str, Any] = {}
    for full in sorted(keys):
        ns, _, key = full.partition(":")
        if ns != namespace or not key:
            continue
        value = runtime_config.get_config(full)
        try:
            raw[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raw[key] = value
    passwords = raw.pop("passwords", None)
    backup_secrets = raw.pop("backupSecrets", None)
    return StackInput(
        raw=raw,
        passwords=passwords,
        backup_secrets=backup_secrets,
        backup_secrets_in_plain_text=backup_secrets is not None
        and not stored_as_secret(f"{namespace}:backupSecrets"),
    )


def stored_as_secret(key: str) -> bool:
    """Whether the full config ``key`` was set with ``--secret`` (the engine lists the secret keys)."""
    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def own_stack_name() -> str:
    """The fully qualified name of the running stack (``organization/mailstack/dev`` on a local backend)."""
    org = pulumi.get_organization() or "organization"  # the name local (DIY) backends use
    return f"{org}/{pulumi.get_project()}/{pulumi.get_stack()}"


def read_memory() -> mem.Memory:
    """The memory the last completed update of this stack exported (empty on a first deployment).

    A memory that cannot be read (an engine without the call, a secret it cannot decrypt) costs only
    stability, never correctness: the program falls back to the plain rules and says so.
    """
    try:
        result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": own_stack_name()})
    except Exception as err:  # any failure to read means: no memory
        return mem.Memory(notes=(f"could not read the stack's memory ({err}); using the plain rules",))
    outputs = (result.value or {}).get("outputs") or {}
    return mem.parse(outputs.get(mem.OUTPUT))
