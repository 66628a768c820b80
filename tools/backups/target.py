"""The stack output ``backup`` (schema 1) as typed data: the job, the repository, every domain's volumes.

The output is built by ``components/backup.py`` and holds no secret: the restic password and the backend
credentials stay in the job container (secret uploads), and the tools hand them from there to a restore
container through a pipe, never through this process's arguments, environment or output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.stackoutputs import OutputsError

SCHEMA = 1
OUTPUT_NAME = "backup"


class BackupError(OutputsError):
    """A user-facing problem of the backup tools; the one-line message says what to do (never a secret)."""


class Refused(BackupError):
    """The tool would not do what was asked as asked (a non-empty volume, an unknown domain or snapshot)."""


@dataclass(frozen=True)
class Volume:
    """A Docker volume a snapshot restores into."""

    role: str
    name: str
    labels: Mapping[str, str]
    path: str | None
    """Mount path in the job and the restore container (``/data/<domain>/<dir>``); ``None``: not restored."""


@dataclass(frozen=True)
class DomainTarget:
    """One domain as the backup output describes it."""

    domain: str
    server: str
    hostname: str
    container: str
    webmail_container: str | None
    config_volume: str
    drill: str
    users: tuple[str, ...]
    tags: tuple[str, ...]
    volumes: Mapping[str, Volume]

    @property
    def slug(self) -> str:
        """Docker-name-safe form of the domain."""
        return self.domain.replace(".", "-")

    def restored_volumes(self) -> list[Volume]:
        """The volumes a restore writes (mail, state, webmail database), in that order."""
        order = ("mail", "state", "webmail-db")
        return [self.volumes[r] for r in order if r in self.volumes and self.volumes[r].path]

    @property
    def tag(self) -> str:
        """The tag that selects this domain's snapshots."""
        return f"domain={self.domain}"


@dataclass(frozen=True)
class BackupTarget:
    """The whole ``backup`` output."""

    stack: str
    docker_host: str | None
    job: str
    restic_host: str
    image: str
    repository: str
    local_repository: str | None
    schedule: str
    keep: Mapping[str, int]
    domains: Mapping[str, DomainTarget] = field(default_factory=dict)

    def domain(self, name: str) -> DomainTarget:
        """The domain ``name``, or a BackupError listing the known ones."""
        if name not in self.domains:
            known = ", ".join(sorted(self.domains)) or "none"
            raise Refused(f"no domain {name!r} in the backups of stack {self.stack}; known: {known}")
        return self.domains[name]


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BackupError(f"the backup output's {where} is missing or not a string: redeploy with `make up`")
    return value


def load_target(outputs: Mapping[str, Any]) -> BackupTarget:
    """Read the ``backup`` stack output, or raise BackupError saying how to get one."""
    raw = outputs.get(OUTPUT_NAME)
    if raw is None:
        raise BackupError(
            "the stack has no `backup` output: turn backups on (mailstack:backup.enabled: true, see README "
            "'Backups') and deploy with `make up`"
        )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise BackupError("the `backup` output is not a JSON object") from None
    if not isinstance(raw, Mapping):
        raise BackupError("the `backup` output is not a JSON object")
    if raw.get("schema") != SCHEMA:
        raise BackupError(
            f"the `backup` output has schema {raw.get('schema')!r}, these tools read schema {SCHEMA}: deploy this "
            "version with `make up`, or use the tools of the deployed version"
        )
    domains: dict[str, DomainTarget] = {}
    for name, entry in (raw.get("domains") or {}).items():
        if not isinstance(entry, Mapping):
            raise BackupError(f"the backup output's domains.{name} is not an object")
        volumes = {
            role: Volume(
                role=role,
                name=_text(v.get("name"), f"domains.{name}.volumes.{role}.name"),
                labels=dict(v.get("labels") or {}),
                path=v.get("path"),
            )
            for role, v in (entry.get("volumes") or {}).items()
        }
        domains[name] = DomainTarget(
            domain=name,
            server=_text(entry.get("server"), f"domains.{name}.server"),
            hostname=_text(entry.get("hostname"), f"domains.{name}.hostname"),
            container=_text(entry.get("container"), f"domains.{name}.container"),
            webmail_container=entry.get("webmailContainer"),
            config_volume=_text(entry.get("configVolume"), f"domains.{name}.configVolume"),
            drill=_text(entry.get("drill"), f"domains.{name}.drill"),
            users=tuple(entry.get("users") or ()),
            tags=tuple(entry.get("tags") or ()),
            volumes=volumes,
        )
    return BackupTarget(
        stack=_text(raw.get("stack"), "stack"),
        docker_host=raw.get("dockerHost"),
        job=_text(raw.get("job"), "job"),
        restic_host=_text(raw.get("resticHost"), "resticHost"),
        image=_text(raw.get("image"), "image"),
        repository=_text(raw.get("repository"), "repository"),
        local_repository=raw.get("localRepository"),
        schedule=_text(raw.get("schedule"), "schedule"),
        keep=dict(raw.get("keep") or {}),
        domains=domains,
    )
