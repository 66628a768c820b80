"""tools.backups: the Docker commands backup, snapshots, restore and the drill build, their order, refusals,
re-created volumes and labels, force-resync, reports, and that no secret reaches an argument.

A small fake Docker engine answers the commands (volumes, containers, the job's restic); the real commands
run against real restic, Postfix and Dovecot in tests/contract/test_backup.py and on Docker in tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from config import backup as bk
from tools.backups import __main__ as cli
from tools.backups import drill, restore, snapshots
from tools.backups.docker import Docker, Result
from tools.backups.target import BackupError, Refused, load_target

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
JOB = "mailstack-dev-backup"
IMAGE = "sha256:" + "ab" * 32
SERVER_IMAGE = "sha256:" + "cd" * 32
DRILL_PASSWORD = "generated-drill-password-x"


def volume(domain: str, role: str, path: str | None) -> dict:
    slug = domain.replace(".", "-")
    return {
        "name": f"mailstack-dev-{slug}-{role}",
        "labels": {"mailstack.domain": domain, "mailstack.stack": "dev", "mailstack.volume": role},
        "path": path,
    }


def output(docker_host: str | None = None) -> dict:
    domains = {}
    for domain, server in (("example1.local", "mta1"), ("example2.local", "mta2")):
        domains[domain] = {
            "server": server,
            "hostname": f"mail.{domain}",
            "container": f"mailstack-dev-{server}",
            "webmailContainer": f"mailstack-dev-webmail-{server}",
            "configVolume": f"mailstack-dev-{domain.replace('.', '-')}-config",
            "drill": f"backup-drill@{domain}",
            "users": [f"user1@{domain}", f"backup-drill@{domain}"],
            "tags": bk.snapshot_tags("dev", domain),
            "volumes": {
                "mail": volume(domain, "mail", f"/data/{domain}/mail"),
                "state": volume(domain, "state", f"/data/{domain}/state"),
                "webmail-db": volume(domain, "webmail-db", f"/data/{domain}/webmail"),
                "webmail-export": volume(domain, "webmail-export", None),
            },
        }
    return {
        "backup": {
            "schema": 1,
            "stack": "dev",
            "dockerHost": docker_host,
            "job": JOB,
            "resticHost": "mailstack-dev",
            "image": bk.DEFAULT_IMAGE,
            "repository": "/srv/restic/dev",
            "localRepository": "/srv/restic/dev",
            "schedule": "0 3 * * *",
            "keep": {"daily": 7, "weekly": 4, "monthly": 6},
            "domains": domains,
        },
        "generatedPasswords": {
            "backup-drill@example1.local": DRILL_PASSWORD,
            "backup-drill@example2.local": "pw2",
        },
    }


def snapshot_json(domain: str, when: str, sid: str, marker: bool = True, uid: int = 7) -> dict:
    tags = bk.snapshot_tags("dev", domain)
    if marker:
        tags += [f"marker=mailstack-drill.x@{domain}", f"marker-uid={uid}"]
    else:
        tags += ["marker=none"]
    return {
        "id": sid * 8,
        "short_id": sid,
        "time": when,
        "hostname": "mailstack-dev",
        "paths": [f"/data/{domain}"],
        "tags": tags,
    }


@dataclass
class Engine:
    """Answers docker commands from a little model of the host."""

    volumes: dict[str, dict] = field(default_factory=dict)
    """name -> {"labels": {...}, "files": [...]}"""
    running: dict[str, bool] = field(default_factory=dict)
    health: dict[str, list[str]] = field(default_factory=dict)
    snapshots: list[dict] = field(default_factory=list)
    restore_ok: bool = True
    imap_uids: list[int] = field(default_factory=lambda: [7])
    calls: list[tuple[str, tuple[str, ...], bytes | None]] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, stdin: bytes | None, timeout: float) -> Result:
        self.calls.append(("run", tuple(argv), stdin))
        return self._answer(list(argv), stdin)

    def stream(self, argv: Sequence[str], *, timeout: float) -> Result:
        self.calls.append(("stream", tuple(argv), None))
        return Result(tuple(argv), 0)

    def pipe(self, producer: Sequence[str], consumer: Sequence[str], *, timeout: float) -> Result:
        self.calls.append(("pipe", tuple(producer), None))
        self.calls.append(("pipe-into", tuple(consumer), None))
        if not self.restore_ok:
            return Result(tuple(consumer), 1)
        for arg in consumer:  # the restore fills every mounted volume
            name = arg.split(":", 1)[0]
            if name in self.volumes:
                self.volumes[name]["files"] = ["restored"]
        return Result(tuple(consumer), 0)

    def _answer(self, argv: list[str], stdin: bytes | None) -> Result:
        args = argv[3:] if argv[1:2] == ["-H"] else argv[1:]
        ok = lambda out="": Result(tuple(argv), 0, out)  # noqa: E731
        if args[:3] == ["inspect", "--format", "{{.Image}}"]:
            return (
                ok(IMAGE)
                if args[3] in self.running
                else Result(tuple(argv), 1, "", f"Error: No such object: {args[3]}")
            )
        if args[:3] == ["inspect", "--format", "{{.State.Running}}"]:
            name = args[3]
            return (
                ok("true" if self.running.get(name) else "false")
                if name in self.running
                else Result(tuple(argv), 1)
            )
        if args[:2] == ["inspect", "--format"] and "Health" in args[2]:
            states = self.health.get(args[3], ["healthy"])
            return ok(states.pop(0) if len(states) > 1 else states[0])
        if args[:3] == ["inspect", "--format", "{{json .}}"]:
            return ok(
                json.dumps(
                    {
                        "Image": SERVER_IMAGE,
                        "Config": {"Env": ["PATH=/usr/bin", "SSL_TYPE=", "PERMIT_DOCKER=none"]},
                        "Mounts": [
                            {
                                "Type": "bind",
                                "Source": "/etc/letsencrypt",
                                "Destination": "/etc/letsencrypt",
                                "RW": False,
                            }
                        ],
                    }
                )
            )
        if args[:2] == ["volume", "inspect"]:
            name = args[-1]
            if name not in self.volumes:
                return Result(tuple(argv), 1, "", f"Error response from daemon: get {name}: no such volume")
            return ok(json.dumps(self.volumes[name]["labels"]))
        if args[:2] == ["volume", "create"]:
            labels = dict(a.split("=", 1) for a in args[2:-1] if a != "--label")
            self.volumes[args[-1]] = {"labels": labels, "files": []}
            return ok(args[-1])
        if args[:2] == ["volume", "rm"]:
            self.volumes.pop(args[-1], None)
            return ok()
        if args[:2] in (["network", "create"], ["network", "rm"], ["rm", "-f"]):
            return ok()
        if args[:1] in (["stop"], ["start"]):
            self.running[args[-1]] = args[0] == "start"
            return ok(args[-1])
        if (
            args[:2] == ["run", "--rm"]
            and "--network" in args
            and args[args.index("--network") + 1] == "none"
        ):
            script = args[-1]
            mounted = [a.split(":")[0] for a in args if ":/" in a and not a.startswith("/")]
            if script.startswith("ls -A"):
                files = self.volumes[mounted[0]]["files"]
                return ok(files[0] + "\n" if files else "")
            if script.startswith("rm -rf"):
                self.volumes[mounted[0]]["files"] = []
                return ok()
            if script.startswith("du -sk"):
                return ok("2048\n17\n")
            if script.startswith("cp -a"):
                return ok()
            if "dovecot-uidlist" in script:
                return ok("7 1733020800.M1P2.mail 3\n")
        if args[:2] == ["run", "-d"]:
            self.running[args[args.index("--name") + 1]] = True
            return ok("container-id")
        if args[:1] == ["exec"]:
            if "restic" in args and "snapshots" in args:
                tag = args[args.index("--tag") + 1] if "--tag" in args else None
                found = [s for s in self.snapshots if tag is None or tag in s["tags"]]
                return ok(json.dumps(found))
            if "restic" in args and "stats" in args:
                return ok(json.dumps({"total_size": 123456, "total_file_count": 42}))
            if "status" in args:
                return ok("ok scheduled run at 2026-12-01T03:00:00Z, 12 s\n")
            if "doveadm" in args:
                return ok()
            if "python3" in args:
                return ok(json.dumps({"exists": 3, "uids": self.imap_uids}))
        raise AssertionError(f"unexpected docker command: {argv}")

    def commands(self) -> list[tuple[str, ...]]:
        """Every command without the `docker [-H host]` prefix."""
        return [c[1][3:] if c[1][1:2] == ("-H",) else c[1][1:] for c in self.calls]


def world(*, empty: bool = True, missing: Sequence[str] = ()) -> Engine:
    engine = Engine()
    target = output()["backup"]
    for entry in target["domains"].values():
        for v in entry["volumes"].values():
            if v["name"] not in missing:
                engine.volumes[v["name"]] = {
                    "labels": dict(v["labels"]),
                    "files": [] if empty else ["example1.local"],
                }
        engine.running[entry["container"]] = True
        engine.running[entry["webmailContainer"]] = True
    engine.running[JOB] = True
    engine.snapshots = [
        snapshot_json("example1.local", "2026-11-30T03:00:12.123456789Z", "aaaa1111"),
        snapshot_json("example1.local", "2026-12-01T03:00:10.5Z", "bbbb2222"),
        snapshot_json("example2.local", "2026-12-01T03:00:40Z", "cccc3333"),
    ]
    return engine


def restore_with(engine: Engine, **kwargs):
    target = load_target(output())
    clock = iter(float(i) for i in range(10_000))
    return restore.restore_domain(
        Docker(None, engine),
        target,
        "example1.local",
        now=lambda: NOW,
        clock=lambda: next(clock),
        sleep=lambda s: None,
        **kwargs,
    )


# --- target ---------------------------------------------------------------------------------------------


def test_the_backup_output_is_required_and_versioned():
    with pytest.raises(BackupError, match=r"no `backup` output: turn backups on \(mailstack:backup.enabled"):
        load_target({})
    bad = output()
    bad["backup"]["schema"] = 2
    with pytest.raises(BackupError, match="schema 2, these tools read schema 1"):
        load_target(bad)
    target = load_target(output())
    assert [v.role for v in target.domain("example1.local").restored_volumes()] == [
        "mail",
        "state",
        "webmail-db",
    ]
    with pytest.raises(Refused, match=r"no domain 'nope.example'.*known: example1.local, example2.local"):
        target.domain("nope.example")


# --- restore --------------------------------------------------------------------------------------------


def test_restore_runs_every_step_in_order():
    engine = world()
    report = restore_with(engine)
    cmds = engine.commands()
    kinds = [c[0] if c[0] != "inspect" else f"inspect {c[2]}" for c in cmds]
    first = lambda what: next(i for i, c in enumerate(cmds) if c[: len(what)] == what)  # noqa: E731
    order = [
        first(("inspect", "--format", "{{.Image}}", JOB)),
        first(("exec", JOB, "/bin/sh", bk.JOB_SCRIPT_PATH, "restic", "snapshots")),
        first(("volume", "inspect")),
        first(("stop", "-t", "30", JOB)),
        first(("stop", "-t", "30", "mailstack-dev-webmail-mta1")),
        first(("stop", "-t", "60", "mailstack-dev-mta1")),
        first(("cp", f"{JOB}:/mailstack", "-")),
        first(("start", "mailstack-dev-mta1")),
        first(("exec", "mailstack-dev-mta1", "doveadm", "force-resync")),
        first(("start", "mailstack-dev-webmail-mta1")),
        first(("start", JOB)),
    ]
    assert order == sorted(order), kinds
    resyncs = [c for c in cmds if c[:4] == ("exec", "mailstack-dev-mta1", "doveadm", "force-resync")]
    assert resyncs == [
        ("exec", "mailstack-dev-mta1", "doveadm", "force-resync", "-u", "user1@example1.local", "*"),
        ("exec", "mailstack-dev-mta1", "doveadm", "force-resync", "-u", "backup-drill@example1.local", "*"),
    ]
    assert not any(
        "mta2" in " ".join(c) for c in cmds if c[0] in ("stop", "start", "exec") and "doveadm" in c
    )
    assert report.snapshot.short_id == "bbbb2222"  # the newest of example1.local
    assert [(v.role, v.action, v.kilobytes, v.files) for v in report.volumes] == [
        ("mail", "filled", 2048, 17),
        ("state", "filled", 2048, 17),
        ("webmail-db", "filled", 2048, 17),
    ]
    assert report.restarted == ["mailstack-dev-mta1", "mailstack-dev-webmail-mta1", JOB]


def test_the_restore_container_gets_the_secrets_on_stdin_never_as_arguments():
    engine = world()
    restore_with(engine)
    (producer,) = [c[1] for c in engine.calls if c[0] == "pipe"]
    (consumer,) = [c[1] for c in engine.calls if c[0] == "pipe-into"]
    assert producer == ("docker", "cp", f"{JOB}:/mailstack", "-")
    assert consumer[:3] == ("docker", "run", "--rm") and "-i" in consumer and "-t" not in consumer
    assert consumer[consumer.index("--tmpfs") + 1] == "/mailstack:rw,mode=0700"
    assert not {"-e", "--env", "--env-file"} & set(consumer)
    volumes = [consumer[i + 1] for i, a in enumerate(consumer) if a == "-v"]
    assert volumes == [
        "mailstack-dev-example1-local-mail:/data/example1.local/mail",
        "mailstack-dev-example1-local-state:/data/example1.local/state",
        "mailstack-dev-example1-local-webmail-db:/data/example1.local/webmail",
        "/srv/restic/dev:/srv/restic/dev",
    ]
    tail = consumer[consumer.index(IMAGE) :]
    assert tail == (
        IMAGE,
        "-c",
        f'tar -x -f - -C / && exec /bin/sh {bk.JOB_SCRIPT_PATH} restic "$@"',
        "mailstack-restore",
        "restore",
        "bbbb2222" * 8,
        "--target",
        "/",
        "--include",
        "/data/example1.local/mail",
        "--include",
        "/data/example1.local/state",
        "--include",
        "/data/example1.local/webmail",
        "--verify",
    )
    # the only stdin any command got is none at all: the tar goes from docker cp to docker run directly
    assert all(c[2] is None for c in engine.calls)


def test_restore_refuses_volumes_that_hold_data_and_stops_nothing():
    engine = world(empty=False)
    with pytest.raises(Refused) as err:
        restore_with(engine)
    message = str(err.value)
    assert "refusing to restore example1.local over volumes that are not empty" in message
    assert "mailstack-dev-example1-local-mail (holds 'example1.local'...)" in message
    assert "make restore DOMAIN=example1.local FORCE=1" in message
    assert not [c for c in engine.commands() if c[0] in ("stop", "cp") or c[:2] == ("volume", "create")]


def test_force_empties_the_volumes_before_restoring():
    engine = world(empty=False)
    report = restore_with(engine, force=True)
    cmds = engine.commands()
    empties = [c for c in cmds if c[-1] == restore.EMPTY_SCRIPT]
    assert [c[c.index("-v") + 1] for c in empties] == [
        "mailstack-dev-example1-local-mail:/v",
        "mailstack-dev-example1-local-state:/v",
        "mailstack-dev-example1-local-webmail-db:/v",
    ]  # read-write mounts, no network
    assert all(c[c.index("--network") + 1] == "none" for c in empties)
    last_stop = max(i for i, c in enumerate(cmds) if c[0] == "stop")
    assert min(i for i, c in enumerate(cmds) if c[-1] == restore.EMPTY_SCRIPT) > last_stop
    assert {v.action for v in report.volumes} == {"emptied"}


def test_missing_volumes_are_recreated_with_the_stack_labels():
    names = ["mailstack-dev-example1-local-mail", "mailstack-dev-example1-local-webmail-db"]
    engine = world(missing=names)
    report = restore_with(engine)
    creates = [c for c in engine.commands() if c[:2] == ("volume", "create")]
    assert creates == [
        (
            "volume",
            "create",
            "--label",
            "mailstack.domain=example1.local",
            "--label",
            "mailstack.stack=dev",
            "--label",
            "mailstack.volume=mail",
            "mailstack-dev-example1-local-mail",
        ),
        (
            "volume",
            "create",
            "--label",
            "mailstack.domain=example1.local",
            "--label",
            "mailstack.stack=dev",
            "--label",
            "mailstack.volume=webmail-db",
            "mailstack-dev-example1-local-webmail-db",
        ),
    ]
    assert (
        engine.volumes[names[0]]["labels"]
        == load_target(output()).domain("example1.local").volumes["mail"].labels
    )
    assert [v.action for v in report.volumes] == ["created", "filled", "created"]


def test_a_failed_restore_leaves_everything_stopped_and_says_so():
    engine = world()
    engine.restore_ok = False
    with pytest.raises(BackupError) as err:
        restore_with(engine)
    assert "restic restore failed (exit status 1" in str(err.value)
    assert f"Left stopped: {JOB}, mailstack-dev-webmail-mta1, mailstack-dev-mta1" in str(err.value)
    assert not [c for c in engine.commands() if c[0] == "start"]


def test_an_unhealthy_server_after_the_restore_is_an_error():
    engine = world()
    engine.health["mailstack-dev-mta1"] = ["starting", "unhealthy"]
    with pytest.raises(BackupError, match="mailstack-dev-mta1 is not healthy after the restore"):
        restore_with(engine)
    assert not [c for c in engine.commands() if "doveadm" in c]


def test_wait_healthy_gives_up_after_its_timeout():
    engine = Engine(health={"c": ["starting"] * 1000})
    ticks = iter(range(0, 10_000, 2))
    with pytest.raises(BackupError, match=r"c is not healthy after the restore \(starting after 30[0-9] s\)"):
        restore.wait_healthy(
            Docker(None, engine), "c", timeout=300, clock=lambda: float(next(ticks)), sleep=lambda s: None
        )


def test_snapshot_selection():
    engine = world()
    report = restore_with(engine, selector="aaaa")
    assert report.snapshot.short_id == "aaaa1111"
    with pytest.raises(
        Refused,
        match=r"SNAPSHOT=cccc is not a snapshot of this domain; the newest ones of "
        "example1.local: bbbb2222, aaaa1111",
    ):
        restore_with(world(), selector="cccc")
    empty = world()
    empty.snapshots = []
    with pytest.raises(BackupError, match=r"no snapshot of example1\.local yet: run `make backup` first"):
        restore_with(empty)


def test_no_job_container_means_no_restore_with_the_way_out():
    engine = world()
    del engine.running[JOB]
    with pytest.raises(
        BackupError, match=r"does not exist .*make up` on the new host, then restore with FORCE=1"
    ):
        restore_with(engine)


def test_the_docker_host_of_the_stack_is_used():
    engine = world()
    target = load_target(output("ssh://deploy@mx.example.org"))
    docker = Docker(target.docker_host, engine)
    snapshots.list_snapshots(docker, target)
    assert engine.calls[-1][1][:3] == ("docker", "-H", "ssh://deploy@mx.example.org")


def test_the_restore_report():
    report = restore_with(world())
    text = restore.render_report(report, NOW)
    assert text.splitlines()[0].startswith(
        "Restored example1.local from snapshot bbbb2222 (2026-12-01 03:00 UTC, 6 h 29 min old) in "
    )
    assert "  mail        mailstack-dev-example1-local-mail" in text and "2.0 MiB  17 files" in text
    assert "doveadm force-resync: user1@example1.local, backup-drill@example1.local" in text


# --- snapshots ------------------------------------------------------------------------------------------


def test_restic_times_and_tags():
    (s,) = snapshots.parse_snapshots(
        json.dumps([snapshot_json("a.example", "2026-12-01T04:00:01.987654321+01:00", "x")])
    )
    assert s.time == datetime(2026, 12, 1, 3, 0, 1, 987654, tzinfo=UTC)
    assert (s.domain, s.marker, s.marker_uid, s.size) == ("a.example", "mailstack-drill.x@a.example", 7, None)
    with_summary = snapshot_json("a.example", "2026-12-01T03:00:00Z", "y")
    with_summary["summary"] = {"total_bytes_processed": 999, "total_files_processed": 3}
    assert snapshots.parse_snapshots(json.dumps([with_summary]))[0].size == 999
    with pytest.raises(BackupError, match="not JSON"):
        snapshots.parse_snapshots("Fatal: wrong password")


def test_sizes_come_from_stats_only_when_restic_gave_no_summary():
    engine = world()
    target = load_target(output())
    docker = Docker(None, engine)
    found = snapshots.list_snapshots(docker, target)
    found[0] = snapshots.Snapshot(**{**found[0].__dict__, "size": 5})
    sized = snapshots.with_sizes(docker, target, found)
    stats = [c for c in engine.commands() if "stats" in c]
    assert [c[-1] for c in stats] == ["bbbb2222" * 8, "cccc3333" * 8]
    assert [s.size for s in sized] == [5, 123456, 123456]


def test_the_snapshots_report_flags_a_missed_run_and_a_missing_marker():
    engine = world()
    engine.snapshots = [
        snapshot_json("example1.local", "2026-12-01T03:00:10Z", "bbbb2222"),
        snapshot_json("example2.local", "2026-11-29T03:00:40Z", "cccc3333", marker=False),
    ]
    target = load_target(output())
    docker = Docker(None, engine)
    found = snapshots.with_sizes(docker, target, snapshots.list_snapshots(docker, target))
    text = snapshots.render_snapshots(target, found, NOW, "ok scheduled run at 2026-12-01T03:00:00Z, 12 s\n")
    assert "schedule '0 3 * * *' (UTC): last run due 2026-12-01 03:00, next 2026-12-02 03:00" in text
    assert (
        "example1.local (1 snapshot)" in text
        and "  bbbb2222  2026-12-01 03:00   6 h 29 min   120.6 KiB  UID 7" in text
    )
    example2 = text.split("example2.local")[1]
    assert "MISSING" in example2
    assert (
        "WARNING: the newest snapshot is from 2026-11-29 03:00, before the run due at 2026-12-01 03:00"
        in example2
    )
    assert "WARNING: the newest snapshot has no marker" in example2
    assert "WARNING" not in text.split("example2.local")[0]


# --- make backup ----------------------------------------------------------------------------------------


def test_make_backup_runs_the_jobs_own_run_with_progress(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(output()))
    engine = world()
    code = cli.main(
        ["--outputs", str(outputs), "backup"], docker_factory=lambda h: Docker(h, engine), tty=True
    )
    assert code == 0
    assert engine.calls[-1] == (
        "stream",
        ("docker", "exec", "-t", JOB, "/bin/sh", bk.JOB_SCRIPT_PATH, "once", ""),
        None,
    )
    cli.main(
        ["--outputs", str(outputs), "backup", "--domain", "example2.local"],
        docker_factory=lambda h: Docker(h, engine),
        tty=False,
    )
    assert engine.calls[-1][1] == (
        "docker",
        "exec",
        JOB,
        "/bin/sh",
        bk.JOB_SCRIPT_PATH,
        "once",
        "example2.local",
    )
    errors: list[str] = []
    code = cli.main(
        ["--outputs", str(outputs), "backup", "--domain", "x.example"],
        docker_factory=lambda h: Docker(h, engine),
        err=errors.append,
    )
    assert code == 2 and "no domain 'x.example'" in errors[0]


def test_exit_codes_of_the_cli(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(output()))
    full = world(empty=False)
    errors: list[str] = []
    argv = ["--outputs", str(outputs), "restore", "--domain", "example1.local"]
    assert (
        cli.main(argv, docker_factory=lambda h: Docker(h, full), err=errors.append, out=lambda m: None) == 2
    )
    assert errors[-1].startswith("mailstack restore: refusing to restore")
    broken = world()
    broken.restore_ok = False
    assert (
        cli.main(argv, docker_factory=lambda h: Docker(h, broken), err=errors.append, out=lambda m: None) == 1
    )
    assert cli.main(["--outputs", str(tmp_path / "none.json"), "snapshots"], err=errors.append) == 2


# --- the drill ------------------------------------------------------------------------------------------


def drill_with(engine: Engine, domains=None):
    target = load_target(output())
    ticks = iter(float(i) for i in range(10_000))
    return drill.run_drill(
        Docker(None, engine),
        target,
        output()["generatedPasswords"],
        domains,
        clock=lambda: next(ticks),
        sleep=lambda s: None,
    )


def test_the_drill_builds_a_scratch_stack_checks_the_marker_and_removes_it():
    engine = world()
    (result,) = drill_with(engine, ["example1.local"])
    assert result.passed, result.problems
    cmds = engine.commands()
    base = "mailstack-dev-drill-example1-local"
    labels = ("--label", "mailstack.drill=dev", "--label", "mailstack.domain=example1.local")
    assert ("network", "create", "--internal", *labels, base) in cmds
    for role in ("mail", "state", "config"):
        assert ("volume", "create", *labels, f"{base}-{role}") in cmds
    copy_config = next(c for c in cmds if c[-1] == "cp -a /from/. /to/")
    assert (
        "mailstack-dev-example1-local-config:/from:ro" in copy_config and f"{base}-config:/to" in copy_config
    )
    consumer = next(c[1] for c in engine.calls if c[0] == "pipe-into")
    assert (
        f"{base}-mail:/data/example1.local/mail" in consumer
        and f"{base}-state:/data/example1.local/state" in consumer
    )
    assert not any("mailstack-dev-example1-local-mail:" in a for a in consumer)  # never the live volumes
    run_d = next(c for c in cmds if c[:2] == ("run", "-d"))
    assert run_d[run_d.index("--network") + 1] == base and run_d[-1] == SERVER_IMAGE
    assert "-p" not in run_d and "--publish" not in run_d
    assert "/etc/letsencrypt:/etc/letsencrypt:ro" in run_d
    envs = [run_d[i + 1] for i, a in enumerate(run_d) if a == "--env"]
    assert envs == ["SSL_TYPE=", "PERMIT_DOCKER=none"]
    # the marker's UID is read from the restored volume before the scratch server starts
    read = next(i for i, c in enumerate(cmds) if "dovecot-uidlist" in c[-1])
    assert read < cmds.index(run_d)
    imap = next(c for c in engine.calls if "python3" in c[1])
    assert imap[2] == (DRILL_PASSWORD + "\n").encode()
    assert all(DRILL_PASSWORD not in " ".join(c[1]) for c in engine.calls)
    removed = cmds[cmds.index(run_d) :]
    assert ("rm", "-f", "-v", base) in removed and ("network", "rm", base) in removed
    assert [c for c in removed if c[:2] == ("volume", "rm")] == [
        ("volume", "rm", "-f", f"{base}-{role}") for role in ("mail", "state", "config")
    ]
    assert not any(c[0] in ("stop", "start") for c in cmds)  # the live stack is left alone
    assert (result.uidlist_uid, result.imap_uids, result.messages_on_disk, result.messages_imap) == (
        7,
        [7],
        3,
        3,
    )
    text = drill.render_drill([result], NOW)
    assert text.startswith("Restore drill\nPASS example1.local: snapshot bbbb2222 of 2026-12-01 03:00 UTC")
    assert "marker: UID 7 in the backed-up dovecot-uidlist, IMAP UID SEARCH: 7" in text
    assert text.endswith("1/1 domains restored and verified")


def test_the_drill_fails_loudly_when_the_uid_is_not_kept_and_still_cleans_up():
    engine = world()
    engine.imap_uids = [1]
    (result,) = drill_with(engine, ["example1.local"])
    assert not result.passed and result.cleaned
    assert "IMAP finds the marker with UID(s) [1], the backed-up dovecot-uidlist says 7" in result.problems[0]
    assert "FAIL example1.local" in drill.render_drill([result], NOW)


def test_the_drill_refuses_a_snapshot_without_a_marker_and_cleans_up_after_a_failed_restore():
    engine = world()
    engine.snapshots = [snapshot_json("example1.local", "2026-12-01T03:00:10Z", "bbbb2222", marker=False)]
    (result,) = drill_with(engine, ["example1.local"])
    assert not result.passed and "has no marker" in result.problems[0]
    engine = world()
    engine.restore_ok = False
    results = drill_with(engine)
    assert [r.passed for r in results] == [False, False]
    assert all(r.cleaned for r in results)
    assert all("restic restore failed" in r.problems[0] for r in results)
    assert not any(c[:2] == ("run", "-d") for c in engine.commands())


def test_the_drill_needs_the_generated_password():
    target = load_target(output())
    (result,) = drill.run_drill(Docker(None, world()), target, {}, ["example2.local"])
    assert not result.passed and "no generated password for backup-drill@example2.local" in result.problems[0]


def test_clock_helpers():
    assert snapshots.human_age(timedelta(minutes=59)) == "59 min"
    assert snapshots.human_age(timedelta(hours=3, minutes=20)) == "3 h 20 min"
    assert snapshots.human_age(timedelta(days=3, hours=4)) == "3 d 4 h"
    assert snapshots.human_size(None) == "?" and snapshots.human_size(512) == "512 B"
    assert snapshots.human_size(3 * 1024**3) == "3.0 GiB"


def test_make_snapshots_prints_the_report(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(output()))
    engine = world()
    printed: list[str] = []
    code = cli.main(
        ["--outputs", str(outputs), "snapshots"],
        docker_factory=lambda h: Docker(h, engine),
        out=printed.append,
    )
    assert code == 0
    (text,) = printed
    assert "example1.local (2 snapshots)" in text and "example2.local (1 snapshot)" in text
    assert "last run: ok scheduled run at 2026-12-01T03:00:00Z, 12 s" in text
    assert (
        "exec",
        JOB,
        "/bin/sh",
        bk.JOB_SCRIPT_PATH,
        "restic",
        "snapshots",
        "--json",
        "--host",
        "mailstack-dev",
    ) in engine.commands()
