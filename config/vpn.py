"""WireGuard VPN of the lab: the ``mailstack:vpn`` model, its validation, keys and the generated configs.

Pure Python (no Pulumi). The server runs linuxserver/wireguard in *client mode* (``PEERS`` unset), so
the image brings up the ``wg0.conf`` mailstack generates instead of generating or overwriting its own
(docs/upstream.md, "linuxserver/wireguard"). Private keys come from random bytes kept
as secrets in Pulumi state; public keys are derived from them with X25519.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from config.errors import ConfigError

# Pinned default image: linuxserver/docker-wireguard release tag 1.0.20250521-r1-ls110 (2026-04-23,
# commit 684a0dd of linuxserver/docker-wireguard, whose scripts docs/upstream.md describes; LinuxServer publishes
# one image tag per release tag). Exact tags never move; override with mailstack:images.vpn.
DEFAULT_IMAGE = "linuxserver/wireguard:1.0.20250521-r1-ls110"

CONTAINER_PORT = 51820
"""UDP port WireGuard listens on inside the container (hard-coded by the image; the host port maps to it)."""

WG0_PATH = "/config/wg_confs/wg0.conf"
"""Where the image looks for tunnel configs in client mode (``/etc/wireguard`` links to ``wg_confs``)."""

DEFAULT_PORT = 51820
DEFAULT_SUBNET = IPv4Network("10.13.13.0/24")
DEFAULT_BIND_ADDRESS = "0.0.0.0"
DEFAULT_KEEPALIVE = 25

PEER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_SUBNET_SUGGESTIONS = (DEFAULT_SUBNET, IPv4Network("10.213.13.0/24"), IPv4Network("192.168.213.0/24"))
_KEYS = ("enabled", "port", "subnet", "endpoint", "peers", "allowedIps", "bindAddress", "keepalive")
_ITEM = "mailstack:vpn"

# NAT for peers reaching the lab's containers, like the image's server template (root/defaults/server.conf).
_POST_UP = (
    "iptables -A FORWARD -i %i -j ACCEPT; iptables -A FORWARD -o %i -j ACCEPT; "
    "iptables -t nat -A POSTROUTING -o eth+ -j MASQUERADE"
)
_POST_DOWN = (
    "iptables -D FORWARD -i %i -j ACCEPT; iptables -D FORWARD -o %i -j ACCEPT; "
    "iptables -t nat -D POSTROUTING -o eth+ -j MASQUERADE"
)


@dataclass(frozen=True)
class VpnConfig:
    """The validated ``mailstack:vpn`` settings.

    Build it with :func:`parse_vpn`; direct construction skips validation. ``allowed_ips`` empty means
    the VPN subnet only; ``dns`` empty means the server's tunnel address (CoreDNS in the container).
    """

    enabled: bool = False
    port: int = DEFAULT_PORT
    """Host UDP port published for WireGuard (peers dial ``endpoint:port``)."""
    subnet: IPv4Network = DEFAULT_SUBNET
    """Tunnel subnet: the server is ``.1``, peers ``.2``, ``.3``, ... in the order of ``peers``."""
    endpoint: str | None = None
    """Host name or address the peers dial."""
    peers: tuple[str, ...] = ()
    """Peer names, in address order."""
    allowed_ips: tuple[str, ...] = ()
    """CIDRs the peers route through the tunnel (split tunnel by default)."""
    bind_address: str = DEFAULT_BIND_ADDRESS
    """Host address the UDP port is published on (all addresses by default)."""
    keepalive: int = DEFAULT_KEEPALIVE
    """``PersistentKeepalive`` in seconds for the peers; 0 leaves it out."""
    dns: str = field(default="")
    """DNS server the peers use; defaults to the server's tunnel address."""

    def __post_init__(self) -> None:
        """Fill the defaults that depend on other fields (``allowed_ips``, ``dns``)."""
        if not self.allowed_ips:
            object.__setattr__(self, "allowed_ips", (str(self.subnet),))
        if not self.dns:
            object.__setattr__(self, "dns", str(self.server_address))

    @property
    def server_address(self) -> IPv4Address:
        """The server's tunnel address: the first host of the subnet (``.1``)."""
        return self.subnet.network_address + 1

    def peer_address(self, name: str) -> IPv4Address:
        """Return the tunnel address of peer ``name``: ``.2`` for the first peer, ``.3`` for the next..."""
        try:
            index = self.peers.index(name)
        except ValueError:
            raise KeyError(
                f"unknown VPN peer {name!r}; known peers: {', '.join(self.peers) or 'none'}"
            ) from None
        return self.subnet.network_address + 2 + index

    @property
    def endpoint_with_port(self) -> str:
        """``endpoint:port`` as peers write it in ``Endpoint`` (IPv6 literals in brackets)."""
        if self.endpoint is None:
            raise ValueError("the VPN has no endpoint; set mailstack:vpn.endpoint")
        host = self.endpoint
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"{host}:{self.port}"


def max_peers(subnet: IPv4Network) -> int:
    """Return how many peers ``subnet`` holds: all addresses minus network, server ``.1`` and broadcast."""
    return max(subnet.num_addresses - 3, 0)


def _unknown_key_problem(key: str) -> str:
    close = difflib.get_close_matches(key, _KEYS, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(_KEYS)}"
    return f"{_ITEM}.{key}: unknown key; {hint}"


def _parse_subnet(value: object, problems: list[str]) -> IPv4Network | None:
    item = f"{_ITEM}.subnet"
    if not isinstance(value, str):
        problems.append(f"{item}: must be an IPv4 network in CIDR form such as '10.13.13.0/24'")
        return None
    if "/" not in value:
        problems.append(
            f"{item}: '{value}' has no prefix length; write it in CIDR form such as '10.13.13.0/24'"
        )
        return None
    try:
        return IPv4Network(value)
    except ValueError:
        pass
    try:
        loose = IPv4Network(value, strict=False)
    except ValueError:
        problems.append(f"{item}: '{value}' is not an IPv4 network; use CIDR form such as '10.13.13.0/24'")
        return None
    problems.append(f"{item}: '{value}' has host bits set; use the network address '{loose}'")
    return None


def _parse_peers(value: object, problems: list[str]) -> tuple[str, ...]:
    item = f"{_ITEM}.peers"
    if not isinstance(value, list):
        problems.append(f"{item}: must be a list of peer names such as ['peer1', 'peer2']")
        return ()
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(value):
        where = f"{item}[{i}]"
        if not isinstance(name, str) or not PEER_NAME_RE.match(name):
            problems.append(
                f"{where}: {name!r} is not a simple identifier; use a letter followed by up to 31 letters, "
                "digits, '_' or '-' (for example 'peer1' or 'laptop-anna')"
            )
            continue
        folded = name.lower()
        if folded in seen:
            problems.append(
                f"{where}: peer name '{name}' duplicates {item}[{seen[folded]}] (names are compared "
                "ignoring case); give every peer its own name"
            )
            continue
        seen[folded] = i
        names.append(name)
    return tuple(names)


def _parse_allowed_ips(value: object, problems: list[str]) -> tuple[str, ...] | None:
    item = f"{_ITEM}.allowedIps"
    if not isinstance(value, list):
        problems.append(f"{item}: must be a list of CIDRs such as ['10.13.13.0/24', '172.28.0.0/24']")
        return None
    if not value:
        problems.append(
            f"{item}: is empty; list at least one CIDR, or remove the key for the default split tunnel"
        )
        return None
    result: list[str] = []
    for i, entry in enumerate(value):
        where = f"{item}[{i}]"
        if not isinstance(entry, str) or "/" not in entry:
            problems.append(
                f"{where}: {entry!r} is not a CIDR; write a network with its prefix length, such as "
                "'172.28.0.0/24' (or '0.0.0.0/0' to route everything through the VPN)"
            )
            continue
        try:
            net = ipaddress.ip_network(entry.strip())
        except ValueError:
            try:
                loose = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                problems.append(f"{where}: '{entry}' is not a CIDR; use a form such as '172.28.0.0/24'")
                continue
            problems.append(f"{where}: '{entry}' has host bits set; use the network address '{loose}'")
            continue
        if str(net) in result:
            problems.append(f"{where}: '{entry}' is listed twice; remove the duplicate")
            continue
        result.append(str(net))
    return tuple(result)


def _parse_endpoint(value: object, problems: list[str]) -> str | None:
    item = f"{_ITEM}.endpoint"
    if value is None:
        return None
    if isinstance(value, str):
        candidate = value.strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
        if _HOSTNAME_RE.match(candidate):
            return candidate
        if re.match(r"^[^:/\s]+:\d+$", candidate):
            problems.append(
                f"{item}: '{value}' includes a port; give only the host name or address and set the "
                f"port with {_ITEM}.port"
            )
            return None
    problems.append(
        f"{item}: {value!r} is not a host name or IP address; give the name or address the peers dial, "
        "such as 'vpn.example.org' or '203.0.113.10' (no scheme, no port)"
    )
    return None


def _parse_int(key: str, value: object, low: int, high: int, what: str, problems: list[str]) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    problems.append(f"{_ITEM}.{key}: {value!r} is not {what}; use a whole number from {low} to {high}")
    return None


def parse_vpn(raw: Mapping[str, object] | None, mail_subnet: IPv4Network) -> VpnConfig:
    """Parse and validate the user's ``mailstack:vpn`` object.

    ``mail_subnet`` is the subnet of the shared Docker network: the VPN subnet must not overlap it, and
    it is the second default entry of ``allowedIps`` (split tunnel: the VPN subnet plus the mail network).
    ``None`` or ``{}`` means the VPN is disabled. Every problem found is collected and raised together as
    one :class:`ConfigError`, each message naming the item (``mailstack:vpn.peers[2]``) and the fix.
    """
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return VpnConfig(enabled=False)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            [f"{_ITEM}: must be an object such as {{enabled: true, endpoint: ..., peers: [...]}}"]
        )

    problems: list[str] = []
    problems.extend(_unknown_key_problem(str(key)) for key in raw if key not in _KEYS)

    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.append(f"{_ITEM}.enabled: {enabled!r} is not a boolean; use true or false")
        enabled = False

    port = _parse_int("port", raw.get("port", DEFAULT_PORT), 1, 65535, "a UDP port", problems)
    keepalive = _parse_int(
        "keepalive",
        raw.get("keepalive", DEFAULT_KEEPALIVE),
        0,
        65535,
        "a keepalive interval in seconds",
        problems,
    )

    subnet = _parse_subnet(raw.get("subnet", str(DEFAULT_SUBNET)), problems)
    if subnet is not None and subnet.overlaps(mail_subnet):
        other = next(c for c in _SUBNET_SUGGESTIONS if not c.overlaps(mail_subnet))
        problems.append(
            f"{_ITEM}.subnet: {subnet} overlaps the mail network's subnet {mail_subnet}; choose a VPN subnet "
            f"outside it, such as '{other}'"
        )

    raw_peers = raw.get("peers", [])
    peers = _parse_peers(raw_peers, problems)
    count = len(raw_peers) if isinstance(raw_peers, list) else 0
    if subnet is not None and count > max_peers(subnet):
        problems.append(
            f"{_ITEM}.peers: {count} peers do not fit in {_ITEM}.subnet {subnet}, which holds "
            f"{max_peers(subnet)} (all addresses minus network, server .1 and broadcast); use a larger "
            "subnet (a smaller prefix length) or fewer peers"
        )

    endpoint = _parse_endpoint(raw.get("endpoint"), problems)
    if enabled and raw.get("endpoint") is None:
        problems.append(
            f"{_ITEM}.endpoint: required when the VPN is enabled; set it to the host name or address the "
            "peers dial (for a local lab: 'localhost')"
        )
    if enabled and isinstance(raw_peers, list) and not raw_peers:
        problems.append(f"{_ITEM}.peers: the VPN is enabled but has no peers; list at least one peer name")

    allowed_ips: tuple[str, ...] | None = None
    if "allowedIps" in raw:
        allowed_ips = _parse_allowed_ips(raw["allowedIps"], problems)

    raw_bind = raw.get("bindAddress", DEFAULT_BIND_ADDRESS)
    bind_address = DEFAULT_BIND_ADDRESS
    try:
        if not isinstance(raw_bind, str):
            raise ValueError(raw_bind)
        bind_address = str(ipaddress.ip_address(raw_bind.strip()))
    except ValueError:
        problems.append(
            f"{_ITEM}.bindAddress: {raw_bind!r} is not an IP address; use a host address such as "
            "'127.0.0.1', or '0.0.0.0' for all addresses"
        )

    if problems or subnet is None or port is None or keepalive is None:
        raise ConfigError(problems)
    if allowed_ips is None:
        allowed_ips = (str(subnet), str(mail_subnet))
    return VpnConfig(
        enabled=enabled,
        port=port,
        subnet=subnet,
        endpoint=endpoint,
        peers=peers,
        allowed_ips=allowed_ips,
        bind_address=bind_address,
        keepalive=keepalive,
    )


# --- keys -------------------------------------------------------------------------------------------


def _clamp(raw32: bytes) -> bytes:
    if len(raw32) != 32:
        raise ValueError(f"a WireGuard private key is 32 bytes, got {len(raw32)}")
    key = bytearray(raw32)
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return bytes(key)


def _decode_key(b64: str) -> bytes:
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a WireGuard key must be standard base64 of 32 bytes") from None
    if len(raw) != 32:
        raise ValueError(f"a WireGuard key is 32 bytes, this one decodes to {len(raw)}")
    return raw


def private_key_from_seed(raw32: bytes) -> str:
    """Return a WireGuard private key (base64) from 32 random bytes, clamped like ``wg genkey`` output."""
    return base64.b64encode(_clamp(raw32)).decode("ascii")


def normalize_private_key(b64: str) -> str:
    """Turn base64 of 32 random bytes (e.g. ``RandomBytes(length=32).base64``) into a clamped private key.

    Idempotent: a key that is already clamped comes back unchanged. Raises ``ValueError`` (without
    echoing the input) if it is not base64 of exactly 32 bytes.
    """
    return private_key_from_seed(_decode_key(b64))


def public_key(private_b64: str) -> str:
    """Return the WireGuard public key (base64) of a private key, by X25519 (what ``wg pubkey`` prints)."""
    private = X25519PrivateKey.from_private_bytes(_decode_key(private_b64))
    return base64.b64encode(private.public_key().public_bytes_raw()).decode("ascii")


# --- renderers --------------------------------------------------------------------------------------


def _check_public_keys(cfg: VpnConfig, peer_public_keys: Mapping[str, str]) -> None:
    missing = [p for p in cfg.peers if p not in peer_public_keys]
    extra = sorted(set(peer_public_keys) - set(cfg.peers))
    if missing or extra:
        raise ValueError(f"peer public keys do not match the peers: missing {missing}, unexpected {extra}")
    for name in cfg.peers:
        _decode_key(peer_public_keys[name])


def render_server_conf(cfg: VpnConfig, server_private_key: str, peer_public_keys: Mapping[str, str]) -> str:
    """Render the server's ``wg0.conf`` for linuxserver/wireguard in client mode.

    The server listens on the container port 51820 (the host port ``cfg.port`` maps to it), NATs peer
    traffic out of the container's ``eth+`` interfaces like the image's own template, and has one
    ``[Peer]`` per peer, in the order of ``cfg.peers``, allowed only its own ``/32``.
    """
    _check_public_keys(cfg, peer_public_keys)
    lines = [
        "# Generated by mailstack: WireGuard server of the lab VPN. Holds the server private key.",
        "[Interface]",
        f"Address = {cfg.server_address}/{cfg.subnet.prefixlen}",
        f"ListenPort = {CONTAINER_PORT}",
        f"PrivateKey = {normalize_private_key(server_private_key)}",
        f"PostUp = {_POST_UP}",
        f"PostDown = {_POST_DOWN}",
    ]
    for name in cfg.peers:
        lines += [
            "",
            "[Peer]",
            f"# {name}",
            f"PublicKey = {peer_public_keys[name]}",
            f"AllowedIPs = {cfg.peer_address(name)}/32",
        ]
    return "\n".join(lines) + "\n"


def render_peer_conf(cfg: VpnConfig, name: str, peer_private_key: str, server_public_key: str) -> str:
    """Render the client config of peer ``name`` (what ``peerN.conf`` holds, or what its QR code encodes).

    Its tunnel address, its private key, the server (``cfg.dns``, CoreDNS in the container) as DNS, and
    one ``[Peer]``: the server's public key, ``endpoint:port``, the allowed IPs and the keepalive.
    """
    address = cfg.peer_address(name)
    _decode_key(server_public_key)
    lines = [
        f"# Generated by mailstack: WireGuard config of VPN peer {name}. Holds its private key.",
        "[Interface]",
        f"Address = {address}/32",
        f"PrivateKey = {normalize_private_key(peer_private_key)}",
        f"DNS = {cfg.dns}",
        "",
        "[Peer]",
        f"PublicKey = {server_public_key}",
        f"Endpoint = {cfg.endpoint_with_port}",
        f"AllowedIPs = {', '.join(cfg.allowed_ips)}",
    ]
    if cfg.keepalive:
        lines.append(f"PersistentKeepalive = {cfg.keepalive}")
    return "\n".join(lines) + "\n"


def container_env(cfg: VpnConfig) -> dict[str, str]:
    """Return the linuxserver/wireguard environment: client mode, CoreDNS on, no configs in the log.

    ``PEERS`` is deliberately absent (client mode: the image brings up the generated ``wg0.conf`` and
    never regenerates it), so no key material or peer setting goes through the environment; ``cfg``
    only has to describe an enabled VPN.
    """
    if not cfg.enabled:
        raise ValueError("container_env: the VPN is disabled (mailstack:vpn.enabled is false)")
    return {
        "LOG_CONFS": "false",
        "PGID": "1000",
        "PUID": "1000",
        "TZ": "Etc/UTC",
        "USE_COREDNS": "true",
    }
