"""mailstack: multi-domain self-hosted mail on Docker, declared with Pulumi.

Reads the ``mailstack:*`` stack configuration and the stack's memory, validates them into the
typed model (every problem is reported before any resource is declared), instantiates the stack
and exports what it exposes.
"""

from __future__ import annotations

import pulumi

from components.stack import MailStack, MailStackArgs
from components.stackstate import read_config, read_memory
from config.errors import ConfigError
from config.model import load_stack

NAMESPACE = "mailstack"

given = read_config(NAMESPACE)
try:
    stack_config = load_stack(
        pulumi.get_stack(),
        given.raw,
        given.passwords,
        read_memory(),
        backup_secrets=given.backup_secrets,
        backup_secrets_in_plain_text=given.backup_secrets_in_plain_text,
    )
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None  # a clean error at preview, without a traceback

mail = MailStack(
    NAMESPACE,
    MailStackArgs(
        config=stack_config,
        passwords=given.passwords or {},
        docker_host=pulumi.Config("docker").get("host"),
        backup_secrets=pulumi.Output.secret(given.backup_secrets or {}),
    ),
)
for name, value in mail.outputs.items():
    pulumi.export(name, value)
