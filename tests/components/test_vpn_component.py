"""WireGuardVpn alone under Pulumi mocks: container settings, secrecy and key consistency."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as psettings

from config import vpn as wg
from tests.components.harness import RecordingMonitor as ProgramMonitor
from tests.components.harness import Registration, Secret, StackMocks, contains_secret, unwrap
from tests.components.harness import mock_bytes as mock_bytes_n

CONTAINER = "docker:index/container:Container"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"


def mock_bytes(name: str) -> bytes:
    """The deterministic stand-in the shared mocks use for RandomBytes (derived from the name)."""
    return mock_bytes_n(name, 32)


class RecordingMonitor(ProgramMonitor):
    """The shared recording monitor, with lookups for a component instantiated alone."""

    @property
    def registrations(self) -> list[Registration]:
        return self.program.resources

    def one(self, typ: str) -> Registration:
        found = [r for r in self.registrations if r.type == typ]
        assert len(found) == 1, f"{typ}: {len(found)} registrations"
        return found[0]


MAIL = IPv4Network("172.28.0.0/24")
DEV = {"enabled": True, "endpoint": "localhost", "peers": ["peer1", "peer2", "peer3"]}


@pytest.fixture
def monitor() -> Iterator[RecordingMonitor]:
    mon = RecordingMonitor(StackMocks())
    pulumi.runtime.set_mocks(StackMocks(), project="mailstack", stack="dev", preview=False, monitor=mon)
    yield mon
    psettings.reset_options()


def build(raw: dict[str, object] | None = None, **overrides: Any) -> Any:
    from components.vpn import WireGuardVpn, WireGuardVpnArgs

    args = WireGuardVpnArgs(
        vpn=wg.parse_vpn(raw or DEV, MAIL),
        stack="dev",
        image=wg.DEFAULT_IMAGE,
        network_name="mailstack-dev-net",
        labels={"mailstack.stack": "dev", "mailstack.role": "vpn"},
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    return WireGuardVpn("vpn", args)


def done(vpn: Any) -> pulumi.Output[Any]:
    """An output that resolves once every child, the container last, has been registered."""
    return pulumi.Output.all(vpn.container_name, vpn.peer_configs, vpn.server_public_key)


def private_key_of(monitor: RecordingMonitor, resource_name: str) -> str:
    """The private key the component derives from a RandomBytes child (the mock's deterministic bytes)."""
    assert any(r.type == RANDOM_BYTES and r.name == resource_name for r in monitor.registrations), (
        resource_name
    )
    return wg.private_key_from_seed(mock_bytes(resource_name))


def wg0_content(monitor: RecordingMonitor) -> Any:
    uploads = monitor.one(CONTAINER).inputs["uploads"]
    assert [unwrap(u)["file"] for u in uploads] == ["/config/wg_confs/wg0.conf"]
    return uploads[0]["content"] if isinstance(uploads[0], dict) else uploads[0].value["content"]


def conf_values(text: str, key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip() for line in text.splitlines() if line.split("=", 1)[0].strip() == key
    ]


@pulumi.runtime.test
def test_children_are_parented_and_named_from_the_component(monitor: RecordingMonitor) -> Any:
    vpn = build()

    def check(_: Any) -> None:
        component = next(r for r in monitor.registrations if r.type == "mailstack:index:WireGuardVpn")
        assert component.name == "vpn"
        children = [r for r in monitor.registrations if r is not component]
        assert sorted((r.type, r.name) for r in children) == sorted(
            [
                (RANDOM_BYTES, "vpn-server-key"),
                (RANDOM_BYTES, "vpn-peer-peer1-key"),
                (RANDOM_BYTES, "vpn-peer-peer2-key"),
                (RANDOM_BYTES, "vpn-peer-peer3-key"),
                ("docker:index/remoteImage:RemoteImage", "vpn-image"),
                (CONTAINER, "vpn-container"),
            ]
        )
        for r in children:
            assert r.parent.endswith("mailstack:index:WireGuardVpn::vpn"), (r.name, r.parent)
        for r in children:
            if r.type == RANDOM_BYTES:
                assert r.inputs["length"] == 32

    return done(vpn).apply(check)


@pulumi.runtime.test
def test_container_settings(monitor: RecordingMonitor) -> Any:
    vpn = build()

    def check(_: Any) -> None:
        c = monitor.one(CONTAINER)
        inputs = unwrap(c.inputs)
        assert inputs["name"] == "mailstack-dev-vpn"
        image = unwrap(monitor.one("docker:index/remoteImage:RemoteImage").inputs)
        assert image["name"] == wg.DEFAULT_IMAGE and image["keepLocally"] is True
        assert inputs["image"] == "sha256:" + hashlib.sha256(wg.DEFAULT_IMAGE.encode()).hexdigest()
        assert inputs["capabilities"] == {"adds": ["NET_ADMIN"]}
        assert inputs["sysctls"]["net.ipv4.conf.all.src_valid_mark"] == "1"
        assert inputs["sysctls"]["net.ipv4.ip_forward"] == "1"
        assert inputs["ports"] == [{"internal": 51820, "external": 51820, "ip": "0.0.0.0", "protocol": "udp"}]
        assert inputs["networksAdvanced"] == [{"name": "mailstack-dev-net", "aliases": ["vpn"]}]
        hc = inputs["healthcheck"]
        assert hc["tests"] == ["CMD", "wg", "show", "wg0"]
        assert {"interval", "timeout", "retries", "startPeriod"} <= set(hc)
        assert hc["retries"] > 0
        assert inputs["restart"] == "unless-stopped"
        assert inputs["stopTimeout"] == 30 and inputs["destroyGraceSeconds"] == 30
        assert c.delete_before_replace is True
        assert {"label": "mailstack.stack", "value": "dev"} in inputs["labels"]
        env = dict(e.split("=", 1) for e in inputs["envs"])
        assert env == wg.container_env(wg.parse_vpn(DEV, MAIL))
        assert "PEERS" not in env  # client mode: the image must not regenerate wg0.conf
        assert env["USE_COREDNS"] == "true" and env["LOG_CONFS"] == "false"

    return done(vpn).apply(check)


@pulumi.runtime.test
def test_port_and_bind_address_follow_config(monitor: RecordingMonitor) -> Any:
    vpn = build({**DEV, "port": 4500, "bindAddress": "127.0.0.1"})

    def check(endpoint: str) -> None:
        inputs = unwrap(monitor.one(CONTAINER).inputs)
        assert inputs["ports"] == [
            {"internal": 51820, "external": 4500, "ip": "127.0.0.1", "protocol": "udp"}
        ]
        assert endpoint == "localhost:4500"

    return pulumi.Output.all(vpn.endpoint, done(vpn)).apply(lambda v: check(v[0]))


@pulumi.runtime.test
def test_no_key_material_outside_secrets(monitor: RecordingMonitor) -> Any:
    vpn = build()

    def check(_: Any) -> None:
        c = monitor.one(CONTAINER)
        privates = [private_key_of(monitor, "vpn-server-key")] + [
            private_key_of(monitor, f"vpn-peer-{p}-key") for p in DEV["peers"]
        ]
        env_text = "\n".join(unwrap(c.inputs)["envs"])
        assert not contains_secret(c.inputs["envs"])
        assert not any(k in env_text for k in privates)
        assert "PrivateKey" not in env_text
        # The only place key material appears in the container's inputs is the secret upload.
        content = wg0_content(monitor)
        assert isinstance(content, Secret), "wg0.conf upload content must be a secret"
        plain_without_uploads = {k: v for k, v in unwrap(c.inputs).items() if k != "uploads"}
        assert not any(k in repr(plain_without_uploads) for k in privates)
        assert unwrap(c.inputs)["uploads"][0]["permissions"] == "0600"

    return done(vpn).apply(check)


@pulumi.runtime.test
def test_wg0_conf_matches_peer_keys(monitor: RecordingMonitor) -> Any:
    vpn = build()

    def check(values: list[Any]) -> None:
        peer_configs, server_pub = values
        server_conf = unwrap(wg0_content(monitor))
        server_private = private_key_of(monitor, "vpn-server-key")
        assert conf_values(server_conf, "PrivateKey") == [server_private]
        assert server_pub == wg.public_key(server_private)
        expected_peer_pubs = []
        for i, peer in enumerate(DEV["peers"]):
            peer_private = private_key_of(monitor, f"vpn-peer-{peer}-key")
            conf = peer_configs[peer]
            # Each peer config holds its own private key, and the server lists the matching public key.
            assert conf_values(conf, "PrivateKey") == [peer_private]
            assert conf_values(conf, "PublicKey") == [server_pub]
            assert conf_values(conf, "Address") == [f"10.13.13.{i + 2}/32"]
            assert conf_values(conf, "Endpoint") == ["localhost:51820"]
            assert conf_values(conf, "AllowedIPs") == ["10.13.13.0/24, 172.28.0.0/24"]
            assert conf_values(conf, "DNS") == ["10.13.13.1"]
            expected_peer_pubs.append(wg.public_key(peer_private))
        assert conf_values(server_conf, "PublicKey") == expected_peer_pubs
        assert conf_values(server_conf, "AllowedIPs") == ["10.13.13.2/32", "10.13.13.3/32", "10.13.13.4/32"]

    return pulumi.Output.all(vpn.peer_configs, vpn.server_public_key, done(vpn)).apply(lambda v: check(v[:2]))


@pulumi.runtime.test
def test_output_secrecy(monitor: RecordingMonitor) -> Any:
    vpn = build()

    async def secrecy() -> tuple[bool, bool, bool, bool]:
        return (
            await vpn.peer_configs.is_secret(),
            await vpn.server_public_key.is_secret(),
            await vpn.peer_public_keys.is_secret(),
            await vpn.endpoint.is_secret(),
        )

    def check(flags: tuple[bool, bool, bool, bool]) -> None:
        assert flags == (True, False, False, False)

    return pulumi.Output.from_input(secrecy()).apply(check)


@pulumi.runtime.test
def test_peer_public_keys_output(monitor: RecordingMonitor) -> Any:
    vpn = build()

    def check(pubs: dict[str, str]) -> None:
        assert pubs == {p: wg.public_key(private_key_of(monitor, f"vpn-peer-{p}-key")) for p in DEV["peers"]}

    return vpn.peer_public_keys.apply(check)


def test_disabled_vpn_is_refused(monitor: RecordingMonitor) -> None:
    from components.vpn import WireGuardVpn, WireGuardVpnArgs

    args = WireGuardVpnArgs(
        vpn=wg.parse_vpn(None, MAIL), stack="dev", image=wg.DEFAULT_IMAGE, network_name="n", labels={}
    )
    with pytest.raises(ValueError, match="enabled mailstack:vpn"):
        WireGuardVpn("vpn", args)


def test_two_runs_register_identical_inputs() -> None:
    """Same config and same key material in state: every input, secret upload included, is byte-identical."""

    def run_once() -> dict[tuple[str, str], Any]:
        mon = RecordingMonitor(StackMocks())
        pulumi.runtime.set_mocks(StackMocks(), project="mailstack", stack="dev", preview=False, monitor=mon)

        @pulumi.runtime.test
        def program() -> Any:
            return done(build())

        try:
            program()
        finally:
            psettings.reset_options()
        return {(r.type, r.name): r.inputs for r in mon.registrations}

    first, second = run_once(), run_once()
    assert (CONTAINER, "vpn-container") in first
    assert first == second
