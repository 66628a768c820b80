"""BackupJob: the scheduled restic backup of every domain, and the webmail-export sidecars it needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.common import docker_labels, healthcheck
from components.maildomain import MailDomain
from components.webmail import Webmail
from config import backup as bk
from config.model import StackConfig

JOB_HEALTH_INTERVAL_SECONDS = 30
JOB_HEALTH_TIMEOUT_SECONDS = 10
JOB_HEALTH_RETRIES = 3
JOB_HEALTH_START_PERIOD_SECONDS = 120
"""Covers the first repository check (or ``restic init``) over a slow link."""
JOB_WAIT_TIMEOUT_SECONDS = 240
"""How long Pulumi waits for the job to become healthy: a wrong password or an unreachable repository
fails the ``up`` here, loudly, instead of at the first scheduled run."""
STOP_SECONDS = 30
EXPORT_SCRIPT_PATH = "/mailstack/webmail-export.sh"
EXPORT_HEALTH_INTERVAL_SECONDS = 15


@dataclass
class BackupJobArgs:
    """Inputs of the BackupJob."""

    stack: StackConfig
    """The validated stack; ``stack.backup`` must be set."""
    network_name: pulumi.Input[str]
    """The stack network: the job delivers each marker to a server's port 25 there."""
    domains: Mapping[str, MailDomain]
    """The MailDomain components, by domain (their mail and state volumes are backed up)."""
    webmails: Mapping[str, Webmail]
    """The Webmail components, by domain (their databases are copied by a sidecar and backed up)."""
    image_id: pulumi.Input[str]
    """Image id of the pinned restic image."""
    webmail_image_id: pulumi.Input[str] | None
    """Image id of the pinned Roundcube image (the sidecars run it); ``None`` without webmails."""
    secrets: pulumi.Input[Mapping[str, str]]
    """Secret ``mailstack:backupSecrets`` (restic password, backend credentials)."""
    docker_host: str | None = None
    """``docker:host`` of the stack (the tools run the Docker CLI against it; the warning names it)."""
    edge_certificates_volume: pulumi.Input[str] | None = None
    """Hook for the edge (HTTPS front) once it exists: its certificate volume, mounted read-only and backed up
    as a snapshot tagged ``scope=edge`` (keeps ACME from re-issuing every certificate after a restore)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Resources that must exist first (the mail servers: the marker needs them)."""


class BackupJob(pulumi.ComponentResource):
    """A long-running restic container with its schedule loop, and one webmail-export sidecar per webmail.

    The job never talks to the Docker engine: it reads the mail and state volumes read-only, reaches the
    servers over SMTP on the stack network, and gets Roundcube's database as a consistent copy from a
    sidecar (``VACUUM INTO``) through an export volume. Secrets reach it as 0400 file uploads.
    """

    container_name: pulumi.Output[str]
    """Docker name of the job container (``make backup`` / ``make snapshots`` run in it)."""
    outputs: pulumi.Output[dict]
    """The non-secret ``backup`` stack output the tools read: job, repository, volumes with labels, tags."""

    def __init__(self, name: str, args: BackupJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Declare the cache volume, the sidecars with their export volumes, and the job container."""
        super().__init__("mailstack:index:BackupJob", name, None, opts)
        stack = args.stack
        backup = stack.backup
        if backup is None:
            raise ValueError("BackupJob needs a stack with mailstack:backup enabled")
        prefix = stack.prefix()
        child = pulumi.ResourceOptions(parent=self)
        stack_labels = {"mailstack.stack": stack.stack}

        reason = bk.repository_on_docker_host(backup, stack, args.docker_host)
        if reason:
            message = (
                f"the backup repository is on the Docker host: {reason}; a backup there is lost together with "
                "the host: put the repository on another machine (sftp, S3, rest-server)"
            )
            if stack.production:
                pulumi.log.warn(message, resource=self)
            else:
                pulumi.log.info(message + " (fine for the lab)", resource=self)

        cache = docker.Volume(
            f"{name}-cache",
            name=f"{prefix}-backup-cache",
            labels=docker_labels(
                {**stack_labels, "mailstack.volume": "backup-cache"}, docker.VolumeLabelArgs
            ),
            opts=child,
        )

        exports: dict[str, docker.Volume] = {}
        self.sidecars: dict[str, docker.Container] = {}
        for d in stack.domains:
            wm = args.webmails.get(d.domain)
            if wm is None or args.webmail_image_id is None:
                continue
            labels = {**stack_labels, "mailstack.domain": d.domain}
            export = docker.Volume(
                f"{name}-{d.domain}-webmail-export",
                name=f"{prefix}-{d.slug}-webmail-export",
                labels=docker_labels(
                    {**labels, "mailstack.volume": "webmail-export"}, docker.VolumeLabelArgs
                ),
                opts=child,
            )
            exports[d.domain] = export
            self.sidecars[d.domain] = docker.Container(
                f"{name}-{d.domain}-webmail-export",
                name=f"{prefix}-webmail-export-{d.server}",
                image=args.webmail_image_id,
                entrypoints=["/bin/sh", EXPORT_SCRIPT_PATH],
                command=["loop"],
                uploads=[
                    docker.ContainerUploadArgs(
                        file=EXPORT_SCRIPT_PATH, content=bk.export_script(), permissions="0755"
                    )
                ],
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=wm.resources["db"].name, container_path=bk.ROUNDCUBE_DB.rsplit("/", 1)[0]
                    ),
                    docker.ContainerVolumeArgs(volume_name=export.name, container_path=bk.EXPORT_DIR),
                ],
                network_mode="none",
                healthcheck=healthcheck(
                    ["CMD", "/bin/sh", EXPORT_SCRIPT_PATH, "health"],
                    interval=EXPORT_HEALTH_INTERVAL_SECONDS,
                    timeout=5,
                    retries=3,
                    start_period=30,
                ),
                labels=docker_labels(
                    {**labels, "mailstack.role": "webmail-export"}, docker.ContainerLabelArgs
                ),
                restart="unless-stopped",
                stop_timeout=STOP_SECONDS,
                destroy_grace_seconds=STOP_SECONDS,
                wait=True,
                wait_timeout=120,
                must_run=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[wm], delete_before_replace=True),
            )

        settings = bk.job_settings(
            stack.stack,
            backup,
            [
                bk.JobDomain(d.domain, d.server, 25, d.domain in exports)
                for d in stack.domains
                if d.domain in args.domains
            ],
            edge=args.edge_certificates_volume is not None,
        )
        uploads = [
            docker.ContainerUploadArgs(file=path, content=content, permissions=mode)
            for path, (content, mode) in sorted(bk.plain_files(backup, settings).items())
        ]
        secret_values = pulumi.Output.secret(args.secrets)
        for path in bk.secret_file_paths(backup):
            uploads.append(
                docker.ContainerUploadArgs(
                    file=path,
                    content=pulumi.Output.secret(
                        secret_values.apply(lambda s, p=path: bk.secret_files(backup, s or {})[p])
                    ),
                    permissions="0400",
                )
            )

        mounts: list[docker.ContainerVolumeArgs] = []
        for d in stack.domains:
            md = args.domains.get(d.domain)
            if md is None:
                continue
            paths = bk.domain_paths(d.domain)
            for role in (bk.MAIL_ROLE, bk.STATE_ROLE):
                mounts.append(
                    docker.ContainerVolumeArgs(
                        volume_name=md.resources[role].name, container_path=paths[role], read_only=True
                    )
                )
            if d.domain in exports:
                # Read-write: the job drops its requests here; it never sees the live database.
                mounts.append(
                    docker.ContainerVolumeArgs(
                        volume_name=exports[d.domain].name, container_path=paths[bk.WEBMAIL_ROLE]
                    )
                )
        if args.edge_certificates_volume is not None:
            mounts.append(
                docker.ContainerVolumeArgs(
                    volume_name=args.edge_certificates_volume,
                    container_path=f"{bk.DATA_DIR}/{bk.EDGE_DIR}",
                    read_only=True,
                )
            )
        mounts.append(docker.ContainerVolumeArgs(volume_name=cache.name, container_path=bk.CACHE_DIR))
        local = backup.repository.local_path
        if local is not None:
            mounts.append(docker.ContainerVolumeArgs(host_path=local, container_path=local))

        job_name = f"{prefix}-backup"
        job = docker.Container(
            f"{name}-job",
            name=job_name,
            hostname=job_name,  # restic's locks name the host; a fixed name lets `unlock` clear stale ones
            image=args.image_id,
            entrypoints=["/bin/sh", bk.JOB_SCRIPT_PATH],
            command=["loop"],
            uploads=uploads,
            volumes=mounts,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name)],
            healthcheck=healthcheck(
                ["CMD", "/bin/sh", bk.JOB_SCRIPT_PATH, "health"],
                interval=JOB_HEALTH_INTERVAL_SECONDS,
                timeout=JOB_HEALTH_TIMEOUT_SECONDS,
                retries=JOB_HEALTH_RETRIES,
                start_period=JOB_HEALTH_START_PERIOD_SECONDS,
            ),
            labels=docker_labels({**stack_labels, "mailstack.role": "backup"}, docker.ContainerLabelArgs),
            restart="unless-stopped",
            stop_timeout=STOP_SECONDS,
            destroy_grace_seconds=STOP_SECONDS,
            wait=True,
            wait_timeout=JOB_WAIT_TIMEOUT_SECONDS,
            must_run=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*args.depends_on, *self.sidecars.values()],
                delete_before_replace=True,
            ),
        )

        self.container_name = job.name
        self.outputs = _outputs(stack, args, job, exports)
        self.resources = {"job": job, "cache": cache, **{f"export:{k}": v for k, v in exports.items()}}
        self.register_outputs({"containerName": self.container_name})


def _label_map(labels: Sequence[object] | None) -> dict[str, str]:
    """``[{label, value}]`` (plain or the provider's ``VolumeLabel`` objects) as a dict."""
    result: dict[str, str] = {}
    for item in labels or []:
        if isinstance(item, Mapping):
            result[str(item["label"])] = str(item["value"])
        else:
            result[str(item.label)] = str(item.value)  # type: ignore[attr-defined]
    return result


def _volume_entry(volume: docker.Volume, path: str | None) -> pulumi.Output[dict]:
    """Name, labels (exactly as declared: restore re-creates them, and Pulumi compares labels) and mount path."""
    return pulumi.Output.all(volume.name, volume.labels).apply(
        lambda v: {"name": v[0], "labels": _label_map(v[1]), "path": path}
    )


def _outputs(
    stack: StackConfig, args: BackupJobArgs, job: docker.Container, exports: Mapping[str, docker.Volume]
) -> pulumi.Output[dict]:
    backup = stack.backup
    assert backup is not None
    domains: dict[str, pulumi.Output[dict]] = {}
    for d in stack.domains:
        md = args.domains.get(d.domain)
        if md is None:
            continue
        paths = bk.domain_paths(d.domain)
        volumes = {
            bk.MAIL_ROLE: _volume_entry(md.resources[bk.MAIL_ROLE], paths[bk.MAIL_ROLE]),
            bk.STATE_ROLE: _volume_entry(md.resources[bk.STATE_ROLE], paths[bk.STATE_ROLE]),
        }
        wm = args.webmails.get(d.domain)
        if wm is not None:
            # Restored from the copy in the snapshot straight into Roundcube's own database volume.
            volumes["webmail-db"] = _volume_entry(wm.resources["db"], paths[bk.WEBMAIL_ROLE])
        if d.domain in exports:
            volumes["webmail-export"] = _volume_entry(exports[d.domain], None)
        domains[d.domain] = pulumi.Output.all(
            md.container_name,
            wm.container_name if wm is not None else None,
            pulumi.Output.all(**volumes),
            md.resources["config"].name,
        ).apply(
            lambda v, d=d: {
                "server": d.server,
                "hostname": d.hostname,
                "container": v[0],
                "webmailContainer": v[1],
                "configVolume": v[3],
                "drill": bk.drill_address(d.domain),
                "users": [u.address for u in d.users],
                "tags": bk.snapshot_tags(stack.stack, d.domain),
                "volumes": v[2],
            }
        )
    return pulumi.Output.all(job.name, pulumi.Output.all(**domains)).apply(
        lambda v: {
            "schema": 1,
            "stack": stack.stack,
            "dockerHost": args.docker_host,
            "job": v[0],
            "resticHost": bk.restic_host(stack.stack),
            "image": stack.images["backup"],
            "repository": backup.repository.location,
            "localRepository": backup.repository.local_path,
            "schedule": backup.schedule.expression,
            "keep": {k: getattr(backup.keep, k) for k in bk.KEEP_KEYS},
            "domains": v[1],
        }
    )
