"""Typed model of a mailstack stack configuration, and its validation.

``load_stack`` turns the raw ``mailstack:*`` configuration of one Pulumi stack into a
``StackConfig``. Every problem is collected and reported at once through ``ConfigError``,
each message naming the item (``mailstack:domains[0].users[1].quota``) and the fix, so
that ``pulumi preview`` stops before any resource is declared.

This module imports nothing from Pulumi: it is plain data, testable in milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from config import deliverability as dlv
from config import edge as edge_config
from config import postfix_params
from config.addresses import Request, allocate, hash_slot
from config.backup import DEFAULT_IMAGE as BACKUP_IMAGE
from config.backup import BackupConfig, add_drill_accounts, parse_backup
from config.errors import ConfigError
from config.memory import Memory, server_key
from config.rules import WEAK_PASSWORDS, image_problem
from config.vpn import DEFAULT_IMAGE as VPN_IMAGE
from config.vpn import VpnConfig, parse_vpn

# Pinned default images. Never ``latest``/``edge``: those tags move (docs/upstream.md, "Image tags").
DEFAULT_IMAGES: dict[str, str] = {
    "mailserver": "docker.io/mailserver/docker-mailserver:15.1.0",
    "webmail": "docker.io/roundcube/roundcubemail:1.6.16-apache",
    "vpn": VPN_IMAGE,
    "backup": BACKUP_IMAGE,
    "edge": edge_config.DEFAULT_IMAGE,
}

QUOTA_RE = re.compile(r"^([0-9]+(B|k|M|G|T)|0)$")
"""Quota syntax accepted by docker-mailserver's ``setquota`` (v15.1.0 ``target/bin/setquota``)."""

DOMAIN_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SERVER_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
LOCAL_PART_RE = re.compile(r"^[a-z0-9]([a-z0-9._+-]{0,62}[a-z0-9])?$")
POSTFIX_NAME_RE = re.compile(r"^[a-z0-9_]+$")

TLS_MODES = ("none", "self-signed", "manual", "letsencrypt", "acme")
"""Values of ``mailstack:tls``; ``none`` is the lab default (plain IMAP/SMTP AUTH); ``acme``: the HTTPS
edge (``config.edge``) obtains every mail server's certificate."""


MIN_PRODUCTION_PASSWORD = 12

DEFAULT_SUBNET = IPv4Network("172.28.0.0/16")
DEFAULT_MESSAGE_SIZE_LIMIT = 10_240_000
TOP_LEVEL_KEYS = frozenset(
    {
        "domains",
        "passwords",
        "bindAddress",
        "images",
        "postfix",
        "messageSizeLimit",
        "mailboxSizeLimit",
        "network",
        "protectData",
        "production",
        "tls",
        "certificatesPath",
        "vpn",
        "backup",
        "backupSecrets",
        "edge",
        "acmeEmail",
    }
    | dlv.STACK_KEYS
)
DOMAIN_KEYS = (
    frozenset(
        {"domain", "server", "ports", "users", "aliases", "hostname", "bindAddress", "address", "webmail"}
    )
    | dlv.DOMAIN_KEYS
    | edge_config.DOMAIN_KEYS
)
PORT_KEYS = ("smtp", "submission", "imap", "pop3")
REQUIRED_PORT_KEYS = ("smtp", "submission", "imap")
CONTAINER_PORTS: dict[str, int] = {"smtp": 25, "submission": 587, "imap": 143, "pop3": 110}
"""Container-side port of each published mail service (v15.1.0 ``target/postfix/master.cf``, Dovecot)."""


@dataclass(frozen=True)
class User:
    """A mailbox account."""

    name: str
    domain: str
    quota: str | None = None
    """Dovecot quota (``1G``, ``500M``, ``0`` = unlimited); ``None`` = the server default."""

    @property
    def address(self) -> str:
        """The full address, which is also the login name."""
        return f"{self.name}@{self.domain}"


@dataclass(frozen=True)
class Alias:
    """A virtual alias: ``local@domain`` forwards to ``targets``."""

    local: str
    domain: str
    targets: tuple[str, ...]

    @property
    def address(self) -> str:
        """The alias's full address."""
        return f"{self.local}@{self.domain}"


@dataclass(frozen=True)
class HostPort:
    """One published port: host ``port`` on ``bind_address`` to ``container_port``."""

    service: str
    port: int
    container_port: int
    bind_address: str
    protocol: str = "tcp"


@dataclass(frozen=True)
class Webmail:
    """Roundcube in front of one domain's server."""

    port: int | None
    """Host port of its plain HTTP; ``None`` when only the HTTPS edge serves it."""
    alias: str | None = None
    """An extra network alias (the original lab calls them ``webmail1``, ``webmail2``)."""


@dataclass(frozen=True)
class Domain:
    """One mail domain and the docker-mailserver instance that serves it."""

    domain: str
    server: str
    hostname: str
    ports: Mapping[str, int]
    users: tuple[User, ...]
    aliases: tuple[Alias, ...]
    bind_address: str
    address: IPv4Address
    """Fixed address of the server on the stack network (stable when other domains come and go)."""
    pinned_address: IPv4Address | None = None
    """The address ``address:`` pins, if any (else :attr:`address` comes from ``config.addresses``)."""
    webmail: Webmail | None = None

    @property
    def slug(self) -> str:
        """The domain as a Docker-name-safe token (``example1.local`` -> ``example1-local``)."""
        return self.domain.replace(".", "-")

    def host_ports(self) -> list[HostPort]:
        """The published ports of the mail server, in a stable order."""
        return [
            HostPort(service, self.ports[service], CONTAINER_PORTS[service], self.bind_address)
            for service in PORT_KEYS
            if service in self.ports
        ]


@dataclass(frozen=True)
class NetworkConfig:
    """The shared Docker network of the stack."""

    name: str
    subnet: IPv4Network

    @property
    def dynamic_range(self) -> IPv4Network:
        """The part of the subnet Docker assigns dynamically (webmail, VPN); servers never get these."""
        if self.subnet.prefixlen <= 23:
            return next(self.subnet.subnets(new_prefix=24))
        return next(self.subnet.subnets(prefixlen_diff=1))

    @property
    def gateway(self) -> IPv4Address:
        """The bridge gateway address (first host of the subnet)."""
        return self.subnet.network_address + 1

    def static_pool(self) -> tuple[int, int]:
        """The first and last integer address usable for fixed server addresses."""
        first = int(self.dynamic_range.broadcast_address) + 1
        last = int(self.subnet.broadcast_address) - 1
        return first, last


@dataclass(frozen=True)
class StackConfig:
    """The whole validated configuration of one stack."""

    stack: str
    domains: tuple[Domain, ...]
    network: NetworkConfig
    bind_address: str = "127.0.0.1"
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    postfix: tuple[tuple[str, str], ...] = ()
    """Extra main.cf settings, in the user's order (last one wins, like main.cf)."""
    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT
    mailbox_size_limit: int = 0
    protect_data: bool = True
    production: bool = False
    tls: str = "none"
    certificates_path: str | None = None
    """Docker-host directory with the certificates (``manual``: ``<hostname>/fullchain.pem`` and
    ``privkey.pem``; ``letsencrypt``: certbot's ``/etc/letsencrypt``), mounted read-only."""
    explicit_passwords: frozenset[str] = frozenset()
    """Addresses whose password comes from ``mailstack:passwords`` (the values stay secret elsewhere)."""
    vpn: VpnConfig | None = None
    """The parsed ``mailstack:vpn``, or ``None`` when absent."""
    edge: edge_config.EdgeConfig | None = None
    """The HTTPS edge (``mailstack:edge``; on with ``tls: acme``), or ``None``."""
    warnings: tuple[str, ...] = ()
    """Things the user should know that do not stop the deployment (shown by the program as warnings)."""
    memory: Memory = field(default_factory=Memory)
    """What the stack's last completed update remembered (its account hashes are reused from here)."""
    deliverability: dlv.Deliverability = field(default_factory=dlv.Deliverability)
    """DKIM, egress, public addresses, DMARC and TLS-RPT per domain (``config/deliverability.py``)."""
    backup: BackupConfig | None = None
    """The parsed ``mailstack:backup`` when backups are on, else ``None`` (``config.backup``)."""

    def prefix(self) -> str:
        """Prefix of every Docker object name of this stack (``mailstack-dev``)."""
        return f"mailstack-{self.stack}"

    def domain(self, name: str) -> Domain:
        """Return the domain entry called ``name``."""
        for d in self.domains:
            if d.domain == name:
                return d
        raise KeyError(name)


class _Problems:
    """Collects validation messages."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _valid_domain(name: str) -> bool:
    labels = name.split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(DOMAIN_LABEL_RE.match(label) for label in labels)


def _check_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str, problems: _Problems) -> None:
    for key in sorted(set(raw) - allowed):
        hint = _closest(key, allowed)
        problems.add(
            f"{where}.{key}",
            f"unknown key{hint}; allowed keys are {', '.join(sorted(allowed))}",
        )


def _closest(key: str, allowed: frozenset[str] | Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _as_int(value: Any, where: str, problems: _Problems, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.add(where, f"must be an integer between {low} and {high}, got {value!r}")
        return None
    try:
        number = int(value)
    except ValueError:
        problems.add(where, f"must be an integer between {low} and {high}, got {value!r}")
        return None
    if not low <= number <= high:
        problems.add(where, f"must be between {low} and {high}, got {number}")
        return None
    return number


def _as_bool(value: Any, where: str, problems: _Problems, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.add(where, f"must be true or false, got {value!r}")
    return default


def _as_ipv4(value: Any, where: str, problems: _Problems) -> str | None:
    try:
        return str(IPv4Address(str(value)))
    except ValueError:
        problems.add(where, f"must be an IPv4 address such as 127.0.0.1 or 0.0.0.0, got {value!r}")
        return None


def static_address(domain: str, network: NetworkConfig) -> IPv4Address:
    """The hash slot of a domain's server in the static pool (its address when nothing else is there).

    It depends on nothing but the domain and the subnet; ``config.addresses`` uses it for servers the
    stack's memory does not know yet, and the next free address when another server holds it.
    """
    first, last = network.static_pool()
    return IPv4Address(hash_slot(domain, first, last))


def _parse_network(raw: Any, stack: str, problems: _Problems) -> NetworkConfig:
    name = f"mailstack-{stack}"
    subnet = DEFAULT_SUBNET
    if raw is None:
        return NetworkConfig(name, subnet)
    if not isinstance(raw, Mapping):
        problems.add("mailstack:network", "must be an object {name, subnet}")
        return NetworkConfig(name, subnet)
    _check_keys(raw, frozenset({"name", "subnet"}), "mailstack:network", problems)
    if "name" in raw:
        if isinstance(raw["name"], str) and re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", raw["name"]):
            name = raw["name"]
        else:
            problems.add("mailstack:network.name", f"is not a valid Docker network name: {raw['name']!r}")
    if "subnet" in raw:
        try:
            subnet = IPv4Network(str(raw["subnet"]))
        except ValueError:
            problems.add(
                "mailstack:network.subnet",
                f"must be an IPv4 network such as 172.28.0.0/16 (host bits zero), got {raw['subnet']!r}",
            )
        else:
            if subnet.prefixlen > 26:
                problems.add("mailstack:network.subnet", f"{subnet} is too small; use a /26 or larger")
                subnet = DEFAULT_SUBNET
    return NetworkConfig(name, subnet)


def _parse_users(raw: Any, domain: str, where: str, problems: _Problems) -> tuple[User, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(
            f"{where}.users",
            "no users: docker-mailserver refuses to start without an account; add at least one {name, quota}",
        )
        return ()
    users: list[User] = []
    seen: set[str] = set()
    for j, item in enumerate(raw):
        uwhere = f"{where}.users[{j}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            problems.add(uwhere, "must be an object {name, quota}")
            continue
        _check_keys(item, frozenset({"name", "quota"}), uwhere, problems)
        name = item.get("name")
        if not isinstance(name, str) or not LOCAL_PART_RE.match(name):
            problems.add(
                f"{uwhere}.name",
                f"invalid user name {name!r}: use lowercase letters, digits and . _ + - (the local part only)",
            )
            continue
        if name in seen:
            problems.add(f"{uwhere}.name", f"duplicate user {name}@{domain}: remove one of the entries")
            continue
        seen.add(name)
        quota = item.get("quota")
        if quota is not None:
            quota = str(quota)
            if not QUOTA_RE.match(quota):
                problems.add(
                    f"{uwhere}.quota",
                    f"invalid quota {quota!r}: use a number with a unit B, k, M, G or T (e.g. 1G, 500M), "
                    "or 0 for unlimited; a bare number would mean bytes",
                )
                quota = None
        users.append(User(name=name, domain=domain, quota=quota))
    return tuple(users)


def _parse_ports(raw: Any, where: str, problems: _Problems) -> dict[str, int]:
    ports: dict[str, int] = {}
    if not isinstance(raw, Mapping):
        problems.add(f"{where}.ports", "must be an object {smtp, submission, imap[, pop3]} of host ports")
        return ports
    _check_keys(raw, frozenset(PORT_KEYS), f"{where}.ports", problems)
    for key in PORT_KEYS:
        if key not in raw:
            if key in REQUIRED_PORT_KEYS:
                problems.add(f"{where}.ports.{key}", "is missing: give the host port to publish")
            continue
        number = _as_int(raw[key], f"{where}.ports.{key}", problems, 1, 65535)
        if number is not None:
            ports[key] = number
    return ports


def _parse_domain(
    i: int, raw: Any, stack_bind: str, network: NetworkConfig, problems: _Problems
) -> Domain | None:
    where = f"mailstack:domains[{i}]"
    if not isinstance(raw, Mapping):
        problems.add(where, "must be an object with domain, server, ports and users")
        return None
    name = raw.get("domain")
    if not isinstance(name, str) or not _valid_domain(name):
        _check_keys(raw, DOMAIN_KEYS, where, problems)
        problems.add(
            f"{where}.domain",
            f"invalid mail domain {name!r}: use a lowercase name with at least two labels, e.g. example1.local",
        )
        return None
    where = f"mailstack:domains[{i}] ({name})"
    _check_keys(raw, DOMAIN_KEYS, where, problems)
    server = raw.get("server")
    if not isinstance(server, str) or not SERVER_RE.match(server):
        problems.add(
            f"{where}.server",
            f"invalid server alias {server!r}: use a short lowercase name such as mta1 (letters, digits, -)",
        )
        server = ""
    hostname = raw.get("hostname", f"mail.{name}")
    if not isinstance(hostname, str) or not _valid_domain(hostname):
        problems.add(
            f"{where}.hostname",
            f"hostname {hostname!r} must be a fully qualified name such as mail.{name}",
        )
        hostname = f"mail.{name}"
    bind = stack_bind
    if "bindAddress" in raw:
        bind = _as_ipv4(raw["bindAddress"], f"{where}.bindAddress", problems) or stack_bind
    pinned = None
    if "address" in raw:
        address = _as_ipv4(raw["address"], f"{where}.address", problems)
        first, last = network.static_pool()
        if address is not None and not first <= int(IPv4Address(address)) <= last:
            problems.add(
                f"{where}.address",
                f"{address} is outside the fixed-address pool {IPv4Address(first)}-{IPv4Address(last)} "
                f"of {network.subnet} (the rest is Docker's dynamic range): pick one inside it",
            )
        elif address is not None:
            pinned = IPv4Address(address)
    webmail = None
    if "webmail" in raw and raw["webmail"] is not None:
        wraw = raw["webmail"]
        if not isinstance(wraw, Mapping):
            problems.add(f"{where}.webmail", "must be an object {port}")
        else:
            _check_keys(
                wraw, frozenset({"port", "alias"}) | edge_config.WEBMAIL_KEYS, f"{where}.webmail", problems
            )
            port = None
            if wraw.get("port") is not None:
                port = _as_int(wraw.get("port"), f"{where}.webmail.port", problems, 1, 65535)
                if port is None:
                    port = 0  # reported; keeps the webmail so later checks name the right item
            alias = wraw.get("alias")
            if alias is not None and (not isinstance(alias, str) or not SERVER_RE.match(alias)):
                problems.add(
                    f"{where}.webmail.alias",
                    f"invalid network alias {alias!r}: use a short lowercase name such as webmail1 "
                    "(letters, digits, -)",
                )
                alias = None
            webmail = Webmail(port=port or None, alias=alias)
    return Domain(
        domain=name,
        server=server,
        hostname=hostname,
        ports=_parse_ports(raw.get("ports"), where, problems),
        users=_parse_users(raw.get("users"), name, where, problems),
        aliases=(),
        bind_address=bind,
        address=pinned or static_address(name, network),
        pinned_address=pinned,
        webmail=webmail,
    )


def _parse_aliases(raw_domains: list[Any], domains: list[Domain], problems: _Problems) -> list[Domain]:
    accounts = {u.address for d in domains for u in d.users}
    alias_addresses = set()
    parsed: dict[str, tuple[Alias, ...]] = {}
    for i, (raw, d) in enumerate(zip(raw_domains, domains, strict=True)):
        where = f"mailstack:domains[{i}] ({d.domain}).aliases"
        aliases_raw = raw.get("aliases") or {}
        if not isinstance(aliases_raw, Mapping):
            problems.add(where, "must be a map of alias local part to a list of full addresses")
            continue
        items = []
        for local, targets in aliases_raw.items():
            awhere = f"{where}.{local}"
            if not isinstance(local, str) or not LOCAL_PART_RE.match(local):
                problems.add(awhere, "invalid alias: give only the local part, e.g. 'info'")
                continue
            if f"{local}@{d.domain}" in accounts:
                problems.add(awhere, f"{local}@{d.domain} is already a user: rename the alias or the user")
                continue
            if isinstance(targets, str):
                targets = [targets]
            if not isinstance(targets, list) or not targets:
                problems.add(awhere, "must list at least one full target address")
                continue
            items.append(Alias(local=local, domain=d.domain, targets=tuple(str(t) for t in targets)))
            alias_addresses.add(f"{local}@{d.domain}")
        parsed[d.domain] = tuple(items)
    known = accounts | alias_addresses
    result = []
    for i, d in enumerate(domains):
        for alias in parsed.get(d.domain, ()):
            for target in alias.targets:
                if target not in known:
                    problems.add(
                        f"mailstack:domains[{i}] ({d.domain}).aliases.{alias.local}",
                        f"target {target!r} is unknown: use the full address of a user or alias of this stack",
                    )
        result.append(
            Domain(**{**d.__dict__, "aliases": parsed.get(d.domain, ())})  # type: ignore[arg-type]
        )
    return result


def _check_unique(domains: list[Domain], problems: _Problems) -> None:
    seen_domain: dict[str, int] = {}
    seen_server: dict[str, str] = {}
    seen_host: dict[str, str] = {}
    mail_domains = {d.domain for d in domains}
    for i, d in enumerate(domains):
        where = f"mailstack:domains[{i}] ({d.domain})"
        if d.domain in seen_domain:
            problems.add(where, f"duplicate domain: it is already domains[{seen_domain[d.domain]}]")
        seen_domain.setdefault(d.domain, i)
        if d.server and d.server in seen_server:
            problems.add(
                f"{where}.server",
                f"server alias {d.server} is already used by {seen_server[d.server]}: aliases must be unique "
                "(Docker DNS would round-robin a shared alias)",
            )
        seen_server.setdefault(d.server, d.domain)
        if d.hostname in mail_domains:
            problems.add(
                f"{where}.hostname",
                f"{d.hostname} is a mail domain of this stack; use a name like mail.{d.domain} "
                "(a bare-domain hostname breaks delivery)",
            )
        if d.hostname in seen_host:
            problems.add(
                f"{where}.hostname",
                f"{d.hostname} is also the hostname of {seen_host[d.hostname]}: two servers with one "
                "hostname bounce mail as 'loops back to myself'",
            )
        seen_host.setdefault(d.hostname, d.domain)


def _check_aliases(domains: list[Domain], vpn_alias: str | None, problems: _Problems) -> None:
    """Every network alias of the stack names one container (Docker DNS round-robins a shared alias).

    The aliases mailstack sets itself (servers, hostnames, ``webmail-<server>``, ``vpn``) come first;
    a ``webmail.alias`` that repeats one of them, or an earlier ``webmail.alias``, is reported.
    """
    owners: dict[str, str] = {}
    if vpn_alias:
        owners[vpn_alias] = "the VPN"
    for d in domains:
        for alias in (d.server, d.hostname):
            owners.setdefault(alias, f"the server of {d.domain}")
        if d.webmail is not None:
            owners.setdefault(f"webmail-{d.server}", f"the webmail of {d.domain}")
    for i, d in enumerate(domains):
        alias = d.webmail.alias if d.webmail is not None else None
        if alias is None:
            continue
        if alias in owners:
            problems.add(
                f"mailstack:domains[{i}] ({d.domain}).webmail.alias",
                f"network alias {alias} is already used by {owners[alias]}: aliases must be unique "
                "across the stack (Docker DNS would round-robin a shared alias)",
            )
        owners.setdefault(alias, f"the webmail of {d.domain}")


def _allocate_addresses(
    domains: list[Domain],
    network: NetworkConfig,
    memory: Memory,
    problems: _Problems,
    extra: Sequence[Request] = (),
) -> tuple[list[Domain], dict[str, IPv4Address]]:
    """Give every server, then every ``extra`` request, its fixed address (pins, memory, hash slots)."""
    requests = [
        Request(server_key(d.domain), d.domain, f"mailstack:domains[{i}] ({d.domain})", d.pinned_address)
        for i, d in enumerate(domains)
    ]
    requests += extra
    remembered = memory.addresses if memory.found else None
    addresses, found = allocate(requests, network.static_pool(), remembered)
    for where, message in found:
        problems.add(where, message)
    placed = [
        dataclasses.replace(d, address=addresses[server_key(d.domain)])
        if server_key(d.domain) in addresses
        else d
        for d in domains
    ]
    return placed, addresses


def all_host_ports(
    domains: Sequence[Domain], extra: Sequence[tuple[str, HostPort]] = ()
) -> list[tuple[str, HostPort]]:
    """Every published host port of the stack, labelled with the config item it comes from."""
    ports: list[tuple[str, HostPort]] = []
    for i, d in enumerate(domains):
        for hp in d.host_ports():
            ports.append((f"mailstack:domains[{i}] ({d.domain}).ports.{hp.service}", hp))
        if d.webmail is not None and d.webmail.port is not None:
            hp = HostPort("webmail", d.webmail.port, 80, d.bind_address)
            ports.append((f"mailstack:domains[{i}] ({d.domain}).webmail.port", hp))
    ports.extend(extra)
    return ports


def _check_ports(ports: list[tuple[str, HostPort]], problems: _Problems) -> None:
    for a in range(len(ports)):
        for b in range(a):
            wa, pa = ports[a]
            wb, pb = ports[b]
            same_address = pa.bind_address == pb.bind_address or "0.0.0.0" in (
                pa.bind_address,
                pb.bind_address,
            )
            if pa.port == pb.port and pa.protocol == pb.protocol and same_address:
                problems.add(wa, f"host port {pa.port}/{pa.protocol} is already used by {wb}: pick another")
                break


def _parse_postfix(raw: Any, problems: _Problems) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.add("mailstack:postfix", "must be a map of main.cf parameter names to values")
        return ()
    settings: list[tuple[str, str]] = []
    for name, value in raw.items():
        where = f"mailstack:postfix.{name}"
        if not isinstance(name, str) or not POSTFIX_NAME_RE.match(name):
            problems.add(where, "is not a Postfix parameter name")
            continue
        if name in postfix_params.ENV_CONTROLLED:
            problems.add(
                where,
                f"docker-mailserver sets {name} from its environment; use {postfix_params.ENV_CONTROLLED[name]}"
                " instead",
            )
            continue
        if name in postfix_params.MANAGED_BY_MAILSTACK:
            problems.add(where, postfix_params.MANAGED_BY_MAILSTACK[name])
            continue
        if not postfix_params.is_known_parameter(name):
            hint = postfix_params.unknown_parameter_hint(name) or ""
            problems.add(
                where,
                f"Postfix {postfix_params.POSTFIX_VERSION} (in the pinned mail server image) has no parameter "
                f"{name}{'; ' + hint if hint else ''}",
            )
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            problems.add(where, f"value must be a string or number, got {type(value).__name__}")
            continue
        if "\n" in text or "\r" in text:
            problems.add(where, "value must be a single line")
            continue
        settings.append((name, text.strip()))
    return tuple(settings)


def _parse_images(raw: Any, problems: _Problems) -> dict[str, str]:
    images = dict(DEFAULT_IMAGES)
    if raw is None:
        return images
    if not isinstance(raw, Mapping):
        problems.add("mailstack:images", "must be a map {mailserver, webmail, vpn} of image references")
        return images
    _check_keys(raw, frozenset(DEFAULT_IMAGES), "mailstack:images", problems)
    for key in DEFAULT_IMAGES:
        if key in raw:
            ref = raw[key]
            problem = image_problem(ref) if isinstance(ref, str) else "is not a string"
            if problem:
                problems.add(
                    f"mailstack:images.{key}",
                    f"{ref!r} {problem}; pin an exact version tag such as ':15.1.0' or a digest '@sha256:...'",
                )
            else:
                images[key] = ref
    return images


def _check_passwords(
    passwords: Mapping[str, Any] | None, users: list[User], production: bool, problems: _Problems
) -> frozenset[str]:
    if passwords is None:
        return frozenset()
    if not isinstance(passwords, Mapping):
        problems.add("mailstack:passwords", "must be a map of full address to password (set as a secret)")
        return frozenset()
    known = {u.address for u in users}
    explicit = set()
    for address, password in passwords.items():
        where = f"mailstack:passwords.{address}"
        if address not in known:
            problems.add(
                where,
                "is not an account of this stack: remove it with `pulumi config rm --path "
                f"'mailstack:passwords.{address}'` or add the user",
            )
            continue
        if not isinstance(password, str) or not password:
            problems.add(where, "must be a non-empty string")
            continue
        if any(c in password for c in "\n\r"):
            problems.add(where, "must be a single line")
            continue
        if production:
            if password.lower() in WEAK_PASSWORDS:
                problems.add(where, "is a well-known default password; production stacks refuse it")
                continue
            if len(password) < MIN_PRODUCTION_PASSWORD:
                problems.add(
                    where,
                    f"is shorter than {MIN_PRODUCTION_PASSWORD} characters; production stacks refuse it "
                    "(or remove the entry to get a generated password)",
                )
                continue
        explicit.add(address)
    return frozenset(explicit)


def load_stack(
    stack: str,
    raw: Mapping[str, Any],
    passwords: Mapping[str, Any] | None = None,
    memory: Memory | None = None,
    *,
    backup_secrets: Mapping[str, Any] | None = None,
    backup_secrets_in_plain_text: bool = False,
) -> StackConfig:
    """Validate the raw ``mailstack:*`` configuration of ``stack`` and build the model.

    ``raw`` maps keys without the namespace (``domains``, ``bindAddress``...) to their
    parsed values. ``passwords`` is the secret ``mailstack:passwords`` map and ``backup_secrets``
    the secret ``mailstack:backupSecrets`` map (``backup_secrets_in_plain_text`` when it was not
    stored as a secret); they are only checked here, their values never enter the model.
    ``memory`` is what the stack's last completed update remembered (``config.memory``); without
    one, addresses follow the plain hash rule. Raises ``ConfigError`` listing every problem.
    """
    memory = memory or Memory()
    problems = _Problems()
    for key in sorted(set(raw) - TOP_LEVEL_KEYS):
        problems.add(f"mailstack:{key}", f"unknown configuration key{_closest(key, TOP_LEVEL_KEYS)}")
    if not re.match(r"^[a-z0-9][a-z0-9-]*$", stack.lower()):
        problems.add("stack name", f"{stack!r} cannot be part of Docker names: use letters, digits and -")
    production = _as_bool(raw.get("production"), "mailstack:production", problems, False)
    protect = _as_bool(raw.get("protectData"), "mailstack:protectData", problems, True)
    bind = _as_ipv4(raw.get("bindAddress", "127.0.0.1"), "mailstack:bindAddress", problems) or "127.0.0.1"
    tls = raw.get("tls", "none")
    if tls not in TLS_MODES:
        problems.add("mailstack:tls", f"must be one of {', '.join(TLS_MODES)}, got {tls!r}")
        tls = "none"
    certificates_path = raw.get("certificatesPath")
    if certificates_path is not None and (
        not isinstance(certificates_path, str) or not certificates_path.startswith("/")
    ):
        problems.add("mailstack:certificatesPath", "must be an absolute directory on the Docker host")
        certificates_path = None
    if tls == "letsencrypt" and certificates_path is None:
        certificates_path = "/etc/letsencrypt"
    if tls == "manual" and certificates_path is None:
        problems.add(
            "mailstack:certificatesPath",
            "is required with tls: manual: the Docker-host directory holding <hostname>/fullchain.pem and "
            "<hostname>/privkey.pem for every mail server",
        )
    if tls in ("none", "self-signed", "acme") and certificates_path is not None:
        problems.add("mailstack:certificatesPath", f"is only used with tls: manual or letsencrypt, not {tls}")
        certificates_path = None
    msl = raw.get("messageSizeLimit", DEFAULT_MESSAGE_SIZE_LIMIT)
    message_size = (
        _as_int(msl, "mailstack:messageSizeLimit", problems, 1, 2**40) or DEFAULT_MESSAGE_SIZE_LIMIT
    )
    mailbox_size = _as_int(raw.get("mailboxSizeLimit", 0), "mailstack:mailboxSizeLimit", problems, 0, 2**50)
    if mailbox_size and mailbox_size < message_size:
        problems.add(
            "mailstack:mailboxSizeLimit",
            f"{mailbox_size} is smaller than messageSizeLimit {message_size}: Postfix requires it to be "
            "0 (unlimited) or at least the message size limit",
        )
    network = _parse_network(raw.get("network"), stack.lower(), problems)

    raw_domains = raw.get("domains")
    domains: list[Domain] = []
    if not isinstance(raw_domains, list) or not raw_domains:
        problems.add(
            "mailstack:domains",
            "is missing or empty: add at least one {domain, server, ports, users} entry (see README)",
        )
        raw_domains = []
    usable_raw = []
    for i, item in enumerate(raw_domains):
        d = _parse_domain(i, item, bind, network, problems)
        if d is not None:
            domains.append(d)
            usable_raw.append(item)
    _check_unique(domains, problems)
    domains = _parse_aliases(usable_raw, domains, problems)
    domains, fixed = _allocate_addresses(
        domains, network, memory, problems, edge_config.address_requests(raw, domains)
    )
    deliverability = dlv.parse_deliverability(raw, raw_domains, usable_raw, domains, production, problems)
    images = _parse_images(raw.get("images"), problems)
    edge = edge_config.parse_edge(
        raw,
        usable_raw,
        domains,
        tls=tls,
        production=production,
        addresses=fixed,
        public_addresses={name: auth.dns.public_address for name, auth in deliverability.domains.items()},
        image=images["edge"],
        add=problems.add,
    )

    vpn = None
    extra_ports: list[tuple[str, HostPort]] = []
    if raw.get("vpn") is not None:
        try:
            vpn = parse_vpn(raw.get("vpn"), network.subnet)
        except ConfigError as err:
            problems.items.extend(err.problems)
        else:
            if vpn.enabled:
                extra_ports.append(
                    ("mailstack:vpn.port", HostPort("vpn", vpn.port, 51820, vpn.bind_address, "udp"))
                )
    if edge is not None:
        extra_ports.extend(edge_config.host_ports(edge))
    _check_ports(all_host_ports(domains, extra_ports), problems)
    _check_aliases(domains, "vpn" if vpn is not None and vpn.enabled else None, problems)

    backup = None
    try:
        backup = parse_backup(
            raw.get("backup"),
            backup_secrets,
            secrets_in_plain_text=backup_secrets_in_plain_text,
            production=production,
        )
    except ConfigError as err:
        problems.items.extend(err.problems)
    if backup is not None:  # the restore drill's marker account in every domain
        domains, found = add_drill_accounts(domains, passwords)
        problems.items.extend(found)

    users = [u for d in domains for u in d.users]
    explicit = _check_passwords(passwords, users, production, problems)
    postfix = _parse_postfix(raw.get("postfix"), problems)
    if production and not protect:
        problems.add("mailstack:protectData", "must stay true in a production stack (mail data protection)")

    if problems.items:
        raise ConfigError(problems.items)
    return StackConfig(
        stack=stack.lower(),
        domains=tuple(domains),
        network=network,
        bind_address=bind,
        images=images,
        postfix=postfix,
        message_size_limit=message_size,
        mailbox_size_limit=mailbox_size or 0,
        protect_data=protect,
        production=production,
        tls=tls,
        certificates_path=certificates_path,
        explicit_passwords=explicit,
        vpn=vpn,
        edge=edge,
        warnings=memory.notes + deliverability.warnings(),
        memory=memory,
        deliverability=deliverability,
        backup=backup,
    )
