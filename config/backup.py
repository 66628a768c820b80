"""Backups with restic: the ``mailstack:backup`` model, its validation, and the backup job's files.

Pure Python (no Pulumi). ``mailstack:backup`` is the plain part (repository, schedule, retention,
``knownHosts``); ``mailstack:backupSecrets`` is a secret map (the restic password and the backend's
credentials) that is only checked here: its values never enter the model, they reach the job as
secret file uploads (:func:`secret_files`), never as environment variables.

The job (``config/backup-job.sh``) is a POSIX shell script run by the pinned restic image's busybox;
:func:`job_settings` renders the shell-sourceable settings it reads. Its schedule loop needs no cron
parser: the schedule arrives as explicit sets of minutes, hours, days... (``config.cron``).

A snapshot holds one domain: ``/data/<domain>/mail`` (the mail volume), ``/data/<domain>/state``
(the state volume) and ``/data/<domain>/webmail`` (a consistent copy of Roundcube's SQLite database,
made by ``VACUUM INTO`` in a sidecar of the webmail image, ``config/webmail-export.sh``), with the
restic host ``mailstack-<stack>`` and the tags ``mailstack``, ``stack=<stack>``, ``domain=<domain>``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from config.cron import CronError, CronSchedule, parse_cron
from config.errors import ConfigError
from config.rules import WEAK_PASSWORDS

if TYPE_CHECKING:
    from config.model import Domain, StackConfig

# Pinned default image: restic's own release image on GHCR (restic/restic .github/workflows/docker.yml at
# v0.18.1 publishes the exact tag `0.18.1` from docker/Dockerfile.release: Alpine, busybox, openssh-client).
# Exact tags never move; override with mailstack:images.backup.
DEFAULT_IMAGE = "ghcr.io/restic/restic:0.18.1"

ITEM = "mailstack:backup"
SECRETS_ITEM = "mailstack:backupSecrets"
KEYS = ("enabled", "repository", "schedule", "keep", "knownHosts")
KEEP_KEYS = ("daily", "weekly", "monthly")
DEFAULT_SCHEDULE = "0 3 * * *"
DEFAULT_KEEP: Mapping[str, int] = {"daily": 7, "weekly": 4, "monthly": 6}
MAX_KEEP = 10_000
MIN_PRODUCTION_PASSWORD = 16
"""The restic password encrypts every copy of the mail: longer than an account password."""

DRILL_LOCAL_PART = "backup-drill"
"""Local part of the marker account the job delivers to before each backup (one per domain)."""
DRILL_QUOTA = "100M"
"""Quota of the marker account: a marker is about 600 bytes, so this lasts for centuries of daily runs."""

JOB_DIR = "/mailstack"
"""Where the job's script, settings and secrets live inside the job container."""
JOB_SCRIPT_PATH = f"{JOB_DIR}/job.sh"
JOB_SETTINGS_PATH = f"{JOB_DIR}/job.conf"
SSH_CONFIG_PATH = f"{JOB_DIR}/ssh_config"
KNOWN_HOSTS_PATH = f"{JOB_DIR}/known_hosts"
SECRETS_DIR = f"{JOB_DIR}/secrets"
PASSWORD_FILE = f"{SECRETS_DIR}/password"
REPOSITORY_FILE = f"{SECRETS_DIR}/repository"
AWS_CREDENTIALS_FILE = f"{SECRETS_DIR}/aws-credentials"
SSH_KEY_FILE = f"{SECRETS_DIR}/ssh-key"
DATA_DIR = "/data"
"""Every backed-up volume is mounted below ``/data/<domain>/``, the same paths at backup and restore."""
CACHE_DIR = "/var/cache/restic"
STATE_DIR = "/var/lib/mailstack-backup"
EDGE_DIR = "_edge"
"""Directory under ``/data`` of the edge's certificate volume (hook: mounted when a stack has an edge)."""

MAIL_ROLE, STATE_ROLE, WEBMAIL_ROLE = "mail", "state", "webmail"
BACKED_UP_ROLES = (MAIL_ROLE, STATE_ROLE, WEBMAIL_ROLE)
"""What a domain's snapshot holds, as directories under ``/data/<domain>/``."""

EXPORT_DIR = "/export"
"""Mount point of the export volume in the webmail-export sidecar."""
EXPORT_FILE = "sqlite.db"
"""The consistent copy of Roundcube's database, named as Roundcube names its own (``sqlite.db``)."""
REQUESTS_DIR = ".requests"
"""Inside the export volume: the job's requests and the sidecar's answers (never backed up)."""
ROUNDCUBE_DB = "/var/roundcube/db/sqlite.db"
"""Roundcube's SQLite database in the image (DSN ``sqlite:////var/roundcube/db/sqlite.db?mode=0646``)."""

SUPPORTED_BACKENDS = ("local", "sftp", "s3", "rest")
SECRET_KEYS: Mapping[str, tuple[str, ...]] = {
    "local": ("password",),
    "sftp": ("password", "sshKey"),
    "s3": ("password", "awsAccessKeyId", "awsSecretAccessKey"),
    "rest": ("password", "restUsername", "restPassword"),
}
"""The keys of ``mailstack:backupSecrets`` each backend uses; ``password`` is restic's repository password."""
REQUIRED_SECRET_KEYS: Mapping[str, tuple[str, ...]] = {
    "local": ("password",),
    "sftp": ("password", "sshKey"),
    "s3": ("password", "awsAccessKeyId", "awsSecretAccessKey"),
    "rest": ("password",),
}
_ENV_ONLY_BACKENDS = ("b2", "azure", "gs", "swift", "rclone")
"""restic backends whose credentials restic 0.14 reads only from environment variables (or an extra tool)."""
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_HOST_RE = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_SSH_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}$")
_KNOWN_HOST_LINE_RE = re.compile(r"^(@[a-z-]+\s+)?\S+\s+(ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/]+={0,3}(\s.*)?$")


@dataclass(frozen=True)
class Repository:
    """A restic repository location, parsed as restic 0.14 parses it (``internal/backend/location``)."""

    backend: str
    """``local``, ``sftp``, ``s3`` or ``rest``."""
    location: str
    """The location as written in the configuration (never holds a credential)."""
    host: str | None = None
    """The remote host (sftp, s3 endpoint, rest server); ``None`` for a local path."""
    port: int | None = None
    user: str | None = None
    """The ssh user of an sftp repository."""
    path: str = ""
    """The directory (local, sftp), bucket and prefix (s3) or URL path (rest)."""
    scheme: str | None = None
    """``http`` or ``https`` for s3 and rest URLs."""

    @property
    def local_path(self) -> str | None:
        """The Docker-host directory of a local repository (bind-mounted at the same path), else ``None``."""
        return self.path if self.backend == "local" else None


@dataclass(frozen=True)
class Retention:
    """``forget --keep-daily/--keep-weekly/--keep-monthly`` after each run; 0 keeps nothing by that rule."""

    daily: int
    weekly: int
    monthly: int

    def forget_args(self) -> list[str]:
        """The ``restic forget`` flags (rules set to 0 are left out: restic would read 0 as unset)."""
        args: list[str] = []
        for name in KEEP_KEYS:
            value = getattr(self, name)
            if value:
                args += [f"--keep-{name}", str(value)]
        return args


@dataclass(frozen=True)
class BackupConfig:
    """The validated ``mailstack:backup`` (built only when it is enabled)."""

    repository: Repository
    schedule: CronSchedule
    keep: Retention
    known_hosts: str | None = None
    """``known_hosts`` lines of an sftp server (plain: host keys are public)."""
    secret_keys: frozenset[str] = frozenset()
    """The keys present in ``mailstack:backupSecrets`` (the values stay secret elsewhere)."""


def restic_host(stack: str) -> str:
    """The fixed restic ``--host`` of every snapshot of ``stack`` (restic groups snapshots by host)."""
    return f"mailstack-{stack}"


def snapshot_tags(stack: str, domain: str) -> list[str]:
    """The tags every snapshot of ``domain`` carries (the marker tags come on top, per run)."""
    return ["mailstack", f"stack={stack}", f"domain={domain}"]


def domain_paths(domain: str) -> dict[str, str]:
    """Mount paths in the job (and in the restore container) of ``domain``'s backed-up directories."""
    return {role: f"{DATA_DIR}/{domain}/{role}" for role in BACKED_UP_ROLES}


def drill_address(domain: str) -> str:
    """The marker account of ``domain`` (exists only while backups are on)."""
    return f"{DRILL_LOCAL_PART}@{domain}"


def maildir_of(domain: str, local_part: str) -> str:
    """A user's Maildir inside the mail volume (docker-mailserver: ``/var/mail/<domain>/<user>/``)."""
    return f"{domain}/{local_part}"


# --- parsing -----------------------------------------------------------------------------------------


def _closest(key: str, allowed: Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _host_problem(host: str) -> str | None:
    if not host:
        return "has no host name"
    try:
        ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if not _HOST_RE.match(host):
        return f"host {host!r} is not a valid host name"
    return None


def parse_repository(text: Any, production: bool) -> tuple[Repository | None, list[str]]:
    """Parse ``mailstack:backup.repository`` like restic 0.14 does, plus mailstack's own rules.

    mailstack's rules on top of restic's: a local path must be absolute (the job runs in a
    container), an sftp location names its user, no credential is written into the location
    (they belong in ``mailstack:backupSecrets``), plain ``http://`` is refused in production, and
    backends whose credentials restic reads only from environment variables are refused.
    """
    where = f"{ITEM}.repository"
    if not isinstance(text, str) or not text.strip():
        return None, [
            f"{where}: is missing: give a restic repository, e.g. 'sftp:backup@backup.example.net:/srv/restic/"
            "mailstack', 's3:https://s3.example.net/bucket/mailstack', 'rest:https://backup.example.net/mailstack' "
            "or a directory on the Docker host such as '/srv/restic/mailstack'"
        ]
    value = text.strip()
    if value != text or any(c.isspace() for c in value):
        return None, [f"{where}: {text!r} contains white space; write the location without spaces"]
    scheme = value.split(":", 1)[0]
    if scheme in _ENV_ONLY_BACKENDS:
        return None, [
            f"{where}: {value!r} uses restic's {scheme} backend, whose credentials restic reads only from "
            "environment variables (or an extra tool), and mailstack never puts secrets into a container's "
            "environment: use the provider's S3-compatible endpoint (s3:https://...), an sftp server or a "
            "rest-server instead"
        ]
    parse = {"local": _parse_local, "sftp": _parse_sftp, "s3": _parse_s3, "rest": _parse_rest}.get(scheme)
    if parse is None:
        if value.startswith("/"):
            return _parse_local("local:" + value, value, production)
        if ":" in value:
            return None, [
                f"{where}: {value!r} is not a restic backend (restic says 'invalid backend'); use one of "
                f"{', '.join(f'{b}:' for b in SUPPORTED_BACKENDS)} or an absolute directory on the Docker host"
            ]
        return None, [
            f"{where}: {value!r} is a relative path; the job runs in a container, so give an absolute "
            "directory on the Docker host such as '/srv/restic/mailstack'"
        ]
    return parse(value, value, production)


def _parse_local(spec: str, original: str, production: bool) -> tuple[Repository | None, list[str]]:
    where = f"{ITEM}.repository"
    path = spec[len("local:") :]
    if not path.startswith("/"):
        return None, [
            f"{where}: {original!r}: a local repository must be an absolute directory on the Docker host"
        ]
    normal = posixpath.normpath(path)
    if normal == "/":
        return None, [f"{where}: {original!r} is the root directory; give a directory of its own"]
    if normal.startswith("/var/lib/docker"):
        return None, [
            f"{where}: {original!r} is inside Docker's own data directory; give a directory Docker does not "
            "manage, e.g. /srv/restic/mailstack"
        ]
    return Repository("local", original, path=normal), []


def _parse_sftp(spec: str, original: str, production: bool) -> tuple[Repository | None, list[str]]:
    where = f"{ITEM}.repository"
    user = host = ""
    port: int | None = None
    if spec.startswith("sftp://"):
        try:
            url = urllib.parse.urlsplit(spec)
            port = url.port
        except ValueError as exc:
            return None, [f"{where}: {original!r} is not a valid sftp URL ({exc})"]
        if url.password is not None:
            return None, [
                f"{where}: {original!r} contains a password; sftp logs in with a key: put the private key "
                f"into {SECRETS_ITEM}.sshKey"
            ]
        user, host, path = url.username or "", url.hostname or "", url.path
        if not path or path == "/":
            return None, [f"{where}: {original!r} names no directory (restic: 'no directory specified')"]
        path = path[1:]
    else:
        rest = spec[len("sftp:") :]
        if ":" not in rest:
            return None, [
                f"{where}: {original!r} has no path (restic: 'hostname or path not found'); write "
                "sftp:user@host:/path"
            ]
        userhost, path = rest.split(":", 1)
        if "@" in userhost:
            user, host = userhost.rsplit("@", 1)
        else:
            host = userhost
    problems: list[str] = []
    clean = posixpath.normpath(path) if path else ""
    if not clean or clean == ".":
        problems.append(f"{where}: {original!r} names no directory on the sftp server")
    elif clean.startswith("~"):
        problems.append(
            f"{where}: {original!r} starts the path with '~', which restic refuses; write a path relative to the "
            "user's home (sftp:user@host:restic/mailstack) or an absolute one"
        )
    host_problem = _host_problem(host)
    if host_problem:
        problems.append(f"{where}: {original!r} {host_problem}")
    if not user:
        problems.append(
            f"{where}: {original!r} names no user; the job runs as root, so write the ssh user explicitly: "
            "sftp:user@host:/path"
        )
    elif not _SSH_USER_RE.match(user):
        problems.append(f"{where}: {original!r}: {user!r} is not a valid ssh user name")
    if problems:
        return None, problems
    return Repository("sftp", original, host=host, port=port, user=user, path=clean), []


def _parse_s3(spec: str, original: str, production: bool) -> tuple[Repository | None, list[str]]:
    where = f"{ITEM}.repository"
    if spec.startswith("s3:http"):
        try:
            url = urllib.parse.urlsplit(spec[3:])
            port = url.port
        except ValueError as exc:
            return None, [f"{where}: {original!r} is not a valid URL ({exc})"]
        if url.scheme not in ("http", "https"):
            return None, [f"{where}: {original!r}: use s3:https://<endpoint>/<bucket>[/<prefix>]"]
        if url.username or url.password:
            return None, [
                f"{where}: {original!r} contains credentials; put the keys into {SECRETS_ITEM}.awsAccessKeyId "
                f"and {SECRETS_ITEM}.awsSecretAccessKey"
            ]
        bucket = url.path[1:].split("/", 1)[0] if url.path else ""
        if not bucket:
            return None, [f"{where}: {original!r} names no bucket (restic: 's3: bucket name not found')"]
        problems = _endpoint_problems(
            original,
            url.hostname or "",
            url.scheme,
            production,
            "the S3 keys' signatures and the encrypted data",
        )
        if problems:
            return None, problems
        return Repository(
            "s3", original, host=url.hostname, port=port, path=url.path[1:], scheme=url.scheme
        ), []
    rest = spec[5:] if spec.startswith("s3://") else spec[3:]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None, [
            f"{where}: {original!r} names no endpoint and bucket (restic: 'host/region or bucket name not found'); "
            "write s3:https://<endpoint>/<bucket>[/<prefix>]"
        ]
    host_problem = _host_problem(parts[0].split(":", 1)[0])
    if host_problem:
        return None, [f"{where}: {original!r} {host_problem}"]
    return Repository(
        "s3", original, host=parts[0].split(":", 1)[0], path="/".join(parts[1:]), scheme="https"
    ), []


def _endpoint_problems(original: str, host: str, scheme: str, production: bool, exposed: str) -> list[str]:
    """What is wrong with an HTTP(S) repository endpoint: its host, or plain http in production."""
    where = f"{ITEM}.repository"
    problems = []
    host_problem = _host_problem(host)
    if host_problem:
        problems.append(f"{where}: {original!r} {host_problem}")
    if production and scheme == "http":
        problems.append(
            f"{where}: {original!r} uses plain http, which sends {exposed} unprotected; production stacks need https"
        )
    return problems


def _parse_rest(spec: str, original: str, production: bool) -> tuple[Repository | None, list[str]]:
    where = f"{ITEM}.repository"
    try:
        url = urllib.parse.urlsplit(spec[len("rest:") :])
        port = url.port
    except ValueError as exc:
        return None, [f"{where}: {original!r} is not a valid URL ({exc})"]
    if url.scheme not in ("http", "https") or not url.netloc:
        return None, [f"{where}: {original!r}: write rest:https://<host>[:<port>]/<path>"]
    if url.username is not None or url.password is not None:
        return None, [
            f"{where}: {original!r} contains credentials, which would end up in logs and outputs; put them into "
            f"{SECRETS_ITEM}.restUsername and {SECRETS_ITEM}.restPassword"
        ]
    problems = _endpoint_problems(
        original, url.hostname or "", url.scheme, production, "the rest-server password"
    )
    if problems:
        return None, problems
    return Repository("rest", original, host=url.hostname, port=port, path=url.path, scheme=url.scheme), []


def _parse_keep(raw: Any) -> tuple[Retention | None, list[str]]:
    where = f"{ITEM}.keep"
    if raw is None:
        return Retention(**DEFAULT_KEEP), []
    if not isinstance(raw, Mapping):
        return None, [f"{where}: must be an object such as {{daily: 7, weekly: 4, monthly: 6}}"]
    problems = [
        f"{where}.{key}: unknown retention rule{_closest(str(key), KEEP_KEYS)}; use daily, weekly and monthly"
        for key in raw
        if key not in KEEP_KEYS
    ]
    values: dict[str, int] = {}
    for key in KEEP_KEYS:
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEEP:
            problems.append(
                f"{where}.{key}: must be a whole number of snapshots between 0 and {MAX_KEEP}, got {value!r}"
            )
            continue
        values[key] = value
    if not problems and not any(values.values()):
        problems.append(
            f"{where}: keeps nothing (every rule is 0), so `forget --prune` after each run would delete every "
            "snapshot; keep at least one, e.g. {daily: 7, weekly: 4, monthly: 6}"
        )
    if problems:
        return None, problems
    return Retention(**values), []


def _parse_schedule(raw: Any) -> tuple[CronSchedule | None, list[str]]:
    where = f"{ITEM}.schedule"
    if raw is None:
        return parse_cron(DEFAULT_SCHEDULE), []
    if not isinstance(raw, str):
        return None, [f"{where}: must be a cron expression in quotes, such as '0 3 * * *', got {raw!r}"]
    try:
        schedule = parse_cron(raw)
    except CronError as exc:
        return None, [f"{where}: {raw!r}: {exc}"]
    if len(schedule.minutes) > 1:
        return None, [
            f"{where}: {raw!r} runs more than once an hour; each run delivers a marker to every domain, backs "
            "them up and prunes the repository, so run at most hourly (one minute value), e.g. '0 3 * * *'"
        ]
    return schedule, []


def _parse_known_hosts(raw: Any) -> tuple[str | None, list[str]]:
    where = f"{ITEM}.knownHosts"
    if raw is None:
        return None, []
    lines = raw if isinstance(raw, list) else str(raw).splitlines() if isinstance(raw, str) else None
    if lines is None or not all(isinstance(line, str) for line in lines):
        return None, [f"{where}: must be known_hosts lines (a string or a list of strings)"]
    kept = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    bad = [line for line in kept if not _KNOWN_HOST_LINE_RE.match(line)]
    if bad or not kept:
        shown = bad[0] if bad else "(nothing)"
        return None, [
            f"{where}: {shown[:80]!r} is not a known_hosts line; paste the output of "
            "`ssh-keyscan -t ed25519 <host>` after checking its fingerprint"
        ]
    return "\n".join(kept) + "\n", []


def _check_secrets(
    secrets: Mapping[str, Any] | None,
    in_plain_text: bool,
    repository: Repository | None,
    production: bool,
) -> tuple[frozenset[str], list[str]]:
    """Check ``mailstack:backupSecrets`` without keeping any value; return the keys present and the problems."""
    problems: list[str] = []
    set_cmd = f"pulumi config set --secret --path '{SECRETS_ITEM}.password'"
    if secrets is None:
        return frozenset(), [
            f"{SECRETS_ITEM}.password: is missing: backups need restic's repository password; set it as a secret "
            f"with `{set_cmd}` (the CLI prompts for it) and keep a copy outside this host: without it no backup "
            "can be read"
        ]
    if not isinstance(secrets, Mapping):
        return frozenset(), [f"{SECRETS_ITEM}: must be a map such as {{password: ...}}, set with `{set_cmd}`"]
    if in_plain_text:
        problems.append(
            f"{SECRETS_ITEM}: is stored in plain text in the stack file; remove it with `pulumi config rm "
            f"{SECRETS_ITEM}` and set every value again with `pulumi config set --secret --path "
            f"'{SECRETS_ITEM}.<key>'`"
        )
    allowed = SECRET_KEYS.get(repository.backend, ()) if repository else tuple(secrets)
    required = REQUIRED_SECRET_KEYS.get(repository.backend, ()) if repository else ()
    present: set[str] = set()
    for key, value in secrets.items():
        where = f"{SECRETS_ITEM}.{key}"
        if repository is not None and key not in allowed:
            problems.append(
                f"{where}: is not used by a {repository.backend} repository; it uses "
                f"{', '.join(allowed)}: remove it with `pulumi config rm --path '{where}'`"
            )
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: must be a non-empty string")
            continue
        if key == "sshKey":
            if "PRIVATE KEY-----" not in value or "ENCRYPTED" in value:
                problems.append(
                    f"{where}: must be an unencrypted OpenSSH private key (as `ssh-keygen -N ''` writes it): the "
                    "job cannot type a passphrase; set it with `pulumi config set --secret --path "
                    f"'{where}' < key`"
                )
                continue
        elif "\n" in value or "\r" in value:
            problems.append(f"{where}: must be a single line")
            continue
        if key == "password":
            if value != value.strip():
                problems.append(
                    f"{where}: starts or ends with white space, which restic strips from a password file; "
                    "remove it"
                )
                continue
            if production and (value.lower() in WEAK_PASSWORDS or len(value) < MIN_PRODUCTION_PASSWORD):
                problems.append(
                    f"{where}: is too weak for a production stack: use at least {MIN_PRODUCTION_PASSWORD} "
                    "characters that are not a well-known password (it encrypts every copy of the mail)"
                )
                continue
        present.add(key)
    for key in required:
        if key not in secrets:
            what = (
                "restic's repository password"
                if key == "password"
                else f"needed by the {repository.backend} backend"
            )
            problems.append(
                f"{SECRETS_ITEM}.{key}: is missing ({what}); set it with `pulumi config set --secret --path "
                f"'{SECRETS_ITEM}.{key}'`"
            )
    if (
        repository is not None
        and repository.backend == "rest"
        and (("restUsername" in secrets) != ("restPassword" in secrets))
    ):
        problems.append(
            f"{SECRETS_ITEM}: restUsername and restPassword go together (rest-server's HTTP basic auth); set both "
            "or neither"
        )
    return frozenset(present), problems


def parse_backup(
    raw: Any,
    secrets: Mapping[str, Any] | None = None,
    *,
    secrets_in_plain_text: bool = False,
    production: bool = False,
) -> BackupConfig | None:
    """Validate ``mailstack:backup`` (and, when enabled, ``mailstack:backupSecrets``).

    Returns ``None`` when backups are off (absent, ``{}`` or ``enabled: false``); the rest of the
    object is still checked then, so switching it on later brings no surprise. Every problem is
    collected and raised as one :class:`ConfigError`.
    """
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            [f"{ITEM}: must be an object such as {{enabled: true, repository: ..., schedule: '0 3 * * *'}}"]
        )
    problems = [
        f"{ITEM}.{key}: unknown key{_closest(str(key), KEYS)}; allowed keys are {', '.join(KEYS)}"
        for key in raw
        if key not in KEYS
    ]
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.append(f"{ITEM}.enabled: {enabled!r} is not a boolean; use true or false")
        enabled = False
    repository: Repository | None = None
    if enabled or "repository" in raw:
        repository, found = parse_repository(raw.get("repository"), production)
        problems += found
    schedule, found = _parse_schedule(raw.get("schedule"))
    problems += found
    keep, found = _parse_keep(raw.get("keep"))
    problems += found
    known_hosts, found = _parse_known_hosts(raw.get("knownHosts"))
    problems += found
    if repository is not None and repository.backend == "sftp" and raw.get("knownHosts") is None:
        problems.append(
            f"{ITEM}.knownHosts: required for an sftp repository (the job checks the server's host key and never "
            f"accepts an unknown one): paste the line of `ssh-keyscan -t ed25519 {repository.host}` after "
            "checking its fingerprint"
        )
    if known_hosts is not None and repository is not None and repository.backend != "sftp":
        problems.append(f"{ITEM}.knownHosts: only used by sftp repositories; remove it")
    secret_keys: frozenset[str] = frozenset()
    if enabled:
        secret_keys, found = _check_secrets(secrets, secrets_in_plain_text, repository, production)
        problems += found
    if problems:
        raise ConfigError(problems)
    if not enabled:
        return None
    assert repository is not None and schedule is not None and keep is not None
    return BackupConfig(
        repository=repository,
        schedule=schedule,
        keep=keep,
        known_hosts=known_hosts,
        secret_keys=secret_keys,
    )


def add_drill_accounts(
    domains: Sequence[Domain], passwords: Mapping[str, Any] | None
) -> tuple[list[Domain], list[str]]:
    """Give every domain its marker account ``backup-drill@<domain>`` (generated password, small quota).

    The name must be free (no user or alias of that name), and it takes no explicit password:
    ``make restore-drill`` logs in with the generated one from the ``generatedPasswords`` output.
    """
    from config.model import User  # here: config.model imports this module

    problems: list[str] = []
    result: list[Domain] = []
    for i, d in enumerate(domains):
        where = f"mailstack:domains[{i}] ({d.domain})"
        taken = [u for u in d.users if u.name == DRILL_LOCAL_PART]
        aliased = [a for a in d.aliases if a.local == DRILL_LOCAL_PART]
        if taken or aliased:
            problems.append(
                f"{where}.{'users' if taken else 'aliases'}: {drill_address(d.domain)} is reserved for the restore "
                "drill's marker account while mailstack:backup is on: rename that "
                f"{'user' if taken else 'alias'}"
            )
            result.append(d)
            continue
        result.append(replace(d, users=(*d.users, User(DRILL_LOCAL_PART, d.domain, DRILL_QUOTA))))
        if passwords and isinstance(passwords, Mapping) and drill_address(d.domain) in passwords:
            problems.append(
                f"mailstack:passwords.{drill_address(d.domain)}: the marker account's password is generated (the "
                "drill reads it from the generatedPasswords output); remove the entry with `pulumi config rm "
                f"--path 'mailstack:passwords.{drill_address(d.domain)}'`"
            )
    return result, problems


def repository_on_docker_host(
    backup: BackupConfig, stack: StackConfig, docker_host: str | None
) -> str | None:
    """Why the repository looks like it lives on the Docker host itself (lost with the host), or ``None``."""
    repo = backup.repository
    if repo.backend == "local":
        return f"{repo.location} is a directory on the Docker host"
    host = (repo.host or "").lower().strip("[]")
    if host in _LOOPBACK_NAMES:
        return f"{repo.location} points at {host}, the Docker host itself"
    try:
        address = ip_address(host)
        if address.is_loopback:
            return f"{repo.location} points at the loopback address {host}"
    except ValueError:
        pass
    own = (
        {d.bind_address for d in stack.domains}
        | {stack.bind_address}
        | {d.hostname.lower() for d in stack.domains}
    )
    if docker_host:
        parsed = urllib.parse.urlsplit(docker_host if "://" in docker_host else f"ssh://{docker_host}")
        if parsed.hostname:
            own.add(parsed.hostname.lower())
    if host in own:
        return f"{repo.location} points at {host}, which is the Docker host of this stack"
    return None


# --- files of the job --------------------------------------------------------------------------------


def _script(name: str) -> str:
    return resources.files("config").joinpath(name).read_text(encoding="utf-8")


def job_script() -> str:
    """The backup job's POSIX shell script (``config/backup-job.sh``), run by the restic image's busybox."""
    return _script("backup-job.sh")


def export_script() -> str:
    """The webmail-export sidecar's shell script (``config/webmail-export.sh``), run in the Roundcube image."""
    return _script("webmail-export.sh")


def render_ssh_config(repository: Repository) -> str | None:
    """The ssh client configuration of an sftp repository: its host, user, key and pinned host keys."""
    if repository.backend != "sftp":
        return None
    lines = [
        "# Generated by mailstack: how the backup job reaches its sftp repository.",
        "Host mailstack-repository",
        f"  HostName {repository.host}",
        f"  User {repository.user}",
        f"  Port {repository.port or 22}",
        f"  IdentityFile {SSH_KEY_FILE}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {KNOWN_HOSTS_PATH}",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ServerAliveInterval 60",
    ]
    return "\n".join(lines) + "\n"


def repository_file(repository: Repository, secrets: Mapping[str, str]) -> str:
    """The content of ``--repository-file``: the location, with rest-server credentials put into the URL."""
    if repository.backend == "local":
        return f"{repository.path}\n"
    if repository.backend == "rest" and secrets.get("restUsername"):
        url = urllib.parse.urlsplit(repository.location[len("rest:") :])
        user = urllib.parse.quote(secrets["restUsername"], safe="")
        password = urllib.parse.quote(secrets["restPassword"], safe="")
        netloc = f"{user}:{password}@{url.netloc}"
        return (
            "rest:" + urllib.parse.urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment)) + "\n"
        )
    return f"{repository.location}\n"


def secret_files(backup: BackupConfig, secrets: Mapping[str, str]) -> dict[str, str]:
    """Every secret file of the job, path to content (uploaded 0400 from a secret Output; never in env)."""
    files = {
        PASSWORD_FILE: secrets["password"] + "\n",
        REPOSITORY_FILE: repository_file(backup.repository, secrets),
    }
    if backup.repository.backend == "s3":
        files[AWS_CREDENTIALS_FILE] = (
            "[default]\n"
            f"aws_access_key_id = {secrets['awsAccessKeyId']}\n"
            f"aws_secret_access_key = {secrets['awsSecretAccessKey']}\n"
        )
    if backup.repository.backend == "sftp":
        key = secrets["sshKey"].replace("\r\n", "\n").strip("\n")
        files[SSH_KEY_FILE] = key + "\n"
    return files


def secret_file_paths(backup: BackupConfig) -> list[str]:
    """The paths :func:`secret_files` fills for this backend, sorted (known before the secrets are)."""
    paths = [PASSWORD_FILE, REPOSITORY_FILE]
    if backup.repository.backend == "s3":
        paths.append(AWS_CREDENTIALS_FILE)
    if backup.repository.backend == "sftp":
        paths.append(SSH_KEY_FILE)
    return sorted(paths)


def plain_files(backup: BackupConfig, settings: str) -> dict[str, tuple[str, str]]:
    """The job's non-secret files: path to (content, permissions)."""
    files = {
        JOB_SCRIPT_PATH: (job_script(), "0755"),
        JOB_SETTINGS_PATH: (settings, "0644"),
    }
    ssh_config = render_ssh_config(backup.repository)
    if ssh_config is not None and backup.known_hosts is not None:
        files[SSH_CONFIG_PATH] = (ssh_config, "0644")
        files[KNOWN_HOSTS_PATH] = (backup.known_hosts, "0644")
    return files


@dataclass(frozen=True)
class JobDomain:
    """What the job needs to know about one domain."""

    domain: str
    smtp_host: str
    """Where the marker is delivered: the server's network alias (port 25 inside the stack network)."""
    smtp_port: int = 25
    webmail: bool = False
    directory: str | None = None
    """Directory of the domain under ``DATA_DIR`` (default: the domain name)."""
    drill: str | None = None
    """The marker account (default ``backup-drill@<domain>``)."""
    drill_maildir: str | None = None
    """Its Maildir relative to the domain's directory (default ``mail/<domain>/backup-drill``, as
    docker-mailserver's ``mail_location = maildir:/var/mail/%d/%n`` puts it in the mail volume)."""

    @property
    def dir(self) -> str:
        """The domain's directory under ``DATA_DIR``."""
        return self.directory or self.domain

    @property
    def drill_address(self) -> str:
        """The marker account's address."""
        return self.drill or drill_address(self.domain)

    @property
    def maildir(self) -> str:
        """The marker account's Maildir, relative to the domain's directory."""
        return self.drill_maildir or f"{MAIL_ROLE}/{maildir_of(self.domain, DRILL_LOCAL_PART)}"


def job_domains(stack: StackConfig) -> list[JobDomain]:
    """The domains of ``stack`` as the job sees them, in configuration order."""
    return [JobDomain(d.domain, d.server, 25, d.webmail is not None) for d in stack.domains]


def _quote(value: str | int) -> str:
    return shlex.quote(str(value))


def job_settings(
    stack_name: str,
    backup: BackupConfig,
    domains: Sequence[JobDomain],
    *,
    edge: bool = False,
    data_dir: str = DATA_DIR,
    job_dir: str = JOB_DIR,
    state_dir: str = STATE_DIR,
    cache_dir: str = CACHE_DIR,
    helo: str | None = None,
) -> str:
    """The job's settings (``/mailstack/job.conf``), sourced by ``backup-job.sh``; every value shell-quoted.

    The directories are parameters so that the contract tests run the same script against a real
    Postfix, Dovecot and restic on this machine.
    """
    values: list[tuple[str, str | int]] = [
        ("STACK", stack_name),
        ("RESTIC_HOST", restic_host(stack_name)),
        ("HELO_NAME", helo or f"mailstack-{stack_name}-backup.invalid"),
        ("DATA_DIR", data_dir),
        ("JOB_DIR", job_dir),
        ("SECRETS_DIR", f"{job_dir}/secrets"),
        ("STATE_DIR", state_dir),
        ("CACHE_DIR", cache_dir),
        ("KEEP_ARGS", " ".join(backup.keep.forget_args())),
        ("EDGE_DIR", EDGE_DIR if edge else ""),
        ("REQUESTS_DIR", REQUESTS_DIR),
        ("EXPORT_FILE", EXPORT_FILE),
        ("DOMAIN_COUNT", len(domains)),
        *backup.schedule.shell_fields().items(),
    ]
    for i, d in enumerate(domains, start=1):
        values += [
            (f"D{i}_NAME", d.domain),
            (f"D{i}_DIR", d.dir),
            (f"D{i}_SMTP_HOST", d.smtp_host),
            (f"D{i}_SMTP_PORT", d.smtp_port),
            (f"D{i}_WEBMAIL", 1 if d.webmail else 0),
            (f"D{i}_DRILL", d.drill_address),
            (f"D{i}_DRILL_MAILDIR", d.maildir),
        ]
    lines = [
        "# Generated by mailstack: settings of the backup job (sourced by job.sh). No secret in here.",
        f"# Schedule {backup.schedule.expression!r} (UTC); repository {backup.repository.location}.",
    ]
    lines += [f"{name}={_quote(value)}" for name, value in values]
    return "\n".join(lines) + "\n"
