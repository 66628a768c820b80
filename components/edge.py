"""HttpsEdge: the stack's one Caddy, and CertificateWait: a mail server's start waits for its certificate.

The edge's Caddyfile reaches it through a config volume that a short-lived writer (the Caddy image, no
network) fills after ``caddy validate`` accepted the new file; the running edge notices the change itself
(``caddy run --watch``), so a new domain never restarts it. Nothing of the Caddyfile is an input of the
edge container: it is replaced only when its image, ports or volumes change.

Each mail server of a ``tls: acme`` stack is created only after a one-shot container of the mail server
image found its certificate and key in the edge's data volume (docker-mailserver refuses to start
without them). Both one-shot containers are checked the way the mail servers' config writers are: the
exit code is checked in an ``apply`` whose result feeds a ``pulumi.Stash`` gate, and what must wait
depends on the gate only, never on the one-shot container's outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.common import docker_labels, gate_on_success, healthcheck, one_shot_failure
from config import caddy
from config.edge import host_ports
from config.model import Domain, StackConfig

STAGING = "/mailstack/staging"
WRITER_SCRIPT = f"""set -eu
src="${{MAILSTACK_STAGING:-{STAGING}}}/{caddy.CADDYFILE}"
dir="${{MAILSTACK_CONFIG_DIR:-{caddy.CONFIG_DIR}}}"
dst="$dir/{caddy.CADDYFILE}"
tmp="$dir/.{caddy.CADDYFILE}.mailstack-tmp"
# A file the running edge cannot load would stop its --watch for good: validate before installing.
if ! out="$(caddy validate --config "$src" --adapter caddyfile 2>&1)"; then
  printf '%s\\n' "$out" | tail -n 20 >&2
  echo "mailstack: the generated Caddyfile does not validate; $dst was not changed" >&2
  exit 1
fi
install -m 0644 "$src" "$tmp"
mv -f "$tmp" "$dst"
sync
echo "mailstack: wrote $dst"
"""
"""Validates the staged Caddyfile with the edge's own Caddy, then renames it into place (atomic)."""

WAIT_SCRIPT = """set -u
deadline=$((SECONDS + MAILSTACK_TIMEOUT))
until [ -s "$MAILSTACK_CERT" ] && [ -s "$MAILSTACK_KEY" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "mailstack: no certificate for $MAILSTACK_HOST after ${MAILSTACK_TIMEOUT}s in the edge's data volume" >&2
    exit 1
  fi
  sleep 2
done
echo "mailstack: the certificate of $MAILSTACK_HOST is there:" \\
  "$(openssl x509 -noout -enddate -fingerprint -sha256 -in "$MAILSTACK_CERT" 2>&1 | tr '\\n' ' ')"
"""
"""Waits (bounded) for the certificate and key files; prints the certificate's expiry and fingerprint."""

EDGE_STOP_SECONDS = 30
HEALTH_INTERVAL_SECONDS = 10
HEALTH_TIMEOUT_SECONDS = 3
HEALTH_RETRIES = 3
HEALTH_START_PERIOD_SECONDS = 10
WAIT_TIMEOUT_SECONDS = 60
"""How long Pulumi waits for the edge to become healthy."""
HEALTHCHECK = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{caddy.HEALTH_PORT}/"]
"""The Caddyfile's loopback health site, fetched with the image's busybox wget."""


def edge_container_name(stack: StackConfig) -> str:
    """Docker name of the stack's edge container."""
    return f"{stack.prefix()}-edge"


@dataclass
class HttpsEdgeArgs:
    """Inputs of the HttpsEdge."""

    stack: StackConfig
    """The validated stack; ``stack.edge`` must be set."""
    network_name: pulumi.Input[str]
    """Name of the shared Docker network (the webmails are reached there)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Docker labels every object carries (``mailstack.stack``)."""


class HttpsEdge(pulumi.ComponentResource):
    """Caddy in front of the stack: HTTPS for the webmails, MTA-STS, autoconfig, the mail certificates."""

    container_name: pulumi.Output[str]
    """Docker name of the edge container."""
    data_volume_name: pulumi.Output[str]
    """Docker name of the edge's data volume (certificates, keys, the ACME account)."""
    config_revision: pulumi.Output[str]
    """Digest of the Caddyfile; resolves only after the writer installed it."""
    container: docker.Container
    """The edge container (mail servers' certificate waits run after it)."""
    gate: pulumi.Stash
    """Resolves once the current Caddyfile is installed."""

    def __init__(self, name: str, args: HttpsEdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the image, volumes, Caddyfile writer, gate and edge container."""
        super().__init__("mailstack:index:HttpsEdge", name, None, opts)
        stack = args.stack
        edge = stack.edge
        if edge is None:
            raise ValueError("HttpsEdge needs a stack with mailstack:edge")
        prefix = stack.prefix()
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)

        image = docker.RemoteImage(f"{name}-image", name=edge.image, keep_locally=True, opts=child)
        # Certificates and the ACME account must survive everything (Let's Encrypt's rate limits).
        data = docker.Volume(
            f"{name}-data",
            name=f"{prefix}-edge-data",
            labels=docker_labels({**labels, "mailstack.volume": "edge-data"}, docker.VolumeLabelArgs),
            opts=pulumi.ResourceOptions(parent=self, protect=stack.protect_data, retain_on_delete=True),
        )
        config = docker.Volume(
            f"{name}-config",
            name=f"{prefix}-edge-config",
            labels=docker_labels({**labels, "mailstack.volume": "edge-config"}, docker.VolumeLabelArgs),
            opts=child,
        )

        caddyfile = caddy.render_caddyfile(stack, edge)
        digest = hashlib.sha256(caddyfile.encode()).hexdigest()[:16]
        writer = docker.Container(
            f"{name}-config-writer",
            name=f"{prefix}-edge-config-{digest}",
            image=image.image_id,
            entrypoints=["/bin/sh", "-c", WRITER_SCRIPT, "mailstack-edge-writer"],
            # caddy validate provisions the config: keep its scratch state out of the image's volumes.
            envs=["XDG_DATA_HOME=/tmp/caddy-validate/data", "XDG_CONFIG_HOME=/tmp/caddy-validate/config"],
            uploads=[
                docker.ContainerUploadArgs(
                    file=f"{STAGING}/{caddy.CADDYFILE}", content=caddyfile, permissions="0644"
                )
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=config.name, container_path=caddy.CONFIG_DIR)],
            network_mode="none",
            attach=True,
            must_run=False,
            logs=True,
            restart="no",
            labels=docker_labels(
                {**labels, "mailstack.role": "edge-config-writer"}, docker.ContainerLabelArgs
            ),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        container_name = edge_container_name(stack)

        self.config_revision, self.gate = gate_on_success(
            f"{name}-config-gate",
            writer,
            digest,
            lambda code, logs, urn: one_shot_failure(
                stack.stack,
                f"the edge's Caddyfile writer exited with status {code}, so {container_name} keeps "
                "its previous configuration (or is not created)",
                logs,
                urn,
            ),
            parent=self,
        )

        # Declared in the order a refresh stores them (by container port; Docker keeps the bindings of one
        # port in creation order): the provider's ports comparison matches a stored port with the first
        # declared one of the same container port, so with 80 on two addresses any other order would
        # show a change, and so a replacement, on every preview after a refresh.
        ports = [
            docker.ContainerPortArgs(internal=port.container_port, external=port.port, ip=port.bind_address)
            for _, port in sorted(host_ports(edge), key=lambda item: item[1].container_port)
        ]
        self.container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=image.image_id,
            command=list(caddy.RUN_COMMAND),
            ports=ports,
            volumes=[
                docker.ContainerVolumeArgs(volume_name=data.name, container_path=caddy.DATA_DIR),
                docker.ContainerVolumeArgs(
                    volume_name=config.name, container_path=caddy.CONFIG_DIR, read_only=True
                ),
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=str(edge.address))
            ],
            healthcheck=healthcheck(
                HEALTHCHECK,
                interval=HEALTH_INTERVAL_SECONDS,
                timeout=HEALTH_TIMEOUT_SECONDS,
                retries=HEALTH_RETRIES,
                start_period=HEALTH_START_PERIOD_SECONDS,
            ),
            labels=docker_labels({**labels, "mailstack.role": "edge"}, docker.ContainerLabelArgs),
            restart="unless-stopped",
            stop_timeout=EDGE_STOP_SECONDS,
            destroy_grace_seconds=EDGE_STOP_SECONDS,
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            must_run=True,
            # Fixed name and host ports: the old container must go before its replacement starts.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gate], delete_before_replace=True),
        )
        self.container_name = self.container.name
        self.data_volume_name = data.name
        self.resources = {
            "container": self.container,
            "writer": writer,
            "gate": self.gate,
            "data": data,
            "config": config,
            "image": image,
        }
        self.register_outputs(
            {
                "containerName": self.container_name,
                "dataVolume": self.data_volume_name,
                "configRevision": self.config_revision,
            }
        )


@dataclass
class CertificateWaitArgs:
    """Inputs of a CertificateWait."""

    stack: StackConfig
    """The validated stack (``tls: acme``, with its edge)."""
    domain: Domain
    """The domain whose mail server waits."""
    image_id: pulumi.Input[str]
    """The mail server image (it has bash and openssl)."""
    data_volume_name: pulumi.Input[str]
    """The edge's data volume, mounted read-only as the server will mount it."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """The edge container and its config gate: the wait starts once the edge serves the hostname."""


class CertificateWait(pulumi.ComponentResource):
    """A bounded wait for one mail server's certificate, and the gate its server depends on."""

    gate: pulumi.Stash
    """Resolves once the certificate and key exist."""

    def __init__(
        self, name: str, args: CertificateWaitArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Declare the one-shot wait container and its gate."""
        super().__init__("mailstack:index:CertificateWait", name, None, opts)
        stack, domain = args.stack, args.domain
        edge = stack.edge
        if edge is None:
            raise ValueError("CertificateWait needs a stack with mailstack:edge")
        env = caddy.mailserver_tls_env(edge, domain.hostname)
        timeout = edge.certificate_timeout
        labels = {"mailstack.stack": stack.stack, "mailstack.domain": domain.domain}
        wait = docker.Container(
            f"{name}-wait",
            name=f"{stack.prefix()}-{domain.server}-certificate-wait",
            image=args.image_id,
            entrypoints=["/bin/bash", "-c", WAIT_SCRIPT, "mailstack-certificate-wait"],
            envs=[
                f"MAILSTACK_HOST={domain.hostname}",
                f"MAILSTACK_CERT={env['SSL_CERT_PATH']}",
                f"MAILSTACK_KEY={env['SSL_KEY_PATH']}",
                f"MAILSTACK_TIMEOUT={timeout}",
            ],
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=args.data_volume_name, container_path=caddy.CERTIFICATE_MOUNT, read_only=True
                )
            ],
            network_mode="none",
            attach=True,
            must_run=False,
            logs=True,
            restart="no",
            labels=docker_labels({**labels, "mailstack.role": "certificate-wait"}, docker.ContainerLabelArgs),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(args.depends_on), delete_before_replace=True
            ),
        )
        public = edge.domain(domain.domain).public_address
        cause = (
            f"Likely causes: the A record of {domain.hostname} does not point at {public}, where the edge "
            f"listens, or ports 80 and 443 of {public} are closed to the internet (the ACME CA connects to "
            f"them). The edge's log names the failed challenge: docker logs {edge_container_name(stack)}"
        )

        checked, self.gate = gate_on_success(
            f"{name}-gate",
            wait,
            env["SSL_CERT_PATH"],
            lambda code, logs, urn: one_shot_failure(
                stack.stack,
                f"the certificate wait of {domain.server} ({domain.domain}) found no certificate for "
                f"{domain.hostname} within {timeout} s (status {code}), so the server was not created",
                logs,
                urn,
                cause,
            ),
            parent=self,
        )
        self.resources = {"wait": wait, "gate": self.gate}
        self.register_outputs({"certificate": checked})
