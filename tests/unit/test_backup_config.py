"""mailstack:backup and mailstack:backupSecrets: the model, every bad input, and the job's files."""

from __future__ import annotations

import copy
import shlex

import pytest

from config import backup as bk
from config.errors import ConfigError
from config.model import load_stack
from tests.unit.conftest import DEV_RAW

PASSWORD = "a-long-restic-password-for-tests"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = (
    "backup.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)


def raw_with(backup: dict | None, **extra) -> dict:
    raw = copy.deepcopy(DEV_RAW)
    if backup is not None:
        raw["backup"] = backup
    raw.update(extra)
    return raw


def load(backup, secrets=None, *, plain=False, production=False, passwords=None, **extra):
    raw = raw_with(backup, **extra)
    if production:
        raw["production"] = True
    return load_stack("dev", raw, passwords, backup_secrets=secrets, backup_secrets_in_plain_text=plain)


def problems(backup, secrets=None, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(backup, secrets, **kwargs)
    if kwargs.get("production"):  # the lab's domains lack what production needs besides backups (egress...)
        return [
            p for p in err.value.problems if p.startswith(("mailstack:backup", "mailstack:backupSecrets"))
        ]
    return err.value.problems


def one(backup, secrets=None, **kwargs) -> str:
    found = problems(backup, secrets, **kwargs)
    assert len(found) == 1, found
    return found[0]


LOCAL = {"enabled": True, "repository": "/srv/restic/mailstack-dev"}


def test_backups_are_off_by_default_and_add_no_account():
    cfg = load(None)
    assert cfg.backup is None
    assert all(u.name != bk.DRILL_LOCAL_PART for d in cfg.domains for u in d.users)


def test_disabled_backup_is_still_checked_but_declares_nothing():
    assert load({"enabled": False, "repository": "/srv/restic/x"}).backup is None
    assert "schedule" in one({"enabled": False, "schedule": "every day"})


def test_enabled_local_backup_with_defaults():
    cfg = load(LOCAL, {"password": PASSWORD})
    b = cfg.backup
    assert b is not None
    assert (b.repository.backend, b.repository.local_path) == ("local", "/srv/restic/mailstack-dev")
    assert b.schedule.expression == "0 3 * * *"
    assert (b.keep.daily, b.keep.weekly, b.keep.monthly) == (7, 4, 6)
    assert b.secret_keys == {"password"}
    for d in cfg.domains:
        drill = d.users[-1]
        assert (drill.address, drill.quota) == (f"backup-drill@{d.domain}", bk.DRILL_QUOTA)
        assert d.users[0].name != bk.DRILL_LOCAL_PART  # the verify account and postmaster stay the first user
    assert cfg.explicit_passwords == frozenset()


@pytest.mark.parametrize(
    ("repository", "backend", "host", "path"),
    [
        ("/srv/restic/mailstack", "local", None, "/srv/restic/mailstack"),
        ("local:/srv/restic//x/", "local", None, "/srv/restic/x"),
        (
            "sftp:backup@backup.example.net:/srv/restic/mailstack",
            "sftp",
            "backup.example.net",
            "/srv/restic/mailstack",
        ),
        ("sftp:backup@backup.example.net:restic/mailstack", "sftp", "backup.example.net", "restic/mailstack"),
        ("sftp://backup@backup.example.net:2222//srv/restic", "sftp", "backup.example.net", "/srv/restic"),
        ("s3:https://s3.example.net/bucket/mailstack", "s3", "s3.example.net", "bucket/mailstack"),
        ("s3:s3.amazonaws.com/bucket", "s3", "s3.amazonaws.com", "bucket"),
        ("rest:https://backup.example.net:8000/mailstack/", "rest", "backup.example.net", "/mailstack/"),
    ],
)
def test_repositories_restic_and_mailstack_accept(repository, backend, host, path):
    repo, found = bk.parse_repository(repository, production=True)
    assert found == []
    assert (repo.backend, repo.host, repo.path) == (backend, host, path)


@pytest.mark.parametrize(
    ("repository", "message"),
    [
        (None, "is missing: give a restic repository"),
        ("", "is missing"),
        ("restic/mailstack", "is a relative path"),
        ("ftp://backup.example.net/x", "is not a restic backend (restic says 'invalid backend')"),
        ("backup.example.net:/srv/restic", "is not a restic backend"),
        ("b2:bucket:mailstack", "reads only from environment variables"),
        ("azure:container:/x", "reads only from environment variables"),
        ("rclone:remote:x", "reads only from environment variables"),
        ("sftp:backup.example.net:/srv/restic", "names no user"),
        ("sftp:backup@backup.example.net", "has no path"),
        ("sftp:backup@backup.example.net:~/restic", "starts the path with '~'"),
        ("sftp://backup@backup.example.net", "names no directory"),
        ("sftp://backup:pw@backup.example.net/x", "contains a password"),
        ("sftp:backup@bad_host!:/x", "is not a valid host name"),
        ("s3:", "names no endpoint and bucket"),
        ("s3:https://s3.example.net", "names no bucket"),
        ("s3:https://key:secret@s3.example.net/b", "contains credentials"),
        ("rest:https://user:pass@backup.example.net/", "contains credentials"),
        ("rest:backup.example.net", "write rest:https://"),
        ("/", "is the root directory"),
        ("/var/lib/docker/volumes/restic", "inside Docker's own data directory"),
        ("local:relative/dir", "must be an absolute directory"),
        ("/srv/my restic", "contains white space"),
    ],
)
def test_repositories_refused_name_the_item_and_the_fix(repository, message):
    found = one({"enabled": True, "repository": repository}, {"password": PASSWORD})
    assert found.startswith("mailstack:backup.repository: ")
    assert message in found


@pytest.mark.parametrize(
    "repository", ["rest:http://backup.example.net/mailstack", "s3:http://minio.example.net:9000/bucket"]
)
def test_plain_http_is_refused_in_production_only(repository):
    secrets = {"password": PASSWORD * 2}
    if repository.startswith("s3"):
        secrets |= {"awsAccessKeyId": "AKIA", "awsSecretAccessKey": "s3cr3t"}
    assert "production stacks need https" in one(
        {"enabled": True, "repository": repository}, secrets, production=True
    )
    assert load({"enabled": True, "repository": repository}, secrets).backup.repository.scheme == "http"


def test_missing_password_says_how_to_set_it():
    found = one(LOCAL, None)
    assert found.startswith("mailstack:backupSecrets.password: is missing")
    assert "pulumi config set --secret --path 'mailstack:backupSecrets.password'" in found
    assert "keep a copy outside this host" in found
    assert "is missing (restic's repository password)" in one(LOCAL, {})


def test_secrets_stored_in_plain_text_are_refused():
    found = one(LOCAL, {"password": PASSWORD}, plain=True)
    assert found.startswith("mailstack:backupSecrets: is stored in plain text")
    assert "pulumi config rm mailstack:backupSecrets" in found


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"password": ""}, "password: must be a non-empty string"),
        ({"password": 12345}, "password: must be a non-empty string"),
        ({"password": " padded-password "}, "starts or ends with white space"),
        ({"password": "two\nlines"}, "must be a single line"),
        ({"password": PASSWORD, "sshKey": SSH_KEY}, "sshKey: is not used by a local repository"),
    ],
)
def test_bad_secret_values(secrets, message):
    assert message in one(LOCAL, secrets)


def test_weak_restic_password_only_refused_in_production():
    assert "too weak for a production stack" in one(LOCAL, {"password": "password123"}, production=True)
    assert "too weak" in one(LOCAL, {"password": "only-15-chars!!"}, production=True)
    assert load(LOCAL, {"password": "password123"}).backup is not None


def test_s3_needs_both_keys_and_delivers_them_as_a_credentials_file():
    s3 = {"enabled": True, "repository": "s3:https://s3.example.net/bucket/mailstack"}
    found = problems(s3, {"password": PASSWORD})
    assert sorted(p.split(":")[1] for p in found) == [
        "backupSecrets.awsAccessKeyId",
        "backupSecrets.awsSecretAccessKey",
    ]
    secrets = {"password": PASSWORD, "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "wJalrXUtnFEMI"}
    backup = load(s3, secrets).backup
    files = bk.secret_files(backup, secrets)
    assert sorted(files) == bk.secret_file_paths(backup)
    assert files[bk.AWS_CREDENTIALS_FILE] == (
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = wJalrXUtnFEMI\n"
    )
    assert files[bk.REPOSITORY_FILE] == "s3:https://s3.example.net/bucket/mailstack\n"
    assert files[bk.PASSWORD_FILE] == PASSWORD + "\n"


def test_sftp_needs_a_key_and_known_hosts_and_gets_an_ssh_config():
    sftp = {"enabled": True, "repository": "sftp:backup@backup.example.net:/srv/restic/mailstack"}
    found = problems(sftp, {"password": PASSWORD})
    assert any(p.startswith("mailstack:backup.knownHosts: required for an sftp repository") for p in found)
    assert any(p.startswith("mailstack:backupSecrets.sshKey: is missing") for p in found)
    assert "unencrypted OpenSSH private key" in one(
        {**sftp, "knownHosts": KNOWN_HOSTS}, {"password": PASSWORD, "sshKey": "not a key"}
    )
    secrets = {"password": PASSWORD, "sshKey": SSH_KEY.replace("\n", "\r\n")}
    backup = load({**sftp, "knownHosts": [KNOWN_HOSTS]}, secrets).backup
    assert backup.known_hosts == KNOWN_HOSTS + "\n"
    files = bk.secret_files(backup, secrets)
    assert files[bk.SSH_KEY_FILE] == SSH_KEY  # CRLF from a pasted key normalised, one final newline
    config = bk.render_ssh_config(backup.repository)
    assert "  HostName backup.example.net\n  User backup\n  Port 22\n" in config
    assert f"  IdentityFile {bk.SSH_KEY_FILE}\n" in config and "StrictHostKeyChecking yes" in config
    plain = bk.plain_files(backup, "settings")
    assert plain[bk.KNOWN_HOSTS_PATH] == (KNOWN_HOSTS + "\n", "0644")
    assert plain[bk.SSH_CONFIG_PATH][0] == config


def test_known_hosts_must_be_host_key_lines_and_only_for_sftp():
    sftp = {"enabled": True, "repository": "sftp:backup@backup.example.net:/x"}
    found = one({**sftp, "knownHosts": "backup.example.net"}, {"password": PASSWORD, "sshKey": SSH_KEY})
    assert "is not a known_hosts line" in found and "ssh-keyscan" in found
    assert "only used by sftp repositories" in one(
        {**LOCAL, "knownHosts": KNOWN_HOSTS}, {"password": PASSWORD}
    )


def test_rest_credentials_go_into_the_secret_repository_file_url_encoded():
    rest = {"enabled": True, "repository": "rest:https://backup.example.net:8000/mailstack/"}
    assert "restUsername and restPassword go together" in one(
        rest, {"password": PASSWORD, "restUsername": "u"}
    )
    secrets = {"password": PASSWORD, "restUsername": "mail stack", "restPassword": "p@ss:/word"}
    backup = load(rest, secrets).backup
    assert bk.secret_files(backup, secrets)[bk.REPOSITORY_FILE] == (
        "rest:https://mail%20stack:p%40ss%3A%2Fword@backup.example.net:8000/mailstack/\n"
    )
    anonymous = load(rest, {"password": PASSWORD}).backup
    assert bk.repository_file(anonymous.repository, {}) == "rest:https://backup.example.net:8000/mailstack/\n"


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ({"daily": 0, "weekly": 0, "monthly": 0}, "keeps nothing (every rule is 0)"),
        ({}, "keeps nothing"),
        ({"daily": -1}, "keep.daily: must be a whole number of snapshots between 0 and 10000, got -1"),
        ({"daily": "7"}, "keep.daily: must be a whole number"),
        ({"daily": True}, "keep.daily: must be a whole number"),
        ({"dayly": 7}, "keep.dayly: unknown retention rule (did you mean 'daily'?)"),
        ("7d", "keep: must be an object"),
    ],
)
def test_bad_retention(keep, message):
    assert message in one({**LOCAL, "keep": keep}, {"password": PASSWORD})


def test_retention_rules_of_zero_are_left_out_of_forget():
    backup = load({**LOCAL, "keep": {"daily": 14, "monthly": 12}}, {"password": PASSWORD}).backup
    assert backup.keep.forget_args() == ["--keep-daily", "14", "--keep-monthly", "12"]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("every day", "has 2 field(s), cron needs 5"),
        ("0 25 * * *", "hour field: 25 is outside 0-23"),
        ("*/30 * * * *", "runs more than once an hour"),
        ("0 0 31 2 *", "never runs"),
        (3, "must be a cron expression in quotes"),
    ],
)
def test_bad_schedule(schedule, message):
    found = one({**LOCAL, "schedule": schedule}, {"password": PASSWORD})
    assert found.startswith("mailstack:backup.schedule: ")
    assert message in found


def test_unknown_keys_and_types():
    assert "mailstack:backup.schedul: unknown key (did you mean 'schedule'?)" in one(
        {**LOCAL, "schedul": "0 3 * * *"}, {"password": PASSWORD}
    )
    assert "enabled: 'yes' is not a boolean" in one({**LOCAL, "enabled": "yes"})
    assert "mailstack:backup: must be an object" in one("on")


def test_every_problem_is_reported_at_once():
    found = problems(
        {"enabled": True, "repository": "relative", "schedule": "nope", "keep": {"daily": 0}}, None
    )
    assert [p.split(":")[1].split(" ")[0] for p in found] == [
        "backup.repository",
        "backup.schedule",
        "backup.keep",
        "backupSecrets.password",
    ]


def test_the_marker_account_name_must_be_free():
    raw = copy.deepcopy(DEV_RAW)
    raw["domains"][0]["users"].append({"name": "backup-drill"})
    raw["domains"][1]["aliases"] = {"backup-drill": ["user3@example2.local"]}
    raw["backup"] = LOCAL
    with pytest.raises(ConfigError) as err:
        load_stack("dev", raw, backup_secrets={"password": PASSWORD})
    assert err.value.problems == [
        "mailstack:domains[0] (example1.local).users: backup-drill@example1.local is reserved for the restore "
        "drill's marker account while mailstack:backup is on: rename that user",
        "mailstack:domains[1] (example2.local).aliases: backup-drill@example2.local is reserved for the restore "
        "drill's marker account while mailstack:backup is on: rename that alias",
    ]
    raw.pop("backup")
    assert load_stack("dev", raw).backup is None  # without backups the name is an ordinary user


def test_the_marker_account_takes_no_explicit_password():
    found = one(LOCAL, {"password": PASSWORD}, passwords={"backup-drill@example1.local": "chosen-password"})
    assert found.startswith(
        "mailstack:passwords.backup-drill@example1.local: the marker account's password is generated"
    )


def test_repository_on_the_docker_host():
    def reason(repository: str, docker_host: str | None = None, **extra) -> str | None:
        secrets = {"password": PASSWORD}
        if repository.startswith("sftp"):
            secrets["sshKey"] = SSH_KEY
            extra["knownHosts"] = KNOWN_HOSTS
        cfg = load({"enabled": True, "repository": repository, **extra}, secrets)
        return bk.repository_on_docker_host(cfg.backup, cfg, docker_host)

    assert "is a directory on the Docker host" in reason("/srv/restic/x")
    assert "the Docker host itself" in reason("rest:http://localhost:8000/")
    assert "loopback address 127.0.0.2" in reason("rest:http://127.0.0.2:8000/")
    assert "127.0.0.1, which is the Docker host" not in (reason("rest:http://127.0.0.1:8000/") or "")
    assert "which is the Docker host of this stack" in reason("sftp:b@mail.example1.local:/x")
    assert "which is the Docker host of this stack" in reason(
        "sftp:b@mx.example.org:/x", "ssh://deploy@mx.example.org"
    )
    assert reason("sftp:b@backup.example.net:/x", "ssh://deploy@mx.example.org") is None


def test_job_settings_are_shell_quoted_and_carry_the_schedule():
    backup = load({**LOCAL, "schedule": "15 2 * * 1-5"}, {"password": PASSWORD}).backup
    text = bk.job_settings(
        "dev",
        backup,
        [bk.JobDomain("example1.local", "mta1", 25, True), bk.JobDomain("it's.odd", "mx'", 2525)],
    )
    values = dict(
        shlex.split(line)[0].split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert values["RESTIC_HOST"] == "mailstack-dev"
    assert values["SCHEDULE_MINUTES"] == " 15 " and values["SCHEDULE_WEEKDAYS"] == " 1 2 3 4 5 "
    assert values["KEEP_ARGS"] == "--keep-daily 7 --keep-weekly 4 --keep-monthly 6"
    assert (values["D1_NAME"], values["D1_SMTP_HOST"], values["D1_WEBMAIL"]) == (
        "example1.local",
        "mta1",
        "1",
    )
    assert (values["D2_NAME"], values["D2_SMTP_HOST"], values["D2_SMTP_PORT"]) == ("it's.odd", "mx'", "2525")
    assert values["DOMAIN_COUNT"] == "2" and values["EDGE_DIR"] == ""
    assert PASSWORD not in text


def test_snapshot_naming():
    assert bk.restic_host("prod") == "mailstack-prod"
    assert bk.snapshot_tags("prod", "example.org") == ["mailstack", "stack=prod", "domain=example.org"]
    assert bk.domain_paths("example.org") == {
        "mail": "/data/example.org/mail",
        "state": "/data/example.org/state",
        "webmail": "/data/example.org/webmail",
    }


def test_the_job_image_is_pinned_like_every_other():
    assert (
        load(LOCAL, {"password": PASSWORD}).images["backup"]
        == bk.DEFAULT_IMAGE
        == "ghcr.io/restic/restic:0.18.1"
    )
    for moving in ("restic/restic:latest", "restic/restic", "ghcr.io/restic/restic:0.18"):
        found = one(LOCAL, {"password": PASSWORD}, images={"backup": moving})
        assert found.startswith("mailstack:images.backup: ") and "pin an exact version tag" in found
    assert load(LOCAL, {"password": PASSWORD}, images={"backup": "restic/restic:0.17.3"}).images[
        "backup"
    ] == ("restic/restic:0.17.3")
