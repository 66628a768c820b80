"""Unit tests of config.vpn: parsing, validation messages, keys and the WireGuard renderers."""

from __future__ import annotations

import base64
import hashlib
import re
from ipaddress import IPv4Address, IPv4Network

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from config.errors import ConfigError
from config.vpn import (
    DEFAULT_IMAGE,
    VpnConfig,
    container_env,
    max_peers,
    normalize_private_key,
    parse_vpn,
    private_key_from_seed,
    public_key,
    render_peer_conf,
    render_server_conf,
)

MAIL = IPv4Network("172.28.0.0/24")
# RFC 7748 section 6.1 test vector (Alice): private scalar and its X25519 public key.
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def key(label: str) -> str:
    return private_key_from_seed(seed(label))


def dev_cfg(**overrides: object) -> VpnConfig:
    raw: dict[str, object] = {"enabled": True, "endpoint": "localhost", "peers": ["peer1", "peer2", "peer3"]}
    raw.update(overrides)
    return parse_vpn(raw, MAIL)


def problems_of(raw: object, mail: IPv4Network = MAIL) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_vpn(raw, mail)  # type: ignore[arg-type]
    return info.value.problems


def one_problem(raw: object) -> str:
    problems = problems_of(raw)
    assert len(problems) == 1, problems
    return problems[0]


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}])
def test_absent_or_empty_means_disabled(raw: object) -> None:
    cfg = parse_vpn(raw, MAIL)  # type: ignore[arg-type]
    assert cfg.enabled is False
    assert cfg.peers == ()


def test_defaults() -> None:
    cfg = dev_cfg()
    assert cfg.enabled is True
    assert cfg.port == 51820
    assert cfg.subnet == IPv4Network("10.13.13.0/24")
    assert cfg.endpoint == "localhost"
    assert cfg.peers == ("peer1", "peer2", "peer3")
    assert cfg.allowed_ips == ("10.13.13.0/24", "172.28.0.0/24")  # split tunnel: VPN + mail network
    assert cfg.bind_address == "0.0.0.0"
    assert cfg.keepalive == 25
    assert cfg.dns == "10.13.13.1"


def test_default_allowed_ips_follow_the_subnets() -> None:
    cfg = parse_vpn(
        {"enabled": True, "endpoint": "vpn.example.org", "peers": ["a"], "subnet": "10.50.0.0/16"},
        IPv4Network("192.168.77.0/24"),
    )
    assert cfg.allowed_ips == ("10.50.0.0/16", "192.168.77.0/24")
    assert cfg.dns == "10.50.0.1"


def test_all_keys_parsed() -> None:
    cfg = dev_cfg(
        port=4500,
        subnet="10.99.0.0/28",
        endpoint="203.0.113.10",
        allowedIps=["0.0.0.0/0", "::/0"],
        bindAddress="127.0.0.1",
        keepalive=0,
    )
    assert (cfg.port, cfg.subnet, cfg.endpoint) == (4500, IPv4Network("10.99.0.0/28"), "203.0.113.10")
    assert cfg.allowed_ips == ("0.0.0.0/0", "::/0")
    assert cfg.bind_address == "127.0.0.1"
    assert cfg.keepalive == 0


def test_addresses_in_peer_order() -> None:
    cfg = dev_cfg(peers=["zed", "anna", "bob"])
    assert cfg.server_address == IPv4Address("10.13.13.1")
    assert [str(cfg.peer_address(p)) for p in ("zed", "anna", "bob")] == [
        "10.13.13.2",
        "10.13.13.3",
        "10.13.13.4",
    ]
    with pytest.raises(KeyError, match="known peers: zed, anna, bob"):
        cfg.peer_address("carol")


def test_disabled_with_settings_needs_no_endpoint() -> None:
    cfg = parse_vpn({"enabled": False, "peers": ["p"]}, MAIL)
    assert cfg.enabled is False
    assert cfg.peers == ("p",)


def test_subnet_capacity_exactly_full_is_accepted() -> None:
    # /29 = 8 addresses: network, server .1, broadcast leave 5 peers.
    assert max_peers(IPv4Network("10.1.1.0/29")) == 5
    cfg = dev_cfg(subnet="10.1.1.0/29", peers=[f"p{i}" for i in range(5)])
    assert str(cfg.peer_address("p4")) == "10.1.1.6"


# --- bad input: every problem named, with its fix ---------------------------------------------------


def test_unknown_key_suggests_the_right_one() -> None:
    msg = one_problem({"enabled": True, "endpoint": "localhost", "peers": ["a"], "alowedIps": ["10.0.0.0/8"]})
    assert msg.startswith("mailstack:vpn.alowedIps: unknown key")
    assert "did you mean 'allowedIps'" in msg


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    msg = one_problem({"frobnicate": 1})
    assert "mailstack:vpn.frobnicate" in msg
    assert "valid keys: enabled, port, subnet, endpoint, peers, allowedIps, bindAddress, keepalive" in msg


def test_subnet_overlapping_mail_network() -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": ["a"], "subnet": "172.28.0.0/16"})
    assert msg.startswith(
        "mailstack:vpn.subnet: 172.28.0.0/16 overlaps the mail network's subnet 172.28.0.0/24"
    )
    assert "such as '10.13.13.0/24'" in msg


def test_overlap_suggestion_avoids_the_mail_network() -> None:
    problems = problems_of(
        {"enabled": True, "endpoint": "h", "peers": ["a"], "subnet": "10.0.0.0/8"},
        IPv4Network("10.13.13.0/24"),
    )
    assert len(problems) == 1
    suggested = re.search(r"such as '([^']+)'", problems[0])
    assert suggested is not None
    assert not IPv4Network(suggested.group(1)).overlaps(IPv4Network("10.13.13.0/24"))


def test_default_subnet_overlapping_mail_network_is_reported() -> None:
    problems = problems_of({"enabled": True, "endpoint": "h", "peers": ["a"]}, IPv4Network("10.13.0.0/16"))
    assert problems[0].startswith("mailstack:vpn.subnet: 10.13.13.0/24 overlaps")


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [
        ("10.13.13.1/24", "has host bits set; use the network address '10.13.13.0/24'"),
        ("10.13.13.0", "has no prefix length"),
        ("banana/24", "is not an IPv4 network"),
        ("fd00::/64", "is not an IPv4 network"),
    ],
)
def test_bad_subnet(subnet: str, expected: str) -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": ["a"], "subnet": subnet})
    assert msg.startswith("mailstack:vpn.subnet:")
    assert expected in msg


def test_more_peers_than_subnet_holds() -> None:
    msg = one_problem(
        {"enabled": True, "endpoint": "h", "subnet": "10.1.1.0/29", "peers": [f"p{i}" for i in range(6)]}
    )
    assert msg.startswith("mailstack:vpn.peers: 6 peers do not fit in mailstack:vpn.subnet 10.1.1.0/29")
    assert "holds 5" in msg
    assert "larger subnet" in msg


@pytest.mark.parametrize("bad", ["1peer", "peer one", "peer.1", "", "x" * 33, "pe@r", 7])
def test_peer_name_not_an_identifier(bad: object) -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": ["ok", bad]})
    assert msg.startswith("mailstack:vpn.peers[1]:")
    assert "is not a simple identifier" in msg
    assert "for example 'peer1'" in msg


def test_longest_allowed_peer_name() -> None:
    assert dev_cfg(peers=["p" + "x" * 31]).peers == ("p" + "x" * 31,)


def test_duplicate_peer_names_including_case() -> None:
    problems = problems_of({"enabled": True, "endpoint": "h", "peers": ["peer1", "peer2", "peer1", "PEER2"]})
    assert problems == [
        "mailstack:vpn.peers[2]: peer name 'peer1' duplicates mailstack:vpn.peers[0] (names are compared "
        "ignoring case); give every peer its own name",
        "mailstack:vpn.peers[3]: peer name 'PEER2' duplicates mailstack:vpn.peers[1] (names are compared "
        "ignoring case); give every peer its own name",
    ]


def test_peers_not_a_list() -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": "peer1"})
    assert msg.startswith("mailstack:vpn.peers: must be a list")


def test_enabled_without_peers() -> None:
    msg = one_problem({"enabled": True, "endpoint": "h"})
    assert msg.startswith("mailstack:vpn.peers: the VPN is enabled but has no peers")


@pytest.mark.parametrize(
    "raw", [{"enabled": True, "peers": ["a"]}, {"enabled": True, "peers": ["a"], "endpoint": None}]
)
def test_enabled_without_endpoint(raw: dict[str, object]) -> None:
    msg = one_problem(raw)
    assert msg.startswith("mailstack:vpn.endpoint: required when the VPN is enabled")
    assert "'localhost'" in msg


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("localhost:51820", "includes a port; give only the host name or address"),
        ("udp://vpn.example.org", "is not a host name or IP address"),
        ("bad host", "is not a host name or IP address"),
        (42, "is not a host name or IP address"),
    ],
)
def test_bad_endpoint(endpoint: object, expected: str) -> None:
    msg = one_problem({"enabled": True, "peers": ["a"], "endpoint": endpoint})
    assert msg.startswith("mailstack:vpn.endpoint:")
    assert expected in msg


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.0.1", "'10.0.0.1' is not a CIDR; write a network with its prefix length"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR"),
        ("lab", "'lab' is not a CIDR"),
        (17, "17 is not a CIDR"),
        ("10.0.0.1/8", "has host bits set; use the network address '10.0.0.0/8'"),
    ],
)
def test_allowed_ips_entry_not_a_cidr(entry: object, expected: str) -> None:
    msg = one_problem(
        {"enabled": True, "endpoint": "h", "peers": ["a"], "allowedIps": ["10.13.13.0/24", entry]}
    )
    assert msg.startswith("mailstack:vpn.allowedIps[1]:")
    assert expected in msg


def test_allowed_ips_empty_or_not_a_list() -> None:
    assert one_problem({"enabled": True, "endpoint": "h", "peers": ["a"], "allowedIps": []}).startswith(
        "mailstack:vpn.allowedIps: is empty"
    )
    assert one_problem(
        {"enabled": True, "endpoint": "h", "peers": ["a"], "allowedIps": "0.0.0.0/0"}
    ).startswith("mailstack:vpn.allowedIps: must be a list")


@pytest.mark.parametrize("port", [0, 65536, -1, "51820", True, 1.5])
def test_port_out_of_range(port: object) -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": ["a"], "port": port})
    assert msg.startswith("mailstack:vpn.port:")
    assert "use a whole number from 1 to 65535" in msg


@pytest.mark.parametrize("bind", ["localhost", "0.0.0.0:51820", "", 0])
def test_bad_bind_address(bind: object) -> None:
    msg = one_problem({"enabled": True, "endpoint": "h", "peers": ["a"], "bindAddress": bind})
    assert msg.startswith("mailstack:vpn.bindAddress:")
    assert "is not an IP address" in msg


def test_bad_keepalive_and_enabled() -> None:
    problems = problems_of({"enabled": "yes", "endpoint": "h", "peers": ["a"], "keepalive": -5})
    assert any(p.startswith("mailstack:vpn.enabled: 'yes' is not a boolean") for p in problems)
    assert any(p.startswith("mailstack:vpn.keepalive: -5 is not a keepalive interval") for p in problems)


def test_not_an_object() -> None:
    assert one_problem(["peer1"]).startswith("mailstack:vpn: must be an object")


def test_all_problems_collected_at_once() -> None:
    problems = problems_of(
        {
            "enabled": True,
            "prot": 1,
            "subnet": "172.28.0.0/23",
            "peers": ["ok", "ok", "9lives"],
            "allowedIps": ["nope"],
            "port": 70000,
            "bindAddress": "everywhere",
        }
    )
    items = [p.split(":", 2)[0] + ":" + p.split(":", 2)[1] for p in problems]
    assert items == [
        "mailstack:vpn.prot",
        "mailstack:vpn.port",
        "mailstack:vpn.subnet",
        "mailstack:vpn.peers[1]",
        "mailstack:vpn.peers[2]",
        "mailstack:vpn.endpoint",
        "mailstack:vpn.allowedIps[0]",
        "mailstack:vpn.bindAddress",
    ]


# --- keys --------------------------------------------------------------------------------------------


def test_private_key_is_clamped_like_wg_genkey() -> None:
    raw = base64.b64decode(private_key_from_seed(b"\xff" * 32))
    assert raw[0] == 0xF8  # low three bits cleared
    assert raw[31] == 0x7F  # top bit cleared, second-highest set
    raw = base64.b64decode(private_key_from_seed(b"\x00" * 32))
    assert raw[0] == 0 and raw[31] == 0x40


def test_private_key_needs_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        private_key_from_seed(b"\x01" * 31)


def test_normalize_private_key() -> None:
    unclamped = base64.b64encode(b"\xff" * 32).decode()
    normalized = normalize_private_key(unclamped)
    assert normalized == private_key_from_seed(b"\xff" * 32)
    assert normalize_private_key(normalized) == normalized  # idempotent
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError) as info:
            normalize_private_key(bad)
        assert bad not in str(info.value)  # the input (possibly a secret) is not echoed


def test_public_key_matches_rfc7748_vector() -> None:
    assert public_key(base64.b64encode(RFC7748_PRIVATE).decode()) == base64.b64encode(RFC7748_PUBLIC).decode()


def test_public_key_is_independent_of_clamping() -> None:
    raw = seed("clamp")
    assert public_key(base64.b64encode(raw).decode()) == public_key(private_key_from_seed(raw))


def test_public_key_agrees_with_cryptography_exchange() -> None:
    a, b = key("a"), key("b")
    priv_a = X25519PrivateKey.from_private_bytes(base64.b64decode(a))
    priv_b = X25519PrivateKey.from_private_bytes(base64.b64decode(b))
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    pub_a = X25519PublicKey.from_public_bytes(base64.b64decode(public_key(a)))
    pub_b = X25519PublicKey.from_public_bytes(base64.b64decode(public_key(b)))
    assert priv_a.exchange(pub_b) == priv_b.exchange(pub_a)


# --- renderers ---------------------------------------------------------------------------------------


def parse_conf(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a wg-quick style config into [(section, {key: value})], ignoring comments."""
    sections: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line, {}))
            continue
        k, v = (part.strip() for part in line.split("=", 1))
        assert k not in sections[-1][1], f"duplicate key {k}"
        sections[-1][1][k] = v
    return sections


def rendered(cfg: VpnConfig) -> tuple[str, dict[str, str], dict[str, str]]:
    server_key = key("server")
    peer_keys = {p: key(p) for p in cfg.peers}
    server = render_server_conf(cfg, server_key, {p: public_key(k) for p, k in peer_keys.items()})
    peers = {p: render_peer_conf(cfg, p, peer_keys[p], public_key(server_key)) for p in cfg.peers}
    return server, peer_keys, peers


def test_server_conf_interface() -> None:
    cfg = dev_cfg(port=4500)
    server, _, _ = rendered(cfg)
    sections = parse_conf(server)
    assert sections[0][0] == "[Interface]"
    iface = sections[0][1]
    assert iface["Address"] == "10.13.13.1/24"
    assert iface["ListenPort"] == "51820"  # container side; the host port 4500 maps to it
    assert iface["PrivateKey"] == key("server")
    assert "iptables -t nat -A POSTROUTING -o eth+ -j MASQUERADE" in iface["PostUp"]
    assert "iptables -A FORWARD -i %i -j ACCEPT" in iface["PostUp"]
    assert "iptables -t nat -D POSTROUTING -o eth+ -j MASQUERADE" in iface["PostDown"]
    assert "iptables -D FORWARD -o %i -j ACCEPT" in iface["PostDown"]


def test_server_conf_peers_use_keys_derived_from_each_peer_private_key() -> None:
    cfg = dev_cfg()
    server, peer_keys, peer_confs = rendered(cfg)
    sections = parse_conf(server)
    peers = [s for name, s in sections if name == "[Peer]"]
    assert len(peers) == 3
    for name, section, expected_ip in zip(
        cfg.peers, peers, ("10.13.13.2", "10.13.13.3", "10.13.13.4"), strict=True
    ):
        # The peer's own config holds its private key; the server must list the matching public key.
        peer_private = parse_conf(peer_confs[name])[0][1]["PrivateKey"]
        assert peer_private == peer_keys[name]
        assert section["PublicKey"] == public_key(peer_private)
        assert section["AllowedIPs"] == f"{expected_ip}/32"
        assert set(section) == {"PublicKey", "AllowedIPs"}
    assert len({s["PublicKey"] for s in peers}) == 3


def test_server_conf_rejects_mismatched_public_keys() -> None:
    cfg = dev_cfg()
    pubs = {p: public_key(key(p)) for p in cfg.peers}
    with pytest.raises(ValueError, match="missing \\['peer3'\\]"):
        render_server_conf(cfg, key("s"), {k: v for k, v in pubs.items() if k != "peer3"})
    with pytest.raises(ValueError, match="unexpected \\['intruder'\\]"):
        render_server_conf(cfg, key("s"), {**pubs, "intruder": public_key(key("x"))})
    with pytest.raises(ValueError, match="32 bytes"):
        render_server_conf(cfg, key("s"), {**pubs, "peer2": "not-a-key"})


def test_peer_conf() -> None:
    cfg = dev_cfg(endpoint="vpn.example.org", port=4500)
    _, peer_keys, peers = rendered(cfg)
    (iface_name, iface), (peer_name, peer) = parse_conf(peers["peer2"])
    assert (iface_name, peer_name) == ("[Interface]", "[Peer]")
    assert iface == {"Address": "10.13.13.3/32", "PrivateKey": peer_keys["peer2"], "DNS": "10.13.13.1"}
    assert peer == {
        "PublicKey": public_key(key("server")),
        "Endpoint": "vpn.example.org:4500",
        "AllowedIPs": "10.13.13.0/24, 172.28.0.0/24",
        "PersistentKeepalive": "25",
    }


def test_peer_conf_keepalive_off_and_ipv6_endpoint() -> None:
    cfg = dev_cfg(endpoint="2001:db8::1", keepalive=0, allowedIps=["0.0.0.0/0"])
    _, _, peers = rendered(cfg)
    peer = parse_conf(peers["peer1"])[1][1]
    assert peer["Endpoint"] == "[2001:db8::1]:51820"
    assert peer["AllowedIPs"] == "0.0.0.0/0"
    assert "PersistentKeepalive" not in peer


def test_peer_conf_normalizes_unclamped_private_key() -> None:
    cfg = dev_cfg()
    raw_b64 = base64.b64encode(b"\xff" * 32).decode()
    conf = render_peer_conf(cfg, "peer1", raw_b64, public_key(key("s")))
    assert parse_conf(conf)[0][1]["PrivateKey"] == private_key_from_seed(b"\xff" * 32)


def test_peer_conf_unknown_peer() -> None:
    with pytest.raises(KeyError, match="unknown VPN peer 'nobody'"):
        render_peer_conf(dev_cfg(), "nobody", key("n"), public_key(key("s")))


def test_renderers_are_deterministic_lf_and_end_with_newline() -> None:
    first = rendered(dev_cfg())
    second = rendered(dev_cfg())
    assert first == second
    server, _, peers = first
    for text in (server, *peers.values()):
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert "\r" not in text


def test_private_keys_appear_only_in_their_own_file() -> None:
    server, peer_keys, peers = rendered(dev_cfg())
    for name, private in peer_keys.items():
        assert private not in server
        assert [p for p, text in peers.items() if private in text] == [name]
    assert all(key("server") not in text for text in peers.values())


# --- container -----------------------------------------------------------------------------------------


def test_container_env_client_mode_without_secrets() -> None:
    env = container_env(dev_cfg())
    assert env == {
        "LOG_CONFS": "false",
        "PGID": "1000",
        "PUID": "1000",
        "TZ": "Etc/UTC",
        "USE_COREDNS": "true",
    }
    assert "PEERS" not in env  # PEERS set would select server mode and regenerate wg0.conf


def test_container_env_refuses_disabled_vpn() -> None:
    with pytest.raises(ValueError, match="disabled"):
        container_env(parse_vpn(None, MAIL))


def test_default_image_is_pinned_to_an_exact_tag() -> None:
    repo, _, tag = DEFAULT_IMAGE.rpartition(":")
    assert repo.endswith("linuxserver/wireguard")
    assert re.fullmatch(r"\d+\.\d+\.\d{8}-r\d+-ls\d+", tag), tag
