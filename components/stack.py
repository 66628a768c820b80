"""MailStack: the whole stack (shared network and images, one MailDomain per domain)."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.backup import BackupJob, BackupJobArgs
from components.edge import CertificateWait, CertificateWaitArgs, HttpsEdge, HttpsEdgeArgs
from components.maildomain import MailDomain, MailDomainArgs
from components.outputs import stack_outputs
from components.vpn import WireGuardVpn, WireGuardVpnArgs
from components.webmail import Webmail, WebmailArgs
from config import hashing
from config.model import StackConfig


@dataclass
class MailStackArgs:
    """Inputs of the MailStack."""

    config: StackConfig
    """The validated stack configuration."""
    passwords: Mapping[str, str]
    """The explicit passwords (``mailstack:passwords``), as read from the secret config: they enter the
    resources only as secret Outputs, one per domain (a shared Output of every password would be walked
    once per domain by the SDK: quadratic in the number of domains)."""
    docker_host: str | None = None
    """``docker:host`` of the stack, only used in printed commands."""
    backup_secrets: pulumi.Input[Mapping[str, str]] | None = None
    """Secret ``mailstack:backupSecrets`` (restic password, backend credentials), when backups are on."""


GC_THRESHOLDS = (500_000, 100, 1000)
"""Collector thresholds while the program registers its resources (CPython's default is (700, 10, 10)).

Registration allocates many short-lived objects whose cycles the collector keeps scanning along with
everything still alive, so with the defaults its cost grows faster than the stack: measured under mocks
for 400 one-user domains, 25.9 s of CPU with the defaults, 14.6 s at (100000, 50, 1000), 10.9 s at these
values and 10.2 s with the collector off, at the same peak memory (486 MB against 478 MB)."""


def tune_gc() -> None:
    """Freeze what exists before registration (imports, the model) and make collections rare."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class MailStack(pulumi.ComponentResource):
    """The shared Docker network and images, and a MailDomain per configured domain."""

    network_name: pulumi.Output[str]
    """Name of the shared Docker network."""
    domains: dict[str, MailDomain]
    """The MailDomain components, by mail domain."""
    webmails: dict[str, Webmail]
    """The Webmail components, by mail domain (only domains with ``webmail``)."""
    vpn: WireGuardVpn | None
    """The WireGuard server, when ``mailstack:vpn.enabled``."""
    edge: HttpsEdge | None
    """The HTTPS edge, when the stack has one (``tls: acme`` or ``mailstack:edge.enabled``)."""
    config: StackConfig
    """The validated configuration the stack was built from."""
    outputs: dict[str, pulumi.Input]
    """The stack outputs by name (``components.outputs``), for ``__main__.py`` to export."""
    backup: BackupJob | None
    """The scheduled backup job, when ``mailstack:backup.enabled``."""

    def __init__(self, name: str, args: MailStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the network, the pinned images and every mail domain."""
        super().__init__("mailstack:index:MailStack", name, None, opts)
        tune_gc()
        cfg = args.config
        self.config = cfg
        child = pulumi.ResourceOptions(parent=self)
        for warning in cfg.warnings:
            pulumi.log.warn(warning, resource=self)
        net = cfg.network
        network = docker.Network(
            f"{name}-network",
            name=net.name,
            driver="bridge",
            ipam_configs=[
                docker.NetworkIpamConfigArgs(
                    subnet=str(net.subnet), ip_range=str(net.dynamic_range), gateway=str(net.gateway)
                )
            ],
            labels=[docker.NetworkLabelArgs(label="mailstack.stack", value=cfg.stack)],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        mail_image = docker.RemoteImage(
            f"{name}-mailserver-image", name=cfg.images["mailserver"], keep_locally=True, opts=child
        )
        self.network_name = network.name
        self.edge: HttpsEdge | None = None
        if cfg.edge is not None:
            self.edge = HttpsEdge(
                "edge",
                HttpsEdgeArgs(stack=cfg, network_name=network.name, labels={"mailstack.stack": cfg.stack}),
                opts=child,
            )
        self.domains = {}
        # Fresh hashes (those the memory cannot prove current) in a process pool when there are many.
        expected = sum(1 for d in cfg.domains for u in d.users if u.address not in cfg.memory.accounts)
        hasher = hashing.Hasher(parallel=expected >= hashing.PARALLEL_THRESHOLD, users=len(cfg.domains))
        for d in cfg.domains:
            certificate_gates: list[pulumi.Resource] = []
            if cfg.tls == "acme" and self.edge is not None:
                wait = CertificateWait(
                    f"{d.domain}-certificate",
                    CertificateWaitArgs(
                        stack=cfg,
                        domain=d,
                        image_id=mail_image.image_id,
                        data_volume_name=self.edge.data_volume_name,
                        depends_on=[self.edge.container, self.edge.gate],
                    ),
                    opts=child,
                )
                certificate_gates.append(wait.gate)
            self.domains[d.domain] = MailDomain(
                d.domain,
                MailDomainArgs(
                    stack=cfg,
                    domain=d,
                    network_name=network.name,
                    image_id=mail_image.image_id,
                    passwords=pulumi.Output.secret(
                        {u.address: args.passwords[u.address] for u in d.users if u.address in args.passwords}
                    ),
                    hasher=hasher,
                    docker_host=args.docker_host,
                    certificate_volume=self.edge.data_volume_name
                    if cfg.tls == "acme" and self.edge is not None
                    else None,
                    start_after=certificate_gates,
                ),
                opts=child,
            )
        self.webmails = {}
        webmail_image_id: pulumi.Output[str] | None = None
        if any(d.webmail for d in cfg.domains):
            webmail_image = docker.RemoteImage(
                f"{name}-webmail-image", name=cfg.images["webmail"], keep_locally=True, opts=child
            )
            webmail_image_id = webmail_image.image_id
            for d in cfg.domains:
                if d.webmail is not None:
                    self.webmails[d.domain] = Webmail(
                        f"{d.domain}-webmail",
                        WebmailArgs(
                            stack=cfg,
                            domain=d,
                            network_name=network.name,
                            image_id=webmail_image.image_id,
                            depends_on=[self.domains[d.domain]],
                        ),
                        opts=child,
                    )
        self.vpn: WireGuardVpn | None = None
        if cfg.vpn is not None and cfg.vpn.enabled:
            self.vpn = WireGuardVpn(
                "vpn",
                WireGuardVpnArgs(
                    vpn=cfg.vpn,
                    stack=cfg.stack,
                    image=cfg.images["vpn"],
                    network_name=network.name,
                    labels={"mailstack.stack": cfg.stack},
                ),
                opts=child,
            )
        self.backup = None
        if cfg.backup is not None:
            backup_image = docker.RemoteImage(
                f"{name}-backup-image", name=cfg.images["backup"], keep_locally=True, opts=child
            )
            self.backup = BackupJob(
                "backup",
                BackupJobArgs(
                    stack=cfg,
                    network_name=network.name,
                    domains=self.domains,
                    webmails=self.webmails,
                    image_id=backup_image.image_id,
                    webmail_image_id=webmail_image_id,
                    secrets=pulumi.Output.secret(args.backup_secrets or {}),
                    docker_host=args.docker_host,
                    depends_on=list(self.domains.values()),
                ),
                opts=child,
            )
        self.outputs = stack_outputs(self)
        self.register_outputs({"networkName": self.network_name})
