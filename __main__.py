"""mailstack: multi-domain self-hosted mail on Docker, declared with Pulumi.

Reads the ``mailstack:*`` stack configuration and the stack's memory, validates them into the
typed model (every problem is reported before any resource is declared), instantiates the stack
and exports what it exposes.
"""

from __future__ import annotations

import pulumi

from components.stack import MailStack, MailStackArgs
from components.stackstate import read_config, read_memory, stored_as_secret
from config.errors import ConfigError
from config.model import load_stack

NAMESPACE = "mailstack"

raw, passwords = read_config(NAMESPACE)
backup_secrets = raw.pop("backupSecrets", None)  # like passwords: checked once, then a secret Output
try:
    stack_config = load_stack(
        pulumi.get_stack(),
        raw,
        passwords,
        read_memory(),
        backup_secrets=backup_secrets,
        backup_secrets_in_plain_text=backup_secrets is not None
        and not stored_as_secret(f"{NAMESPACE}:backupSecrets"),
    )
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None  # a clean error at preview, without a traceback

mail = MailStack(
    NAMESPACE,
    MailStackArgs(
        config=stack_config,
        passwords=passwords or {},
        docker_host=pulumi.Config("docker").get("host"),
        backup_secrets=pulumi.Output.secret(backup_secrets or {}),
    ),
)
for name, value in mail.outputs.items():
    pulumi.export(name, value)
