"""restic's snapshot list, read through the job container, per domain with sizes, dates and markers.

Every restic command runs inside the job (``docker exec <job> /bin/sh /mailstack/job.sh restic ...``),
which holds the repository, password and credentials as files: nothing secret crosses to this machine.
Only flags restic 0.14 (Debian 12) already has are used, so an older image still works.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config.backup import JOB_SCRIPT_PATH
from config.cron import CronError, parse_cron
from tools.backups.docker import QUICK_TIMEOUT, Docker, Result
from tools.backups.target import BackupError, BackupTarget, DomainTarget, Refused

STATS_TIMEOUT = 600.0


def restic_argv(target: BackupTarget, *args: str) -> list[str]:
    """``exec <job> /bin/sh /mailstack/job.sh restic ARGS`` (no -t: the output is parsed)."""
    return ["exec", target.job, "/bin/sh", JOB_SCRIPT_PATH, "restic", *args]


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot."""

    id: str
    short_id: str
    time: datetime
    hostname: str
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    size: int | None = None
    """Bytes the snapshot restores (restic's ``summary.total_bytes_processed`` or ``stats``)."""
    files: int | None = None

    def tag(self, key: str) -> str | None:
        """The value of the ``key=value`` tag, or ``None``."""
        prefix = f"{key}="
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)

    @property
    def domain(self) -> str | None:
        """The domain the snapshot holds."""
        return self.tag("domain")

    @property
    def marker(self) -> str | None:
        """The Message-ID of the marker delivered before this snapshot, or ``None``."""
        value = self.tag("marker")
        return None if value in (None, "none") else value

    @property
    def marker_uid(self) -> int | None:
        """The UID Dovecot gave the marker (from the job), or ``None``."""
        value = self.tag("marker-uid")
        return int(value) if value and value.isdigit() else None


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime:
    """Restic's RFC 3339 time with nanoseconds (``2026-12-01T03:00:04.25862097Z``), as an aware datetime."""
    value = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip(), count=1)
    value = value.replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_snapshots(text: str) -> list[Snapshot]:
    """``restic snapshots --json`` into Snapshots, oldest first (0.14: no summary; 0.17+: with summary)."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise BackupError(f"restic snapshots printed something that is not JSON ({exc.msg})") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise BackupError("restic snapshots --json did not print a list")
    result = []
    for item in data:
        summary = item.get("summary") or {}
        result.append(
            Snapshot(
                id=str(item["id"]),
                short_id=str(item.get("short_id") or item["id"][:8]),
                time=parse_time(str(item["time"])),
                hostname=str(item.get("hostname", "")),
                tags=tuple(item.get("tags") or ()),
                paths=tuple(item.get("paths") or ()),
                size=summary.get("total_bytes_processed"),
                files=summary.get("total_files_processed"),
            )
        )
    return sorted(result, key=lambda s: s.time)


def list_snapshots(
    docker: Docker, target: BackupTarget, domain: DomainTarget | None = None
) -> list[Snapshot]:
    """The stack's snapshots (of one domain when given), oldest first."""
    args = ["snapshots", "--json", "--host", target.restic_host]
    if domain is not None:
        args += ["--tag", domain.tag]
    result = docker.run(*restic_argv(target, *args), timeout=QUICK_TIMEOUT * 5)
    _raise_restic(result, target, "list the snapshots")
    return parse_snapshots(result.stdout)


def with_sizes(docker: Docker, target: BackupTarget, snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    """Fill in sizes restic's JSON did not carry (before 0.17) with ``restic stats --json <id>``."""
    filled = []
    for snap in snapshots:
        if snap.size is None:
            result = docker.run(*restic_argv(target, "stats", "--json", snap.id), timeout=STATS_TIMEOUT)
            _raise_restic(result, target, f"measure snapshot {snap.short_id}")
            try:
                stats = json.loads(result.stdout)
                snap = Snapshot(
                    **{**snap.__dict__, "size": stats["total_size"], "files": stats.get("total_file_count")}
                )
            except (json.JSONDecodeError, KeyError, TypeError):
                raise BackupError(f"restic stats of {snap.short_id} printed no total_size") from None
        filled.append(snap)
    return filled


def _raise_restic(result: Result, target: BackupTarget, what: str) -> None:
    if result.ok:
        return
    reason = result.reason()
    if "No such container" in reason or "is not running" in reason:
        raise BackupError(
            f"cannot {what}: the backup job {target.job} is not running ({reason}); start it with `make up` "
            f"or `docker start {target.job}`"
        )
    if "wrong password" in reason:
        raise BackupError(
            f"cannot {what}: restic says the repository password is wrong (mailstack:backupSecrets.password "
            f"does not open {target.repository})"
        )
    raise BackupError(f"cannot {what}: {reason}")


def human_size(size: int | None) -> str:
    """``1.5 MiB``-style sizes; ``?`` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_age(delta: timedelta) -> str:
    """``3 h 20 min``, ``2 d 4 h``."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def render_snapshots(
    target: BackupTarget, snapshots: Sequence[Snapshot], now: datetime, status: str | None = None
) -> str:
    """The ``make snapshots`` report: per domain, every snapshot with date, age, size and marker."""
    lines = [f"Backups of stack {target.stack} in {target.repository} (restic host {target.restic_host})"]
    try:
        schedule = parse_cron(target.schedule)
        last_due = schedule.previous_run(now)
        lines.append(
            f"schedule {target.schedule!r} (UTC): last run due {last_due:%Y-%m-%d %H:%M}, next "
            f"{schedule.next_run(now):%Y-%m-%d %H:%M}; keep {', '.join(f'{k} {v}' for k, v in target.keep.items())}"
        )
    except CronError:
        last_due = None
    if status:
        lines.append(f"last run: {status.strip().splitlines()[0]}")
    for name, domain in target.domains.items():
        own = [s for s in snapshots if s.domain == name]
        lines.append("")
        lines.append(f"{name} ({len(own)} snapshot{'s' if len(own) != 1 else ''})")
        if not own:
            lines.append("  none yet: run `make backup`")
            continue
        lines.append(f"  {'id':<10}{'time (UTC)':<19}{'age':>12}{'size':>12}  marker")
        for s in reversed(own):
            marker = f"UID {s.marker_uid}" if s.marker and s.marker_uid is not None else "MISSING"
            lines.append(
                f"  {s.short_id:<10}{s.time:%Y-%m-%d %H:%M}  {human_age(now - s.time):>11}{human_size(s.size):>12}"
                f"  {marker}"
            )
        newest = own[-1]
        if last_due is not None and newest.time < last_due - timedelta(minutes=1):
            lines.append(
                f"  WARNING: the newest snapshot is from {newest.time:%Y-%m-%d %H:%M}, before the run due at "
                f"{last_due:%Y-%m-%d %H:%M}: look at `docker logs {target.job}`"
            )
        if domain.domain and not newest.marker:
            lines.append(
                "  WARNING: the newest snapshot has no marker: mail delivery to the drill account failed"
            )
    others = [s for s in snapshots if s.domain not in target.domains]
    if others:
        lines.append("")
        lines.append(
            f"{len(others)} other snapshot(s) of this host (removed domains, the edge): restic snapshots"
        )
    return "\n".join(lines)


def latest(snapshots: Sequence[Snapshot], domain: str) -> Snapshot | None:
    """The newest snapshot of ``domain``."""
    own = [s for s in snapshots if s.domain == domain]
    return own[-1] if own else None


def choose(snapshots: Sequence[Snapshot], domain: str, selector: str) -> Snapshot:
    """``latest`` or a (short) snapshot id of ``domain``; BackupError naming the choices otherwise."""
    own = [s for s in snapshots if s.domain == domain]
    if not own:
        raise BackupError(f"there is no snapshot of {domain} yet: run `make backup` first")
    if selector in ("", "latest"):
        return own[-1]
    found = [s for s in own if s.id.startswith(selector)]
    if len(found) == 1:
        return found[0]
    shown = ", ".join(s.short_id for s in reversed(own[-5:]))
    what = "matches several snapshots" if found else "is not a snapshot of this domain"
    raise Refused(f"SNAPSHOT={selector} {what}; the newest ones of {domain}: {shown} (or latest)")


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
