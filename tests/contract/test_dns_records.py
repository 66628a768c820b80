"""The ``dns`` output against real DNS software: served by dnslib on loopback, parsed by dnspython and checkdmarc.

The production example runs under mocks (one real RSA key per selector); its ``dns`` output is what
``make dns`` prints and what ``make verify`` looks up. A dnslib zone resolver on a free loopback port serves
it: the DNS check passes; with one record changed or removed it fails naming exactly that record. dnspython
parses every zone fragment ``make dns`` prints, and checkdmarc's RFC 9989-aware parsers accept the SPF,
DMARC and TLS-RPT records.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import checkdmarc.dmarc
import checkdmarc.smtp_tls_reporting
import checkdmarc.spf
import dns.rdatatype
import dns.resolver
import dns.zone
import pytest
from dnslib import RCODE, DNSRecord
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

from config.dns import Record, render_zone
from tests.components.conftest import run
from tests.components.harness import dev_config, prod_config, unwrap
from tools import dns as dns_tool
from tools import verify
from tools.mailcheck import dnscheck


def _free_udp_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port for both UDP and TCP")


class _NodataZoneResolver(ZoneResolver):
    """dnslib's zone resolver, answering NODATA (not NXDOMAIN) for a name that has other record types.

    Real servers do that; checkdmarc's SPF ``a`` check asks for AAAA too and treats NXDOMAIN as an error.
    """

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = super().resolve(request, handler)
        if reply.header.rcode == RCODE.NXDOMAIN and any(request.q.qname == name for name, _, _ in self.zone):
            reply.header.rcode = RCODE.NOERROR
        return reply


class ZoneServer:
    """dnslib's DNS server (UDP and TCP) on a free 127.0.0.1 port, serving a zone file's records."""

    def __init__(self, text: str) -> None:
        self.port = _free_udp_tcp_port()
        resolver = _NodataZoneResolver(text)
        self.servers = [
            DNSServer(
                resolver, port=self.port, address="127.0.0.1", tcp=tcp, logger=DNSLogger("-request,-reply")
            )
            for tcp in (False, True)
        ]
        for server in self.servers:
            server.start_thread()

    @property
    def address(self) -> str:
        """``HOST:PORT`` for ``--nameserver``."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop both listeners."""
        for server in self.servers:
            server.stop()
            server.server.server_close()


@pytest.fixture(scope="module")
def outputs() -> dict:
    """The production example's stack outputs (plain values), as `pulumi stack output --json` gives them."""
    return unwrap(run(prod_config(), stack="prod").outputs)


@pytest.fixture
def outputs_file(outputs: dict, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path


def _served(zones: dict[str, list[Record]]) -> str:
    return "\n".join(render_zone(z, recs, include_advice=True) for z, recs in zones.items())


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, list[Record]]], ZoneServer]]:
    started: list[ZoneServer] = []

    def start(zones: dict[str, list[Record]]) -> ZoneServer:
        server = ZoneServer(_served(zones))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _changed(zones: dict[str, list[Record]], name: str, rtype: str, value: object | None) -> dict:
    result = copy.deepcopy(zones)
    for records in result.values():
        for i, r in enumerate(records):
            if (r.name, r.type) == (name, rtype):
                if value is None:
                    del records[i]
                else:
                    records[i] = Record(r.name, r.type, value, r.ttl, r.advice)  # type: ignore[arg-type]
                return result
    raise AssertionError(f"{name} {rtype} is not in the dns output")


def test_published_records_pass_the_dns_check(outputs, outputs_file, serve, capsys) -> None:
    server = serve(dns_tool.load_records(outputs))
    code = verify.main(["--outputs", str(outputs_file), "--only-dns", "--nameserver", server.address])
    out = capsys.readouterr().out
    assert code == 0, out
    records = [r for recs in dns_tool.load_records(outputs).values() for r in recs]
    # 19 mail records, and 4 per domain for the HTTPS edge (_mta-sts TXT; webmail, mta-sts, autoconfig A)
    assert out.count("    ok         ") == len(records) == 19 + 2 * 4
    assert f"Summary: PASS: {len(records)}/{len(records)} DNS records ok" in out
    assert "ok         PTR   10.113.0.203.in-addr.arpa" in out
    assert "ok         TXT   mail._domainkey.example.org" in out
    assert "ok         TXT   _mta-sts.example.org" in out
    assert "ok         A     webmail.example.net" in out


def test_one_changed_record_fails_naming_it(outputs, outputs_file, serve, capsys) -> None:
    zones = _changed(dns_tool.load_records(outputs), "example.net", "TXT", ("v=spf1 ip4:198.51.100.1 -all",))
    server = serve(zones)
    code = verify.main(["--outputs", str(outputs_file), "--only-dns", "--nameserver", server.address])
    out = capsys.readouterr().out
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("    ") and " ok " not in line]
    assert bad == [
        "    different  TXT   example.net: expected 'v=spf1 ip4:203.0.113.10 -all', "
        "found 'v=spf1 ip4:198.51.100.1 -all'"
    ]
    assert "Summary: FAIL: 26/27 DNS records ok" in out


def test_a_stale_mta_sts_id_fails_naming_it(outputs, outputs_file, serve, capsys) -> None:
    zones = _changed(dns_tool.load_records(outputs), "_mta-sts.example.org", "TXT", ("v=STSv1; id=0",))
    server = serve(zones)
    code = verify.main(["--outputs", str(outputs_file), "--only-dns", "--nameserver", server.address])
    out = capsys.readouterr().out
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("    ") and " ok " not in line]
    assert len(bad) == 1 and bad[0].startswith(
        "    different  TXT   _mta-sts.example.org: expected 'v=STSv1; id="
    )


def test_a_missing_dkim_record_and_a_second_spf_record_fail(outputs, serve) -> None:
    zones = dns_tool.load_records(outputs)
    served = _changed(zones, "mail._domainkey.example.org", "TXT", None)
    served["example.net"].append(Record("example.net", "TXT", ("v=spf1 mx -all",)))
    server = serve(served)
    results = dnscheck.check_zones(zones, dnscheck.make_resolver(server.address))
    bad = {(r.record.name, r.record.type): (r.status, r.detail) for r in results if not r.ok and r.record}
    assert bad == {
        ("mail._domainkey.example.org", "TXT"): ("missing", "mail._domainkey.example.org does not exist"),
        ("example.net", "TXT"): ("different", "2 'v=spf1' records: keep only one"),
    }


def test_lab_zones_are_skipped_with_the_reason(tmp_path, capsys) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(unwrap(run(dev_config()).outputs)))
    # No resolver is asked at all: the name server given does not exist.
    code = verify.main(["--outputs", str(path), "--only-dns", "--nameserver", "127.0.0.1:9"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("skipped    .local is a reserved name that public DNS never resolves") == 2


def test_make_dns_prints_zone_fragments_dnspython_parses(outputs, outputs_file, capsys) -> None:
    assert dns_tool.main(["--outputs", str(outputs_file)]) == 0
    text = capsys.readouterr().out
    zones = dns_tool.load_records(outputs)
    fragments = [f for f in text.split("\n\n") if f.strip()]
    assert len(fragments) == len(zones) == 2
    for zone, records in zones.items():
        (fragment,) = [f for f in fragments if f.startswith(f"; mailstack: records for {zone}\n")]
        parsed = dns.zone.from_text(fragment, origin=zone, relativize=False, check_origin=False)
        for r in records:
            if r.advice:
                assert f"; {r.name}. {r.ttl} IN {r.type} {r.value}" in fragment  # a comment, not a record
                continue
            rdataset = parsed.find_rdataset(r.name + ".", dns.rdatatype.from_text(r.type))
            texts = [b"".join(rd.strings).decode() if r.type == "TXT" else rd.to_text() for rd in rdataset]
            expected = "".join(r.value) if isinstance(r.value, tuple) else r.value
            assert expected in texts
    assert dns_tool.main(["--outputs", str(outputs_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == outputs["dns"]


def test_checkdmarc_accepts_the_generated_spf_dmarc_and_tlsrpt(outputs, serve) -> None:
    zones = dns_tool.load_records(outputs)
    server = serve(zones)
    resolver = dnscheck.make_resolver(server.address)
    texts = {
        (r.name, r.value[0].split()[0].split(";")[0]): "".join(r.value)
        for recs in zones.values()
        for r in recs
        if r.type == "TXT"
    }
    for domain in ("example.org", "example.net"):
        spf = checkdmarc.spf.parse_spf_record(texts[(domain, "v=spf1")], domain, resolver=resolver)
        assert spf["parsed"]["all"] == "fail" and spf["warnings"] == []
        assert spf["parsed"]["mechanisms"] == [
            {"action": "pass", "mechanism": "ip4", "value": "203.0.113.10"}
        ]
        dmarc = checkdmarc.dmarc.parse_dmarc_record(
            texts[(f"_dmarc.{domain}", "v=DMARC1")], domain, resolver=resolver
        )
        assert dmarc["tags"]["p"]["value"] == "none"
        assert [
            w for w in dmarc["warnings"] if "p tag value of none" not in w
        ] == []  # nothing removed or stale
        tlsrpt = checkdmarc.smtp_tls_reporting.parse_smtp_tls_reporting_record(
            texts[(f"_smtp._tls.{domain}", "v=TLSRPTv1")]
        )
        assert (
            tlsrpt["tags"]["rua"]["value"] == ["mailto:postmaster@example.org"] and tlsrpt["warnings"] == []
        )
    helo = checkdmarc.spf.parse_spf_record(
        texts[("mail.example.org", "v=spf1")], "mail.example.org", resolver=resolver
    )
    assert helo["warnings"] == [] and helo["dns_lookups"] == 1
    with pytest.raises(checkdmarc.dmarc.DMARCError):
        checkdmarc.dmarc.parse_dmarc_record("v=DMARC1; p=monitor", "example.org", resolver=resolver)
