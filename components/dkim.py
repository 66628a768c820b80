"""DkimKeys: one RSA key per (domain, selector), kept in Pulumi state, and what the config writer installs.

Each listed selector of a domain gets a ``tls.PrivateKey`` (RSA, ``keySize`` bits) created once: losing
every volume never changes a published key, and the key's size is only read when it is created
(``ignore_changes``), so raising ``keySize`` affects new selectors only and never replaces a published key.
Only the ``sign`` selector's key is installed on the server, with Rspamd's signing configuration; the
records of every selector are published (``dns`` stack output), so a rotation never has a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from config import dkim as dk
from config.dkim import DkimSettings


@dataclass
class DkimKeysArgs:
    """Inputs of DkimKeys."""

    domain: str
    """The mail domain the keys sign for."""
    settings: DkimSettings
    """Its DKIM settings (enabled, selectors, sign, key size)."""


class DkimKeys(pulumi.ComponentResource):
    """The DKIM keys of one domain, and the writer uploads of the signing key."""

    records: pulumi.Output[dict[str, str]]
    """Selector to its DKIM TXT value (``v=DKIM1; k=rsa; p=...``, unsplit); public."""
    signing_public_key: pulumi.Output[str]
    """PEM public key of the ``sign`` selector (not secret); changes whenever the installed key changes."""
    key_files: list[str]
    """Files (relative to the config volume) the writer installs, in order, before the signing config."""

    def __init__(self, name: str, args: DkimKeysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare one key per selector of ``args.settings``."""
        super().__init__("mailstack:index:DkimKeys", name, None, opts)
        settings = args.settings
        keys = {
            sel: tls.PrivateKey(
                f"{name}-{sel}",
                algorithm="RSA",
                rsa_bits=settings.key_size,
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["rsaBits"]),
            )
            for sel in settings.selectors
        }
        self.records = pulumi.Output.all(
            *(keys[sel].public_key_pem.apply(dk.txt_value) for sel in settings.selectors)
        ).apply(lambda values: dict(zip(settings.selectors, values, strict=True)))
        signing = keys[settings.sign]
        self.signing_public_key = signing.public_key_pem
        self.key_files = [dk.key_file(args.domain, settings.sign)]
        self._signing_key = pulumi.Output.secret(signing.private_key_pem_pkcs8)
        self.keys = keys
        self.register_outputs({"records": self.records})

    def uploads(self, staging: str) -> list[docker.ContainerUploadArgs]:
        """Writer uploads of the signing key under ``staging``: secret content, mode 0640.

        The writer installs files under ``rspamd/dkim/`` owned by ``_rspamd`` (Rspamd reads them in place).
        """
        return [
            docker.ContainerUploadArgs(
                file=f"{staging}/{path}", content=self._signing_key, permissions=dk.KEY_MODE
            )
            for path in self.key_files
        ]


def dkim_keys(name: str, domain: str, settings: DkimSettings, parent: pulumi.Resource) -> DkimKeys | None:
    """The DkimKeys child of a MailDomain called ``name``, or ``None`` when DKIM is off for ``domain``."""
    if not settings.enabled:
        return None
    return DkimKeys(f"{name}-dkim", DkimKeysArgs(domain, settings), pulumi.ResourceOptions(parent=parent))
