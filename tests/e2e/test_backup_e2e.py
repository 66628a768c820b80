"""End to end: backups on a real Docker engine. Back up, prove it restores, lose a domain's volumes, restore.

Its own stack (``e2e-<8 hex>``, the same plan as ``test_e2e.py``: two domains, a webmail for the first) with
``mailstack:backup`` on and a local restic repository in a directory of the project (``.e2e-restic-*``,
removed afterwards), so the Docker engine reads the same path. The tests run in file order:

1. the backup job and the webmail-export sidecar are running and healthy after the first ``up``;
2. a message for user1@example1.local arrives; ``make backup``'s run makes one snapshot per domain, each
   with a marker whose UID the job recorded;
3. ``make restore-drill`` restores both domains into scratch stacks and finds each marker over IMAP with
   the backed-up UID; the scratch stacks are gone afterwards;
4. losing example1.local's data: its server, webmail, sidecar and the job are removed and its mail, state
   and webmail database volumes deleted; ``pulumi up --refresh`` brings back containers and empty volumes;
5. ``make restore DOMAIN=example1.local FORCE=1`` refuses without FORCE (the new state volume is not empty),
   then restores: the message is back with its UID, the drill account's marker too, the server is healthy
   and the webmail login works again (``make verify``);
6. ``pulumi preview --expect-no-changes``: the restored volumes carry the labels the stack declares.

A test that builds on an earlier step is skipped, naming it, when that step failed. Prerequisites are the
suite's (``conftest.e2e_ready``) plus the pinned restic image (inspected, else pulled).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config import backup as bk
from tests.e2e import support
from tests.e2e.conftest import Deployment, Steps, new_deployment
from tests.e2e.support import DOMAINS, NAMESPACE, PROJECT_DIR, Secret
from tools import verify
from tools.backups import drill, restore, snapshots
from tools.backups.docker import Docker
from tools.backups.target import BackupTarget, Refused, load_target

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
LOST = "example1.local"
"""The domain whose volumes the test deletes (it has the webmail)."""


@dataclass(repr=False)
class BackupRun(Steps):
    """The deployed stack with backups, and what the tests learn."""

    dep: Deployment
    repository: Path
    steps: dict[str, bool] = field(default_factory=dict)
    token: str = ""
    before: list[tuple[int, str]] = field(default_factory=list)
    """``(UID, Subject)`` of user1@example1.local's INBOX before the loss."""

    def __repr__(self) -> str:
        return f"BackupRun({self.dep.plan.stack}, steps={self.steps})"

    def target(self) -> BackupTarget:
        return load_target(self.dep.outputs().raw)

    def docker(self) -> Docker:
        return Docker(None)


def backup_entries(repository: Path, password: Secret) -> list[support.ConfigEntry]:
    """``mailstack:backup`` (plain) and ``mailstack:backupSecrets.password`` (secret) as --path entries."""
    plain = support.flatten_config(
        NAMESPACE,
        {"backup": {"enabled": True, "repository": str(repository), "schedule": "0 3 * * *"}},
    )
    return [
        *(support.ConfigEntry(k, v) for k, v in plain.items()),
        support.ConfigEntry(f"{NAMESPACE}:backupSecrets.password", password),
    ]


def _remove_repository(path: Path, run: support.Runner, timeout: float, image: str) -> None:
    """The repository's files belong to the container's root: remove them from a container, then the folder."""
    if path.exists():
        run(
            [
                "docker",
                "run",
                "--rm",
                "-v",
                f"{path}:/r",
                "--entrypoint",
                "/bin/sh",
                image,
                "-c",
                "rm -rf /r/*",
            ],
            timeout,
        )
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def backups(
    e2e_ready: support.Prerequisites, e2e_timeouts: support.Timeouts, say: support.Say
) -> Iterator[BackupRun]:
    """Deploy the e2e plan with backups on; always clean up (stack, Docker objects, repository)."""
    run = support.run_command
    image = bk.DEFAULT_IMAGE
    problem = support.image_problem(image, run, e2e_timeouts, say)
    if problem:
        if os.environ.get(support.REQUIRE_ENV) == "1":
            pytest.fail(f"e2e backups: {problem}", pytrace=False)
        pytest.skip(f"e2e backups: {problem}")
    repository: Path | None = None
    try:
        with new_deployment(e2e_ready, e2e_timeouts, say) as dep:
            plan, stack = dep.plan, dep.stack
            repository = Path(tempfile.mkdtemp(prefix=f".e2e-restic-{plan.stack}-", dir=PROJECT_DIR))
            dep.set_config(support.initial_entries(plan) + backup_entries(repository, support.new_password()))
            result = BackupRun(dep, repository)
            with result.step("up"):
                dep.pulumi(f"pulumi up of {plan.stack} with backups on", stack.up)
                dep.volumes = {d: dict(e.get("volumes") or {}) for d, e in dep.outputs().domains.items()}
            yield result
    finally:  # after the stack's own clean-up, which stops the job that writes the repository
        if repository is not None:
            _remove_repository(repository, run, e2e_timeouts.docker_info * 4, image)


def _inbox(port: int, address: str, password: Secret) -> list[tuple[int, str]]:
    """``(UID, Subject)`` of every message in the INBOX."""
    client = imaplib.IMAP4(HOST, port, timeout=20)
    try:
        client.login(address, password.reveal())
        client.select("INBOX", readonly=True)
        typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found = []
        for item in data if typ == "OK" else []:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                found.append((uid, item[1].decode(errors="replace").split(":", 1)[-1].strip()))
        return sorted(found)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def _ports(plan: support.Plan, domain: str) -> dict[str, int]:
    return next(p for spec, p in zip(DOMAINS, plan.ports, strict=True) if spec.domain == domain)


def test_the_job_and_the_sidecar_are_healthy(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("up")
    target = backups.target()
    docker = backups.docker()
    for name in (target.job, f"mailstack-{dep.plan.stack}-webmail-export-mta1"):
        seconds = restore.wait_healthy(docker, name, timeout=dep.timeouts.pulumi)
        dep.say(f"{name} healthy ({seconds:.0f} s)")


def test_make_backup_snapshots_every_domain_with_a_marker(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("up")
    plan = dep.plan
    user = f"user1@{LOST}"
    password = plan.account_passwords()[user]
    backups.token = support.new_token()
    with backups.step("backup"):
        try:
            support.send_message(HOST, _ports(plan, LOST)["submission"], user, password, user, backups.token)
        except (smtplib.SMTPException, OSError) as exc:
            pytest.fail(f"could not send the message to keep: {exc}", pytrace=False)
        ok, _, reason = support.poll(
            lambda: support.inbox_has_token(HOST, _ports(plan, LOST)["imap"], user, password, backups.token),
            dep.timeouts.verify,
            say=dep.say,
            what=f"{backups.token} in {user}'s INBOX",
        )
        assert ok, reason
        backups.before = _inbox(_ports(plan, LOST)["imap"], user, password)
        target = backups.target()
        result = backups.docker().stream("exec", target.job, "/bin/sh", bk.JOB_SCRIPT_PATH, "once")
        assert result.ok, f"make backup failed (exit {result.code}); `docker logs {target.job}` shows why"
        found = snapshots.list_snapshots(backups.docker(), target)
        by_domain = {s.domain: s for s in found}
        assert sorted(by_domain) == sorted(d.domain for d in DOMAINS)
        for s in found:
            assert s.marker and s.marker_uid is not None, f"snapshot {s.short_id} of {s.domain} has no marker"
        dep.say(
            snapshots.render_snapshots(
                target, snapshots.with_sizes(backups.docker(), target, found), snapshots.utcnow()
            )
        )


def test_the_restore_drill_finds_every_marker(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("backup")
    target = backups.target()
    passwords = dep.outputs().raw.get("generatedPasswords") or {}
    results = drill.run_drill(backups.docker(), target, passwords, say=dep.say)
    dep.say(drill.render_drill(results, snapshots.utcnow()))
    assert results and all(r.passed for r in results), drill.render_drill(results, snapshots.utcnow())
    left = [
        n
        for n in support.stack_docker_objects(dep.plan.stack, dep.run, dep.timeouts.docker_info)["container"]
        if "-drill-" in n
    ]
    assert not left, f"the drill left scratch containers: {left}"


def test_losing_a_domains_volumes(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("backup")
    stack = dep.plan.stack
    target = backups.target()
    domain = target.domain(LOST)
    with backups.step("lost"):
        # Everything that mounts the domain's volumes goes first, as after a failed disk.
        doomed = [
            domain.container,
            domain.webmail_container,
            f"mailstack-{stack}-webmail-export-mta1",
            target.job,
        ]
        removed = dep.run(["docker", "rm", "-f", *[c for c in doomed if c]], dep.timeouts.docker_info * 4)
        assert removed.ok, removed.reason()
        names = [v.name for v in domain.restored_volumes()]
        gone = dep.run(["docker", "volume", "rm", *names], dep.timeouts.docker_info * 4)
        assert gone.ok, f"could not delete {names}: {gone.reason()}"
        dep.pulumi(
            "pulumi up --refresh (re-creates the lost containers and empty volumes)",
            dep.stack.up,
            refresh=True,
        )
        for name in names:
            assert support.volume_created_at(name, dep.run, dep.timeouts.docker_info), (
                f"{name} was not re-created"
            )
        password = dep.plan.account_passwords()[f"user1@{LOST}"]
        after = _inbox(_ports(dep.plan, LOST)["imap"], f"user1@{LOST}", password)
        assert backups.token not in " ".join(s for _, s in after), (
            "the mail survived the loss: nothing was lost"
        )


def test_make_restore_brings_the_mail_back_with_its_uids(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("lost")
    target = backups.target()
    docker = backups.docker()
    with pytest.raises(Refused, match="not empty"):
        restore.restore_domain(docker, target, LOST, say=dep.say)  # the fresh state volume holds data
    with backups.step("restored"):
        report = restore.restore_domain(docker, target, LOST, force=True, say=dep.say)
        dep.say(restore.render_report(report, snapshots.utcnow()))
        assert {v.role for v in report.volumes} == {"mail", "state", "webmail-db"}
        user = f"user1@{LOST}"
        assert user in report.resynced and target.domain(LOST).drill in report.resynced
        password = dep.plan.account_passwords()[user]
        after = _inbox(_ports(dep.plan, LOST)["imap"], user, password)
        assert after == backups.before, f"INBOX after the restore {after}, before the loss {backups.before}"
    # mail flows again, and the webmail (its database restored from the copy) logs in
    targets = verify.load_targets(dep.outputs().raw)
    report = verify.run(targets, timeout=dep.timeouts.verify, progress=dep.say, stack=dep.plan.stack)
    assert report.passed, verify.render_report(report)


def test_nothing_drifts_after_the_restore(backups: BackupRun) -> None:
    dep = backups.dep
    backups.require("restored")
    result = dep.pulumi(
        "pulumi preview --expect-no-changes", dep.stack.preview, expect_no_changes=True, diff=True
    )
    changes = support.unexpected_ops(result.change_summary)
    assert not changes, f"after the restore the stack wants changes (labels or names differ?): {changes}"
