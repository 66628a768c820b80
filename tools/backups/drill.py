"""``make restore-drill``: prove that the newest snapshot of each domain restores to a working mailbox.

For one domain at a time, on the stack's own Docker host, without touching the stack:

1. pick the domain's newest snapshot; it must carry a marker (the job delivered one before the backup);
2. create a scratch stack: an *internal* network (no way out: mail still queued in the restored state
   volume can never leave) and mail, state and config volumes, all labelled ``mailstack.drill=<stack>``;
3. copy the live config volume (accounts, generated files) and restore the snapshot into the scratch
   mail and state volumes, exactly as ``make restore`` does;
4. before anything starts, read from the restored ``dovecot-uidlist`` the UID of the marker file;
5. start a mail server from the same image, environment and certificate mounts as the live one, wait
   until it is healthy, and log in over IMAP inside it (its own loopback, which works for a remote
   ``docker:host`` too) as the marker account: ``UID SEARCH HEADER Message-ID`` must return that UID;
6. remove the scratch stack (always, also after a failure) and print the report: snapshot age and size,
   restore time, start time, the marker's UID, messages in the marker mailbox.

Any failure is reported loudly and makes the command exit non-zero.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from config import backup as bk
from config.postfix import CONFIG_DIR, HEALTHCHECK
from tools.backups.docker import QUICK_TIMEOUT, Docker
from tools.backups.restore import (
    Say,
    _quiet,
    helper_argv,
    job_image,
    measure,
    restore_argvs,
    run_restore_pipe,
    wait_healthy,
)
from tools.backups.snapshots import (
    Snapshot,
    human_age,
    human_size,
    latest,
    list_snapshots,
    with_sizes,
)
from tools.backups.target import BackupError, BackupTarget, DomainTarget

DRILL_LABEL = "mailstack.drill"

IMAP_CHECK = r"""
import imaplib, json, ssl, sys
address, message_id = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 143
password = sys.stdin.readline().rstrip("\n")
imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
if "STARTTLS" in imap.capabilities:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the scratch server's own loopback
    imap.starttls(context)
imap.login(address, password)
typ, data = imap.select("INBOX", readonly=True)
exists = int(data[0]) if typ == "OK" else -1
typ, found = imap.uid("SEARCH", None, "HEADER", "Message-ID", "<" + message_id + ">")
uids = [int(u) for u in found[0].split()] if typ == "OK" and found and found[0] else []
imap.logout()
print(json.dumps({"exists": exists, "uids": uids}))
"""
"""Runs inside the scratch server (docker-mailserver ships Python 3); the password arrives on stdin."""


def marker_script(domain: str, local_part: str, message_id: str, root: str = "/m") -> str:
    """Busybox script printing ``<uid> <file> <messages>`` of the marker from the restored uidlist.

    ``root`` is where the restored mail volume is mounted (``/m`` in the helper container).
    """
    maildir = f"{root}/{domain}/{local_part}"
    return (
        f"d={maildir}; f=$(grep -l -F 'Message-ID: <{message_id}>' $d/new/* $d/cur/* 2>/dev/null | head -n 1); "
        'test -n "$f" || { echo "no file with the marker"; exit 3; }; '
        "b=${f##*/}; b=${b%%:*}; "
        'uid=$(awk -v base="$b" \'{ n = index($0, " :") } n > 0 && substr($0, n + 2) == base { print $1; exit }\' '
        '$d/dovecot-uidlist); test -n "$uid" || { echo "the marker file is not in dovecot-uidlist"; exit 4; }; '
        'echo "$uid $b $(find $d/new $d/cur -type f | wc -l)"'
    )


@dataclass
class DrillResult:
    """The drill of one domain."""

    domain: str
    snapshot: Snapshot | None = None
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    restore_seconds: float | None = None
    start_seconds: float | None = None
    restored_kilobytes: int | None = None
    restored_files: int | None = None
    uidlist_uid: int | None = None
    imap_uids: list[int] = field(default_factory=list)
    messages_on_disk: int | None = None
    messages_imap: int | None = None
    cleaned: bool = False


def scratch_names(target: BackupTarget, domain: DomainTarget) -> dict[str, str]:
    """Docker names of the scratch stack of ``domain``."""
    base = f"mailstack-{target.stack}-drill-{domain.slug}"
    return {
        "network": base,
        "server": base,
        "mail": f"{base}-mail",
        "state": f"{base}-state",
        "config": f"{base}-config",
        "restore": f"{base}-restore",
    }


def _labels(target: BackupTarget, domain: DomainTarget) -> list[str]:
    return ["--label", f"{DRILL_LABEL}={target.stack}", "--label", f"mailstack.domain={domain.domain}"]


def server_run_argv(
    names: dict[str, str],
    target: BackupTarget,
    domain: DomainTarget,
    image: str,
    env: Sequence[str],
    binds: Sequence[str],
) -> list[str]:
    """``run -d`` of the scratch mail server: the live one's image, environment and certificate binds."""
    argv = [
        "run",
        "-d",
        "--name",
        names["server"],
        "--hostname",
        domain.hostname,
        "--network",
        names["network"],
        *_labels(target, domain),
        "-v",
        f"{names['mail']}:/var/mail",
        "-v",
        f"{names['state']}:/var/mail-state",
        "-v",
        f"{names['config']}:{CONFIG_DIR}",
    ]
    for bind in binds:
        argv += ["-v", bind]
    for entry in env:
        argv += ["--env", entry]
    argv += ["--health-cmd", HEALTHCHECK, "--health-interval", "5s", "--health-retries", "60"]
    return [*argv, image]


def _live_server(docker: Docker, domain: DomainTarget) -> tuple[str, list[str], list[str]]:
    """Image id, environment and read-only bind mounts (certificates) of the live mail server."""
    result = docker.run("inspect", "--format", "{{json .}}", domain.container)
    if not result.ok:
        raise BackupError(
            f"the mail server {domain.container} does not exist ({result.reason()}): run `make up`"
        )
    info = json.loads(result.stdout)
    env = [e for e in info.get("Config", {}).get("Env") or [] if not e.startswith("PATH=")]
    binds = [
        f"{m['Source']}:{m['Destination']}:ro"
        for m in info.get("Mounts") or []
        if m.get("Type") == "bind" and not m.get("RW", True)
    ]
    return info["Image"], env, binds


def cleanup(docker: Docker, names: dict[str, str]) -> list[str]:
    """Remove the scratch server, volumes and network; return what could not be removed."""
    left = []
    for argv in (
        ["rm", "-f", "-v", names["server"]],
        ["rm", "-f", names["restore"]],
    ):
        docker.run(*argv, timeout=QUICK_TIMEOUT * 2)
    for role in ("mail", "state", "config"):
        result = docker.run("volume", "rm", "-f", names[role])
        if not result.ok and "no such volume" not in result.reason().lower():
            left.append(names[role])
    result = docker.run("network", "rm", names["network"])
    if not result.ok and "not found" not in result.reason().lower():
        left.append(names["network"])
    return left


def drill_domain(
    docker: Docker,
    target: BackupTarget,
    domain: DomainTarget,
    password: str,
    *,
    image: str,
    say: Say = _quiet,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrillResult:
    """The drill of one domain (see the module docstring); never raises for a failed check."""
    result = DrillResult(domain.domain)
    names = scratch_names(target, domain)
    try:
        snap = latest(list_snapshots(docker, target, domain), domain.domain)
        if snap is None:
            raise BackupError(f"there is no snapshot of {domain.domain}: run `make backup`")
        (snap,) = with_sizes(docker, target, [snap])
        result.snapshot = snap
        if not snap.marker:
            raise BackupError(
                f"snapshot {snap.short_id} has no marker: the job could not deliver to {domain.drill} before it "
                "(its log says why), so this snapshot cannot prove mail is back"
            )
        say(
            f"{domain.domain}: snapshot {snap.short_id} of {snap.time:%Y-%m-%d %H:%M} UTC, marker <{snap.marker}>"
        )
        server_image, env, binds = _live_server(docker, domain)
        leftovers = cleanup(docker, names)  # a previous drill killed half-way
        if leftovers:
            raise BackupError(f"cannot remove the leftovers of an earlier drill: {', '.join(leftovers)}")
        steps = [
            ["network", "create", "--internal", *_labels(target, domain), names["network"]],
            *(["volume", "create", *_labels(target, domain), names[r]] for r in ("mail", "state", "config")),
            helper_argv(
                image,
                "cp -a /from/. /to/",
                [(domain.config_volume, "/from", True), (names["config"], "/to", False)],
            ),
        ]
        for argv in steps:
            done = docker.run(*argv)
            if not done.ok:
                raise BackupError(f"preparing the scratch stack ({argv[0]} {argv[1]}): {done.reason()}")
        paths = bk.domain_paths(domain.domain)
        mounts = [(names["mail"], paths[bk.MAIL_ROLE]), (names["state"], paths[bk.STATE_ROLE])]
        producer, consumer = restore_argvs(target, image, snap, mounts, names["restore"])
        t0 = clock()
        run_restore_pipe(docker, producer, consumer, f"restoring {domain.domain} into the scratch stack")
        result.restore_seconds = clock() - t0
        result.restored_kilobytes, result.restored_files = measure(docker, image, names["mail"])

        local_part = domain.drill.split("@", 1)[0]
        found = docker.run(
            *helper_argv(
                image, marker_script(domain.domain, local_part, snap.marker), [(names["mail"], "/m", True)]
            )
        )
        if not found.ok:
            raise BackupError(
                f"the restored mailbox of {domain.drill}: {found.stdout.strip() or found.reason()}"
            )
        parts = found.stdout.split()  # "<uid> <file> <messages>"
        result.uidlist_uid = int(parts[0])
        result.messages_on_disk = int(parts[-1])

        started = docker.run(*server_run_argv(names, target, domain, server_image, env, binds))
        if not started.ok:
            raise BackupError(f"starting the scratch mail server: {started.reason()}")
        result.start_seconds = wait_healthy(docker, names["server"], clock=clock, sleep=sleep)
        checked = docker.run(
            "exec",
            "-i",
            names["server"],
            "python3",
            "-c",
            IMAP_CHECK,
            domain.drill,
            snap.marker,
            stdin=(password + "\n").encode(),
        )
        if not checked.ok:
            raise BackupError(
                f"IMAP login as {domain.drill} in the scratch server failed: {checked.reason()}"
            )
        answer = json.loads(checked.stdout.strip().splitlines()[-1])
        result.imap_uids = list(answer["uids"])
        result.messages_imap = int(answer["exists"])
        if result.imap_uids != [result.uidlist_uid]:
            result.problems.append(
                f"IMAP finds the marker with UID(s) {result.imap_uids or 'none'}, the backed-up dovecot-uidlist says "
                f"{result.uidlist_uid}: UIDs were not kept"
            )
        if snap.marker_uid is not None and snap.marker_uid != result.uidlist_uid:
            result.problems.append(
                f"the job recorded UID {snap.marker_uid} for the marker, the restored dovecot-uidlist says "
                f"{result.uidlist_uid}"
            )
        if result.messages_imap != result.messages_on_disk:
            result.problems.append(
                f"IMAP shows {result.messages_imap} messages in {domain.drill}'s INBOX, the restored Maildir holds "
                f"{result.messages_on_disk}"
            )
        result.passed = not result.problems
    except BackupError as exc:
        result.problems.append(str(exc))
    except (json.JSONDecodeError, ValueError, KeyError, IndexError) as exc:
        result.problems.append(f"unexpected answer from a drill step: {exc}")
    finally:
        left = cleanup(docker, names)
        result.cleaned = not left
        if left:
            result.problems.append(
                f"could not remove the scratch objects {', '.join(left)}: remove them by hand"
            )
            result.passed = False
    return result


def render_drill(results: Sequence[DrillResult], now: datetime) -> str:
    """The drill report."""
    lines = ["Restore drill"]
    for r in results:
        snap = r.snapshot
        head = "PASS" if r.passed else "FAIL"
        if snap is not None:
            lines.append(
                f"{head} {r.domain}: snapshot {snap.short_id} of {snap.time:%Y-%m-%d %H:%M} UTC "
                f"({human_age(now - snap.time)} old, {human_size(snap.size)})"
            )
        else:
            lines.append(f"{head} {r.domain}")
        if r.restore_seconds is not None:
            size = human_size(r.restored_kilobytes * 1024) if r.restored_kilobytes is not None else "?"
            lines.append(
                f"  restored in {r.restore_seconds:.1f} s: mail volume {size}, {r.restored_files} files"
            )
        if r.start_seconds is not None:
            lines.append(f"  scratch mail server healthy after {r.start_seconds:.0f} s")
        if r.uidlist_uid is not None:
            lines.append(
                f"  marker: UID {r.uidlist_uid} in the backed-up dovecot-uidlist, IMAP UID SEARCH: "
                f"{', '.join(map(str, r.imap_uids)) or 'not found'}; messages: {r.messages_on_disk} on disk, "
                f"{r.messages_imap if r.messages_imap is not None else '?'} over IMAP"
            )
        for p in r.problems:
            lines.append(f"  problem: {p}")
        lines.append(f"  scratch stack {'removed' if r.cleaned else 'NOT fully removed'}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} domains restored and verified")
    return "\n".join(lines)


def run_drill(
    docker: Docker,
    target: BackupTarget,
    passwords: dict[str, str],
    domains: Sequence[str] | None = None,
    *,
    say: Say = _quiet,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DrillResult]:
    """Drill every domain (or ``domains``), one after the other."""
    image = job_image(docker, target)
    chosen = [target.domain(d) for d in domains] if domains else list(target.domains.values())
    results = []
    for domain in chosen:
        password = passwords.get(domain.drill)
        if not password:
            results.append(
                DrillResult(
                    domain.domain, problems=[f"no generated password for {domain.drill} in the stack outputs"]
                )
            )
            continue
        results.append(
            drill_domain(docker, target, domain, password, image=image, say=say, clock=clock, sleep=sleep)
        )
    return results
