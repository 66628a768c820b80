"""Helpers of the end-to-end suite: prerequisites, free ports, subnet choice, stack config, Docker, mail.

The parts that need neither Docker nor Pulumi (skip-reason detection with an injected command runner,
free ports, subnet choice, the stack configuration and its ``--path`` keys, process discovery for the
deadline) are unit-tested in ``test_support.py``, which runs everywhere. The rest is thin glue around the
``docker`` CLI and the standard library's SMTP and IMAP clients, exercised by ``test_e2e.py``.

Passwords travel as ``Secret`` objects, whose ``repr`` and ``str`` are masked, so that a failed assertion,
a traceback with ``--showlocals`` or a progress line cannot print one.
"""

from __future__ import annotations

import contextlib
import email.message
import imaplib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, ClassVar

from config.model import DEFAULT_IMAGES
from tools.up import existing_cli

PROJECT_DIR = Path(__file__).resolve().parents[2]
NAMESPACE = "mailstack"
REQUIRE_ENV = "MAILSTACK_REQUIRE_E2E"
"""Set to ``1`` (CI with Docker) to turn a missing prerequisite into a failure instead of a skip."""

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    """A ``Say`` that prints nothing."""


# ------------------------------------------------------------------------------------------- secrets


class Secret:
    """A secret string; ``repr`` and ``str`` are masked, ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``."""
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        """Masked."""
        return "Secret(********)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Equal when both wrap the same value."""
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        """Hash of the value (never printed)."""
        return hash(self._value)


def new_password(rng: random.Random | None = None) -> Secret:
    """A throwaway password for one e2e run.

    It starts with letters so that no ``pulumi config set --path`` type inference can turn it into a
    number or a boolean, and it is long enough to pass the production password rules too.
    """
    if rng is None:
        return Secret("E2e-" + secrets.token_urlsafe(18))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return Secret("E2e-" + "".join(rng.choice(alphabet) for _ in range(24)))


# ------------------------------------------------------------------------------------------ timeouts


@dataclass(frozen=True)
class Timeouts:
    """Every bound of the suite in seconds; each has an environment override (see the README)."""

    docker_info: float = 30.0
    """``docker info``, ``docker inspect`` and other quick Docker commands."""
    pull: float = 900.0
    """Pulling one pinned image when it is not present yet (docker-mailserver is several hundred MB)."""
    pulumi: float = 1200.0
    """One Pulumi operation (up, preview, refresh, destroy). A first ``up`` waits for the health checks
    (start period 150 s, wait timeout 300 s per server) and may download the resource plugins."""
    verify: float = 120.0
    """How long the mail check waits for each message."""
    login: float = 30.0
    """How long a changed account may take to work (the change detector polls every 2 s)."""

    ENV: ClassVar[dict[str, str]] = {
        "docker_info": "MAILSTACK_E2E_DOCKER_TIMEOUT",
        "pull": "MAILSTACK_E2E_PULL_TIMEOUT",
        "pulumi": "MAILSTACK_E2E_PULUMI_TIMEOUT",
        "verify": "MAILSTACK_E2E_VERIFY_TIMEOUT",
        "login": "MAILSTACK_E2E_LOGIN_TIMEOUT",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Timeouts:
        """Defaults, overridden by the ``MAILSTACK_E2E_*_TIMEOUT`` variables; a bad value raises ValueError."""
        values: dict[str, float] = {}
        for name, var in cls.ENV.items():
            text = env.get(var)
            if text is None or text == "":
                continue
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{var}={text!r} is not a number of seconds") from None
            if not 0 < number < 86400:
                raise ValueError(f"{var}={text!r} must be between 0 and 86400 seconds")
            values[name] = number
        return cls(**values)


# ----------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one external command."""

    returncode: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command ran to completion with status 0."""
        return self.returncode == 0 and not self.timed_out

    def reason(self) -> str:
        """One line explaining a failure: the last non-empty stderr line, or the status."""
        if self.timed_out:
            return "did not finish in time"
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit status {self.returncode}"


Runner = Callable[[Sequence[str], float], CommandResult]
"""Runs ``args`` with a timeout in seconds; injected so that tests can fake Docker."""


def run_command(args: Sequence[str], timeout: float) -> CommandResult:
    """Run ``args`` without a shell, capture its output, never raise for a failure or a timeout."""
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        return CommandResult(127, "", f"{args[0]}: command not found")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CommandResult(-1, out, "", timed_out=True)
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


# ------------------------------------------------------------------------------------ prerequisites


def find_pulumi(project_dir: Path, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The Pulumi CLI to use: ``pulumi`` on PATH, else the project's ``.pulumi-cli/bin/pulumi`` (where
    ``make up`` installs one), as ``tools.up`` finds it."""
    cli = existing_cli(which, project_dir / ".pulumi-cli")
    return str(cli) if cli is not None else None


def is_local_docker_endpoint(endpoint: str) -> bool:
    """Tell whether a Docker endpoint (``DOCKER_HOST`` form) is on this machine.

    The suite connects to the published ports on 127.0.0.1, so the engine must run here: a unix socket or
    named pipe, or a tcp/ssh endpoint on a loopback name.
    """
    endpoint = endpoint.strip()
    if not endpoint or endpoint.startswith(("unix://", "npipe://", "fd://")):
        return True
    parts = urllib.parse.urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1")


def docker_problem(
    run: Runner,
    env: Mapping[str, str],
    timeout: float,
    which: Callable[[str], str | None] = shutil.which,
) -> str | None:
    """Why the Docker engine cannot be used here, or ``None`` when ``docker info`` works locally."""
    if which("docker") is None:
        return "docker: the docker CLI is not on PATH; install Docker Engine (or Docker Desktop) and start it"
    result = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout)
    if result.timed_out:
        return (
            f"docker: `docker info` did not answer within {timeout:.0f} s; start the Docker engine or fix "
            "DOCKER_HOST"
        )
    if not result.ok or not result.stdout.strip():
        return (
            f"docker: `docker info` failed ({result.reason()}); start the Docker engine, or give your user "
            "access to its socket (docker group)"
        )
    endpoint = env.get("DOCKER_HOST", "")
    if not endpoint:
        ctx = run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"], timeout)
        endpoint = ctx.stdout.strip() if ctx.ok else ""
    if not is_local_docker_endpoint(endpoint):
        return (
            f"docker: the engine at {endpoint} is not on this machine, but the suite connects to the published "
            "ports on 127.0.0.1; run it on the Docker host (or select a local Docker context)"
        )
    return None


def pulumi_problem(cli: str | None, run: Runner, timeout: float) -> str | None:
    """Why the Pulumi CLI cannot be used, or ``None`` when ``pulumi version`` works."""
    if cli is None:
        return (
            "pulumi: the Pulumi CLI is neither on PATH nor in .pulumi-cli/bin; install it "
            "(https://www.pulumi.com/docs/iac/download-install/)"
        )
    result = run([cli, "version"], timeout)
    if not result.ok:
        return f"pulumi: `{cli} version` failed ({result.reason()})"
    return None


def venv_problem(project_dir: Path) -> str | None:
    """Why the project's virtualenv (``virtualenv: .venv`` in Pulumi.yaml) is unusable, or ``None``."""
    for candidate in (
        project_dir / ".venv" / "bin" / "python",
        project_dir / ".venv" / "Scripts" / "python.exe",
    ):
        if candidate.exists():
            return None
    return "venv: the project's .venv (Pulumi.yaml `virtualenv: .venv`) does not exist; create it with `make deps`"


def stack_images(raw: Mapping[str, Any]) -> list[str]:
    """The pinned images a stack configuration deploys (mail server always; webmail and VPN when used)."""
    images = {**DEFAULT_IMAGES, **(raw.get("images") or {})}
    wanted = [images["mailserver"]]
    if any(isinstance(d, Mapping) and d.get("webmail") for d in raw.get("domains") or []):
        wanted.append(images["webmail"])
    vpn = raw.get("vpn")
    if isinstance(vpn, Mapping) and vpn.get("enabled", True):
        wanted.append(images["vpn"])
    return wanted


def image_problem(image: str, run: Runner, timeouts: Timeouts, say: Say = _quiet) -> str | None:
    """Make sure ``image`` is present (pull it if needed, bounded); return why it is not, or ``None``."""
    if run(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeouts.docker_info).ok:
        return None
    say(f"pulling {image} (up to {timeouts.pull:.0f} s; later runs reuse it)")
    result = run(["docker", "pull", "--quiet", image], timeouts.pull)
    if result.timed_out:
        return (
            f"images: pulling {image} did not finish within {timeouts.pull:.0f} s; pull it by hand "
            f"(docker pull {image}) or raise {Timeouts.ENV['pull']}"
        )
    if not result.ok:
        return (
            f"images: cannot pull {image} ({result.reason()}); check the registry access of the Docker engine"
        )
    return None


@dataclass
class Prerequisites:
    """What the e2e suite found: the Pulumi CLI to use and every missing prerequisite."""

    pulumi_cli: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the suite can run."""
        return not self.problems

    def reason(self) -> str:
        """The skip reason: every missing prerequisite, each naming how to get it."""
        return "e2e prerequisites missing: " + "; ".join(self.problems)


def check_prerequisites(
    project_dir: Path,
    images: Sequence[str],
    *,
    run: Runner = run_command,
    env: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    which: Callable[[str], str | None] = shutil.which,
    say: Say = _quiet,
) -> Prerequisites:
    """Check Docker, the Pulumi CLI, the project's venv and the pinned images (pulled when Docker works)."""
    env = os.environ if env is None else env
    timeouts = timeouts or Timeouts()
    problems: list[str] = []
    docker = docker_problem(run, env, timeouts.docker_info, which)
    if docker:
        problems.append(docker)
    cli = find_pulumi(project_dir, which)
    pulumi = pulumi_problem(cli, run, timeouts.docker_info)
    if pulumi:
        problems.append(pulumi)
    venv = venv_problem(project_dir)
    if venv:
        problems.append(venv)
    if docker is None:
        for image in images:
            problem = image_problem(image, run, timeouts, say)
            if problem:
                problems.append(problem)
    else:
        problems.append("images: not checked, because Docker is not available")
    return Prerequisites(cli if pulumi is None else None, problems)


# ---------------------------------------------------------------------------------- ports and subnets


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (all held open while choosing)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def parse_subnets(text: str) -> list[IPv4Network]:
    """IPv4 networks found in whitespace-separated text (``docker network inspect`` output); IPv6 ignored."""
    found: list[IPv4Network] = []
    for word in text.replace(",", " ").split():
        try:
            net = ipaddress.ip_network(word.strip("[]{}\"'"), strict=False)
        except ValueError:
            continue
        if isinstance(net, IPv4Network):
            found.append(net)
    return found


def parse_proc_routes(text: str) -> list[IPv4Network]:
    """Destinations of the Linux routing table (``/proc/net/route``), without the default route."""
    routes: list[IPv4Network] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = socket.inet_ntoa(struct.pack("<L", int(fields[1], 16)))
            mask = socket.inet_ntoa(struct.pack("<L", int(fields[7], 16)))
        except (ValueError, struct.error):
            continue
        net = IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen > 0:
            routes.append(net)
    return routes


def host_routes(path: Path = Path("/proc/net/route")) -> list[IPv4Network]:
    """The host's IPv4 routes (Linux); empty where the table is not readable (macOS, Docker Desktop)."""
    try:
        return parse_proc_routes(path.read_text())
    except OSError:
        return []


def docker_subnets(run: Runner, timeout: float) -> list[IPv4Network]:
    """IPv4 subnets of every existing Docker network."""
    ids = run(["docker", "network", "ls", "--quiet", "--no-trunc"], timeout)
    if not ids.ok:
        raise RuntimeError(f"`docker network ls` failed: {ids.reason()}")
    names = ids.stdout.split()
    if not names:
        return []
    inspected = run(
        ["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *names],
        timeout,
    )
    if not inspected.ok:
        raise RuntimeError(f"`docker network inspect` failed: {inspected.reason()}")
    return parse_subnets(inspected.stdout)


SUBNET_POOLS: tuple[IPv4Network, ...] = (
    IPv4Network("10.213.0.0/16"),
    IPv4Network("172.30.0.0/16"),
    IPv4Network("192.168.224.0/20"),
)
"""Where the suite looks for a free /24: private ranges away from Docker's first default pools and the
lab's 172.28.0.0/16."""


def choose_subnet(
    used: Iterable[IPv4Network],
    rng: random.Random,
    pools: Sequence[IPv4Network] = SUBNET_POOLS,
    prefixlen: int = 24,
) -> IPv4Network:
    """A random ``/prefixlen`` from ``pools`` that overlaps none of ``used`` (Docker networks, host routes)."""
    taken = list(used)
    for pool in pools:
        candidates = list(pool.subnets(new_prefix=prefixlen))
        rng.shuffle(candidates)
        for net in candidates:
            if not any(net.overlaps(u) for u in taken):
                return net
    raise RuntimeError(
        f"no free /{prefixlen} left in {', '.join(map(str, pools))}: remove unused Docker networks "
        "(docker network prune)"
    )


# --------------------------------------------------------------------------------------- stack plan


@dataclass(frozen=True)
class DomainSpec:
    """One domain of the e2e stack (the same names as the local lab, with its own ports and network)."""

    domain: str
    server: str
    users: tuple[str, ...]


DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec("example1.local", "mta1", ("user1", "user2")),
    DomainSpec("example2.local", "mta2", ("user3", "user4")),
)
WEBMAIL_DOMAIN = "example1.local"
"""The domain that gets a Roundcube; one is enough to test the webmail path end to end."""
NEW_USER = "user5@example1.local"
"""The account the change step adds."""
NEW_USER_QUOTA = "500M"
CHANGED_USER = "user3@example2.local"
"""The account whose password the change step replaces (the check account of example2.local)."""
ALIAS = "info@example2.local"
"""The alias the change step adds; it forwards to ``ALIAS_TARGET``."""
ALIAS_TARGET = "user3@example2.local"
EGRESS_DOMAIN = "example2.local"
"""The domain the deliverability step gives its own egress network."""
EGRESS_NAME = "egress.example2.local"
"""Its HELO name (not its mail host's name, whose A record is the lab's loopback address)."""
WRITER_USER = "user6@example2.local"
"""The account the broken-writer step adds, so that example2.local's config writer runs again."""
OBSTACLE = "postfix-virtual.cf"
"""The file of the config volume the broken-writer step replaces with a directory, which the writer refuses."""
SERVICES = ("smtp", "submission", "imap")
PORTS_NEEDED = len(DOMAINS) * len(SERVICES) + 1
"""Host ports of the e2e stack: three per domain and the webmail."""

POSTFIX_SETTINGS = {"queue_run_delay": "30s", "minimal_backoff_time": "30s"}
"""Faster retries than the lab's 300 s. Both servers are healthy before the first message is sent, so a
first attempt should never be deferred; if one is (a slow DNS answer, a reload at the wrong moment), the
default queue_run_delay/minimal_backoff_time of 300 s would hold it longer than the check waits (120 s),
and the run would fail on timing instead of on a fault. With 30 s a deferred message is retried well
within the wait. Both are plain Postfix 3.7 parameters (postconf(5)); Postfix warns when queue_run_delay
exceeds minimal_backoff_time, so they move together."""


def new_stack_name(rng: random.Random | None = None) -> str:
    """A unique stack name ``e2e-<8 hex>``; it is also part of every Docker name of the run."""
    token = f"{rng.getrandbits(32):08x}" if rng is not None else secrets.token_hex(4)
    return f"e2e-{token}"


@dataclass(frozen=True)
class Plan:
    """Everything the e2e stack is made of: its name, network, ports, accounts and the change step."""

    stack: str
    subnet: IPv4Network
    ports: tuple[dict[str, int], ...]
    """Host ports per domain, in ``DOMAINS`` order."""
    webmail_port: int
    passwords: Mapping[str, Secret]
    """The initial password of every account."""
    new_user_password: Secret
    changed_password: Secret
    """The replacement password of ``CHANGED_USER``."""
    writer_user_password: Secret
    """The password of ``WRITER_USER``."""

    @property
    def network_name(self) -> str:
        """Docker name of the stack network."""
        return f"mailstack-{self.stack}"

    def container(self, server: str) -> str:
        """Docker name of a mail server container (``mailstack-<stack>-mta1``)."""
        return f"mailstack-{self.stack}-{server}"

    def raw_config(
        self, *, changed: bool = False, writer_user: bool = False, egress_address: str | None = None
    ) -> dict[str, Any]:
        """The ``mailstack:*`` configuration (keys without the namespace, passwords apart), before or after
        the change step (and with ``WRITER_USER``, after the broken-writer step; with ``egress_address``,
        after the deliverability step: DKIM on, and ``EGRESS_DOMAIN`` sending from that host address)."""
        domains: list[dict[str, Any]] = []
        for spec, ports in zip(DOMAINS, self.ports, strict=True):
            users: list[dict[str, Any]] = [{"name": u, "quota": "1G"} for u in spec.users]
            entry: dict[str, Any] = {
                "domain": spec.domain,
                "server": spec.server,
                "ports": dict(ports),
                "users": users,
            }
            if spec.domain == WEBMAIL_DOMAIN:
                entry["webmail"] = {"port": self.webmail_port}
            if changed:
                local, domain = NEW_USER.split("@")
                if domain == spec.domain:
                    users.append({"name": local, "quota": NEW_USER_QUOTA})
                alias_local, alias_domain = ALIAS.split("@")
                if alias_domain == spec.domain:
                    entry["aliases"] = {alias_local: [ALIAS_TARGET]}
            if writer_user and WRITER_USER.endswith(f"@{spec.domain}"):
                users.append({"name": WRITER_USER.split("@")[0], "quota": NEW_USER_QUOTA})
            if egress_address is not None and spec.domain == EGRESS_DOMAIN:
                entry["egress"] = {"address": egress_address, "name": EGRESS_NAME}
            domains.append(entry)
        raw: dict[str, Any] = {
            "bindAddress": "127.0.0.1",
            "protectData": False,
            "network": {"name": self.network_name, "subnet": str(self.subnet)},
            "postfix": dict(POSTFIX_SETTINGS),
            "domains": domains,
        }
        if egress_address is not None:
            raw["dkim"] = {"enabled": True}
        return raw

    def egress_network(self) -> str:
        """Docker name of ``EGRESS_DOMAIN``'s own egress network."""
        return f"mailstack-{self.stack}-{EGRESS_DOMAIN.replace('.', '-')}-egress"

    def account_passwords(self, *, changed: bool = False) -> dict[str, Secret]:
        """The password of every account, before or after the change step."""
        result = dict(self.passwords)
        if changed:
            result[NEW_USER] = self.new_user_password
            result[CHANGED_USER] = self.changed_password
        return result


def make_plan(
    stack: str, ports: Sequence[int], subnet: IPv4Network, rng: random.Random | None = None
) -> Plan:
    """Build the plan from a stack name, ``PORTS_NEEDED`` free ports and a subnet."""
    if len(ports) != PORTS_NEEDED or len(set(ports)) != PORTS_NEEDED:
        raise ValueError(f"need {PORTS_NEEDED} distinct ports, got {list(ports)}")
    it = iter(ports)
    per_domain = tuple({svc: next(it) for svc in SERVICES} for _ in DOMAINS)
    passwords = {f"{u}@{spec.domain}": new_password(rng) for spec in DOMAINS for u in spec.users}
    return Plan(
        stack=stack,
        subnet=subnet,
        ports=per_domain,
        webmail_port=next(it),
        passwords=passwords,
        new_user_password=new_password(rng),
        changed_password=new_password(rng),
        writer_user_password=new_password(rng),
    )


# ------------------------------------------------------------------------------ config --path keys

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def path_segment(key: str) -> str:
    """One map key in ``pulumi config set --path`` syntax: ``.name``, or ``["user1@example1.local"]``."""
    if _IDENT_RE.match(key):
        return f".{key}"
    if '"' in key or "\\" in key:
        raise ValueError(f"cannot express the key {key!r} in a config path")
    return f'["{key}"]'


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"{path}: unsupported config value type {type(value).__name__}")


def flatten_config(namespace: str, raw: Mapping[str, Any]) -> dict[str, str]:
    """Turn a nested configuration into ``--path`` keys and string values, in a stable order.

    ``{"domains": [{"ports": {"smtp": 2525}}]}`` gives ``{"mailstack:domains[0].ports.smtp": "2525"}``.
    List items come in index order, so ``pulumi config set-all --path`` grows each list one item at a time.
    Pulumi stores ``--path`` values that look like numbers or booleans as such; the model accepts both.
    """
    out: dict[str, str] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{path}: empty maps cannot be set with --path")
            for k, v in value.items():
                walk(path + path_segment(str(k)), v)
        elif isinstance(value, list | tuple):
            if not value:
                raise ValueError(f"{path}: empty lists cannot be set with --path")
            for i, v in enumerate(value):
                walk(f"{path}[{i}]", v)
        else:
            out[path] = _scalar(value, path)

    for key, value in raw.items():
        if not _IDENT_RE.match(key):
            raise ValueError(f"top-level config key {key!r} is not a plain name")
        walk(f"{namespace}:{key}", value)
    return out


def config_delta(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """The ``--path`` entries to set to go from ``before`` to ``after`` (new or different values, in
    ``after``'s order). Removals are not supported: they would need ``pulumi config rm``."""
    removed = [k for k in before if k not in after]
    if removed:
        raise ValueError(f"config_delta cannot remove keys: {removed}")
    return {k: v for k, v in after.items() if before.get(k) != v}


def password_key(address: str) -> str:
    """The ``--path`` key of an account's password: ``mailstack:passwords["user1@example1.local"]``."""
    return f"{NAMESPACE}:passwords{path_segment(address)}"


@dataclass(frozen=True)
class ConfigEntry:
    """One ``--path`` config entry to set; a secret entry's value is a ``Secret``."""

    key: str
    value: str | Secret

    @property
    def secret(self) -> bool:
        """True for passwords."""
        return isinstance(self.value, Secret)

    def plain_value(self) -> str:
        """The value to hand to Pulumi (revealed for secrets)."""
        return self.value.reveal() if isinstance(self.value, Secret) else self.value


def initial_entries(plan: Plan) -> list[ConfigEntry]:
    """Every config entry of the first deployment: the plain settings, then the passwords as secrets."""
    plain = flatten_config(NAMESPACE, plan.raw_config())
    entries = [ConfigEntry(k, v) for k, v in plain.items()]
    entries += [ConfigEntry(password_key(a), s) for a, s in plan.account_passwords().items()]
    return entries


def change_entries(plan: Plan) -> list[ConfigEntry]:
    """The entries of the change step: a new user with its password, a changed password, a new alias."""
    before = flatten_config(NAMESPACE, plan.raw_config())
    after = flatten_config(NAMESPACE, plan.raw_config(changed=True))
    entries = [ConfigEntry(k, v) for k, v in config_delta(before, after).items()]
    old, new = plan.account_passwords(), plan.account_passwords(changed=True)
    entries += [ConfigEntry(password_key(a), s) for a, s in new.items() if old.get(a) != s]
    return entries


def writer_user_entries(plan: Plan) -> list[ConfigEntry]:
    """The entries of the broken-writer step (after the change step): ``WRITER_USER`` and its password."""
    before = flatten_config(NAMESPACE, plan.raw_config(changed=True))
    after = flatten_config(NAMESPACE, plan.raw_config(changed=True, writer_user=True))
    entries = [ConfigEntry(k, v) for k, v in config_delta(before, after).items()]
    return [*entries, ConfigEntry(password_key(WRITER_USER), plan.writer_user_password)]


def deliverability_entries(plan: Plan, egress_address: str) -> list[ConfigEntry]:
    """The entries of the deliverability step (after the broken-writer step): DKIM on, an own egress."""
    before = flatten_config(NAMESPACE, plan.raw_config(changed=True, writer_user=True))
    after = flatten_config(
        NAMESPACE, plan.raw_config(changed=True, writer_user=True, egress_address=egress_address)
    )
    return [ConfigEntry(k, v) for k, v in config_delta(before, after).items()]


def host_source_address(run: Runner, timeout: float) -> str | None:
    """The host's own address on its default route (``ip -4 route get``: computed locally, nothing sent)."""
    found = run(["ip", "-4", "route", "get", "192.0.2.1"], timeout)
    match = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)", found.stdout) if found.ok else None
    return match.group(1) if match else None


def default_gateway(ip_route: str) -> str | None:
    """The gateway of the ``default`` line of ``ip -4 route`` output."""
    match = re.search(r"^default via (\d+\.\d+\.\d+\.\d+)", ip_route, re.MULTILINE)
    return match.group(1) if match else None


RETRY_RE = re.compile(r"pulumi up --stack (?P<stack>\S+) --replace '(?P<urn>urn:pulumi:[^']+)'")


def retry_command(text: str) -> tuple[str, str] | None:
    """``(stack, writer urn)`` of the retry command a failed config write prints, or ``None``."""
    match = RETRY_RE.search(text)
    return (match["stack"], match["urn"]) if match else None


# -------------------------------------------------------------------------- deadline for Pulumi calls


def child_processes(parent: int) -> list[tuple[int, str]]:
    """``(pid, name)`` of the direct children of ``parent`` (``/proc`` on Linux, ``ps`` elsewhere)."""
    found: list[tuple[int, str]] = []
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
            head, _, tail = stat.rpartition(")")
            fields = tail.split()
            if len(fields) >= 2 and fields[1] == str(parent):
                found.append((int(entry.name), head.partition("(")[2]))
        return found
    result = run_command(["ps", "-A", "-o", "pid=,ppid=,comm="], 10)
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == str(parent):
            found.append((int(parts[0]), os.path.basename(parts[2].strip())))
    return found


class DeadlineExceeded(Exception):
    """A Pulumi operation did not finish in time and was interrupted."""


@contextlib.contextmanager
def deadline(
    seconds: float, what: str, say: Say = _quiet, name: str = "pulumi", grace: float = 120.0
) -> Iterator[None]:
    """Bound a blocking Automation API call: after ``seconds``, interrupt the ``name`` child processes.

    The Automation API has no timeout, so a watchdog thread sends SIGINT to the CLI (Pulumi then cancels
    the operation cleanly); if it is still running ``grace`` seconds later, a second SIGINT (Pulumi exits at
    once) and finally SIGKILL. The call then fails, and the ``with`` block raises ``DeadlineExceeded``.
    """
    fired = threading.Event()
    done = threading.Event()

    def signal_children(sig: int) -> int:
        count = 0
        for pid, comm in child_processes(os.getpid()):
            if comm == name:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
                    count += 1
        return count

    def watchdog() -> None:
        if done.wait(seconds):
            return
        fired.set()
        say(f"{what} did not finish within {seconds:.0f} s: interrupting the {name} CLI")
        signal_children(signal.SIGINT)
        for sig in (signal.SIGINT, signal.SIGKILL):
            if done.wait(grace / 2):
                return
            say(f"{what} still running after the interrupt: sending {signal.Signals(sig).name}")
            signal_children(sig)

    thread = threading.Thread(target=watchdog, name=f"deadline {what}", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        if fired.is_set():
            raise DeadlineExceeded(
                f"{what} did not finish within {seconds:.0f} s and was interrupted"
            ) from None
        raise
    finally:
        done.set()
    if fired.is_set():
        raise DeadlineExceeded(f"{what} did not finish within {seconds:.0f} s and was interrupted")


def poll(
    probe: Callable[[], str | None],
    timeout: float,
    interval: float = 1.0,
    say: Say = _quiet,
    what: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, float, str]:
    """Call ``probe`` until it returns ``None`` (success) or ``timeout`` passes.

    ``probe`` returns ``None`` when the condition holds, else a short reason. Returns ``(ok, elapsed,
    last_reason)``; prints ``what`` with the reason every five seconds while waiting.
    """
    start = clock()
    last_said = start
    reason = "not tried"
    while True:
        reason = probe() or ""
        elapsed = clock() - start
        if not reason:
            return True, elapsed, ""
        if elapsed >= timeout:
            return False, elapsed, reason
        if what and clock() - last_said >= 5:
            last_said = clock()
            say(f"waiting for {what} ({elapsed:.0f} s of {timeout:.0f} s): {reason}")
        sleep(min(interval, max(0.0, timeout - elapsed)))


# ------------------------------------------------------------------------------------------ docker


@dataclass(frozen=True)
class ContainerIdentity:
    """What shows whether a container was replaced or restarted."""

    id: str
    started_at: str
    restart_count: int
    status: str
    health: str

    def describe(self) -> str:
        """Short text for messages."""
        return (
            f"id {self.id[:12]}, started {self.started_at}, {self.restart_count} restart(s), "
            f"{self.status}/{self.health}"
        )


def parse_container_identity(inspect_json: str) -> ContainerIdentity:
    """Read a ``docker container inspect`` JSON answer (an array with one object)."""
    data = json.loads(inspect_json)
    item = data[0] if isinstance(data, list) else data
    state = item.get("State") or {}
    health = (state.get("Health") or {}).get("Status", "none")
    return ContainerIdentity(
        id=item["Id"],
        started_at=state.get("StartedAt", ""),
        restart_count=int(item.get("RestartCount", 0)),
        status=state.get("Status", ""),
        health=health,
    )


def container_identity(name: str, run: Runner, timeout: float) -> ContainerIdentity | None:
    """The identity of container ``name``, or ``None`` when it does not exist."""
    result = run(["docker", "container", "inspect", name], timeout)
    if not result.ok:
        if "no such" in (result.stderr or "").lower():
            return None
        raise RuntimeError(f"`docker container inspect {name}` failed: {result.reason()}")
    return parse_container_identity(result.stdout)


def volume_created_at(name: str, run: Runner, timeout: float) -> str | None:
    """``CreatedAt`` of volume ``name`` (a re-created volume gets a new one), or ``None`` if it is absent."""
    result = run(["docker", "volume", "inspect", "--format", "{{.CreatedAt}}", name], timeout)
    if not result.ok:
        if "no such" in (result.stderr or "").lower():
            return None
        raise RuntimeError(f"`docker volume inspect {name}` failed: {result.reason()}")
    return result.stdout.strip()


def network_exists(name: str, run: Runner, timeout: float) -> bool:
    """Tell whether Docker network ``name`` exists."""
    return run(["docker", "network", "inspect", "--format", "{{.Id}}", name], timeout).ok


def stack_docker_objects(stack: str, run: Runner, timeout: float) -> dict[str, list[str]]:
    """Containers, networks and volumes of ``stack``: labelled ``mailstack.stack=<stack>`` or named
    ``mailstack-<stack>`` / ``mailstack-<stack>-*``. The stack name is random, so nothing else matches."""
    prefix = f"mailstack-{stack}"
    listings = {
        "container": ["docker", "container", "ls", "--all", "--format", "{{.Names}}"],
        "network": ["docker", "network", "ls", "--format", "{{.Name}}"],
        "volume": ["docker", "volume", "ls", "--format", "{{.Name}}"],
    }
    found: dict[str, list[str]] = {}
    for kind, base in listings.items():
        labelled = run([*base, "--filter", f"label=mailstack.stack={stack}"], timeout)
        named = run([*base, "--filter", f"name={prefix}"], timeout)
        for result in (labelled, named):
            if not result.ok:
                raise RuntimeError(f"`{' '.join(base[:3])}` failed: {result.reason()}")
        # The name filter matches substrings: keep exact prefix matches only.
        by_name = {n for n in named.stdout.split() if n == prefix or n.startswith(prefix + "-")}
        found[kind] = sorted(set(labelled.stdout.split()) | by_name)
    return found


def remove_stack_docker_objects(stack: str, run: Runner, timeout: float, say: Say = _quiet) -> list[str]:
    """Remove every container, network and volume of ``stack`` (containers first); return what is left."""
    found = stack_docker_objects(stack, run, timeout)
    removers = {
        "container": ["docker", "container", "rm", "--force", "--volumes"],
        "network": ["docker", "network", "rm"],
        "volume": ["docker", "volume", "rm", "--force"],
    }
    for kind in ("container", "network", "volume"):
        if found[kind]:
            say(f"removing {kind}(s) of {stack}: {', '.join(found[kind])}")
            run([*removers[kind], *found[kind]], max(timeout, 120.0))
    left = stack_docker_objects(stack, run, timeout)
    return [f"{kind} {name}" for kind, names in left.items() for name in names]


def throwaway_container(image: str, name: str, mount: str, program: str, *args: str) -> list[str]:
    """``docker run`` of ``program`` in a throwaway, network-less container of ``image`` with ``mount``."""
    return ["docker", "run", "--rm", "--name", name, "--network", "none", "--volume", mount,
            "--entrypoint", program, image, *args]  # fmt: skip


def volume_reader(volume: str, image: str, name: str, program: str, *args: str) -> list[str]:
    """``program`` in a throwaway container with ``volume`` mounted read-only at ``/m``."""
    return throwaway_container(image, name, f"{volume}:/m:ro", program, *args)


def volume_shell(volume: str, image: str, name: str, script: str) -> list[str]:
    """``sh -c script`` in a throwaway container with ``volume`` mounted read-write at ``/c`` (to break or
    mend a config volume on purpose)."""
    return throwaway_container(image, name, f"{volume}:/c", "sh", "-c", script)


def maildir_files_with(
    volume: str, image: str, mailbox: str, token: str, run: Runner, timeout: float, name: str
) -> list[str]:
    """Paths (as ``/m/<domain>/<user>/...``) of the files of ``mailbox`` in the retained ``volume`` that
    contain ``token``, read with a throwaway container of the mail server image."""
    result = run(volume_reader(volume, image, name, "grep", "-rlF", token, f"/m/{mailbox}"), timeout)
    if result.returncode not in (0, 1):  # grep: 0 = match, 1 = no match, 2 = error
        raise RuntimeError(f"reading volume {volume} failed: {result.reason()}")
    return sorted(result.stdout.split())


def list_maildir(volume: str, image: str, mailbox: str, run: Runner, timeout: float, name: str) -> str:
    """``find`` listing of one maildir in ``volume`` (for failure messages)."""
    result = run(volume_reader(volume, image, name, "find", f"/m/{mailbox}", "-maxdepth", "2"), timeout)
    return (result.stdout or result.stderr).strip()[:2000]


# -------------------------------------------------------------------------------------------- mail


def imap_login_problem(
    host: str, port: int, address: str, password: Secret, timeout: float = 10.0
) -> str | None:
    """Log in over IMAP (plain LOGIN, as the lab has no TLS); ``None`` on success, else the reply."""
    try:
        client = imaplib.IMAP4(host, port, timeout=timeout)
    except OSError as exc:
        return f"cannot connect to IMAP {host}:{port}: {exc}"
    try:
        client.login(address, password.reveal())
    except imaplib.IMAP4.error as exc:
        return f"login refused: {_one_line(exc)}"
    except OSError as exc:
        return f"IMAP {host}:{port} failed: {exc}"
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return None


def send_message(
    host: str, port: int, sender: str, password: Secret, recipient: str, token: str, timeout: float = 20.0
) -> None:
    """Submit one message carrying ``token`` (Subject and body) with SMTP AUTH; raises on any refusal."""
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"mailstack e2e {token}"
    msg.set_content(f"End-to-end test message {token}. It is kept to prove the mail volume holds mail.\n")
    with smtplib.SMTP(host, port, local_hostname="e2e.mailstack.invalid", timeout=timeout) as smtp:
        smtp.ehlo()
        smtp.login(sender, password.reveal())
        smtp.send_message(msg)


def inbox_has_token(
    host: str, port: int, address: str, password: Secret, token: str, timeout: float = 10.0
) -> str | None:
    """``None`` when ``address``'s INBOX holds a message whose Subject carries ``token``, else why not."""
    try:
        client = imaplib.IMAP4(host, port, timeout=timeout)
    except OSError as exc:
        return f"cannot connect to IMAP {host}:{port}: {exc}"
    try:
        client.login(address, password.reveal())
        client.select("INBOX", readonly=True)
        status, data = client.uid("SEARCH", "SUBJECT", f'"{token}"')
        if status != "OK":
            return f"SEARCH failed: {_one_line(data)}"
        return None if data and data[0].split() else "not in INBOX yet"
    except (imaplib.IMAP4.error, OSError) as exc:
        return f"IMAP {host}:{port}: {_one_line(exc)}"
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def _one_line(value: object, limit: int = 200) -> str:
    if isinstance(value, list | tuple):
        value = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return " ".join(str(value).split())[:limit]


def new_token() -> str:
    """A unique token for one test message."""
    return f"e2e-{secrets.token_hex(8)}"


# ------------------------------------------------------------------------------------- pulumi results


def unexpected_ops(summary: Mapping[Any, int] | None) -> dict[str, int]:
    """The operations of a change summary other than ``same`` (``{"update": 1}``); empty means no changes.

    Keys may be ``OpType`` members or plain strings; zero counts are ignored.
    """
    ops: dict[str, int] = {}
    for key, count in (summary or {}).items():
        name = str(getattr(key, "value", key))
        if name != "same" and count:
            ops[name] = ops.get(name, 0) + int(count)
    return ops


def e2e_images() -> list[str]:
    """The pinned images the e2e stack deploys (the prerequisite check pulls them)."""
    placeholder = make_plan(
        "e2e-images", list(range(20000, 20000 + PORTS_NEEDED)), IPv4Network("10.0.0.0/24")
    )
    return stack_images(placeholder.raw_config(changed=True))
