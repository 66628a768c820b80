"""The typed view of the resources the policies read.

The validators get each resource the way the engine sends it: camelCase properties
(``networksAdvanced``, ``ipamConfigs``), secrets already unwrapped, numbers possibly as floats,
provider defaults not filled in (a missing ``restart`` is Docker's ``no``). During a preview some
values are unknown (a container's image id, the account file that depends on a random seed);
reading one through the SDK's proxy raises ``UnknownValueError``. Every read goes through
:func:`get` / :func:`elements`, which turn unknowns into :data:`UNKNOWN`, so that each check can
skip what it cannot know yet and a validator never fails a preview.

:func:`parse_container` turns a container's properties into a :class:`Container` (labels,
environment, ports, uploads, mounts, networks). Mailstack's containers are told apart by the
label ``mailstack.role`` (``mailserver``, ``config-writer``, ``webmail``, ``vpn``) and carry
their mail domain in ``mailstack.domain``; volumes carry ``mailstack.volume`` (``mail``,
``state``...). Where a label is missing, :attr:`Container.role` falls back to what the container
carries (its environment and uploads), so a hand-written resource of the same kind is still
checked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pulumi_policy import PolicyResource, ResourceValidationArgs
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

# --- resource types, labels and roles -------------------------------------------------------------

CONTAINER: Final = "docker:index/container:Container"
VOLUME: Final = "docker:index/volume:Volume"
NETWORK: Final = "docker:index/network:Network"
REMOTE_IMAGE: Final = "docker:index/remoteImage:RemoteImage"

# Labels mailstack puts on its containers and volumes.
ROLE_LABEL: Final = "mailstack.role"
DOMAIN_LABEL: Final = "mailstack.domain"
VOLUME_LABEL: Final = "mailstack.volume"

# Values of ``mailstack.role``.
MAILSERVER: Final = "mailserver"
CONFIG_WRITER: Final = "config-writer"
WEBMAIL: Final = "webmail"
VPN: Final = "vpn"

# Upload paths that tell an unlabelled container's role (the VPN's configs, Roundcube's secret files).
WG_CONF_DIR: Final = "/config/wg_confs/"
ROUNDCUBE_SECRETS: Final = "/run/secrets/roundcube_"


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


def as_text(value: Any) -> str | None:
    """The value if it is a string, else ``None`` (unknown, missing or another type)."""
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


def as_bool(value: Any) -> bool | None:
    """A boolean, or ``"true"``/``"false"`` in any case, as a bool; ``None`` for anything else."""
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


def parse_labels(value: Any) -> dict[str, str]:
    """Docker labels given as a mapping or as the provider's ``[{label, value}]`` list; unknowns left out."""
    labels: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key in value:
            text = as_text(get(value, key))
            if text is not None:
                labels[str(key)] = text
        return labels
    for item in elements(value):
        key, text = as_text(get(item, "label")), as_text(get(item, "value"))
        if key is not None and text is not None:
            labels[key] = text
    return labels


def parse_container(props: Any, resource_name: str, urn: str) -> Container:
    """Read a container's properties (proxy or plain dict) into a :class:`Container`."""
    c = Container(resource_name=resource_name, urn=urn, props=props)
    c.name = as_text(get(props, "name"))
    c.labels = parse_labels(get(props, "labels"))
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
        path = as_text(get(upload, "file"))
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
        c.uploads.append(Upload(path=path, content=as_text(content), unknown=content is UNKNOWN))
    for mount in elements(get(props, "volumes")):
        if isinstance(mount, Mapping):
            c.mounts.append((as_text(get(mount, "volumeName")), as_text(get(mount, "containerPath"))))
    for net in elements(get(props, "networksAdvanced")):
        if isinstance(net, Mapping):
            aliases = [a for a in elements(get(net, "aliases")) if isinstance(a, str)]
            c.networks.append(
                Attachment(as_text(get(net, "name")), aliases, as_text(get(net, "ipv4Address")))
            )
    return c


def container_of(args: ResourceValidationArgs) -> Container | None:
    """The :class:`Container` a resource policy validates, or ``None`` if the resource is not a container."""
    if args.resource_type != CONTAINER:
        return None
    return parse_container(args.props, args.name, args.urn)


def parse_containers(resources: Iterable[PolicyResource]) -> list[Container]:
    """Containers sorted by name, so that "the second one" of a pair does not depend on registration order."""
    found = [parse_container(r.props, r.name, r.urn) for r in resources if r.resource_type == CONTAINER]
    return sorted(found, key=lambda c: (c.display, c.urn))
