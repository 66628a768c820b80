"""The backup job under mocks: the declared containers, mounts, secrets, health, labels and the `backup` output."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from config import backup as bk
from config.durations import SECOND, parse_go_duration
from tests.components.harness import Program, Secret, dev_config, prod_config, run_program, unwrap

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
SECRET_KEYS = ("mailstack:passwords", "mailstack:backupSecrets")
RESTIC_PASSWORD = "component-test-restic-password-0123456789"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAmockkey\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = (
    "backup.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)


def with_backup(config: dict[str, Any], backup: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["backup"] = backup
    config["backupSecrets"] = secrets
    return config


def run(config: dict[str, Any], stack: str = "dev") -> Program:
    return run_program(copy.deepcopy(config), stack=stack, secret_keys=SECRET_KEYS)


def dev_backup_config() -> dict[str, Any]:
    return with_backup(
        dev_config(),
        {"enabled": True, "repository": "/srv/restic/mailstack-dev"},
        {"password": RESTIC_PASSWORD},
    )


def prod_backup_config() -> dict[str, Any]:
    return with_backup(
        prod_config(),
        {
            "enabled": True,
            "repository": "sftp:mailstack@backup.example.net:/srv/restic/mailstack-prod",
            "knownHosts": KNOWN_HOSTS,
            "schedule": "30 2 * * *",
            "keep": {"daily": 14, "weekly": 8, "monthly": 12},
        },
        {"password": RESTIC_PASSWORD, "sshKey": SSH_KEY},
    )


@pytest.fixture(scope="module")
def dev_program() -> Program:
    return run(dev_backup_config())


@pytest.fixture(scope="module")
def prod_program() -> Program:
    return run(prod_backup_config(), stack="prod")


def labels_of(reg) -> dict[str, str]:
    return {item["label"]: item["value"] for item in unwrap(reg.inputs.get("labels", []))}


def without_secrets(value: Any) -> Any:
    """The value with every Secret replaced by a placeholder: what ends up in plain state."""
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def test_backups_off_declare_nothing_and_add_no_account():
    program = run(dev_config())
    assert not [
        r
        for r in program.of_type(CONTAINER)
        if labels_of(r).get("mailstack.role") in ("backup", "webmail-export")
    ]
    assert "backup" not in program.outputs
    assert not any(a.startswith("backup-drill@") for a in unwrap(program.outputs["generatedPasswords"]))


def test_the_job_container(dev_program: Program):
    job = dev_program.containers()["mailstack-dev-backup"]
    inputs = unwrap(job.inputs)
    image = dev_program.named("mailstack-backup-image")
    assert unwrap(image.inputs)["name"] == bk.DEFAULT_IMAGE == "ghcr.io/restic/restic:0.18.1"
    assert inputs["image"].startswith("sha256:")  # the RemoteImage's id, never the tag
    assert inputs["entrypoints"] == ["/bin/sh", bk.JOB_SCRIPT_PATH] and inputs["command"] == ["loop"]
    assert inputs["hostname"] == "mailstack-dev-backup"
    assert inputs["restart"] == "unless-stopped" and inputs["mustRun"] is True and inputs["wait"] is True
    hc = inputs["healthcheck"]
    assert hc["tests"] == ["CMD", "/bin/sh", bk.JOB_SCRIPT_PATH, "health"]
    assert parse_go_duration(hc["interval"]) == 30 * SECOND and hc["startPeriod"] == "2m0s"
    assert inputs["waitTimeout"] * SECOND > parse_go_duration(hc["startPeriod"])
    assert labels_of(job) == {"mailstack.stack": "dev", "mailstack.role": "backup"}
    assert "envs" not in inputs or not inputs["envs"]
    assert "ports" not in inputs or not inputs["ports"]
    assert [n["name"] for n in inputs["networksAdvanced"]] == ["mailstack-dev"]
    assert job.delete_before_replace


def test_the_job_mounts_mail_and_state_read_only_and_nothing_of_docker(dev_program: Program):
    mounts = {
        m["containerPath"]: m
        for m in unwrap(dev_program.containers()["mailstack-dev-backup"].inputs)["volumes"]
    }
    for domain, slug in (("example1.local", "example1-local"), ("example2.local", "example2-local")):
        for role in ("mail", "state"):
            m = mounts[f"/data/{domain}/{role}"]
            assert (m["volumeName"], m.get("readOnly")) == (f"mailstack-dev-{slug}-{role}", True)
        export = mounts[f"/data/{domain}/webmail"]
        assert export["volumeName"] == f"mailstack-dev-{slug}-webmail-export" and not export.get("readOnly")
    assert mounts[bk.CACHE_DIR]["volumeName"] == "mailstack-dev-backup-cache"
    assert mounts["/srv/restic/mailstack-dev"]["hostPath"] == "/srv/restic/mailstack-dev"
    assert len(mounts) == 8
    # never the Docker socket, never the live Roundcube database, never the logs or config volumes
    text = json.dumps(mounts)
    assert (
        "docker.sock" not in text
        and "webmail-db" not in text
        and "-logs" not in text
        and "-config" not in text
    )


def test_secrets_are_secret_0400_files_and_nowhere_else(dev_program: Program, prod_program: Program):
    for program, expected in (
        (dev_program, {bk.PASSWORD_FILE, bk.REPOSITORY_FILE}),
        (prod_program, {bk.PASSWORD_FILE, bk.REPOSITORY_FILE, bk.SSH_KEY_FILE}),
    ):
        job = next(r for r in program.of_type(CONTAINER) if labels_of(r).get("mailstack.role") == "backup")
        uploads = {u["file"]: u for u in job.inputs["uploads"]}
        secret = {path for path, u in uploads.items() if isinstance(u["content"], Secret)}
        assert secret == expected
        assert all(uploads[p]["permissions"] == "0400" for p in secret)
        assert unwrap(uploads[bk.PASSWORD_FILE]["content"]) == RESTIC_PASSWORD + "\n"
        for reg in program.resources:
            assert RESTIC_PASSWORD not in json.dumps(without_secrets(reg.inputs)), reg.name
            assert "OPENSSH PRIVATE KEY" not in json.dumps(without_secrets(reg.inputs)), reg.name
        assert RESTIC_PASSWORD not in json.dumps(without_secrets(program.outputs))
        assert uploads[bk.JOB_SCRIPT_PATH]["permissions"] == "0755"


def test_sftp_gets_its_ssh_config_and_pinned_host_key(prod_program: Program):
    job = prod_program.containers()["mailstack-prod-backup"]
    uploads = {u["file"]: unwrap(u["content"]) for u in job.inputs["uploads"]}
    assert uploads[bk.KNOWN_HOSTS_PATH] == KNOWN_HOSTS + "\n"
    assert "HostName backup.example.net" in uploads[bk.SSH_CONFIG_PATH]
    assert uploads[bk.REPOSITORY_FILE] == "sftp:mailstack@backup.example.net:/srv/restic/mailstack-prod\n"
    settings = uploads[bk.JOB_SETTINGS_PATH]
    assert "SCHEDULE_MINUTES=' 30 '" in settings and "SCHEDULE_HOURS=' 2 '" in settings
    assert "KEEP_ARGS='--keep-daily 14 --keep-weekly 8 --keep-monthly 12'" in settings
    assert (
        "D1_NAME=example.org" in settings
        and "D1_SMTP_HOST=mx1" in settings
        and "D2_SMTP_HOST=mx2" in settings
    )
    # the production example's webmails (behind the HTTPS edge) are exported like the lab's
    assert "D1_WEBMAIL=1" in settings and "D2_WEBMAIL=1" in settings
    assert sorted(
        unwrap(r.inputs["name"])
        for r in prod_program.of_type(CONTAINER)
        if labels_of(r).get("mailstack.role") == "webmail-export"
    ) == ["mailstack-prod-webmail-export-mx1", "mailstack-prod-webmail-export-mx2"]


def test_the_job_waits_for_the_mail_servers(dev_program: Program):
    job = dev_program.containers()["mailstack-dev-backup"]
    servers = [
        r.urn for r in dev_program.of_type(CONTAINER) if labels_of(r).get("mailstack.role") == "mailserver"
    ]
    assert len(servers) == 2 and set(servers) <= set(job.dependencies)


def test_one_webmail_export_sidecar_per_webmail(dev_program: Program):
    sidecars = {
        unwrap(r.inputs["name"]): r
        for r in dev_program.of_type(CONTAINER)
        if labels_of(r).get("mailstack.role") == "webmail-export"
    }
    assert sorted(sidecars) == ["mailstack-dev-webmail-export-mta1", "mailstack-dev-webmail-export-mta2"]
    webmail_image = unwrap(dev_program.named("mailstack-webmail-image").inputs)["name"]
    for name, reg in sidecars.items():
        inputs = unwrap(reg.inputs)
        slug = "example1-local" if name.endswith("mta1") else "example2-local"
        assert inputs["image"].startswith("sha256:") and "roundcube" in webmail_image
        assert inputs["networkMode"] == "none"
        mounts = {m["containerPath"]: m["volumeName"] for m in inputs["volumes"]}
        assert mounts == {
            "/var/roundcube/db": f"mailstack-dev-{slug}-webmail-db",
            bk.EXPORT_DIR: f"mailstack-dev-{slug}-webmail-export",
        }
        assert inputs["restart"] == "unless-stopped" and inputs["healthcheck"]["tests"][-1] == "health"
        assert [u["file"] for u in inputs["uploads"]] == ["/mailstack/webmail-export.sh"]
        assert inputs["uploads"][0]["content"] == bk.export_script()
        assert "envs" not in inputs or not inputs["envs"]
        webmail = next(
            r
            for r in dev_program.of_type(CONTAINER)
            if unwrap(r.inputs["name"]) == name.replace("webmail-export", "webmail")
        )
        assert webmail.urn in reg.dependencies


def test_the_marker_account_is_a_generated_account_of_every_domain(dev_program: Program):
    passwords = unwrap(dev_program.outputs["generatedPasswords"])
    for domain in ("example1.local", "example2.local"):
        address = bk.drill_address(domain)
        assert len(passwords[address]) == 24
        writer = next(
            r
            for r in dev_program.of_type(CONTAINER)
            if labels_of(r).get("mailstack.role") == "config-writer"
            and labels_of(r)["mailstack.domain"] == domain
        )
        files = {u["file"].rsplit("/", 1)[1]: unwrap(u["content"]) for u in writer.inputs["uploads"]}
        assert f"\n{address}|{{SHA512-CRYPT}}$6$" in "\n" + files["postfix-accounts.cf"]
        assert f"{address}:{bk.DRILL_QUOTA}" in files["dovecot-quotas.cf"]


def test_the_backup_output_names_volumes_with_their_declared_labels(dev_program: Program):
    output = unwrap(dev_program.outputs["backup"])
    assert not isinstance(dev_program.outputs["backup"], Secret)
    assert (output["schema"], output["job"], output["resticHost"]) == (
        1,
        "mailstack-dev-backup",
        "mailstack-dev",
    )
    assert output["repository"] == output["localRepository"] == "/srv/restic/mailstack-dev"
    declared = {unwrap(r.inputs["name"]): labels_of(r) for r in dev_program.of_type(VOLUME)}
    for domain, entry in output["domains"].items():
        assert entry["drill"] == bk.drill_address(domain)
        assert entry["users"][-1] == bk.drill_address(domain)
        assert entry["tags"] == bk.snapshot_tags("dev", domain)
        assert set(entry["volumes"]) == {"mail", "state", "webmail-db", "webmail-export"}
        for role, volume in entry["volumes"].items():
            assert volume["labels"] == declared[volume["name"]], (domain, role)
        assert entry["volumes"]["webmail-db"]["path"] == f"/data/{domain}/webmail"
        assert entry["configVolume"] in declared


def test_a_repository_on_the_docker_host_is_a_warning_in_production(caplog: pytest.LogCaptureFixture):
    config = with_backup(
        prod_config(), {"enabled": True, "repository": "/srv/restic/prod"}, {"password": RESTIC_PASSWORD}
    )
    with caplog.at_level(logging.INFO):
        run(config, stack="prod")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "the backup repository is on the Docker host: /srv/restic/prod is a directory" in w for w in warnings
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(dev_backup_config())
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "backup repository" in r.getMessage()
    ]
    assert any("(fine for the lab)" in r.getMessage() for r in caplog.records)


def test_the_same_config_declares_byte_identical_inputs():
    first, second = run(dev_backup_config()), run(dev_backup_config())
    job = lambda p: unwrap(p.containers()["mailstack-dev-backup"].inputs)  # noqa: E731
    assert json.dumps(job(first), sort_keys=True) == json.dumps(job(second), sort_keys=True)


def test_turning_backups_on_touches_no_mail_server_no_webmail_and_no_volume():
    from tools import blast

    r = blast.blast_radius("turn backups on")
    assert r.count("mailserver", "replace", "update", "create", "delete") == 0, r.changes
    assert r.count("webmail", "replace", "update", "create", "delete") == 0, r.changes
    assert r.count("volume", "replace", "update", "delete") == 0, r.changes
    created = sorted((c.role, c.name) for c in r.changes if c.action == "create")
    assert created == [
        ("", "mailstack-backup-image"),
        ("backup", "backup-job"),
        ("volume", "backup-cache"),
        ("volume", "backup-example1.local-webmail-export"),
        ("volume", "backup-example2.local-webmail-export"),
        ("webmail-export", "backup-example1.local-webmail-export"),
        ("webmail-export", "backup-example2.local-webmail-export"),
    ]
    # the marker accounts reach the servers through their config writers, like any new account
    writers = sorted(c.name for c in r.changes if c.role == "config-writer")
    assert writers == ["example1.local-config-writer", "example2.local-config-writer"]
    assert r.row()["servers replaced"] == 0


def test_restore_recreates_a_volume_with_exactly_the_labels_the_program_declares(dev_program: Program):
    from tools.backups.restore import create_volume_argv
    from tools.backups.target import load_target

    target = load_target({"backup": unwrap(dev_program.outputs["backup"])})
    declared = {unwrap(r.inputs["name"]): labels_of(r) for r in dev_program.of_type(VOLUME)}
    for domain in target.domains.values():
        for v in domain.restored_volumes():
            argv = create_volume_argv(v)
            labels = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--label")
            assert argv[-1] == v.name and labels == declared[v.name]


def test_a_refresh_stores_what_the_backup_resources_declare(dev_program: Program, prod_program: Program):
    from tools import readback

    for program in (dev_program, prod_program):
        assert readback.program_missing(program) == []
        assert readback.program_drift(program) == []


def test_the_edge_hook_mounts_the_certificate_volume_read_only(monkeypatch: pytest.MonkeyPatch):
    """Once the stack has an edge, its certificate volume is handed to the job (the hook): mounted read-only
    under /data/_edge and announced in the job's settings."""
    import functools

    import components.stack

    monkeypatch.setattr(
        components.stack,
        "BackupJobArgs",
        functools.partial(
            components.stack.BackupJobArgs, edge_certificates_volume="mailstack-dev-edge-certs"
        ),
    )
    program = run(dev_backup_config())
    job = program.containers()["mailstack-dev-backup"]
    mounts = {m["containerPath"]: m for m in unwrap(job.inputs)["volumes"]}
    edge = mounts[f"{bk.DATA_DIR}/{bk.EDGE_DIR}"]
    assert (edge["volumeName"], edge["readOnly"]) == ("mailstack-dev-edge-certs", True)
    settings = next(unwrap(u["content"]) for u in job.inputs["uploads"] if u["file"] == bk.JOB_SETTINGS_PATH)
    assert f"EDGE_DIR={bk.EDGE_DIR}" in settings
