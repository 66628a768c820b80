"""MailDomain: one mail domain served by one docker-mailserver container."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.common import docker_labels, gate_on_success, healthcheck, one_shot_failure
from components.dkim import dkim_keys
from components.egress import egress_networks
from config import caddy, hashing
from config import dkim as dk
from config import passwords as pw
from config import postfix as pf
from config.model import Domain, StackConfig

WRITER_STAGING = "/mailstack/staging"
WRITER_SCRIPT = f"""set -euo pipefail
shopt -s nullglob
dst="${{MAILSTACK_CONFIG_DIR:-{pf.CONFIG_DIR}}}"
src="${{MAILSTACK_STAGING:-{WRITER_STAGING}}}"
if [ -n "${{MAILSTACK_SELF_SIGNED:-}}" ] && [ ! -s "$dst/ssl/$MAILSTACK_SELF_SIGNED-cert.pem" ]; then
  # tls: self-signed: one certificate per server, made once and kept in the config volume
  mkdir -p "$dst/ssl/demoCA"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$MAILSTACK_SELF_SIGNED" \\
    -addext "subjectAltName=DNS:$MAILSTACK_SELF_SIGNED" \\
    -keyout "$dst/ssl/.key.tmp" -out "$dst/ssl/.cert.tmp" 2>/dev/null
  chmod 0600 "$dst/ssl/.key.tmp"
  cp "$dst/ssl/.cert.tmp" "$dst/ssl/demoCA/cacert.pem"
  mv -f "$dst/ssl/.key.tmp" "$dst/ssl/$MAILSTACK_SELF_SIGNED-key.pem"
  mv -f "$dst/ssl/.cert.tmp" "$dst/ssl/$MAILSTACK_SELF_SIGNED-cert.pem"
  echo "mailstack: made a self-signed certificate for $MAILSTACK_SELF_SIGNED"
fi
staged=()
tmp_of() {{ printf '%s/.%s.mailstack-tmp' "$(dirname "$dst/$1")" "$(basename "$1")"; }}
fail() {{
  rm -f "${{staged[@]}}"
  echo "mailstack: $1; nothing in $dst was changed" >&2
  exit 1
}}
# 1. stage every file beside its target, with the permissions of its upload (accounts: 0600)
for name in "$@"; do
  tmp="$(tmp_of "$name")"
  if [ -e "$dst/$name" ] && [ ! -f "$dst/$name" ]; then
    fail "$dst/$name is not a regular file: remove it"
  fi
  mode="$(stat -c %a "$src/$name" 2>/dev/null)" || fail "$name is missing from the staged files"
  owner=()
  case "$name" in
    # Rspamd reads its DKIM keys in place, as {dk.RSPAMD_OWNER} (docker-mailserver warns at start otherwise)
    {dk.KEY_DIR}/*) owner=(-o {dk.RSPAMD_OWNER} -g {dk.RSPAMD_OWNER}) ;;
  esac
  mkdir -p "$(dirname "$tmp")" && install -m "$mode" "${{owner[@]}}" "$src/$name" "$tmp" \\
    || fail "could not stage $name"
  staged+=("$tmp")
done
# 2. rename each into place, in argument order (the accounts file, which triggers the reload, last)
for name in "$@"; do
  mv -f "$(tmp_of "$name")" "$dst/$name"
  echo "mailstack: wrote $dst/$name"
done
# Signing files mailstack no longer installs (DKIM off, a rotated key) are removed, after the new ones.
for old in "$dst/{dk.SIGNING_FILE}" "$dst/{dk.CONTROLLER_FILE}" "$dst"/{dk.KEY_DIR}/*.private.pem; do
  [ -e "$old" ] || continue
  keep=
  for name in "$@"; do [ "$dst/$name" = "$old" ] && keep=1; done
  if [ -z "$keep" ]; then rm -f "$old"; echo "mailstack: removed $old"; fi
done
sync
"""
"""Stages every file first and only then renames each into place, so that a failure leaves the config
volume as it was; each file keeps its upload's permissions (DKIM keys
owned by ``_rspamd``); the last argument's file is renamed last."""

MAILSERVER_STOP_SECONDS = 60
HEALTH_START_PERIOD_SECONDS = 150
"""Covers docker-mailserver's start, which waits up to 120 s for an account (docs/upstream.md, "Start-up")."""
HEALTH_WAIT_TIMEOUT_SECONDS = 300
"""How long Pulumi waits for the server to become healthy; longer than the start period."""


@dataclass
class MailDomainArgs:
    """Inputs of a MailDomain."""

    stack: StackConfig
    """The whole validated stack (routes and peer trust depend on the other domains)."""
    domain: Domain
    """The domain this component serves."""
    network_name: pulumi.Input[str]
    """Name of the shared Docker network."""
    image_id: pulumi.Input[str]
    """Image id of the pinned docker-mailserver image (``RemoteImage.image_id``)."""
    passwords: pulumi.Input[Mapping[str, str]]
    """Secret map of explicit passwords (full address to password) for this domain's users."""
    hasher: hashing.Hasher
    """Computes the hashes the stack's memory cannot prove current (shared by every domain of the run)."""
    docker_host: str | None = None
    """The ``docker:host`` of the stack, used only to print ready-to-run commands."""
    certificate_volume: pulumi.Input[str] | None = None
    """The HTTPS edge's data volume (``tls: acme``), mounted read-only at ``config.caddy.CERTIFICATE_MOUNT``."""
    start_after: Sequence[pulumi.Resource] = ()
    """Gates the server waits for besides its config write (its certificate, with ``tls: acme``)."""


class MailDomain(pulumi.ComponentResource):
    """A docker-mailserver instance for one mail domain, with its volumes and generated configuration.

    Configuration reaches the server through a config volume that a short-lived writer
    container (same image) fills. Files the change detector watches (accounts, aliases,
    quotas) and the routing files are rewritten without touching the server container;
    ``postfix-main.cf`` and the environment, read only at start, are part of the server's
    own inputs (a label carries main.cf's digest), so changing them replaces the container.
    """

    server: pulumi.Output[str]
    """Network alias of the server (``mta1``)."""
    hostname: pulumi.Output[str]
    """FQDN hostname of the server (``mail.example1.local``)."""
    container_name: pulumi.Output[str]
    """Docker name of the server container."""
    endpoints: pulumi.Output[dict[str, str]]
    """Published endpoints, service to ``address:port``."""
    volumes: pulumi.Output[dict[str, str]]
    """Docker names of the volumes (mail, state, logs, config)."""
    commands: pulumi.Output[dict[str, str]]
    """Handy troubleshooting commands for this server."""
    generated_passwords: pulumi.Output[dict[str, str]]
    """Secret: generated passwords of the accounts without an explicit one."""
    check_account: pulumi.Output[dict[str, str]]
    """Secret: address and password of the account ``make verify`` uses for this domain."""
    account_memory: pulumi.Output[str]
    """Secret: JSON of ``address: [hash, keyed fingerprint]`` of every account, for the stack's memory."""
    config_revision: pulumi.Output[str]
    """Digest of the generated files; resolves only after the writer exited with status 0."""

    def __init__(self, name: str, args: MailDomainArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the volumes, seed, config writer and server container of ``args.domain``."""
        super().__init__("mailstack:index:MailDomain", name, None, opts)
        stack, domain = args.stack, args.domain
        prefix = stack.prefix()
        child = pulumi.ResourceOptions(parent=self)
        labels = {"mailstack.stack": stack.stack, "mailstack.domain": domain.domain}

        # Mail data: retained when the stack or the container goes away, protected on request.
        data_opts = pulumi.ResourceOptions(parent=self, protect=stack.protect_data, retain_on_delete=True)
        volume_names = {
            role: f"{prefix}-{domain.slug}-{role}" for role in ("mail", "state", "logs", "config")
        }
        volumes = {
            role: docker.Volume(
                f"{name}-{role}",
                name=volume_names[role],
                labels=docker_labels({**labels, "mailstack.volume": role}, docker.VolumeLabelArgs),
                opts=data_opts if role != "config" else child,
            )
            for role in volume_names
        }

        # One secret seed per domain: per-account salts and generated passwords derive from it.
        seed = random.RandomBytes(f"{name}-seed", length=32, opts=child)
        addresses = [u.address for u in domain.users]
        explicit = sorted(a for a in addresses if a in stack.explicit_passwords)
        static = pf.static_files(stack, domain)
        reload_revision = pf.revision(*(static[f] for f in pf.RELOAD_FILES))

        remembered = {a: stack.memory.accounts[a] for a in addresses if a in stack.memory.accounts}

        async def _accounts(values: list) -> dict[str, Any]:
            seed_b64, given = values
            key = pw.seed_bytes(seed_b64)
            passwords = {a: (given or {}).get(a) or pw.derive_password(key, a) for a in addresses}
            salts = {a: pw.derive_salt(key, a) for a in addresses}
            # a remembered hash only when its keyed fingerprint proves it is this password's and salt's
            hashes = {
                a: h
                for a in addresses
                if (h := hashing.reuse(key, a, salts[a], passwords[a], remembered.get(a))) is not None
            }
            fresh = [a for a in addresses if a not in hashes]
            computed = await args.hasher.hash_all([(passwords[a], salts[a]) for a in fresh])
            hashes.update(zip(fresh, computed, strict=True))
            return {
                "accounts": pf.render_accounts([(a, hashes[a]) for a in addresses], reload_revision),
                "check": passwords[addresses[0]],
                "generated": {a: passwords[a] for a in addresses if a not in explicit},
                "memory": {
                    a: (hashes[a], hashing.fingerprint(key, a, salts[a], passwords[a], hashes[a]))
                    for a in addresses
                },
            }

        # Secret because its inputs are. (Output.secret of an Output would walk its whole value once more,
        # creating an Output per entry: measurable in a stack of thousands of accounts.)
        material = pulumi.Output.all(pulumi.Output.secret(seed.base64), args.passwords).apply(_accounts)
        accounts = material.apply(lambda m: m["accounts"])
        self.generated_passwords = material.apply(lambda m: m["generated"])
        # JSON text: the stack's memory gathers one per domain, and a text is one value to gather
        self.account_memory = material.apply(lambda m: json.dumps(m["memory"], sort_keys=True))
        self.check_account = material.apply(lambda m: {"address": addresses[0], "password": m["check"]})

        # DKIM keys first (before the signing config that names them); the accounts file last: its change is
        # what triggers the reload.
        keys = dkim_keys(name, domain.domain, stack.deliverability.of(domain.domain).dkim, parent=self)
        order = [*(keys.key_files if keys else []), *sorted(static), pf.ACCOUNTS_FILE]
        installed_key = keys.signing_public_key if keys else ""
        digest = pulumi.Output.unsecret(
            pulumi.Output.all(accounts, installed_key).apply(
                lambda v: pf.revision(*(static[f] for f in sorted(static)), *v)
            )
        )
        uploads: list[docker.ContainerUploadArgs] = [
            docker.ContainerUploadArgs(file=f"{WRITER_STAGING}/{f}", content=static[f], permissions="0644")
            for f in sorted(static)
        ]
        uploads.append(
            docker.ContainerUploadArgs(
                file=f"{WRITER_STAGING}/{pf.ACCOUNTS_FILE}",
                content=pulumi.Output.secret(accounts),
                permissions="0600",  # the writer installs each file with its upload's permissions
            )
        )
        uploads += keys.uploads(WRITER_STAGING) if keys else []
        container_name = f"{prefix}-{domain.server}"
        writer = docker.Container(
            f"{name}-config-writer",
            # The name carries the content digest, so an unchanged configuration re-creates nothing.
            name=digest.apply(lambda d: f"{prefix}-{domain.server}-config-{d}"),
            image=args.image_id,
            entrypoints=["/bin/bash", "-c", WRITER_SCRIPT, "mailstack-config-writer"],
            command=order,
            uploads=uploads,
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volumes["config"].name, container_path=pf.CONFIG_DIR)
            ],
            envs=[f"MAILSTACK_SELF_SIGNED={domain.hostname}"] if stack.tls == "self-signed" else None,
            network_mode="none",
            attach=True,
            must_run=False,
            logs=True,
            restart="no",
            labels=docker_labels({**labels, "mailstack.role": "config-writer"}, docker.ContainerLabelArgs),
            # Delete first, on purpose: a change of only the environment or the image (tls mode, image
            # bump) keeps the digest and so the name, and a create-first replacement would collide on it.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        # The server waits for a *successful* write: the gate's input is the checked revision, which
        # fails when the writer did, so neither the gate nor the server is then registered (the running
        # server is left as it is). The server depends on the gate only, never on the writer's outputs,
        # which would replace it on every account edit.
        self.config_revision, gate = gate_on_success(
            f"{name}-config-gate",
            writer,
            digest,
            lambda code, logs, urn: writer_failure(
                stack.stack, domain.server, domain.domain, container_name, code, logs, urn
            ),
            parent=self,
        )

        env = pf.mailserver_env(stack, domain)
        start_digest = pf.start_digest(static)
        server = docker.Container(
            f"{name}-server",
            name=container_name,
            image=args.image_id,
            hostname=domain.hostname,
            envs=[f"{k}={v}" for k, v in sorted(env.items())],
            labels=docker_labels(
                {**labels, "mailstack.role": "mailserver", "mailstack.start-config-sha256": start_digest},
                docker.ContainerLabelArgs,
            ),
            ports=[
                docker.ContainerPortArgs(internal=hp.container_port, external=hp.port, ip=hp.bind_address)
                for hp in domain.host_ports()
            ],
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volumes[role].name, container_path=path)
                for role, path in (
                    ("mail", "/var/mail"),
                    ("state", "/var/mail-state"),
                    ("logs", "/var/log/mail"),
                    ("config", pf.CONFIG_DIR),
                )
            ]
            + _certificate_volumes(stack)
            + (
                [
                    docker.ContainerVolumeArgs(
                        volume_name=args.certificate_volume,
                        container_path=caddy.CERTIFICATE_MOUNT,
                        read_only=True,
                    )
                ]
                if args.certificate_volume is not None
                else []
            ),
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=args.network_name,
                    aliases=[domain.server, domain.hostname],
                    ipv4_address=str(domain.address),
                ),
                *egress_networks(name, stack, domain, parent=self),
            ],
            healthcheck=healthcheck(
                ["CMD-SHELL", pf.HEALTHCHECK],
                interval=10,
                timeout=5,
                retries=3,
                start_period=HEALTH_START_PERIOD_SECONDS,
            ),
            restart="unless-stopped",
            stop_timeout=MAILSERVER_STOP_SECONDS,
            destroy_grace_seconds=MAILSERVER_STOP_SECONDS,
            wait=True,
            wait_timeout=HEALTH_WAIT_TIMEOUT_SECONDS,
            must_run=True,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[gate, *args.start_after], delete_before_replace=True
            ),
        )

        docker_cmd = f"docker -H {args.docker_host}" if args.docker_host else "docker"
        self.server = pulumi.Output.from_input(domain.server)
        self.hostname = pulumi.Output.from_input(domain.hostname)
        self.container_name = server.name
        self.endpoints = pulumi.Output.from_input(
            {hp.service: f"{hp.bind_address}:{hp.port}" for hp in domain.host_ports()}
        )
        self.volumes = pulumi.Output.from_input({role: v.name for role, v in volumes.items()})
        self.commands = pulumi.Output.from_input(
            {
                "queue": f"{docker_cmd} exec {container_name} postqueue -p",
                "flush": f"{docker_cmd} exec {container_name} postqueue -f",
                "logs": f"{docker_cmd} logs -f {container_name}",
                "routes": f"{docker_cmd} exec {container_name} postconf -h transport_maps mynetworks",
                "setup": f"{docker_cmd} exec -it {container_name} setup help",
            }
        )
        self.dkim = keys
        self.resources = {"server": server, "writer": writer, "gate": gate, "seed": seed, **volumes}
        self.register_outputs(
            {
                "server": self.server,
                "hostname": self.hostname,
                "containerName": self.container_name,
                "endpoints": self.endpoints,
                "volumes": self.volumes,
                "commands": self.commands,
                "generatedPasswords": self.generated_passwords,
                "configRevision": self.config_revision,
            }
        )


def writer_failure(
    stack: str, server: str, domain: str, container: str, code: int, logs: str | None, urn: str
) -> str:
    """The error of an ``up`` whose config writer of ``server`` exited non-zero (``one_shot_failure``)."""
    return one_shot_failure(
        stack,
        f"the config writer of {server} ({domain}) exited with status {code}, so {container} was not created "
        "or changed: a running server keeps its previous configuration",
        logs,
        urn,
    )


def _certificate_volumes(stack: StackConfig) -> list[docker.ContainerVolumeArgs]:
    """Read-only mount of the Docker host's certificate directory for ``manual``/``letsencrypt``."""
    mount = pf.certificate_mount(stack)
    if mount is None:
        return []
    host, target = mount
    return [docker.ContainerVolumeArgs(host_path=host, container_path=target, read_only=True)]
