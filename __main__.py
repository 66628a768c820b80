"""mailstack: multi-domain self-hosted mail on Docker, declared with Pulumi.

Reads the ``mailstack:*`` stack configuration, validates it into the typed model (every
problem is reported before any resource is declared), instantiates the components and
exports the stack outputs.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.stack import MailStack, MailStackArgs
from config.errors import ConfigError
from config.model import load_stack
from config.roundcube import webmail_url

NAMESPACE = "mailstack"


def read_raw_config() -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return every ``mailstack:*`` value (JSON decoded) except passwords, and the passwords map.

    All keys of the namespace are read, so that a typo in a key name is reported instead of
    silently ignored. Passwords are read once, only to validate them; afterwards they travel as
    a secret Output.
    """
    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    raw: dict[str, Any] = {}
    for full in sorted(keys):
        ns, _, key = full.partition(":")
        if ns != NAMESPACE or not key:
            continue
        value = runtime_config.get_config(full)
        try:
            raw[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raw[key] = value
    passwords = raw.pop("passwords", None)
    return raw, passwords


raw, passwords = read_raw_config()
try:
    stack_config = load_stack(pulumi.get_stack(), raw, passwords)
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None  # a clean error at preview, without a traceback

mail = MailStack(
    NAMESPACE,
    MailStackArgs(
        config=stack_config,
        passwords=pulumi.Output.secret(passwords or {}),
        docker_host=pulumi.Config("docker").get("host"),
    ),
)

pulumi.export("network", mail.network_name)
pulumi.export(
    "domains",
    {
        name: {
            "server": md.server,
            "hostname": md.hostname,
            "container": md.container_name,
            "endpoints": md.endpoints,
            "volumes": md.volumes,
            "commands": md.commands,
            "configRevision": md.config_revision,
            "webmailUrl": mail.webmails[name].url if name in mail.webmails else None,
        }
        for name, md in mail.domains.items()
    },
)
pulumi.export("webmails", {name: wm.url for name, wm in mail.webmails.items()})
pulumi.export(
    "generatedPasswords",
    pulumi.Output.secret(
        pulumi.Output.all(*(md.generated_passwords for md in mail.domains.values())).apply(
            lambda maps: {k: v for m in maps for k, v in m.items()}
        )
    ),
)


def _verify_target(domain: Any, account: dict[str, str]) -> dict[str, Any]:
    host = "127.0.0.1" if domain.bind_address == "0.0.0.0" else domain.bind_address
    return {
        "domain": domain.domain,
        "server": domain.server,
        "hostname": domain.hostname,
        "host": host,
        "ports": dict(domain.ports),
        "tls": stack_config.tls,
        "account": account,
        "webmail": {"url": webmail_url(domain)} if domain.webmail is not None else None,
    }


pulumi.export(
    "verify",
    pulumi.Output.secret(
        pulumi.Output.all(*(mail.domains[d.domain].check_account for d in stack_config.domains)).apply(
            lambda accounts: {
                "schema": 1,
                "stack": stack_config.stack,
                "domains": [
                    _verify_target(d, a) for d, a in zip(stack_config.domains, accounts, strict=True)
                ],
            }
        )
    ),
)

if mail.vpn is not None:
    pulumi.export("vpnEndpoint", mail.vpn.endpoint)
    pulumi.export("vpnServerPublicKey", mail.vpn.server_public_key)
    pulumi.export("vpnPeerConfigs", mail.vpn.peer_configs)
    for peer in stack_config.vpn.peers:  # one secret output per peer, like the lab's peerN.conf files
        pulumi.export(
            f"{peer}.conf", pulumi.Output.secret(mail.vpn.peer_configs.apply(lambda c, p=peer: c[p]))
        )
