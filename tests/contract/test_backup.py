"""The backup job for real: busybox sh (as in the restic image), Debian's restic 0.14, Postfix and Dovecot.

The job script (``config/backup-job.sh``) runs with a ``PATH`` holding only busybox applets and restic,
like the pinned Alpine image, against the two-domain lab of ``mailfixture`` (real Postfix and Dovecot on
loopback ports) and a local restic repository:

* one run delivers a marker to each domain over SMTP, waits for Dovecot's UID, asks the webmail-export
  sidecar (``config/webmail-export.sh`` with Debian's PHP and SQLite) for a consistent database copy while
  a writer keeps committing, and makes one snapshot per domain with the fixed host and tags;
* the snapshot restores byte for byte, and Dovecot reads the restored mailbox (index files removed, only
  ``dovecot-uidlist`` kept) with the same messages and UIDs; without the uidlist the UIDs change, which
  shows the check can fail;
* the copy of the SQLite database passes ``PRAGMA integrity_check`` and holds a committed state;
* ``forget --prune`` with the job's rules keeps exactly the snapshots the policy names;
* a wrong password fails with restic's message and prints no password; the job then reports unhealthy;
* the shell schedule check agrees with ``config.cron`` minute by minute;
* the tools (``tools.backups``) read the real restic output (0.14: sizes from ``restic stats``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config import backup as bk
from config.cron import parse_cron
from config.model import load_stack
from tests.contract.conftest import contract_required, require_tool
from tests.contract.mailfixture import MailLab, closed_port
from tests.unit.conftest import DEV_RAW
from tools.backups import snapshots as snaps
from tools.backups.docker import Docker, Result
from tools.backups.target import BackupError, load_target

PASSWORD = "contract-test-restic-password-" + os.urandom(6).hex()
D1, D2 = "example1.local", "example2.local"
RUN_TIMEOUT = 180


def _require(condition: bool, message: str) -> None:
    if not condition:
        if contract_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@dataclass
class Job:
    """The job script set up like the container: settings, secrets, state, a busybox-only PATH."""

    root: Path
    conf: Path
    repo: Path
    env: dict[str, str]
    busybox: str
    backup: bk.BackupConfig
    log: list[str] = field(default_factory=list)

    def run(
        self, *args: str, conf: Path | None = None, timeout: float = RUN_TIMEOUT
    ) -> subprocess.CompletedProcess:
        env = {**self.env, "MAILSTACK_JOB_CONF": str(conf or self.conf)}
        proc = subprocess.run(
            [self.busybox, "sh", str(self.root / "job" / "job.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.log.append(f"$ job.sh {' '.join(args)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def restic(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("restic", *args)

    def snapshots(self) -> list[dict]:
        proc = self.restic("snapshots", "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout or "[]")


def busybox_path(directory: Path, busybox: str, restic: str) -> str:
    """A directory with every busybox applet and restic: the only programs the job finds, as in the image."""
    directory.mkdir()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (directory / applet).symlink_to(busybox)
    (directory / "busybox").symlink_to(busybox)
    (directory / "restic").symlink_to(restic)
    return str(directory)


def make_job(
    root: Path,
    lab: MailLab | None,
    busybox: str,
    restic: str,
    *,
    keep: dict | None = None,
    webmail: bool = True,
) -> Job:
    """Render the job's files exactly as the component does, with this machine's paths."""
    raw = {**DEV_RAW, "backup": {"enabled": True, "repository": str(root / "repo")}}
    if keep:
        raw["backup"]["keep"] = keep
    backup = load_stack("dev", raw, backup_secrets={"password": PASSWORD}).backup
    assert backup is not None
    job_dir = root / "job"
    (job_dir / "secrets").mkdir(parents=True)
    domains = []
    if lab is not None:
        for d in lab.domains:
            domains.append(
                bk.JobDomain(
                    d.name,
                    "127.0.0.1",
                    d.smtp_port,
                    webmail=webmail and d.name == D2,
                    directory=d.dir.relative_to(lab.root).as_posix(),
                    drill=d.user,
                    drill_maildir=f"mail/{d.name}/{d.user.split('@')[0]}/Maildir",
                )
            )
    settings = bk.job_settings(
        "dev",
        backup,
        domains,
        data_dir=str(lab.root) if lab else str(root / "data"),
        job_dir=str(job_dir),
        state_dir=str(root / "state"),
        cache_dir=str(root / "cache"),
    )
    for path, (content, mode) in bk.plain_files(backup, settings).items():
        target = job_dir / Path(path).relative_to(bk.JOB_DIR)
        target.write_text(content)
        target.chmod(int(mode, 8))
    for path, content in bk.secret_files(backup, {"password": PASSWORD}).items():
        target = job_dir / Path(path).relative_to(bk.JOB_DIR)
        target.write_text(content)
        target.chmod(0o400)
    path = busybox_path(root / "bin", busybox, restic)
    env = {
        "PATH": path,
        "HOME": str(root),
        "TMPDIR": str(root),
        "TZ": "UTC",
        "MARKER_TIMEOUT": "30",
        "EXPORT_TIMEOUT": "30",
    }
    return Job(root, job_dir / "job.conf", root / "repo", env, busybox, backup)


@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    """busybox and restic (Debian's 0.14), or skip naming the packages."""
    busybox = require_tool("busybox", "busybox")
    restic = require_tool("restic", "restic")
    version = subprocess.run([restic, "version"], capture_output=True, text=True, check=False).stdout
    assert version.startswith("restic 0."), version
    return busybox, restic


@pytest.fixture(scope="module")
def mail_lab() -> Iterator[MailLab]:
    """The two-domain lab (Postfix + Dovecot, loopback), started once for the module."""
    postfix = require_tool("postfix", "postfix")
    postsuper = require_tool("postsuper", "postfix")
    dovecot = require_tool("dovecot", "dovecot-core")
    _require(os.path.exists("/usr/lib/dovecot/imap"), "dovecot-imapd is not installed: `make deps`")
    _require(os.path.exists("/usr/lib/dovecot/lmtp"), "dovecot-lmtpd is not installed: `make deps`")
    _require(os.geteuid() == 0, "starting Postfix needs root: run the contract tests as root (as CI does)")
    lab = MailLab(postfix=postfix, dovecot=dovecot, postsuper=postsuper)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop(keep_logs_in=Path(tempfile.gettempdir()) / "mailstack-backup-contract-logs")


def imap_uids(lab: MailLab, name: str, mailbox: str = "INBOX") -> list[tuple[int, str]]:
    """``(UID, Message-ID)`` of every message in a mailbox, read with EXAMINE."""
    conn = lab.imap(name)
    try:
        typ, data = conn.select(mailbox, readonly=True)
        assert typ == "OK", data
        if data == [b"0"]:
            return []
        typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        result = []
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                result.append((uid, item[1].decode().split(":", 1)[1].strip()))
        return sorted(result)
    finally:
        conn.logout()


def expunge_first(lab: MailLab, name: str) -> None:
    """Expunge the first message, so that UIDs start above 1 (a renumbering would show)."""
    conn = lab.imap(name)
    try:
        conn.select("INBOX")
        conn.store("1", "+FLAGS", "\\Deleted")
        conn.expunge()
    finally:
        conn.logout()


class Writer(threading.Thread):
    """Commits one row after another into a WAL-mode SQLite database, as Roundcube's sessions do."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.committed = 0

    def run(self) -> None:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "PRAGMA wal_autocheckpoint=1000000"
        )  # every commit stays in the WAL: a file copy misses them
        db.execute("CREATE TABLE IF NOT EXISTS session (n INTEGER PRIMARY KEY, blob TEXT)")
        db.commit()
        while not self.stop.is_set():
            n = self.committed + 1
            db.execute("INSERT INTO session VALUES (?, ?)", (n, os.urandom(256).hex()))
            db.commit()
            self.committed = n
            time.sleep(0.002)
        db.close()


@dataclass
class FirstRun:
    """What the module's one job run produced."""

    job: Job
    proc: subprocess.CompletedProcess
    before: dict[str, list[tuple[int, str]]]
    archive_before: list[tuple[int, str]]
    snapshots: list[dict]
    db_rows_before: int
    db_rows_after: int
    webmail_root: Path
    mail_tree: dict[str, tuple]
    """domain 1's mail directory right after the backup, before any IMAP session touched it."""


@pytest.fixture(scope="module")
def first_run(
    mail_lab: MailLab, tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FirstRun]:
    """Messages in both mailboxes, the sidecar running, a writer committing; then one `job.sh once`."""
    busybox, restic = tools
    php = require_tool("php", "php-cli")
    _require(
        subprocess.run([php, "-r", "exit(extension_loaded('pdo_sqlite') ? 0 : 1);"], check=False).returncode
        == 0,
        "PHP's pdo_sqlite is missing: install Debian package php-sqlite3 with `make deps`",
    )
    lab = mail_lab
    root = Path(tempfile.mkdtemp(prefix="mailstack-backup-"))
    root.chmod(0o755)
    job = make_job(root, lab, busybox, restic)
    for i in range(4):
        lab.append(D1, f"message {i}", flags="\\Seen" if i % 2 else "")
    lab.append(D1, "archived", mailbox="Archive")
    lab.append(D2, "for domain two")
    expunge_first(lab, D1)
    before = {D1: imap_uids(lab, D1), D2: imap_uids(lab, D2)}
    archive_before = imap_uids(lab, D1, "Archive")

    # domain 2: Roundcube's database (WAL, written all the time) and its export volume
    live = root / "roundcube-db"
    live.mkdir()
    webmail_root = lab.domain(D2).dir / "webmail"
    webmail_root.mkdir()
    writer = Writer(live / "sqlite.db")
    writer.start()
    while writer.committed < 50:
        time.sleep(0.01)
    sidecar_env = {
        **os.environ,
        "MAILSTACK_ROUNDCUBE_DB": str(live / "sqlite.db"),
        "MAILSTACK_EXPORT_DIR": str(webmail_root),
        "MAILSTACK_HEARTBEAT": str(root / "sidecar-heartbeat"),
        "MAILSTACK_POLL_SECONDS": "0.2",
    }
    script = root / "webmail-export.sh"
    script.write_text(bk.export_script())
    sidecar = subprocess.Popen(["/bin/sh", str(script), "loop"], env=sidecar_env, start_new_session=True)
    try:
        db_rows_before = writer.committed
        proc = job.run("once")
        mail_tree = tree(lab.domain(D1).dir / "mail")
        db_rows_after = writer.committed
    finally:
        writer.stop.set()
        writer.join(10)
        os.killpg(sidecar.pid, signal.SIGTERM)  # the sidecar loop and its sleep: started here
        sidecar.wait(10)
    try:
        yield FirstRun(
            job,
            proc,
            before,
            archive_before,
            job.snapshots(),
            db_rows_before,
            db_rows_after,
            webmail_root,
            mail_tree,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_one_run_makes_a_snapshot_per_domain_with_host_tags_and_marker(first_run: FirstRun):
    run = first_run
    assert run.proc.returncode == 0, "\n".join(run.job.log)
    assert "manual run ok" in run.proc.stdout
    by_domain = {next(t for t in s["tags"] if t.startswith("domain=")): s for s in run.snapshots}
    assert sorted(by_domain) == [f"domain={D1}", f"domain={D2}"]
    for domain, s in zip((D1, D2), (by_domain[f"domain={D1}"], by_domain[f"domain={D2}"]), strict=True):
        assert s["hostname"] == "mailstack-dev"
        assert set(bk.snapshot_tags("dev", domain)) <= set(s["tags"])
        marker = next(t for t in s["tags"] if t.startswith("marker="))[len("marker=") :]
        assert re.fullmatch(rf"mailstack-drill\.\d{{8}}T\d{{6}}Z\.[0-9a-f]{{12}}@{re.escape(domain)}", marker)
        uid = int(next(t for t in s["tags"] if t.startswith("marker-uid="))[len("marker-uid=") :])
        assert uid > max((u for u, _ in run.before[domain]), default=0)
    status = run.job.run("status").stdout
    assert status.startswith("ok manual run at ") and f"ok {D1}" in status and f"ok {D2}" in status
    assert PASSWORD not in "\n".join(run.job.log)


def test_the_marker_is_in_the_mailbox_with_the_uid_of_the_tag(first_run: FirstRun, mail_lab: MailLab):
    for s in first_run.snapshots:
        domain = next(t for t in s["tags"] if t.startswith("domain="))[len("domain=") :]
        marker = next(t for t in s["tags"] if t.startswith("marker="))[len("marker=") :]
        uid = int(next(t for t in s["tags"] if t.startswith("marker-uid="))[len("marker-uid=") :])
        assert (uid, f"<{marker}>") in imap_uids(mail_lab, domain)
        maildir = (
            mail_lab.domain(domain).dir
            / "mail"
            / domain
            / mail_lab.domain(domain).user.split("@")[0]
            / "Maildir"
        )
        files = [p for sub in ("cur", "new") for p in (maildir / sub).iterdir()]
        (text,) = [
            t for t in (p.read_text(errors="replace") for p in files) if f"Message-ID: <{marker}>" in t
        ]
        # a null envelope sender and the job's own .invalid From: never judged by the domain's SPF or DMARC
        assert "Return-Path: <>" in text
        assert "From: mailstack backup job <backup@mailstack-dev-backup.invalid>" in text


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: type, mode, owner, size and (for files) content digest."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            kind = stat.S_IFMT(st.st_mode)
            content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            result[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, content)
    return result


def restore_into(job: Job, snapshot: dict, target: Path) -> Path:
    proc = job.restic("restore", snapshot["id"], "--target", str(target), "--verify")
    assert proc.returncode == 0, proc.stderr
    return target


def test_restore_is_byte_identical_and_dovecot_keeps_the_uids(first_run: FirstRun, mail_lab: MailLab):
    run, lab = first_run, mail_lab
    snapshot = next(s for s in run.snapshots if f"domain={D1}" in s["tags"])
    live_mail = lab.domain(D1).dir / "mail"
    restored = restore_into(run.job, snapshot, run.job.root / "restore-1")
    copy_mail = restored / live_mail.relative_to("/")
    # every file (messages, dovecot-uidlist, index files), mode and owner as right after the backup
    assert tree(copy_mail) == run.mail_tree
    assert any(name.endswith("dovecot-uidlist") for name in run.mail_tree)

    user_dir = Path("example1.local") / "user1"
    originals = live_mail / user_dir
    aside = lab.root / "user1-original"
    try:
        # Put the restored mailbox in place, without Dovecot's index files (they are rebuilt): only the
        # uidlist carries the UIDs.
        os.rename(originals, aside)
        shutil.copytree(copy_mail / user_dir, originals, symlinks=True)
        _chown_tree(originals, aside)
        removed = [p for p in originals.rglob("dovecot.index*") if p.is_file()]
        assert removed, "the lab's Dovecot wrote no index files: nothing proves the rebuild"
        for p in removed:
            p.unlink()
        after = imap_uids(lab, D1)
        marker_uid = int(next(t for t in snapshot["tags"] if t.startswith("marker-uid="))[11:])
        assert [u for u, _ in after if u != marker_uid] == [u for u, _ in run.before[D1]]
        assert after[:-1] == run.before[D1] and after[-1][0] == marker_uid
        assert imap_uids(lab, D1, "Archive") == run.archive_before

        # The same restore without dovecot-uidlist: Dovecot numbers the messages anew (from 1), so the
        # UID comparison above is a check that can fail.
        shutil.rmtree(originals)
        shutil.copytree(copy_mail / user_dir, originals, symlinks=True)
        _chown_tree(originals, aside)
        for p in list(originals.rglob("dovecot.index*")) + list(originals.rglob("dovecot-uidlist")):
            p.unlink()
        renumbered = imap_uids(lab, D1)
        assert sorted(m for _, m in renumbered) == sorted(m for _, m in after)
        assert [u for u, _ in renumbered] == list(range(1, len(after) + 1))
        assert [u for u, _ in renumbered] != [u for u, _ in after]
    finally:
        shutil.rmtree(originals, ignore_errors=True)
        os.rename(aside, originals)


def _chown_tree(path: Path, like: Path) -> None:
    st = like.stat()
    for p in [path, *path.rglob("*")]:
        os.lchown(p, st.st_uid, st.st_gid)


def test_the_webmail_database_copy_is_consistent_while_it_is_written(first_run: FirstRun):
    run = first_run
    snapshot = next(s for s in run.snapshots if f"domain={D2}" in s["tags"])
    restored = restore_into(run.job, snapshot, run.job.root / "restore-2")
    copy_dir = restored / run.webmail_root.relative_to("/")
    names = sorted(p.name for p in copy_dir.iterdir())
    assert names == ["sqlite.db"], names  # the requests folder is not in the snapshot
    db = sqlite3.connect(f"file:{copy_dir / 'sqlite.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = [n for (n,) in db.execute("SELECT n FROM session ORDER BY n")]
    finally:
        db.close()
    # a committed state: rows 1..k without a gap, taken while the writer kept committing, newer than the
    # start of the run (the commits live only in the WAL: a copy of the database file alone has none)
    assert rows == list(range(1, len(rows) + 1))
    assert run.db_rows_before <= len(rows) <= run.db_rows_after


def test_retention_keeps_exactly_what_the_policy_says(tools: tuple[str, str], tmp_path: Path):
    busybox, restic = tools
    root = tmp_path / "retention"
    root.mkdir()
    job = make_job(root, None, busybox, restic, keep={"daily": 3, "weekly": 2, "monthly": 2})
    assert job.restic("init").returncode == 0
    data = root / "data" / "example.org"
    data.mkdir(parents=True)
    (data / "file").write_text("mail")
    times = [
        "2026-01-05 03:00:00",
        "2026-01-20 03:00:00",
        "2026-02-10 03:00:00",
        "2026-02-25 03:00:00",  # Wednesday of ISO week 9
        "2026-03-02 03:00:00",  # Monday of ISO week 10
        "2026-03-03 03:00:00",
        "2026-03-03 15:00:00",
        "2026-03-04 03:00:00",
        "2026-03-05 03:00:00",
    ]
    for i, when in enumerate(times):  # every snapshot has its own marker tag, as the job's have
        tags = ["--tag", "domain=example.org", "--tag", f"marker=m{i}@example.org"]
        proc = job.restic("backup", "--host", "mailstack-dev", *tags, "--time", when, str(data))
        assert proc.returncode == 0, proc.stderr
    other = job.restic("backup", "--host", "mailstack-other", "--time", "2025-01-01 00:00:00", str(data))
    assert other.returncode == 0
    proc = job.run("forget")
    assert proc.returncode == 0, proc.stderr
    kept = sorted(
        s["time"][:16].replace("T", " ") for s in job.snapshots() if s["hostname"] == "mailstack-dev"
    )
    # daily 3: 03-05, 03-04, 03-03 15:00; weekly 2: 03-05 (week 10), 02-25 (week 9); monthly 2: 03-05, 02-25
    assert kept == ["2026-02-25 03:00", "2026-03-03 15:00", "2026-03-04 03:00", "2026-03-05 03:00"]
    assert [s["hostname"] for s in job.snapshots() if s["hostname"] != "mailstack-dev"] == ["mailstack-other"]
    assert job.restic("check").returncode == 0  # pruned, and the repository is sound


def test_a_wrong_password_fails_clearly_and_prints_no_secret(tools: tuple[str, str], tmp_path: Path):
    busybox, restic = tools
    job = make_job(tmp_path / "pw", None, busybox, restic)
    (tmp_path / "pw").chmod(0o755)
    assert job.restic("init").returncode == 0
    secret = job.conf.parent / "secrets" / "password"
    wrong = "wrong-" + os.urandom(8).hex()
    secret.chmod(0o600)
    secret.write_text(wrong + "\n")
    proc = job.restic("snapshots")
    assert proc.returncode != 0
    assert "wrong password or no key found" in proc.stderr
    once = job.run("once")
    assert once.returncode != 0
    assert "restic: Fatal: wrong password or no key found" in once.stderr
    repositories = [p for p in job.repo.parent.iterdir() if (p / "config").exists()]
    assert repositories == [job.repo]  # no second repository was created
    # the tools turn it into one line naming the setting
    docker = Docker(None, LocalJobRunner(job))
    target = load_target({"backup": backup_output(job)})
    with pytest.raises(BackupError, match=r"password is wrong \(mailstack:backupSecrets.password"):
        snaps.list_snapshots(docker, target)
    everything = "\n".join(job.log)
    assert PASSWORD not in everything and wrong not in everything


def test_the_job_creates_a_missing_repository_and_reports_a_failed_marker(
    tools: tuple[str, str], mail_lab: MailLab, tmp_path: Path
):
    busybox, restic = tools
    root = tmp_path / "nomarker"
    root.mkdir()
    root.chmod(0o755)
    job = make_job(root, mail_lab, busybox, restic, webmail=False)
    conf = job.conf.read_text() + f"D1_SMTP_PORT={closed_port()}\nDOMAIN_COUNT=1\n"
    broken = job.conf.with_name("broken.conf")
    broken.write_text(conf)
    proc = job.run("once", conf=broken)
    assert "no repository yet: creating it" in proc.stdout
    assert proc.returncode != 0
    (snapshot,) = job.snapshots()
    assert "marker=none" in snapshot["tags"] and f"domain={D1}" in snapshot["tags"]
    status = job.run("status", conf=broken).stdout
    assert (
        status.startswith("failed manual run") and f"marker delivery to {mail_lab.domain(D1).user}" in status
    )
    health = job.run("health", conf=broken)
    assert health.returncode != 0  # no heartbeat: the loop is not running here
    (root / "state" / "heartbeat").write_text(str(int(time.time())))
    health = job.run("health", conf=broken)
    assert health.returncode != 0 and "the last run failed" in health.stdout


def test_the_shell_schedule_check_agrees_with_config_cron(tools: tuple[str, str], tmp_path: Path):
    busybox, restic = tools
    job = make_job(tmp_path / "cron", None, busybox, restic)
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = [base + timedelta(minutes=m) for m in range(0, 3 * 1440)]  # three whole days
    minutes += [base + timedelta(minutes=rng.randrange(2 * 366 * 1440)) for _ in range(3000)]
    for expression in ("0 3 * * *", "0 0 13 * 5", "0 0 */2 * 5", "30 */4 1-7 * 1", "5 12 * jan,jul 0"):
        schedule = parse_cron(expression)
        runs = [schedule.next_run(t) for t in minutes[::500]]  # the runs themselves and their neighbours
        times = minutes + [r + timedelta(minutes=d) for r in runs for d in (-1, 0, 1)]
        conf = job.conf.read_text() + "".join(f"{k}='{v}'\n" for k, v in schedule.shell_fields().items())
        path = job.conf.with_name("cron.conf")
        path.write_text(conf)
        lines = "".join(f"{t.minute} {t.hour} {t.day} {t.month} {t.isoweekday() % 7}\n" for t in times)
        proc = subprocess.run(
            [job.busybox, "sh", str(job.conf.parent / "job.sh"), "due-selftest"],
            input=lines,
            env={**job.env, "MAILSTACK_JOB_CONF": str(path)},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        shell = [line == "1" for line in proc.stdout.split()]
        python = [schedule.matches(t) for t in times]
        assert shell == python, expression
        assert sum(python) >= len(runs), expression


class LocalJobRunner:
    """Stands in for ``docker exec <job> /bin/sh /mailstack/job.sh ...``: runs the job script here."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def run(self, argv: Sequence[str], *, stdin: bytes | None, timeout: float) -> Result:
        args = list(argv)
        assert args[:2] == ["docker", "exec"] and args[3:5] == ["/bin/sh", bk.JOB_SCRIPT_PATH], args
        proc = self.job.run(*args[5:], timeout=timeout)
        return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def stream(self, argv: Sequence[str], *, timeout: float) -> Result:
        return self.run(argv, stdin=None, timeout=timeout)

    def pipe(self, producer: Sequence[str], consumer: Sequence[str], *, timeout: float) -> Result:
        raise AssertionError("not used here")


def backup_output(job: Job) -> dict:
    return {
        "schema": 1,
        "stack": "dev",
        "dockerHost": None,
        "job": "mailstack-dev-backup",
        "resticHost": "mailstack-dev",
        "image": bk.DEFAULT_IMAGE,
        "repository": str(job.repo),
        "localRepository": str(job.repo),
        "schedule": "0 3 * * *",
        "keep": {"daily": 7, "weekly": 4, "monthly": 6},
        "domains": {
            d: {
                "server": s,
                "hostname": f"mail.{d}",
                "container": f"mailstack-dev-{s}",
                "webmailContainer": None,
                "configVolume": f"mailstack-dev-{d.replace('.', '-')}-config",
                "drill": f"backup-drill@{d}",
                "users": [],
                "tags": bk.snapshot_tags("dev", d),
                "volumes": {},
            }
            for d, s in ((D1, "mta1"), (D2, "mta2"))
        },
    }


def test_the_tools_read_real_restic_output(first_run: FirstRun):
    job = first_run.job
    docker = Docker(None, LocalJobRunner(job))
    target = load_target({"backup": backup_output(job)})
    found = snaps.with_sizes(docker, target, snaps.list_snapshots(docker, target))
    assert sorted(s.domain for s in found) == [D1, D2]
    for s in found:
        assert s.size is not None and s.size > 0  # restic 0.14 has no summary: measured with restic stats
        assert s.marker and s.marker_uid is not None
    only = snaps.list_snapshots(docker, target, target.domain(D2))
    assert [s.domain for s in only] == [D2]
    d1 = next(s for s in found if s.domain == D1)
    assert snaps.choose(found, D1, "latest") == d1 == snaps.choose(found, D1, d1.short_id)
    now = datetime.now(UTC)
    text = snaps.render_snapshots(target, found, now, job.run("status").stdout)
    assert f"{D1} (1 snapshot)" in text and f"{D2} (1 snapshot)" in text
    assert "last run: ok manual run" in text and "MISSING" not in text
    assert PASSWORD not in text


def test_the_restore_and_drill_steps_with_real_restic_busybox_and_dovecot(
    first_run: FirstRun, mail_lab: MailLab
):
    """The restore container's restic arguments, the drill's uidlist script and its IMAP check, for real."""
    from tools.backups import drill
    from tools.backups.restore import restore_argvs

    run, lab = first_run, mail_lab
    raw = next(s for s in run.snapshots if f"domain={D1}" in s["tags"])
    target = load_target({"backup": backup_output(run.job)})
    (snap,) = [s for s in snaps.parse_snapshots(json.dumps([raw]))]
    live = lab.domain(D1).dir
    mail_path, queue_path = str(live / "mail"), str(live / "queue")
    _, consumer = restore_argvs(target, "image", snap, [("v1", mail_path), ("v2", queue_path)], "name")
    restic_args = consumer[consumer.index("mailstack-restore") + 1 :]
    out = run.job.root / "restore-args"
    restic_args[restic_args.index("--target") + 1] = str(out)  # here, not into /
    proc = run.job.restic(*restic_args)
    assert proc.returncode == 0, proc.stderr
    restored = out / live.relative_to("/")
    assert sorted(p.name for p in restored.iterdir()) == ["mail", "queue"]  # exactly the included paths
    assert (restored / "mail" / D1).is_dir()

    marker = snap.marker
    user = lab.domain(D1).user
    local_part = user.split("@")[0] + "/Maildir"
    script = drill.marker_script(D1, local_part, marker, root=str(restored / "mail"))
    found = subprocess.run(
        [run.job.busybox, "sh", "-c", script], env=run.job.env, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stdout + found.stderr
    uid, _, count = found.stdout.split()
    assert int(uid) == snap.marker_uid
    assert int(count) == len(imap_uids(lab, D1))

    check = subprocess.run(
        ["python3", "-c", drill.IMAP_CHECK, user, marker, str(lab.domain(D1).imap_port)],
        input=lab.domain(D1).password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    answer = json.loads(check.stdout)
    assert answer == {"exists": len(imap_uids(lab, D1)), "uids": [snap.marker_uid]}
    assert lab.domain(D1).password not in check.stdout + check.stderr


FAKE_DATE = """#!/bin/sh
# date at the test's clock: the seconds since the epoch in $MAILSTACK_TEST_CLOCK
case " $* " in *" -d "*) exec busybox date "$@" ;; esac
exec busybox date -d "@$(cat "$MAILSTACK_TEST_CLOCK")" "$@"
"""
FAKE_SLEEP = """#!/bin/sh
# sleep moves the test's clock instead of waiting; past the end it stops the loop like `docker stop`
now=$(( $(cat "$MAILSTACK_TEST_CLOCK") + ${1%.*} ))
echo "$now" >"$MAILSTACK_TEST_CLOCK"
[ "$now" -lt "$MAILSTACK_TEST_END" ] || kill -TERM "$PPID"
"""


def test_the_loop_runs_at_exactly_the_minutes_config_cron_computes(tools: tuple[str, str], tmp_path: Path):
    """The job's real loop on a simulated clock (date and sleep replaced): four hours of minutes, one run
    at each scheduled minute and only then, and `docker stop`'s SIGTERM ends it cleanly."""
    busybox, restic = tools
    job = make_job(tmp_path / "loop", None, busybox, restic)
    schedule = parse_cron("17 * * * *")
    conf = job.conf.read_text() + "".join(f"{k}='{v}'\n" for k, v in schedule.shell_fields().items())
    job.conf.write_text(conf)
    bin_dir = Path(job.env["PATH"])
    for name, text in (("date", FAKE_DATE), ("sleep", FAKE_SLEEP)):
        (bin_dir / name).unlink()
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    start = datetime(2026, 12, 1, 2, 59, 30, tzinfo=UTC)
    end = start + timedelta(hours=4)
    clock = tmp_path / "clock"
    clock.write_text(str(int(start.timestamp())))
    env = {**job.env, "MAILSTACK_TEST_CLOCK": str(clock), "MAILSTACK_TEST_END": str(int(end.timestamp()))}
    proc = subprocess.run(
        [busybox, "sh", str(job.conf.parent / "job.sh"), "loop"],
        env={**env, "MAILSTACK_JOB_CONF": str(job.conf)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mailstack-backup: stopping" in proc.stdout
    started = [
        datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        for line in proc.stdout.splitlines()
        if line.endswith("scheduled run started")
    ]
    expected, t = [], start
    while (t := schedule.next_run(t)) < end:
        expected.append(t)
    assert len(expected) == 4
    assert started == expected
    assert proc.stdout.count("scheduled run ok") == 4, proc.stdout
    beat = int((tmp_path / "loop" / "state" / "heartbeat").read_text())
    assert end.timestamp() - 60 <= beat <= end.timestamp()


def test_the_edge_certificates_get_their_own_snapshot(tools: tuple[str, str], tmp_path: Path):
    busybox, restic = tools
    job = make_job(tmp_path / "edge", None, busybox, restic)
    job.conf.write_text(job.conf.read_text() + f"EDGE_DIR={bk.EDGE_DIR}\n")
    edge = tmp_path / "edge" / "data" / bk.EDGE_DIR
    edge.mkdir(parents=True)
    (edge / "mail.example.org.crt").write_text("certificate")
    proc = job.run("once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (snapshot,) = job.snapshots()
    assert snapshot["paths"] == [str(edge)] and "scope=edge" in snapshot["tags"]
