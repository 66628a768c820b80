"""``make restore DOMAIN=... [SNAPSHOT=latest] [FORCE=1]``: put a domain's volumes back from a snapshot.

In this order, stopping at the first failure (nothing is started again on a half-restored volume):

1. find the job container and its image (the restic image: it also runs the small helper containers),
   and the snapshot (``latest`` or an id, of that domain only);
2. look at every target volume (mail, state, webmail database): missing ones will be created with the
   exact labels the stack declares (Pulumi compares labels), non-empty ones are refused unless ``--force``;
3. stop the job (no scheduled backup of half-restored data), the webmail and the mail server;
4. create the missing volumes, empty the others (``--force``);
5. restore: ``docker cp <job>:/mailstack - | docker run -i ... restic restore <id> --verify``: the job's
   settings and secret files reach the restore container on its stdin, into a tmpfs; nothing secret
   is in an argument, an environment variable or this tool's output;
6. start the mail server, wait until it is healthy, run ``doveadm force-resync -u <user> '*'`` for every
   account of the domain, start the webmail and the job again;
7. print what was done: snapshot, volumes with sizes and file counts, times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from config.backup import JOB_DIR, JOB_SCRIPT_PATH
from tools.backups.docker import QUICK_TIMEOUT, STOP_TIMEOUT_SECONDS, Docker, Result
from tools.backups.snapshots import Snapshot, choose, human_age, human_size, list_snapshots, utcnow
from tools.backups.target import BackupError, BackupTarget, Refused, Volume

Say = Callable[[str], None]
HEALTH_TIMEOUT = 300.0
"""docker-mailserver is healthy about 11 s after start; its health check's start period is 150 s."""


def _quiet(_message: str) -> None:
    pass


@dataclass
class VolumeState:
    """A target volume before the restore."""

    volume: Volume
    exists: bool
    labels: dict[str, str] | None = None
    first_entry: str | None = None
    """The first name found in the volume, ``None`` when empty (or missing)."""

    @property
    def empty(self) -> bool:
        """No file in it (or it does not exist)."""
        return self.first_entry is None


@dataclass
class RestoredVolume:
    """A volume after the restore."""

    name: str
    role: str
    action: str
    """``created``, ``emptied`` or ``filled`` (it existed and was empty)."""
    kilobytes: int | None = None
    files: int | None = None


@dataclass
class RestoreReport:
    """What ``make restore`` did."""

    domain: str
    snapshot: Snapshot
    volumes: list[RestoredVolume] = field(default_factory=list)
    resynced: list[str] = field(default_factory=list)
    restore_seconds: float = 0.0
    total_seconds: float = 0.0
    healthy_after: float | None = None
    restarted: list[str] = field(default_factory=list)


def helper_argv(
    image: str, script: str, mounts: Sequence[tuple[str, str, bool]], name: str | None = None
) -> list[str]:
    """``run --rm`` of the restic image's busybox with ``mounts`` (volume, path, read-only), no network."""
    argv = ["run", "--rm", "--network", "none"]
    if name:
        argv += ["--name", name]
    for volume, path, read_only in mounts:
        argv += ["-v", f"{volume}:{path}{':ro' if read_only else ''}"]
    return [*argv, "--entrypoint", "/bin/sh", image, "-c", script]


def job_image(docker: Docker, target: BackupTarget) -> str:
    """The image id of the job container (it also runs the helpers); BackupError when there is no job."""
    result = docker.run("inspect", "--format", "{{.Image}}", target.job)
    if not result.ok or not result.stdout.strip():
        raise BackupError(
            f"the backup job container {target.job} does not exist ({result.reason()}): it holds the repository "
            "password and credentials the restore needs; create it with `make up` (after losing the host: "
            "`make up` on the new host, then restore with FORCE=1)"
        )
    return result.stdout.strip()


def inspect_volume(docker: Docker, image: str, volume: Volume) -> VolumeState:
    """Whether ``volume`` exists, its labels, and whether anything is in it."""
    found = docker.run("volume", "inspect", "--format", "{{json .Labels}}", volume.name)
    if not found.ok:
        if "no such volume" in found.reason().lower():
            return VolumeState(volume, exists=False)
        raise BackupError(f"cannot inspect volume {volume.name}: {found.reason()}")
    try:
        labels = json.loads(found.stdout or "null") or {}
    except json.JSONDecodeError:
        labels = {}
    probe = docker.run(*helper_argv(image, "ls -A /v | head -n 1", [(volume.name, "/v", True)]))
    if not probe.ok:
        raise BackupError(f"cannot look into volume {volume.name}: {probe.reason()}")
    first = probe.stdout.strip() or None
    return VolumeState(volume, exists=True, labels=labels, first_entry=first)


def refuse_non_empty(states: Sequence[VolumeState], force: bool, domain: str) -> None:
    """Refuse to overwrite volumes holding data unless ``force``; the message lists them."""
    full = [s for s in states if s.exists and not s.empty]
    if full and not force:
        names = ", ".join(f"{s.volume.name} (holds {s.first_entry!r}...)" for s in full)
        raise Refused(
            f"refusing to restore {domain} over volumes that are not empty: {names}. Their content would be "
            f"replaced by the snapshot's: if that is what you want, run again with FORCE=1 (make restore "
            f"DOMAIN={domain} FORCE=1)"
        )


def create_volume_argv(volume: Volume) -> list[str]:
    """``volume create`` with the stack's labels, sorted (the stack declares exactly these)."""
    argv = ["volume", "create"]
    for key, value in sorted(volume.labels.items()):
        argv += ["--label", f"{key}={value}"]
    return [*argv, volume.name]


EMPTY_SCRIPT = 'rm -rf /v/* /v/.[!.]* /v/..?*; test -z "$(ls -A /v)"'
"""Empties a mounted volume (hidden files too) and fails if anything is left."""
MEASURE_SCRIPT = "du -sk /v | cut -f1; find /v -type f | wc -l"


def restore_argvs(
    target: BackupTarget,
    image: str,
    snapshot: Snapshot,
    mounts: Sequence[tuple[str, str]],
    name: str,
) -> tuple[list[str], list[str]]:
    """The pipe ``docker cp <job>:/mailstack - | docker run -i ... restic restore``: (producer, consumer).

    ``mounts`` are (volume, path) with the paths of the backup (``/data/<domain>/...``), so restic writes
    each directory of the snapshot straight into its volume. ``--verify`` reads every restored file back.
    """
    producer = ["cp", f"{target.job}:{JOB_DIR}", "-"]
    consumer = [
        "run",
        "--rm",
        "-i",
        "--name",
        name,
        "--hostname",
        target.job,
        "--label",
        f"mailstack.stack={target.stack}",
        "--label",
        "mailstack.role=restore",
        "--tmpfs",
        f"{JOB_DIR}:rw,mode=0700",
    ]
    for volume, path in mounts:
        consumer += ["-v", f"{volume}:{path}"]
    if target.local_repository:
        consumer += ["-v", f"{target.local_repository}:{target.local_repository}"]
    consumer += [
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        f'tar -x -f - -C / && exec /bin/sh {JOB_SCRIPT_PATH} restic "$@"',
        "mailstack-restore",
        "restore",
        snapshot.id,
        "--target",
        "/",
    ]
    for _, path in mounts:
        consumer += ["--include", path]
    consumer.append("--verify")
    return producer, consumer


def run_restore_pipe(docker: Docker, producer: Sequence[str], consumer: Sequence[str], what: str) -> None:
    """Run the restore pipe; BackupError with restic's reason when it fails."""
    result = docker.pipe(producer, consumer)
    if not result.ok:
        if result.argv and "cp" in result.argv:
            raise BackupError(f"{what}: cannot read the job's files from {producer[-2]}: {result.reason()}")
        raise BackupError(
            f"{what}: restic restore failed (exit status {result.code}; its messages are above). Wrong password, "
            "unreachable repository or a damaged snapshot: `make snapshots` and `docker logs` of the job tell more"
        )


def measure(docker: Docker, image: str, volume: str) -> tuple[int | None, int | None]:
    """Kilobytes and regular files in ``volume``."""
    result = docker.run(*helper_argv(image, MEASURE_SCRIPT, [(volume, "/v", True)]))
    parts = result.stdout.split() if result.ok else []
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None, None


def running(docker: Docker, container: str) -> bool | None:
    """True/False for a running/stopped container, ``None`` when it does not exist."""
    result = docker.run("inspect", "--format", "{{.State.Running}}", container)
    if not result.ok:
        return None
    return result.stdout.strip() == "true"


def wait_healthy(
    docker: Docker,
    container: str,
    timeout: float = HEALTH_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Seconds until ``container`` reports healthy; BackupError with its last state otherwise."""
    start = clock()
    state = "unknown"
    while clock() - start <= timeout:
        result = docker.run(
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            container,
        )
        state = result.stdout.strip() if result.ok else result.reason()
        if state in ("healthy", "none"):
            return clock() - start
        if state == "unhealthy":
            break
        sleep(2.0)
    raise BackupError(
        f"{container} is not healthy after the restore ({state} after {clock() - start:.0f} s): "
        f"`docker logs {container}` shows why"
    )


def _check(result: Result, what: str) -> Result:
    if not result.ok:
        raise BackupError(f"{what}: {result.reason()}")
    return result


def restore_domain(
    docker: Docker,
    target: BackupTarget,
    domain_name: str,
    selector: str = "latest",
    *,
    force: bool = False,
    say: Say = _quiet,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utcnow,
) -> RestoreReport:
    """Restore ``domain_name``'s volumes from a snapshot (see the module docstring for the steps)."""
    started = clock()
    domain = target.domain(domain_name)
    image = job_image(docker, target)
    snapshot = choose(list_snapshots(docker, target, domain), domain.domain, selector)
    say(
        f"restoring {domain.domain} from snapshot {snapshot.short_id} of {snapshot.time:%Y-%m-%d %H:%M} UTC "
        f"({human_age(now() - snapshot.time)} old)"
    )
    states = [inspect_volume(docker, image, v) for v in domain.restored_volumes()]
    refuse_non_empty(states, force, domain.domain)
    for s in states:
        if s.exists and s.labels is not None and dict(s.labels) != dict(s.volume.labels):
            say(
                f"note: volume {s.volume.name} has labels {s.labels}, the stack declares {dict(s.volume.labels)}: "
                "`pulumi refresh` will report the difference"
            )

    containers = [c for c in (target.job, domain.webmail_container, domain.container) if c]
    was_running = {c: running(docker, c) for c in containers}
    for c in containers:
        if was_running[c]:
            say(f"stopping {c}")
            timeout = STOP_TIMEOUT_SECONDS if c == domain.container else 30
            _check(
                docker.run("stop", "-t", str(timeout), c, timeout=QUICK_TIMEOUT + timeout), f"stopping {c}"
            )

    report = RestoreReport(domain=domain.domain, snapshot=snapshot)
    for s in states:
        if not s.exists:
            _check(docker.run(*create_volume_argv(s.volume)), f"creating volume {s.volume.name}")
            action = "created"
        elif not s.empty:
            _check(
                docker.run(*helper_argv(image, EMPTY_SCRIPT, [(s.volume.name, "/v", False)])),
                f"emptying volume {s.volume.name}",
            )
            action = "emptied"
        else:
            action = "filled"
        report.volumes.append(RestoredVolume(s.volume.name, s.volume.role, action))

    mounts = [(s.volume.name, str(s.volume.path)) for s in states]
    producer, consumer = restore_argvs(
        target, image, snapshot, mounts, f"mailstack-{target.stack}-restore-{domain.slug}"
    )
    say(f"restic restore {snapshot.short_id} into {', '.join(v for v, _ in mounts)}")
    t0 = clock()
    left_stopped = [c for c in containers if was_running[c]]
    try:
        run_restore_pipe(docker, producer, consumer, f"restoring {domain.domain}")
    except BackupError as exc:
        raise BackupError(
            f"{exc}. Left stopped: {', '.join(left_stopped) or 'nothing'}; fix the cause and run the restore again "
            f"with FORCE=1 (the volumes now hold a partial restore)"
        ) from None
    report.restore_seconds = clock() - t0
    for rv in report.volumes:
        rv.kilobytes, rv.files = measure(docker, image, rv.name)

    if was_running.get(domain.container) is None:
        say(f"{domain.container} does not exist: run `make up` to create it; skipping the resync")
    else:
        say(f"starting {domain.container}")
        _check(docker.run("start", domain.container), f"starting {domain.container}")
        report.restarted.append(domain.container)
        report.healthy_after = wait_healthy(docker, domain.container, clock=clock, sleep=sleep)
        for user in domain.users:
            _check(
                docker.run("exec", domain.container, "doveadm", "force-resync", "-u", user, "*", timeout=600),
                f"doveadm force-resync of {user}",
            )
            report.resynced.append(user)
    for c in (domain.webmail_container, target.job):
        if c and was_running.get(c):
            _check(docker.run("start", c), f"starting {c}")
            report.restarted.append(c)
    report.total_seconds = clock() - started
    return report


def render_report(report: RestoreReport, now: datetime) -> str:
    """What ``make restore`` prints at the end."""
    snap = report.snapshot
    lines = [
        f"Restored {report.domain} from snapshot {snap.short_id} ({snap.time:%Y-%m-%d %H:%M} UTC, "
        f"{human_age(now - snap.time)} old) in {report.restore_seconds:.1f} s (total {report.total_seconds:.1f} s)",
    ]
    for v in report.volumes:
        size = human_size(v.kilobytes * 1024) if v.kilobytes is not None else "?"
        files = v.files if v.files is not None else "?"
        lines.append(f"  {v.role:<11} {v.name:<48} {v.action:<8} {size:>10}  {files} files")
    if report.healthy_after is not None:
        lines.append(f"  mail server healthy {report.healthy_after:.0f} s after start")
    if report.resynced:
        lines.append(f"  doveadm force-resync: {', '.join(report.resynced)}")
    if report.restarted:
        lines.append(f"  started again: {', '.join(report.restarted)}")
    return "\n".join(lines)
