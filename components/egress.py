"""A domain's own egress network: its server sends mail from its own public address (opt-in).

Docker sends a container's outgoing connections from the host's default-route address (source NAT per
network), not from the address its ports are published on. A bridge network with the option
``com.docker.network.host_ipv4`` makes that source address the given one. A server attached to the stack
network (to reach its peers) and to its own egress network must take its default route from the latter:
``gw_priority`` does that, but only Docker Engine 28 and newer honour it (older engines ignore the field
silently), which is why preview warns about every domain with its own ``egress`` (``StackConfig.warnings``).
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.common import docker_labels
from config.model import Domain, StackConfig

HOST_IPV4_OPTION = "com.docker.network.host_ipv4"
"""Bridge driver option: the host address used as the source of the network's outgoing traffic."""
EGRESS_GW_PRIORITY = 10
"""Higher than the stack network's (0): the egress network provides the server's default route."""


def egress_networks(
    name: str, stack: StackConfig, domain: Domain, parent: pulumi.Resource
) -> list[docker.ContainerNetworksAdvancedArgs]:
    """The extra network attachment of ``domain``'s server, or none when it uses the stack's egress."""
    auth = stack.deliverability.of(domain.domain).dns
    if not auth.own_egress or auth.egress is None:
        return []
    network = docker.Network(
        f"{name}-egress-network",
        name=f"{stack.prefix()}-{domain.slug}-egress",
        driver="bridge",
        options={HOST_IPV4_OPTION: auth.egress.address},
        labels=docker_labels(
            {
                "mailstack.stack": stack.stack,
                "mailstack.domain": domain.domain,
                "mailstack.network": "egress",
            },
            docker.NetworkLabelArgs,
        ),
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )
    return [docker.ContainerNetworksAdvancedArgs(name=network.name, gw_priority=EGRESS_GW_PRIORITY)]
