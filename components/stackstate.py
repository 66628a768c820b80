"""What the program reads from Pulumi before it declares anything: the stack configuration and memory.

``read_config`` returns every ``mailstack:*`` value (so that a typo in a key name is reported, not
ignored) and the secret passwords apart. ``read_memory`` reads the stack's own outputs of its last
completed update through a stack reference to itself (the engine's ``readStackOutputs``, the call
behind ``pulumi.StackReference``, made synchronously so that the whole model, addresses included,
is known before the first resource is declared) and returns the parsed ``config.memory.Memory``.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from config import memory as mem

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
"""The engine's builtin function that reads a stack's outputs (what a StackReference reads)."""


def read_config(namespace: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return every ``<namespace>:*`` value (JSON decoded) except passwords, and the passwords map.

    Passwords are read once, only to validate them; afterwards they travel as a secret Output.
    """
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
    return raw, passwords


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
