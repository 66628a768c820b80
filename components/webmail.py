"""Webmail: Roundcube in front of one domain's mail server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.common import docker_labels, healthcheck
from config import roundcube as rc
from config.model import Domain, StackConfig

HEALTH_INTERVAL_SECONDS = 10
HEALTH_TIMEOUT_SECONDS = 3
HEALTH_RETRIES = 5
STOP_GRACE_SECONDS = 30
"""Time Roundcube (Apache, its SQLite database open) gets to stop before it is killed."""
HEALTH_START_PERIOD_SECONDS = 30
"""Covers the entrypoint's copy of Roundcube into the docroot and the database initialisation."""
WAIT_TIMEOUT_SECONDS = 120
"""How long Pulumi waits for the webmail to become healthy; longer than the start period."""


@dataclass
class WebmailArgs:
    """Inputs of a Webmail."""

    stack: StackConfig
    """The whole validated stack (TLS mode, message size limit, protection of data)."""
    domain: Domain
    """The domain this webmail serves; it must have ``webmail`` set."""
    network_name: pulumi.Input[str]
    """Name of the shared Docker network (the mail server is reached there by alias)."""
    image_id: pulumi.Input[str]
    """Image id of the pinned Roundcube image (``RemoteImage.image_id``, one per stack)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """Resources that must exist first, typically the domain's mail server container."""


class Webmail(pulumi.ComponentResource):
    """Roundcube (apache) for one domain, talking to that domain's server over the stack network.

    Its DES key is a ``random.RandomPassword`` kept in state, so it survives container re-creates
    (a new key would invalidate every session and stored encrypted preference); it reaches the
    container only as the image's secret file ``/run/secrets/roundcube_des_key``, never as
    environment. The SQLite database lives on a named volume kept like the mail volumes.
    """

    url: pulumi.Output[str]
    """The webmail URL on the Docker host (``http://127.0.0.1:8081/``)."""
    container_name: pulumi.Output[str]
    """Docker name of the webmail container."""

    def __init__(self, name: str, args: WebmailArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the DES key, database volume and Roundcube container of ``args.domain``."""
        super().__init__("mailstack:index:Webmail", name, None, opts)
        stack, domain = args.stack, args.domain
        if domain.webmail is None:
            raise ValueError(f"{domain.domain} has no webmail configured (domains[].webmail.port)")
        prefix = stack.prefix()
        labels = {"mailstack.stack": stack.stack, "mailstack.domain": domain.domain}
        child = pulumi.ResourceOptions(parent=self)

        # Exactly 24 characters (the default cipher's key length); letters and digits only, so the
        # key needs no quoting anywhere. The image reads the file without trimming: no newline.
        des_key = random.RandomPassword(
            f"{name}-des-key", length=rc.DES_KEY_LENGTH, special=False, opts=child
        )

        db_volume = docker.Volume(
            f"{name}-db",
            name=f"{prefix}-{domain.slug}-webmail-db",
            labels=docker_labels({**labels, "mailstack.volume": "webmail-db"}, docker.VolumeLabelArgs),
            opts=pulumi.ResourceOptions(parent=self, protect=stack.protect_data, retain_on_delete=True),
        )

        env = rc.webmail_env(stack, domain)
        container_name = f"{prefix}-webmail-{domain.server}"
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=args.image_id,
            envs=[f"{k}={v}" for k, v in sorted(env.items())],
            uploads=[
                # Read by Apache's PHP workers (www-data), so world-readable inside the container.
                docker.ContainerUploadArgs(
                    file=rc.DES_KEY_PATH, content=pulumi.Output.secret(des_key.result), permissions="0444"
                ),
                docker.ContainerUploadArgs(
                    file=f"{rc.CONFIG_DIR}/{rc.CONFIG_FILE}",
                    content=rc.render_config_php(stack, domain),
                    permissions="0644",
                ),
                *_edge_uploads(stack, domain),
            ],
            ports=[
                docker.ContainerPortArgs(
                    internal=rc.HTTP_PORT, external=domain.webmail.port, ip=domain.bind_address
                )
            ]
            if domain.webmail.port is not None
            else [],
            volumes=[docker.ContainerVolumeArgs(volume_name=db_volume.name, container_path=rc.DB_DIR)],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=args.network_name,
                    aliases=[
                        f"webmail-{domain.server}",
                        *([domain.webmail.alias] if domain.webmail.alias else []),
                    ],
                    # Behind the edge: a fixed address, the one Dovecot trusts (login_trusted_networks).
                    ipv4_address=_edge_address(stack, domain),
                )
            ],
            healthcheck=healthcheck(
                rc.HEALTHCHECK,
                interval=HEALTH_INTERVAL_SECONDS,
                timeout=HEALTH_TIMEOUT_SECONDS,
                retries=HEALTH_RETRIES,
                start_period=HEALTH_START_PERIOD_SECONDS,
            ),
            labels=docker_labels({**labels, "mailstack.role": "webmail"}, docker.ContainerLabelArgs),
            restart="unless-stopped",
            # Stop with a grace period on replace and destroy (the provider's default is 0 s: killed at once).
            stop_timeout=STOP_GRACE_SECONDS,
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            must_run=True,
            # Fixed name and host port: the old container must go before its replacement starts.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on), delete_before_replace=True
            ),
        )

        self.url = pulumi.Output.from_input(rc.webmail_url(domain, stack))
        self.container_name = container.name
        self.resources = {"container": container, "db": db_volume, "des_key": des_key}
        self.register_outputs({"url": self.url, "containerName": self.container_name})


def _edge_uploads(stack: StackConfig, domain: Domain) -> list[docker.ContainerUploadArgs]:
    """The client-address plugin of mailstack, for a webmail the HTTPS edge serves."""
    if not rc.served_by_edge(stack, domain):
        return []
    return [
        docker.ContainerUploadArgs(
            file=rc.CLIENT_IP_PLUGIN_PATH, content=rc.client_ip_plugin(), permissions="0644"
        )
    ]


def _edge_address(stack: StackConfig, domain: Domain) -> str | None:
    """The webmail's fixed address on the stack network when the edge serves it (else Docker assigns one)."""
    if stack.edge is None or not rc.served_by_edge(stack, domain):
        return None
    return str(stack.edge.webmail_addresses[domain.domain])
