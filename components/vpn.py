"""WireGuardVpn: the lab's WireGuard server (linuxserver/wireguard) and the client configs of its peers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.common import docker_labels, healthcheck
from config import vpn as wg

HEALTH_INTERVAL_SECONDS = 30
HEALTH_TIMEOUT_SECONDS = 5
HEALTH_RETRIES = 3
STOP_GRACE_SECONDS = 30
"""Time the VPN container (s6 bringing wg0 down) gets to stop before it is killed."""
HEALTH_START_PERIOD_SECONDS = 20
"""The image's init (key-less in client mode) brings ``wg0`` up within seconds of the start."""


@dataclass
class WireGuardVpnArgs:
    """Inputs of a WireGuardVpn."""

    vpn: wg.VpnConfig
    """The validated ``mailstack:vpn`` settings (from :func:`config.vpn.parse_vpn`); must be enabled."""
    stack: str
    """Stack name; the container is named ``mailstack-<stack>-vpn``."""
    image: str
    """Image reference, pinned to an exact tag (default :data:`config.vpn.DEFAULT_IMAGE`)."""
    network_name: pulumi.Input[str]
    """Name of the shared Docker network; the container joins it with the alias ``vpn``."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Docker labels for the container (for example ``mailstack.stack``)."""


class WireGuardVpn(pulumi.ComponentResource):
    """One WireGuard server for the lab, with a key pair per peer kept as secrets in state.

    Private keys are 32 random bytes per key (``random.RandomBytes``, secret in state, stable across
    runs), clamped like ``wg genkey``; public keys are derived with X25519. The container runs
    linuxserver/wireguard in client mode (``PEERS`` unset) and brings up the generated ``wg0.conf``
    (uploaded as a secret), which carries its own NAT rules, so the image never regenerates it.
    """

    peer_configs: pulumi.Output[dict[str, str]]
    """Secret: client config text (``peerN.conf``) per peer name."""
    server_public_key: pulumi.Output[str]
    """The server's WireGuard public key (not secret)."""
    peer_public_keys: pulumi.Output[dict[str, str]]
    """Public key per peer name (not secret)."""
    endpoint: pulumi.Output[str]
    """``host:port`` the peers dial."""
    container_name: pulumi.Output[str]
    """Docker name of the VPN container."""

    def __init__(self, name: str, args: WireGuardVpnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the key material, the pinned image and the VPN container for ``args.vpn``."""
        super().__init__("mailstack:index:WireGuardVpn", name, None, opts)
        cfg = args.vpn
        if not cfg.enabled or not cfg.peers or cfg.endpoint is None:
            raise ValueError(
                "WireGuardVpn needs an enabled mailstack:vpn with an endpoint and at least one peer"
            )
        child = pulumi.ResourceOptions(parent=self)

        # Key material: one RandomBytes per key. Adding or removing a peer leaves the other keys alone.
        server_seed = random.RandomBytes(f"{name}-server-key", length=32, opts=child)
        peer_seeds = {
            peer: random.RandomBytes(f"{name}-peer-{peer}-key", length=32, opts=child) for peer in cfg.peers
        }
        server_private = pulumi.Output.secret(server_seed.base64).apply(wg.normalize_private_key)
        peer_private = {
            peer: pulumi.Output.secret(seed.base64).apply(wg.normalize_private_key)
            for peer, seed in peer_seeds.items()
        }

        # Public keys are plain functions of the private keys and are not secret.
        self.server_public_key = pulumi.Output.unsecret(server_private.apply(wg.public_key))
        self.peer_public_keys = pulumi.Output.unsecret(
            pulumi.Output.all(**peer_private).apply(
                lambda keys: {p: wg.public_key(keys[p]) for p in cfg.peers}
            )
        )

        server_conf = pulumi.Output.secret(
            pulumi.Output.all(server_private, self.peer_public_keys).apply(
                lambda values: wg.render_server_conf(cfg, values[0], values[1])
            )
        )
        self.peer_configs = pulumi.Output.secret(
            pulumi.Output.all(self.server_public_key, pulumi.Output.all(**peer_private)).apply(
                lambda values: {p: wg.render_peer_conf(cfg, p, values[1][p], values[0]) for p in cfg.peers}
            )
        )

        image = docker.RemoteImage(f"{name}-image", name=args.image, keep_locally=True, opts=child)
        container_name = f"mailstack-{args.stack}-vpn"
        env = wg.container_env(cfg)
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=image.image_id,
            envs=[f"{k}={v}" for k, v in sorted(env.items())],
            uploads=[
                docker.ContainerUploadArgs(file=wg.WG0_PATH, content=server_conf, permissions="0600"),
            ],
            capabilities=docker.ContainerCapabilitiesArgs(adds=["NET_ADMIN"]),
            sysctls={
                # Documented by the image for client mode (the mode mailstack uses).
                "net.ipv4.conf.all.src_valid_mark": "1",
                # Forward peer traffic from wg0 to the lab network (the NAT in wg0.conf needs it).
                "net.ipv4.ip_forward": "1",
            },
            ports=[
                docker.ContainerPortArgs(
                    internal=wg.CONTAINER_PORT, external=cfg.port, ip=cfg.bind_address, protocol="udp"
                )
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, aliases=["vpn"])],
            healthcheck=healthcheck(
                ["CMD", "wg", "show", "wg0"],
                interval=HEALTH_INTERVAL_SECONDS,
                timeout=HEALTH_TIMEOUT_SECONDS,
                retries=HEALTH_RETRIES,
                start_period=HEALTH_START_PERIOD_SECONDS,
            ),
            labels=docker_labels({**args.labels, "mailstack.role": "vpn"}, docker.ContainerLabelArgs),
            restart="unless-stopped",
            # Stop with a grace period on replace and destroy (the provider's default is 0 s: killed at once).
            stop_timeout=STOP_GRACE_SECONDS,
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            # Fixed name and host port: the old container must go before its replacement starts.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        self.endpoint = pulumi.Output.from_input(cfg.endpoint_with_port)
        self.container_name = container.name
        self.register_outputs(
            {
                "peer_configs": self.peer_configs,
                "server_public_key": self.server_public_key,
                "peer_public_keys": self.peer_public_keys,
                "endpoint": self.endpoint,
                "container_name": self.container_name,
            }
        )
