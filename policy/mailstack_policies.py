"""Validators of the mailstack policy pack (Pulumi CrossGuard).

Every policy here stops a mistake that breaks or endangers a mail system before ``pulumi up``
applies it: moving image tags, unprotected mailboxes, open relays, broken routing between
the servers, colliding ports or subnets, plaintext logins on public addresses, secrets in
plain environment variables, well-known passwords, containers nobody restarts, and a
WireGuard server that prints its keys.

The validators read the resources the way the engine sends them: camelCase properties
(``networksAdvanced``, ``ipamConfigs``), secrets already unwrapped, numbers possibly as
floats, provider defaults not filled in (a missing ``restart`` is Docker's ``no``). During a
preview some values are unknown (a container's image id, the account file that depends on a
random seed); reading one through the SDK's proxy raises ``UnknownValueError``. Every read
here goes through :func:`get` / :func:`elements`, which turn unknowns into :data:`UNKNOWN`,
and each check skips what it cannot know yet, so a validator never fails a preview. The same
policies run again on ``pulumi up`` with the resolved values: resource policies before each
resource is created, stack policies once the update is done (``pulumi up`` runs a preview
first, so a mandatory stack violation still stops it before anything is applied).

Mailstack's resources are Docker containers told apart by the label ``mailstack.role``
(``mailserver``, ``config-writer``, ``webmail``, ``vpn``) and labelled with their mail
domain (``mailstack.domain``); the config writer uploads the generated docker-mailserver
files (``postfix-main.cf``, ``postfix-transport.cf``, ``postfix-mynetworks.cidr``,
``postfix-accounts.cf``...). Volumes carry ``mailstack.volume`` (``mail``, ``state``...).
Where a label is missing the validators fall back to what the container carries (its
environment and uploads), so a hand-written resource of the same kind is still checked.

This module is importable without starting the policy server (``__main__.py`` does that),
so the tests call the validators directly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

# The pack lives inside the project: share its standard-library-only rules instead of copying them.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)
from config.rules import WEAK_PASSWORDS, image_problem  # noqa: E402

PACK_NAME = "mailstack"
"""Name of the policy pack (``pulumi preview --policy-pack policy`` reports it)."""

DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
"""Pack-wide level when no ``--policy-pack-config`` is given: strict, so forgetting the file never
weakens a production deployment. ``policy/config/dev.json`` lowers everything to advisory."""

DEFAULT_PRODUCTION = True
"""What prod-only policies assume without configuration (``policy/config/dev.json`` says ``false``)."""

CONTAINER: Final = "docker:index/container:Container"
VOLUME: Final = "docker:index/volume:Volume"
NETWORK: Final = "docker:index/network:Network"
REMOTE_IMAGE: Final = "docker:index/remoteImage:RemoteImage"

ROLE_LABEL: Final = "mailstack.role"
DOMAIN_LABEL: Final = "mailstack.domain"
VOLUME_LABEL: Final = "mailstack.volume"

MAILSERVER: Final = "mailserver"
CONFIG_WRITER: Final = "config-writer"
WEBMAIL: Final = "webmail"
VPN: Final = "vpn"

MAIN_CF: Final = "postfix-main.cf"
TRANSPORT: Final = "postfix-transport.cf"
ACCOUNTS: Final = "postfix-accounts.cf"
VIRTUAL: Final = "postfix-virtual.cf"
WG_CONF_DIR: Final = "/config/wg_confs/"
ROUNDCUBE_SECRETS: Final = "/run/secrets/roundcube_"

MAIL_DATA_PATHS: Final = {"/var/mail": "the mailboxes", "/var/mail-state": "the mail queue and state"}
"""Container paths of docker-mailserver that hold data a deletion would lose (image-contracts.md A2)."""
MAIL_DATA_VOLUME_ROLES: Final = {"mail": "/var/mail", "state": "/var/mail-state"}


# --- reading properties that may be unknown ------------------------------------------------------


class _Unknown:
    """Marker for a value that is not known yet (preview)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
"""What :func:`get` and :func:`elements` return for a value that is unknown during a preview."""

_SENTINELS: Final = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


def _known(value: Any) -> Any:
    if isinstance(value, str) and value in _SENTINELS:
        return UNKNOWN
    return value


def get(obj: Any, key: str, default: Any = None) -> Any:
    """Return ``obj[key]``, ``default`` when absent or null, :data:`UNKNOWN` when not known yet.

    Works on the SDK's unknown-checking proxies (which raise on an unknown value) and on plain
    dicts holding the engine's unknown sentinels alike.
    """
    if obj is UNKNOWN:
        return UNKNOWN
    if not isinstance(obj, Mapping):
        return default
    try:
        value = obj[key]
    except KeyError:
        return default
    except UnknownValueError:
        return UNKNOWN
    value = _known(value)
    return default if value is None else value


def elements(seq: Any) -> list[Any]:
    """Return the items of a list property (unknown items as :data:`UNKNOWN`); ``[]`` if not a list."""
    if (
        seq is UNKNOWN
        or seq is None
        or isinstance(seq, str | bytes | Mapping)
        or not isinstance(seq, Sequence)
    ):
        return []
    items: list[Any] = []
    for index in range(len(seq)):
        try:
            items.append(_known(seq[index]))
        except UnknownValueError:
            items.append(UNKNOWN)
    return items


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


# --- a container as the policies see it -----------------------------------------------------------


@dataclass
class Port:
    """One published port; ``None`` where unknown or not set."""

    external: int | None
    internal: int | None
    ip: str | None
    """Host address; ``None`` when unknown. Docker's default (all addresses) is ``0.0.0.0``."""
    protocol: str


@dataclass
class Upload:
    """A file the provider copies into the container before it starts."""

    path: str
    content: str | None
    """Text content; ``None`` when unknown (preview) or not given as text."""
    unknown: bool = False


@dataclass
class Attachment:
    """The container's membership in one Docker network."""

    network: str | None
    aliases: list[str]
    ipv4: str | None


@dataclass
class Container:
    """The properties of a ``docker.Container`` the policies read, unknowns already filtered out."""

    resource_name: str
    urn: str
    props: Any
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    env_complete: bool = True
    """False when the environment (or one entry of it) is unknown: a missing variable may be there."""
    ports: list[Port] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    mounts: list[tuple[str | None, str | None]] = field(default_factory=list)
    """``(volume name, container path)`` of each mount; a bind mount has no volume name."""
    networks: list[Attachment] = field(default_factory=list)

    @property
    def display(self) -> str:
        """The Docker name when known, else the Pulumi resource name."""
        return self.name or self.resource_name

    @property
    def role(self) -> str | None:
        """``mailstack.role``, or the role the container's contents reveal when the label is missing."""
        label = self.labels.get(ROLE_LABEL)
        if label:
            return label
        if any(u.path.startswith(WG_CONF_DIR) for u in self.uploads) or "LOG_CONFS" in self.env:
            return VPN
        if any(u.path.startswith(ROUNDCUBE_SECRETS) for u in self.uploads) or any(
            k.startswith("ROUNDCUBEMAIL_") for k in self.env
        ):
            return WEBMAIL
        if {"PERMIT_DOCKER", "SSL_TYPE", "ACCOUNT_PROVISIONER"} & set(self.env):
            return MAILSERVER
        return None

    @property
    def domain(self) -> str | None:
        """The mail domain the container belongs to (``mailstack.domain``)."""
        return self.labels.get(DOMAIN_LABEL)

    def files(self) -> dict[str, Upload]:
        """Uploads by file name (the last one wins, like the provider's copy order)."""
        return {_basename(u.path): u for u in self.uploads}


def _labels(value: Any) -> dict[str, str]:
    labels: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key in value:
            text = _text(get(value, key))
            if text is not None:
                labels[str(key)] = text
        return labels
    for item in elements(value):
        key, text = _text(get(item, "label")), _text(get(item, "value"))
        if key is not None and text is not None:
            labels[key] = text
    return labels


def parse_container(props: Any, resource_name: str, urn: str) -> Container:
    """Read a container's properties (proxy or plain dict) into a :class:`Container`."""
    c = Container(resource_name=resource_name, urn=urn, props=props)
    c.name = _text(get(props, "name"))
    c.labels = _labels(get(props, "labels"))
    envs = get(props, "envs")
    c.env_complete = envs is not UNKNOWN
    for entry in elements(envs):
        if entry is UNKNOWN:
            c.env_complete = False
        elif isinstance(entry, str) and "=" in entry:
            key, _, value = entry.partition("=")
            c.env[key] = value
    for port in elements(get(props, "ports")):
        if port is UNKNOWN or not isinstance(port, Mapping):
            continue
        ip = get(port, "ip", "0.0.0.0")
        protocol = get(port, "protocol", "tcp")
        c.ports.append(
            Port(
                external=_int(get(port, "external")),
                internal=_int(get(port, "internal")),
                ip=ip if isinstance(ip, str) else None,
                protocol=protocol.lower() if isinstance(protocol, str) else "tcp",
            )
        )
    for upload in elements(get(props, "uploads")):
        path = _text(get(upload, "file"))
        if path is None:
            continue
        content = get(upload, "content")
        if content is None:
            encoded = get(upload, "contentBase64")
            if isinstance(encoded, str):
                try:
                    content = base64.b64decode(encoded).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    content = None
            elif encoded is UNKNOWN:
                content = UNKNOWN
        c.uploads.append(Upload(path=path, content=_text(content), unknown=content is UNKNOWN))
    for mount in elements(get(props, "volumes")):
        if isinstance(mount, Mapping):
            c.mounts.append((_text(get(mount, "volumeName")), _text(get(mount, "containerPath"))))
    for net in elements(get(props, "networksAdvanced")):
        if isinstance(net, Mapping):
            aliases = [a for a in elements(get(net, "aliases")) if isinstance(a, str)]
            c.networks.append(Attachment(_text(get(net, "name")), aliases, _text(get(net, "ipv4Address"))))
    return c


def _container_of(args: ResourceValidationArgs) -> Container | None:
    if args.resource_type != CONTAINER:
        return None
    return parse_container(args.props, args.name, args.urn)


def _containers(resources: Iterable[PolicyResource]) -> list[Container]:
    """Containers sorted by name, so that "the second one" of a pair does not depend on registration order."""
    found = [parse_container(r.props, r.name, r.urn) for r in resources if r.resource_type == CONTAINER]
    return sorted(found, key=lambda c: (c.display, c.urn))


def _production(config: Mapping[str, Any]) -> bool:
    value = config.get("production") if isinstance(config, Mapping) else None
    flag = _truthy(value)
    return DEFAULT_PRODUCTION if flag is None else flag


PRODUCTION_SCHEMA = PolicyConfigSchema(
    properties={
        "production": {
            "type": "boolean",
            "default": DEFAULT_PRODUCTION,
            "description": "True in a production stack (policy/config/prod.json); false in the lab (dev.json).",
        }
    }
)
"""Config schema of the prod-only policies."""


# --- parsers of the generated files --------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Non-empty, non-comment lines of a Postfix table or docker-mailserver file."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def parse_main_cf(text: str) -> dict[str, str]:
    """Parse ``name = value`` lines (with Postfix's indented continuation lines); the last one wins."""
    settings: dict[str, str] = {}
    current: str | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and current is not None:
            settings[current] = f"{settings[current]} {raw.strip()}".strip()
            continue
        name, sep, value = raw.partition("=")
        if not sep:
            current = None
            continue
        current = name.strip()
        settings[current] = value.strip()
    return settings


def _tokens(value: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", value) if t]


def parse_table(text: str) -> dict[str, str]:
    """Parse a ``key value`` table (transport map, cidr table); keys are lowercased."""
    table: dict[str, str] = {}
    for line in _lines(text):
        key, _, value = line.partition(" ") if " " in line else line.partition("\t")
        table[key.strip().lower()] = value.strip()
    return table


def parse_accounts(text: str) -> list[tuple[str, str]]:
    """``(address, hash)`` of each ``address|hash[|extra]`` line of ``postfix-accounts.cf``."""
    accounts: list[tuple[str, str]] = []
    for line in _lines(text):
        parts = line.split("|")
        if len(parts) >= 2 and "@" in parts[0]:
            accounts.append((parts[0].strip().lower(), parts[1].strip()))
    return accounts


def _domain_of(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    return domain.lower() if at and local and domain else None


@dataclass(frozen=True)
class NextHop:
    """A parsed transport-map next hop such as ``smtp:[mta2]:25``."""

    transport: str
    host: str
    bracketed: bool
    port: int | None


def parse_next_hop(value: str) -> NextHop | None:
    """Parse ``transport:[host]:port`` (brackets and port optional); ``None`` if there is no host."""
    transport, sep, rest = value.strip().partition(":")
    if not sep:
        return None
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest.strip())
    if not match:
        return None
    if match.group(1):
        return NextHop(
            transport.lower(), match.group(1), True, int(match.group(2)) if match.group(2) else None
        )
    return NextHop(transport.lower(), match.group(3), False, int(match.group(4)) if match.group(4) else None)


def wireguard_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The tunnel networks of a ``wg0.conf``: each ``Address`` of its ``[Interface]`` section."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    section = ""
    for line in _lines(text):
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        key, sep, value = line.partition("=")
        if section == "interface" and sep and key.strip().lower() == "address":
            for item in _tokens(value):
                try:
                    networks.append(ipaddress.ip_interface(item).network)
                except ValueError:
                    continue
    return networks


# --- images-pinned -------------------------------------------------------------------------------


def validate_images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report an image or container whose image reference is not pinned to one build."""
    if args.resource_type == REMOTE_IMAGE:
        ref, what = get(args.props, "name"), f"Image '{args.name}'"
    elif args.resource_type == CONTAINER:
        ref = get(args.props, "image")
        what = f"Container '{_text(get(args.props, 'name')) or args.name}'"
    else:
        return
    if not isinstance(ref, str):
        return
    problem = image_problem(ref)
    if problem:
        report_violation(
            f"{what} uses '{ref}', which {problem}: a pull can then bring a different release "
            "(edge moved docker-mailserver to Dovecot 2.4). Pin an exact version tag such as "
            "':15.1.0' or a digest '@sha256:...' (mailstack:images).",
            None,
        )


images_pinned = ResourceValidationPolicy(
    name="images-pinned",
    description="Every container image is pinned to an exact version tag or digest, never latest/edge or no tag.",
    validate=validate_images_pinned,
    severity=Severity.HIGH,
)


# --- mail-data-protected ---------------------------------------------------------------------------


def validate_mail_data_protected(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report every volume holding ``/var/mail`` or ``/var/mail-state`` that is not ``protect``ed."""
    mounted: dict[str, str] = {}
    for c in _containers(args.resources):
        for volume, path in c.mounts:
            if volume and path and path.rstrip("/") in MAIL_DATA_PATHS:
                mounted.setdefault(volume, f"{path.rstrip('/')} of '{c.display}'")
    for r in args.resources:
        if r.resource_type != VOLUME:
            continue
        name = _text(get(r.props, "name"))
        role = _labels(get(r.props, "labels")).get(VOLUME_LABEL)
        if name is not None and name in mounted:
            holds = mounted[name]
        elif role in MAIL_DATA_VOLUME_ROLES:
            holds = MAIL_DATA_VOLUME_ROLES[role]
        else:
            continue
        if r.opts is not None and r.opts.protect:
            continue
        path = holds.split(" ", 1)[0]
        report_violation(
            f"Volume '{name or r.name}' holds {MAIL_DATA_PATHS.get(path, 'mail data')} ({holds}) but is not "
            "protected, so a `pulumi destroy` or a replacement would delete it: set mailstack:protectData "
            f"to true (the volume gets protect=True), or run `pulumi state protect '{r.urn}'`.",
            r.urn,
        )


mail_data_protected = StackValidationPolicy(
    name="mail-data-protected",
    description="Every volume holding /var/mail or /var/mail-state is protected against deletion.",
    validate=validate_mail_data_protected,
    severity=Severity.CRITICAL,
)


# --- no-open-relay ---------------------------------------------------------------------------------

DMS_RESTRICTIONS: Final = {
    "smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
    "smtpd_recipient_restrictions": (
        "permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination, reject_unauth_pipelining, "
        "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, reject_unknown_recipient_domain"
    ),
    "smtpd_client_restrictions": (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, reject_unauth_pipelining"
    ),
}
"""docker-mailserver's ``main.cf`` restriction lists (target/postfix/main.cf); postfix-main.cf overrides them."""

_STOPS_RELAY: Final = frozenset({"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"})


def _permits_relay(restrictions: str) -> bool:
    """Whether a restriction list lets a stranger (no SASL, not in mynetworks) relay to any domain."""
    for token in _tokens(restrictions):
        lowered = token.lower()
        if lowered in _STOPS_RELAY:
            return False
        if lowered == "permit":
            return True
    return True  # A list that ends without a decision permits.


def _wide_networks(entries: Iterable[str]) -> list[str]:
    wide = []
    for entry in entries:
        candidate = entry.strip().lstrip("!")
        if candidate.startswith("[") and "]" in candidate:
            candidate = candidate[1:].replace("]", "", 1)
        try:
            net = ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue
        if net.prefixlen < net.max_prefixlen and not net.is_loopback:
            wide.append(entry.strip())
    return wide


def validate_no_open_relay(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a mail server that trusts whole networks or whose restrictions let anybody relay."""
    c = _container_of(args)
    if c is None:
        return
    owner = f"'{c.display}'" + (f" ({c.domain})" if c.domain else "")
    permit = c.env.get("PERMIT_DOCKER")
    if permit is not None and permit.strip().lower() not in ("", "none"):
        report_violation(
            f"Mail server {owner} sets PERMIT_DOCKER={permit}, which puts whole Docker networks into "
            "mynetworks, so every container there (and VPN peers, and the host gateway) may relay mail "
            "without logging in: set PERMIT_DOCKER=none; mailstack trusts only the peer servers, one /32 "
            "each, in postfix-mynetworks.cidr.",
            None,
        )
    files = c.files()
    for name, upload in files.items():
        if name.endswith(".cidr") and upload.content is not None:
            wide = _wide_networks(parse_table(upload.content))
            if wide:
                report_violation(
                    f"Container {owner} uploads {name}, which trusts the networks {', '.join(wide)}: every "
                    "host in them may relay mail without logging in. List single hosts only (/32), i.e. the "
                    "peer mail servers.",
                    None,
                )
    main = files.get(MAIN_CF)
    if main is None or main.content is None:
        return
    settings = parse_main_cf(main.content)
    if "mynetworks" in settings:
        wide = _wide_networks(t for t in _tokens(settings["mynetworks"]) if ":" not in t or t.startswith("["))
        if wide:
            report_violation(
                f"Container {owner} sets mynetworks = {settings['mynetworks']} in {MAIN_CF}, which trusts the "
                f"networks {', '.join(wide)}: every host in them may relay mail without logging in. Trust "
                "single hosts only (/32): remove the setting and let mailstack generate the peer list.",
                None,
            )
    overrides = {k: settings[k] for k in DMS_RESTRICTIONS if k in settings}
    if overrides:
        effective = {**DMS_RESTRICTIONS, **overrides}
        if all(_permits_relay(v) for v in effective.values()):
            names = ", ".join(sorted(overrides))
            report_violation(
                f"Container {owner} overrides {names} in {MAIN_CF} so that no restriction list rejects mail "
                "to foreign domains from unauthenticated clients: the server is an open relay. Remove the "
                "override (mailstack:postfix) or end the list with reject_unauth_destination.",
                None,
            )


no_open_relay = ResourceValidationPolicy(
    name="no-open-relay",
    description="No mail server trusts a whole network (PERMIT_DOCKER, mynetworks) or lets strangers relay.",
    validate=validate_no_open_relay,
    severity=Severity.CRITICAL,
)


# --- stack helpers: servers, domains, configuration files -----------------------------------------


@dataclass
class _Server:
    container: Container
    domain: str
    files: dict[str, tuple[Upload, Container]]
    own: set[str]


def _servers(containers: list[Container]) -> list[_Server]:
    """Mail servers with their configuration files (their own and their config writer's uploads)."""
    servers = []
    for c in containers:
        if c.role != MAILSERVER or not c.domain:
            continue
        files: dict[str, tuple[Upload, Container]] = {}
        for other in containers:
            if other.domain == c.domain and other.role in (CONFIG_WRITER, MAILSERVER):
                for name, upload in other.files().items():
                    if name not in files or other is c:
                        files[name] = (upload, other)
        own = {c.domain.lower()}
        accounts = files.get(ACCOUNTS)
        if accounts and accounts[0].content:
            own |= {d for a, _ in parse_accounts(accounts[0].content) if (d := _domain_of(a))}
        virtual = files.get(VIRTUAL)
        if virtual and virtual[0].content:
            own |= {d for key in parse_table(virtual[0].content) if (d := _domain_of(key))}
        servers.append(_Server(c, c.domain.lower(), files, own))
    return servers


# --- mailserver-hostnames ---------------------------------------------------------------------------

_LABEL_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def is_fqdn(name: str) -> bool:
    """True for a fully qualified host name: two or more valid labels, 253 characters at most."""
    labels = name.lower().rstrip(".").split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(_LABEL_RE.match(label) for label in labels)


def _hostname(c: Container) -> Any:
    override = c.env.get("OVERRIDE_HOSTNAME")
    if override:
        return override
    host = get(c.props, "hostname")
    domainname = get(c.props, "domainname")
    if host is UNKNOWN or domainname is UNKNOWN:
        return UNKNOWN
    if isinstance(host, str) and isinstance(domainname, str) and domainname:
        return f"{host}.{domainname}"
    return host if isinstance(host, str) and host else None


def validate_hostnames(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report mail server hostnames that are not FQDNs, are shared, or equal a mail domain."""
    servers = _servers(_containers(args.resources))
    mail_domains = set().union(*(s.own for s in servers)) if servers else set()
    seen: dict[str, str] = {}
    for s in servers:
        c = s.container
        host = _hostname(c)
        if host is UNKNOWN:
            continue
        if host is None:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has no hostname, so docker-mailserver sees the "
                f"container id and refuses to start: set hostname to an FQDN such as mail.{s.domain}.",
                c.urn,
            )
            continue
        lowered = host.lower().rstrip(".")
        if not is_fqdn(lowered):
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', which is not a fully "
                f"qualified name, so docker-mailserver refuses to start: use a name such as mail.{s.domain}.",
                c.urn,
            )
        if lowered in mail_domains:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', which is a mail domain of this "
                "stack: Postfix then treats that domain as local and mail to it bounces as 'User unknown'. "
                f"Use a name such as mail.{lowered}.",
                c.urn,
            )
        if lowered in seen:
            report_violation(
                f"Mail server '{c.display}' ({s.domain}) has hostname '{host}', like '{seen[lowered]}': "
                "Postfix then sees its own name on the other side and bounces with 'mail loops back to "
                "myself'. Give every server its own hostname.",
                c.urn,
            )
        else:
            seen[lowered] = c.display


mailserver_hostnames = StackValidationPolicy(
    name="mailserver-hostnames",
    description="Every mail server hostname is a fully qualified name, unique, and not a mail domain.",
    validate=validate_hostnames,
    severity=Severity.HIGH,
)


# --- mail-routing ----------------------------------------------------------------------------------


def validate_routing(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report servers that miss a route, route their own domain, or route to a non-server."""
    servers = _servers(_containers(args.resources))
    if not servers:
        return
    mail_domains = set().union(*(s.own for s in servers))
    for s in servers:
        c = s.container
        transport = s.files.get(TRANSPORT)
        main = s.files.get(MAIN_CF)
        others = sorted(mail_domains - s.own)
        where = transport[1] if transport else (main[1] if main else c)
        if transport is None:
            if others:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) has no {TRANSPORT}, so mail to "
                    f"{', '.join(others)} goes to MX lookups that fail inside Docker: generate the transport "
                    "map with one 'domain smtp:[server]:25' line per other domain.",
                    where.urn,
                )
            continue
        if main is not None and main[0].content is not None:
            maps = parse_main_cf(main[0].content).get("transport_maps", "")
            if others and TRANSPORT not in maps and "inline:" not in maps:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) uploads {TRANSPORT} but its {MAIN_CF} does not "
                    f"use it (transport_maps = {maps or 'unset'}), so the routes are ignored: set "
                    f"transport_maps = texthash:/tmp/docker-mailserver/{TRANSPORT}.",
                    main[1].urn,
                )
        if transport[0].content is None:
            continue
        routes = parse_table(transport[0].content)
        networks = {a.network for a in c.networks if a.network}
        for domain in others:
            if domain.lstrip(".") not in {k.lstrip(".") for k in routes}:
                report_violation(
                    f"Mail server '{c.display}' ({s.domain}) has no route for {domain}, so its users' mail to "
                    f"{domain} is deferred: add '{domain} smtp:[<server of {domain}>]:25' to its {TRANSPORT}.",
                    where.urn,
                )
        for key, value in sorted(routes.items()):
            domain = key.lstrip(".")
            if domain in s.own:
                report_violation(
                    f"Mail server '{c.display}' routes its own domain {domain} ({value}) in {TRANSPORT}: "
                    "transport_maps overrides local delivery, so the mail loops. Remove that line.",
                    where.urn,
                )
                continue
            _check_target(s, servers, networks, domain, value, where, report_violation)


def _check_target(
    s: _Server,
    servers: list[_Server],
    networks: set[str],
    domain: str,
    value: str,
    where: Container,
    report_violation: ReportViolation,
) -> None:
    c = s.container
    hop = parse_next_hop(value)
    if hop is None or hop.transport not in ("smtp", "relay"):
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{value}', which is not an SMTP next hop: use "
            f"'smtp:[<server alias>]:25'.",
            where.urn,
        )
        return
    if not hop.bracketed:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{value}' without brackets, so Postfix looks up MX "
            f"records of '{hop.host}', which Docker's DNS does not have: write 'smtp:[{hop.host}]:25'.",
            where.urn,
        )
    if hop.port not in (None, 25):
        report_violation(
            f"Mail server '{c.display}' routes {domain} to port {hop.port}; servers accept mail from each "
            f"other on port 25: write 'smtp:[{hop.host}]:25'.",
            where.urn,
        )
    matches = []
    for t in servers:
        for a in t.container.networks:
            shared = not networks or a.network is None or a.network in networks
            if shared and (hop.host.lower() in (x.lower() for x in a.aliases) or hop.host == a.ipv4):
                matches.append(t)
                break
    if not matches:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{hop.host}', which is not the network alias of a "
            f"mail server on a network '{c.display}' shares: route it to the alias of the server of {domain}.",
            where.urn,
        )
        return
    target = matches[0]
    if target.container is c:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to itself ('{hop.host}'), so the mail loops: route it to "
            f"the server of {domain}.",
            where.urn,
        )
    elif domain not in target.own:
        report_violation(
            f"Mail server '{c.display}' routes {domain} to '{hop.host}' ('{target.container.display}'), which "
            f"serves {target.domain}, not {domain}: route it to the server of {domain}.",
            where.urn,
        )


mail_routing = StackValidationPolicy(
    name="mail-routing",
    description=(
        "Every mail domain is routed from every other server to a server alias on the shared network, "
        "and no server routes its own domain."
    ),
    validate=validate_routing,
    severity=Severity.HIGH,
)


# --- unique-host-ports-and-subnets -------------------------------------------------------------------

_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


def _vpn_networks(c: Container) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for u in c.uploads:
        if u.path.startswith(WG_CONF_DIR) and u.path.endswith(".conf") and u.content is not None:
            nets.extend(wireguard_networks(u.content))
    if not nets and c.env.get("INTERNAL_SUBNET"):
        raw = c.env["INTERNAL_SUBNET"].strip()
        try:
            nets.append(ipaddress.ip_network(raw if "/" in raw else f"{raw}/24", strict=False))
        except ValueError:
            pass
    return nets


def validate_ports_and_subnets(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report two containers publishing the same host port, and overlapping network or VPN subnets."""
    containers = _containers(args.resources)
    taken: list[tuple[Port, Container]] = []
    for c in containers:
        for p in c.ports:
            if p.external is None or p.ip is None:
                continue
            for q, owner in taken:
                same_ip = p.ip == q.ip or p.ip in _WILDCARDS or q.ip in _WILDCARDS
                if q.external == p.external and q.protocol == p.protocol and same_ip:
                    report_violation(
                        f"Container '{c.display}' publishes {p.ip}:{p.external}/{p.protocol}, which "
                        f"'{owner.display}' already publishes ({q.ip}:{q.external}): only one can bind it, so "
                        "the second never starts. Give one of them another host port (mailstack:domains[].ports, "
                        "webmail.port or vpn.port).",
                        c.urn,
                    )
                    break
            else:
                taken.append((p, c))
    subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, str]] = []
    for r in sorted(args.resources, key=lambda r: (_text(get(r.props, "name")) or r.name, r.urn)):
        if r.resource_type != NETWORK:
            continue
        label = f"Docker network '{_text(get(r.props, 'name')) or r.name}'"
        for ipam in elements(get(r.props, "ipamConfigs")):
            subnet = _text(get(ipam, "subnet"))
            if subnet:
                try:
                    subnets.append((ipaddress.ip_network(subnet, strict=False), label, r.urn))
                except ValueError:
                    continue
    for c in containers:
        if c.role == VPN:
            subnets.extend((net, f"VPN '{c.display}'", c.urn) for net in _vpn_networks(c))
    for i, (net, label, urn) in enumerate(subnets):
        for other, other_label, _ in subnets[:i]:
            if net.version == other.version and net.overlaps(other):
                report_violation(
                    f"{label} uses {net}, which overlaps {other_label} ({other}): packets for the shared "
                    "addresses go to the wrong side (VPN peers cannot reach the servers). Pick ranges that do "
                    "not overlap (mailstack:network.subnet, mailstack:vpn.subnet).",
                    urn,
                )
                break


unique_ports_and_subnets = StackValidationPolicy(
    name="unique-host-ports-and-subnets",
    description="No two containers publish the same host port, and no two networks (Docker or VPN) overlap.",
    validate=validate_ports_and_subnets,
    severity=Severity.HIGH,
)


# --- no-plaintext-exposure -------------------------------------------------------------------------

LOGIN_PORTS: Final = {
    110: "POP3",
    143: "IMAP",
    465: "submissions",
    587: "submission",
    993: "IMAPS",
    995: "POP3S",
}
"""Container ports where docker-mailserver takes passwords; with SSL_TYPE empty none of them has TLS."""
WEBMAIL_PORTS: Final = (80, 8000)


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return ip == "localhost"


def _where(p: Port) -> str:
    return f"{p.ip}:{p.external}" if p.external is not None else f"{p.ip} (a random host port)"


def validate_plaintext(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """In production, report login ports without TLS published on a non-loopback address."""
    if not _production(args.get_config()):
        return
    c = _container_of(args)
    if c is None:
        return
    exposed = [p for p in c.ports if p.ip is not None and not _loopback(p.ip)]
    if c.role == MAILSERVER:
        ssl_type = c.env.get("SSL_TYPE")
        if (ssl_type is None and not c.env_complete) or (ssl_type or "").strip():
            return
        bad = [p for p in exposed if p.internal in LOGIN_PORTS]
        if bad:
            listed = ", ".join(f"{LOGIN_PORTS[p.internal or 0]} on {_where(p)}" for p in bad)
            report_violation(
                f"Mail server '{c.display}' publishes {listed} with SSL_TYPE empty: passwords cross the network "
                "in clear text. Set mailstack:tls to letsencrypt or manual (with mailstack:certificatesPath), "
                "or bind those ports to 127.0.0.1.",
                None,
            )
    elif c.role == WEBMAIL:
        bad = [p for p in exposed if p.internal in WEBMAIL_PORTS]
        if bad:
            listed = ", ".join(_where(p) for p in bad)
            report_violation(
                f"Webmail '{c.display}' serves plain HTTP on {listed}: logins cross the network in clear text. "
                "Publish it on a loopback address behind a TLS-terminating reverse proxy, or leave webmail out "
                "of the production stack.",
                None,
            )


no_plaintext_exposure = ResourceValidationPolicy(
    name="no-plaintext-exposure",
    description="In production no IMAP, POP3, submission or webmail login port without TLS faces the network.",
    validate=validate_plaintext,
    config_schema=PRODUCTION_SCHEMA,
    severity=Severity.CRITICAL,
)


# --- no-secrets-in-env -----------------------------------------------------------------------------

_SECRET_WORDS: Final = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "PRIVKEY",
        "PSK",
        "PRESHAREDKEY",
        "PRIVATEKEY",
        "DESKEY",
    }
)
_SECRET_PAIRS: Final = frozenset({("DES", "KEY"), ("PRIVATE", "KEY"), ("API", "KEY"), ("PRESHARED", "KEY")})
_REFERENCE_SUFFIXES: Final = frozenset({"FILE", "PATH", "DIR", "FILES"})
_SECRET_VALUE_RES: Final = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"(?im)^\s*PrivateKey\s*="), "a WireGuard private key"),
    (re.compile(r"\{[A-Z0-9-]+-CRYPT\}|\$(1|5|6|2[aby]|y)\$"), "a password hash"),
)


def secret_kind(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a secret in an environment, or ``None``."""
    if not value.strip():
        return None
    for pattern, what in _SECRET_VALUE_RES:
        if pattern.search(value):
            return what
    tokens = [t for t in re.split(r"[^A-Z0-9]+", name.upper()) if t]
    if not tokens or tokens[-1] in _REFERENCE_SUFFIXES or {"PUBLIC", "PUBKEY"} & set(tokens):
        return None
    if _SECRET_WORDS & set(tokens) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(tokens)):
        return "a password, key or token"
    return None


def validate_secrets_in_env(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a container environment variable that carries a password, DES key or private key."""
    c = _container_of(args)
    if c is None:
        return
    for name, value in sorted(c.env.items()):
        kind = secret_kind(name, value)
        if kind:
            report_violation(
                f"Container '{c.display}' gets {name} in its plain environment, and its value looks like {kind}: "
                "the environment shows in `docker inspect`, in process listings and in the state. Deliver it "
                "as a file from a Pulumi secret instead (an upload such as /run/secrets/..., or the image's "
                f"{name}__FILE / _FILE variant).",
                None,
            )


no_secrets_in_env = ResourceValidationPolicy(
    name="no-secrets-in-env",
    description="No password, DES key or private key is passed in a container's plain environment.",
    validate=validate_secrets_in_env,
    severity=Severity.HIGH,
)


# --- no-weak-credentials -----------------------------------------------------------------------------

_HASHERS: Final = (
    ("$6$", sha512_crypt),
    ("$5$", sha256_crypt),
    ("$1$", md5_crypt),
)


def _candidates(address: str) -> list[str]:
    local = address.split("@", 1)[0]
    words = sorted(WEAK_PASSWORDS)
    return [*words, *(w.capitalize() for w in words if w.capitalize() != w), local, f"{local}123", address]


def weak_account(address: str, hashed: str) -> str | None:
    """Why the account's hash is weak (a well-known password, or stored unhashed), or ``None``.

    The reason never says which password matched: that would print the account's password.
    """
    scheme = ""
    match = re.match(r"^\{([A-Za-z0-9.-]+)\}", hashed)
    if match:
        scheme, hashed = match.group(1).upper(), hashed[match.end() :]
    if scheme in ("PLAIN", "CLEARTEXT", "CLEAR"):
        return "its password is stored unhashed"
    for prefix, hasher in _HASHERS:
        if hashed.startswith(prefix):
            for candidate in _candidates(address):
                try:
                    if hasher.verify(candidate, hashed):
                        return "its password is a well-known default or derived from the user name"
                except ValueError:
                    return None
            return None
    return None


def validate_weak_credentials(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report accounts in an uploaded ``postfix-accounts.cf`` whose hash verifies against a weak password."""
    c = _container_of(args)
    if c is None:
        return
    upload = c.files().get(ACCOUNTS)
    if upload is None or upload.content is None:
        return
    for address, hashed in parse_accounts(upload.content):
        reason = weak_account(address, hashed)
        if reason:
            report_violation(
                f"Container '{c.display}' uploads {ACCOUNTS} where account {address}: {reason}. Set a strong "
                f"one with `pulumi config set --secret --path 'mailstack:passwords[\"{address}\"]'`, or remove "
                "that entry to get a generated password.",
                None,
            )


no_weak_credentials = ResourceValidationPolicy(
    name="no-weak-credentials",
    description="No mail account uses a well-known default password such as password123.",
    validate=validate_weak_credentials,
    severity=Severity.CRITICAL,
)


# --- health-and-restart ------------------------------------------------------------------------------

RESTARTING: Final = frozenset({"always", "unless-stopped", "on-failure"})


def _short_lived(c: Container) -> bool | None:
    """True for run-once containers (the config writer); ``None`` when unknown."""
    if c.role == CONFIG_WRITER:
        return True
    attach, must_run = get(c.props, "attach"), get(c.props, "mustRun")
    if attach is UNKNOWN or must_run is UNKNOWN:
        return None
    return _truthy(attach) is True or _truthy(must_run) is False


def validate_health_and_restart(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a long-running container without a health check or a restart policy."""
    c = _container_of(args)
    if c is None or _short_lived(c) is not False:
        return
    what = f"Container '{c.display}'" + (f" ({c.role})" if c.role else "")
    check = get(c.props, "healthcheck")
    if check is not UNKNOWN:
        tests = [t for t in elements(get(check, "tests")) if isinstance(t, str)]
        if get(check, "tests") is not UNKNOWN and (not tests or tests[0].upper() == "NONE"):
            report_violation(
                f"{what} runs for good but has no health check, so nobody (wait=True, `docker ps`, the restart "
                "policy) learns that it hangs: add a healthcheck whose tests probe the service.",
                None,
            )
    restart = get(c.props, "restart", "no")
    if isinstance(restart, str) and restart not in RESTARTING:
        report_violation(
            f"{what} has restart policy '{restart}', so a crash or a host reboot leaves it down: set "
            "restart='unless-stopped'.",
            None,
        )


health_and_restart = ResourceValidationPolicy(
    name="health-and-restart",
    description="Every long-running container has a health check and a restart policy.",
    validate=validate_health_and_restart,
    severity=Severity.MEDIUM,
)


# --- wireguard-hardening ----------------------------------------------------------------------------


def validate_wireguard(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a VPN that logs its configs or lacks NET_ADMIN, and NET_ADMIN or privileged elsewhere."""
    c = _container_of(args)
    if c is None:
        return
    caps = get(c.props, "capabilities")
    adds = {str(a).upper().removeprefix("CAP_") for a in elements(get(caps, "adds")) if isinstance(a, str)}
    privileged = _truthy(get(c.props, "privileged")) is True
    if c.role == VPN:
        log_confs = c.env.get("LOG_CONFS")
        if (log_confs is None and c.env_complete) or (
            log_confs is not None and log_confs.strip().lower() != "false"
        ):
            shown = "unset (the image defaults to true)" if log_confs is None else f"'{log_confs}'"
            report_violation(
                f"VPN '{c.display}' has LOG_CONFS {shown}, so linuxserver/wireguard prints every peer config "
                "with its private key (and QR code) to the container log: set LOG_CONFS=false.",
                None,
            )
        if (
            get(caps, "adds") is not UNKNOWN
            and caps is not UNKNOWN
            and "NET_ADMIN" not in adds
            and not privileged
        ):
            report_violation(
                f"VPN '{c.display}' lacks the NET_ADMIN capability, so wg-quick cannot create wg0 and the VPN "
                "never comes up: add capabilities.adds=['NET_ADMIN'].",
                None,
            )
        return
    fail2ban = c.role == MAILSERVER and c.env.get("ENABLE_FAIL2BAN", "0").strip() in ("1", "true")
    granted = sorted(adds & {"NET_ADMIN", "ALL", "SYS_ADMIN"})
    if fail2ban:
        granted = [g for g in granted if g != "NET_ADMIN"]
    if granted or privileged:
        what = "privileged mode" if privileged else f"the capabilities {', '.join(granted)}"
        report_violation(
            f"Container '{c.display}'" + (f" ({c.role})" if c.role else "") + f" gets {what}, which let it "
            "rewrite the host's network (firewall, routes, interfaces); only the VPN needs NET_ADMIN (a mail "
            "server only with ENABLE_FAIL2BAN=1): remove it.",
            None,
        )


wireguard_hardening = ResourceValidationPolicy(
    name="wireguard-hardening",
    description="The VPN never logs its peer configs or keys, and NET_ADMIN is granted only where needed.",
    validate=validate_wireguard,
    severity=Severity.HIGH,
)


POLICIES: Final[list[ResourceValidationPolicy | StackValidationPolicy]] = [
    images_pinned,
    mail_data_protected,
    no_open_relay,
    mailserver_hostnames,
    mail_routing,
    unique_ports_and_subnets,
    no_plaintext_exposure,
    no_secrets_in_env,
    no_weak_credentials,
    health_and_restart,
    wireguard_hardening,
]
"""Every policy of the pack, in the order the pack reports them."""

PROD_ONLY: Final = frozenset(p.name for p in POLICIES if p.config_schema is PRODUCTION_SCHEMA)
"""Policies that check only in production (their config property ``production``)."""
