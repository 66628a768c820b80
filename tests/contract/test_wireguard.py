"""Generated WireGuard configs against Debian's wireguard-tools and wireguard-go, in network namespaces.

The kernel here has no WireGuard module, so each device is a ``wireguard-go`` userspace device started
inside a network namespace the test creates (``ip netns add``, unique names, always deleted). Configs go
through ``wg-quick strip`` and ``wg setconf`` exactly as written by config.vpn; the tunnel addresses and
routes are taken from the configs' own ``Address``/``AllowedIPs`` lines. The handshake test joins two
namespaces with a veth pair (TEST-NET-1 addresses, nothing leaves the namespaces) and pings across the
tunnel with ICMP from a raw socket (no ping binary needed). Needs root and /dev/net/tun.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from config.vpn import (
    VpnConfig,
    parse_vpn,
    private_key_from_seed,
    public_key,
    render_peer_conf,
    render_server_conf,
)
from tests.contract.conftest import contract_required, require_tool

MAIL = IPv4Network("172.28.0.0/24")
SERVER_VETH = "192.0.2.1"  # TEST-NET-1, only ever configured inside the test's namespaces
PEER_VETH = "192.0.2.2"
CMD_TIMEOUT = 15
DEVICE_TIMEOUT = 10.0
PING_DEADLINE = 20.0

# ICMP echo from a raw socket, run inside a namespace: exit 0 on the first matching reply before the
# deadline, 1 otherwise. Send errors (no route or no key yet) are retried until the deadline.
PING = r"""
import os, socket, struct, sys, time

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

dst, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
ident, seq, payload = os.getpid() & 0xFFFF, 0, b"mailstack-wireguard-contract"
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(0.3)
while time.monotonic() < deadline:
    seq = (seq + 1) & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
    try:
        sock.sendto(packet, (dst, 0))
    except OSError:
        time.sleep(0.3)
        continue
    wait_until = time.monotonic() + 0.6
    while time.monotonic() < wait_until:
        try:
            data, addr = sock.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
        if kind == 0 and rid == ident and rseq == seq and addr[0] == dst:
            print(f"reply from {dst} icmp_seq={rseq}")
            sys.exit(0)
sys.exit(1)
"""


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs the tests run."""

    ip: str
    wg: str
    wg_quick: str
    wireguard_go: str


@pytest.fixture(scope="module")
def tools() -> Tools:
    """Root, the Debian programs and /dev/net/tun (created with mknod c 10 200 when missing)."""
    found = Tools(
        ip=require_tool("ip", "iproute2"),
        wg=require_tool("wg", "wireguard-tools"),
        wg_quick=require_tool("wg-quick", "wireguard-tools"),
        wireguard_go=require_tool("wireguard-go", "wireguard-go"),
    )
    if os.geteuid() != 0:
        message = "network namespaces and TUN devices need root: run the contract tests as root"
        if contract_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    tun = Path("/dev/net/tun")
    if not tun.exists():
        tun.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(tun, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    assert stat.S_ISCHR(tun.stat().st_mode), "/dev/net/tun exists but is not a character device"
    return found


def run(*cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded timeout; on failure, the assertion shows its stderr."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}"
    return result


@dataclass
class Lab:
    """Namespaces and wireguard-go processes of one test; ``close`` removes everything it made."""

    tools: Tools
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[tuple[subprocess.Popen[bytes], str]] = field(default_factory=list)

    def netns(self, role: str) -> str:
        """Create a namespace with a unique name and loopback up."""
        name = f"mstest-wg-{self.token}-{role}"
        run(self.tools.ip, "netns", "add", name)
        self.namespaces.append(name)
        run(self.tools.ip, "-n", name, "link", "set", "lo", "up")
        return name

    def device(self, ns: str, role: str) -> str:
        """Start a wireguard-go device inside ``ns`` and wait for its control socket."""
        dev = f"wg{self.token}{role[:3]}"[:15]
        log = (self.workdir / f"{dev}.log").open("wb")
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
        proc = subprocess.Popen(
            [self.tools.ip, "netns", "exec", ns, self.tools.wireguard_go, "-f", dev],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.processes.append((proc, dev))
        sock = Path("/var/run/wireguard") / f"{dev}.sock"
        deadline = time.monotonic() + DEVICE_TIMEOUT
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (self.workdir / f"{dev}.log").read_text(errors="replace")
                pytest.fail(f"wireguard-go {dev} did not come up in {ns}: {output}", pytrace=False)
            time.sleep(0.05)
        return dev

    def veth(self, ns_a: str, addr_a: str, ns_b: str, addr_b: str) -> None:
        """Join two namespaces with a veth pair created inside them (/30 addresses); the host sees none."""
        dev_a, dev_b = f"va{self.token}", f"vb{self.token}"
        link_add = f"link add {dev_a} type veth peer name {dev_b} netns {ns_b}".split()
        run(self.tools.ip, "-n", ns_a, *link_add)
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            run(self.tools.ip, "-n", ns, "address", "add", f"{addr}/30", "dev", dev)
            run(self.tools.ip, "-n", ns, "link", "set", dev, "up")

    def ns_run(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside namespace ``ns``."""
        return run(self.tools.ip, "netns", "exec", ns, *cmd, check=check)

    def close(self) -> None:
        """Stop every device process, then delete every namespace (also after a failed test)."""
        for proc, dev in self.processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            with contextlib.suppress(FileNotFoundError):
                (Path("/var/run/wireguard") / f"{dev}.sock").unlink()
        for ns in self.namespaces:
            subprocess.run(
                [self.tools.ip, "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT, check=False
            )


@pytest.fixture
def lab(tools: Tools, tmp_path: Path) -> Iterator[Lab]:
    """A fresh Lab, always cleaned up; afterwards none of its namespaces may remain."""
    the_lab = Lab(tools=tools, workdir=tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.close()
        left = run(tools.ip, "netns", "list").stdout
        assert not any(ns in left for ns in the_lab.namespaces), f"namespaces left behind: {left}"


def key(label: str) -> str:
    return private_key_from_seed(hashlib.sha256(f"contract:{label}".encode()).digest())


@dataclass(frozen=True)
class Rendered:
    """A VPN config with its keys and rendered files."""

    cfg: VpnConfig
    server_private: str
    peer_private: dict[str, str]
    server_conf: str
    peer_confs: dict[str, str]


def render(cfg: VpnConfig, server_key: str | None = None) -> Rendered:
    """Render all files. Peers always get the public key of ``key("server")``; the server itself runs
    with ``server_key`` when given (the negative control gives it a different one)."""
    server_private = server_key or key("server")
    peer_private = {p: key(p) for p in cfg.peers}
    peer_public = {p: public_key(k) for p, k in peer_private.items()}
    server_conf = render_server_conf(cfg, server_private, peer_public)
    peer_confs = {p: render_peer_conf(cfg, p, k, public_key(key("server"))) for p, k in peer_private.items()}
    return Rendered(cfg, server_private, peer_private, server_conf, peer_confs)


def conf_values(text: str, name: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip() for line in text.splitlines() if line.split("=", 1)[0].strip() == name
    ]


def strip(tools: Tools, workdir: Path, dev: str, text: str) -> Path:
    """Write ``text`` as ``<dev>.conf`` (0600), run ``wg-quick strip`` on it, return the stripped file."""
    conf = workdir / f"{dev}.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    result = run(tools.wg_quick, "strip", str(conf))
    assert "warning" not in result.stderr.lower(), result.stderr
    stripped = workdir / f"{dev}.stripped"
    stripped.write_text(result.stdout)
    stripped.chmod(0o600)
    return stripped


def wg_show(lab: Lab, ns: str, dev: str, what: str) -> dict[str, str]:
    """``wg show <dev> <what>`` as {first column: rest} (one line per peer)."""
    out = lab.ns_run(ns, lab.tools.wg, "show", dev, what).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if line.strip())


def bring_up(lab: Lab, ns: str, dev: str, text: str) -> None:
    """What wg-quick up does, minus DNS and PostUp: setconf, Address, link up, a route per AllowedIPs."""
    stripped = strip(lab.tools, lab.workdir, dev, text)
    lab.ns_run(ns, lab.tools.wg, "setconf", dev, str(stripped))
    for address in conf_values(text, "Address"):
        run(lab.tools.ip, "-n", ns, "address", "add", address, "dev", dev)
    run(lab.tools.ip, "-n", ns, "link", "set", dev, "up")
    routes = run(lab.tools.ip, "-n", ns, "route", "show", "dev", dev).stdout
    for allowed in conf_values(text, "AllowedIPs"):
        for cidr in (c.strip() for c in allowed.split(",")):
            if cidr.split("/")[0] not in routes:  # the Address already routes its own subnet
                run(lab.tools.ip, "-n", ns, "route", "add", cidr, "dev", dev)


def ping(lab: Lab, ns: str, address: str, deadline: float) -> subprocess.CompletedProcess[str]:
    """ICMP echo to ``address`` from inside ``ns`` until a reply or ``deadline`` seconds; exit 0 on reply."""
    script = lab.workdir / "icmp_ping.py"
    script.write_text(PING)
    argv = (lab.tools.ip, "netns", "exec", ns, sys.executable, str(script), address, str(deadline))
    return run(*argv, check=False, timeout=deadline + CMD_TIMEOUT)


def test_wg_quick_strip_and_setconf_accept_generated_configs(lab: Lab) -> None:
    cfg = parse_vpn({"enabled": True, "endpoint": "localhost", "peers": ["peer1", "peer2", "peer3"]}, MAIL)
    files = render(cfg)
    ns = lab.netns("load")

    server_dev = lab.device(ns, "srv")
    stripped = strip(lab.tools, lab.workdir, server_dev, files.server_conf).read_text()
    for wg_quick_only in ("Address", "PostUp", "PostDown", "DNS"):
        assert f"{wg_quick_only} =" not in stripped
    lab.ns_run(ns, lab.tools.wg, "setconf", server_dev, str(lab.workdir / f"{server_dev}.stripped"))
    # wg derives the public key from the private key we wrote: it must equal our X25519 derivation.
    assert lab.ns_run(ns, lab.tools.wg, "show", server_dev, "public-key").stdout.strip() == public_key(
        files.server_private
    )
    assert lab.ns_run(ns, lab.tools.wg, "show", server_dev, "listen-port").stdout.strip() == "51820"
    allowed = wg_show(lab, ns, server_dev, "allowed-ips")
    assert allowed == {
        public_key(files.peer_private["peer1"]): "10.13.13.2/32",
        public_key(files.peer_private["peer2"]): "10.13.13.3/32",
        public_key(files.peer_private["peer3"]): "10.13.13.4/32",
    }

    peer_dev = lab.device(ns, "pe2")
    strip(lab.tools, lab.workdir, peer_dev, files.peer_confs["peer2"])
    lab.ns_run(ns, lab.tools.wg, "setconf", peer_dev, str(lab.workdir / f"{peer_dev}.stripped"))
    assert (
        lab.ns_run(ns, lab.tools.wg, "show", peer_dev, "private-key").stdout.strip()
        == files.peer_private["peer2"]
    )
    server_pub = public_key(files.server_private)
    assert wg_show(lab, ns, peer_dev, "endpoints") == {server_pub: "127.0.0.1:51820"}  # localhost resolved
    assert wg_show(lab, ns, peer_dev, "allowed-ips") == {server_pub: "10.13.13.0/24 172.28.0.0/24"}
    assert wg_show(lab, ns, peer_dev, "persistent-keepalive") == {server_pub: "25"}


def test_handshake_and_ping_between_server_and_peer(lab: Lab) -> None:
    cfg = parse_vpn({"enabled": True, "endpoint": SERVER_VETH, "peers": ["peer1", "peer2"]}, MAIL)
    files = render(cfg)
    server_ns, peer_ns = lab.netns("srv"), lab.netns("peer")
    lab.veth(server_ns, SERVER_VETH, peer_ns, PEER_VETH)

    server_dev = lab.device(server_ns, "srv")
    peer_dev = lab.device(peer_ns, "pe1")
    bring_up(lab, server_ns, server_dev, files.server_conf)
    bring_up(lab, peer_ns, peer_dev, files.peer_confs["peer1"])

    forward = ping(lab, peer_ns, str(cfg.server_address), PING_DEADLINE)
    assert forward.returncode == 0, f"no ICMP reply from the server through the tunnel: {forward.stderr}"
    back = ping(lab, server_ns, str(cfg.peer_address("peer1")), PING_DEADLINE)
    assert back.returncode == 0, f"no ICMP reply from peer1 through the tunnel: {back.stderr}"

    server_pub = public_key(files.server_private)
    peer1_pub, peer2_pub = (public_key(files.peer_private[p]) for p in ("peer1", "peer2"))
    assert int(wg_show(lab, peer_ns, peer_dev, "latest-handshakes")[server_pub]) > 0
    server_side = wg_show(lab, server_ns, server_dev, "latest-handshakes")
    assert int(server_side[peer1_pub]) > 0
    assert int(server_side[peer2_pub]) == 0  # peer2 never connected
    received = wg_show(lab, server_ns, server_dev, "transfer")[peer1_pub].split("\t")
    assert int(received[0]) > 0 and int(received[1]) > 0
    # The server learned peer1's endpoint from the handshake over the veth.
    assert wg_show(lab, server_ns, server_dev, "endpoints")[peer1_pub].startswith(f"{PEER_VETH}:")


def test_wrong_server_key_gives_no_handshake(lab: Lab) -> None:
    """Negative control: a server whose private key does not match the peers' configs never answers."""
    cfg = parse_vpn({"enabled": True, "endpoint": SERVER_VETH, "peers": ["peer1"]}, MAIL)
    files = render(cfg, server_key=key("another-server"))
    assert public_key(files.server_private) not in files.peer_confs["peer1"]
    server_ns, peer_ns = lab.netns("srv"), lab.netns("peer")
    lab.veth(server_ns, SERVER_VETH, peer_ns, PEER_VETH)
    server_dev = lab.device(server_ns, "srv")
    peer_dev = lab.device(peer_ns, "pe1")
    bring_up(lab, server_ns, server_dev, files.server_conf)
    bring_up(lab, peer_ns, peer_dev, files.peer_confs["peer1"])

    assert ping(lab, peer_ns, str(cfg.server_address), 3.0).returncode == 1
    assert all(int(v) == 0 for v in wg_show(lab, peer_ns, peer_dev, "latest-handshakes").values())
