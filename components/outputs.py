"""The stack outputs, shaped from the components: what ``__main__.py`` exports, nothing else.

- ``network``, ``domains`` (per domain: server, hostname, container, endpoints, volumes, commands,
  config revision, webmail URL) and ``webmails``: plain.
- ``dns``: the records each mail domain needs, by zone (``components/dnsoutput.py``): plain.
- ``generatedPasswords`` and ``verify`` (the targets ``make verify`` checks, schema 1): secret.
- ``vpnEndpoint``, ``vpnServerPublicKey``, ``vpnPeerConfigs`` and one ``<peer>.conf`` per peer when
  the VPN is on (the peer configs secret).
- ``memory``: secret JSON text, read back by the next run (``config.memory``).
- ``backup`` when backups are on (``components/backup.py``): plain, read by ``tools/backups``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pulumi

from components import edge_outputs
from components.dnsoutput import dns_records
from config import memory as mem
from config.model import Domain, StackConfig
from config.roundcube import webmail_url

if TYPE_CHECKING:
    from components.stack import MailStack

VERIFY_SCHEMA = 1
"""Layout version of the ``verify`` output (``tools/verify.py`` reads it)."""


def verify_target(stack: StackConfig, domain: Domain, account: dict[str, str]) -> dict[str, Any]:
    """One domain of the ``verify`` output: where to reach its server and which account to use."""
    host = "127.0.0.1" if domain.bind_address == "0.0.0.0" else domain.bind_address
    return {
        "domain": domain.domain,
        "server": domain.server,
        "hostname": domain.hostname,
        "host": host,
        "ports": dict(domain.ports),
        "tls": stack.tls,
        "account": account,
        "webmail": {"url": webmail_url(domain, stack)} if domain.webmail is not None else None,
    }


def memory_value(stack: StackConfig, accounts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """What this run remembers for the next one (``config.memory.render`` of its decisions)."""
    addresses = {mem.server_key(d.domain): d.address for d in stack.domains}
    addresses.update(edge_outputs.remembered_addresses(stack))
    return mem.render(addresses, accounts)


def stack_outputs(mail: MailStack) -> dict[str, Any]:
    """Every stack output of ``mail``, by output name."""
    cfg = mail.config
    outputs: dict[str, Any] = {
        "network": mail.network_name,
        "domains": {
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
        "webmails": {name: wm.url for name, wm in mail.webmails.items()},
        "dns": dns_records(cfg, mail.domains),
        "generatedPasswords": pulumi.Output.secret(
            pulumi.Output.all(*(md.generated_passwords for md in mail.domains.values())).apply(
                lambda maps: {k: v for m in maps for k, v in m.items()}
            )
        ),
        "verify": pulumi.Output.secret(
            pulumi.Output.all(*(mail.domains[d.domain].check_account for d in cfg.domains)).apply(
                lambda accounts: {
                    "schema": VERIFY_SCHEMA,
                    "stack": cfg.stack,
                    "domains": [verify_target(cfg, d, a) for d, a in zip(cfg.domains, accounts, strict=True)],
                }
            )
        ),
        # secret already (the account memories are); JSON text, the one value the next run reads back
        mem.OUTPUT: pulumi.Output.all(*(md.account_memory for md in mail.domains.values())).apply(
            lambda texts: mem.dump(
                memory_value(cfg, {a: tuple(e) for t in texts for a, e in json.loads(t).items()})
            )
        ),
    }
    if mail.edge is not None:
        outputs["edge"] = edge_outputs.edge_output(cfg, mail.edge)
    if mail.vpn is not None:
        vpn = mail.vpn
        outputs["vpnEndpoint"] = vpn.endpoint
        outputs["vpnServerPublicKey"] = vpn.server_public_key
        outputs["vpnPeerConfigs"] = vpn.peer_configs
        for peer in cfg.vpn.peers if cfg.vpn is not None else ():
            # one secret output per peer, like the original lab's peerN.conf files
            outputs[f"{peer}.conf"] = pulumi.Output.secret(vpn.peer_configs.apply(lambda c, p=peer: c[p]))
    if mail.backup is not None:  # what the backup tools read (no secret in it)
        outputs["backup"] = mail.backup.outputs
    return outputs
