"""tools.dns (make dns) and the report parts of the DNS check and DKIM column, without any server."""

from __future__ import annotations

import json

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import dkim as dk
from config.dns import Record, split_txt
from tools import dns as dns_tool
from tools.mailcheck import dnscheck
from tools.mailcheck.dkimcheck import check_signature, dkim_records
from tools.mailcheck.results import PairResult, Report
from tools.stackoutputs import OutputsError
from tools.verify import render_report

RECORDS = {
    "example.org": [
        {"name": "example.org", "type": "MX", "value": "10 mail.example.org.", "ttl": 3600},
        {
            "name": "mail._domainkey.example.org",
            "type": "TXT",
            "value": ["v=DKIM1; k=rsa; ", "p=AB"],
            "ttl": 3600,
        },
        {
            "name": "10.113.0.203.in-addr.arpa",
            "type": "PTR",
            "value": "mail.example.org.",
            "ttl": 3600,
            "advice": "set it at your provider",
        },
    ]
}


def test_load_records_reads_the_output_and_json_strings():
    zones = dns_tool.load_records({"dns": json.dumps(RECORDS)})
    (_, txt, ptr) = zones["example.org"]
    assert txt.value == ("v=DKIM1; k=rsa; ", "p=AB") and ptr.advice == "set it at your provider"
    assert dkim_records(zones) == {"example.org": {"mail._domainkey.example.org": "v=DKIM1; k=rsa; p=AB"}}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({}, "the stack has no `dns` output"),
        ({"dns": "{nope"}, "not valid JSON"),
        ({"dns": {"example.org": {}}}, "dns.example.org is not a list of records"),
        ({"dns": {"example.org": [{"name": "x"}]}}, "dns.example.org[0] is not a record"),
        (
            {"dns": {"z": [{"name": "x", "type": "TXT", "value": [1], "ttl": 1}]}},
            "dns.z[0].value is not a list",
        ),
    ],
)
def test_load_records_errors_name_the_item(outputs, message):
    with pytest.raises(OutputsError) as err:
        dns_tool.load_records(outputs)
    assert message in str(err.value)


def test_make_dns_cli_exit_codes(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"dns": RECORDS}))
    assert dns_tool.main(["--outputs", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'mail._domainkey.example.org. 3600 IN TXT "v=DKIM1; k=rsa; " "p=AB"' in out
    assert "; 10.113.0.203.in-addr.arpa. 3600 IN PTR mail.example.org." in out  # advice: a comment
    path.write_text("{}")
    assert dns_tool.main(["--outputs", str(path)]) == 2
    assert "no `dns` output" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:5353", ("127.0.0.1", 5353)), ("192.0.2.1", ("192.0.2.1", 53)), ("[::1]:53", ("::1", 53))],
)
def test_parse_nameserver(text, expected):
    assert dnscheck.parse_nameserver(text) == expected


def test_reserved_zones_are_skipped_without_a_lookup():
    class NoResolver:
        def resolve(self, *args, **kwargs):
            raise AssertionError("a reserved zone must not be looked up")

    zones = {"example1.local": [Record("example1.local", "MX", "10 mail.example1.local.")]}
    (result,) = dnscheck.check_zones(zones, NoResolver())  # type: ignore[arg-type]
    assert result.status == "skipped" and result.ok and ".local is a reserved name" in result.detail


def _signed(domain: str = "example.org", selector: bytes = b"mail") -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    message = f"From: a@{domain}\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n".encode()
    signature = dkim.sign(
        message, selector, domain.encode(), pem, include_headers=[b"from", b"to", b"subject"]
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return signature + message, dk.txt_value(public.decode())


def test_check_signature_outcomes():
    signed, record = _signed()
    records = {"mail._domainkey.example.org": record}
    assert check_signature(signed, "example.org", records) == (True, "d=example.org s=mail")
    assert (
        check_signature(signed, "example.net", records)[1]
        == "bad signature: signed by d=example.org, not example.net"
    )
    assert check_signature(signed, "example.org", {})[1] == (
        "bad signature: d=example.org s=mail names a key the stack does not publish"
    )
    ok, why = check_signature(signed.replace(b"body", b"BODY"), "example.org", records)
    assert not ok and "body hash mismatch" in why
    assert check_signature(b"From: a@example.org\r\n\r\nx\r\n", "example.org", records)[1].startswith(
        "unsigned"
    )
    assert "".join(split_txt(record)) == record


def test_report_shows_the_dkim_matrix_and_dns_block_and_fails_on_either():
    pairs = {
        ("a.org", "a.org"): PairResult(
            "a.org", "a.org", ok=True, seconds=0.5, dkim_ok=True, dkim="d=a.org s=mail"
        )
    }
    report = Report(stack="prod", domains=["a.org"], pairs=pairs, dkim_checked=True)
    report.dns_resolver = "127.0.0.1:5353"
    report.dns = [dnscheck.DnsResult("a.org", Record("a.org", "MX", "10 mail.a.org."), "ok")]
    text = render_report(report)
    assert (
        report.passed and "ok d=a.org s=mail" in text and "1/1 DKIM signatures ok, 1/1 DNS records ok" in text
    )
    report.dns.append(
        dnscheck.DnsResult("a.org", Record("a.org", "TXT", ("v=spf1 -all",)), "different", ["v=spf1 ~all"])
    )
    text = render_report(report)
    assert not report.passed and report.exit_code == 1
    assert "    different  TXT   a.org: expected 'v=spf1 -all', found 'v=spf1 ~all'" in text
    report.dns.pop()
    pairs[("a.org", "a.org")].dkim_ok, pairs[("a.org", "a.org")].dkim = False, "unsigned: no signature"
    assert not report.passed and "FAIL: unsigned: no signature" in render_report(report)
