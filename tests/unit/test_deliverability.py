"""DKIM, egress, public addresses, DMARC and TLS-RPT: validation messages, records, zone fragments."""

from __future__ import annotations

import copy

import dns.rdatatype
import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config import dkim as dk
from config import postfix as pf
from config.dns import Record, render_zone, split_txt
from config.errors import ConfigError
from config.model import load_stack
from tests.unit.conftest import DEV_RAW, make_production

PASSWORDS = {"user1@example1.local": "correct horse battery staple"}


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_stack("prod" if raw.get("production") else "dev", raw, PASSWORDS)
    return err.value.problems


def only(raw: dict) -> str:
    found = problems_of(raw)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def prod_raw() -> dict:
    return make_production(copy.deepcopy(DEV_RAW))


def public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


# ----------------------------------------------------------------------------------------- defaults


def test_lab_has_dkim_off_and_no_helo_name(dev_raw):
    cfg = load_stack("dev", dev_raw)
    for d in cfg.domains:
        auth = cfg.deliverability.of(d.domain)
        assert not auth.dkim.enabled
        assert auth.dns.egress is None
        assert "ENABLE_RSPAMD" not in pf.mailserver_env(cfg, d)
        assert "smtp_helo_name" not in pf.render_main_cf(cfg, d)
        assert not any(name.startswith("rspamd/") for name in pf.static_files(cfg, d))


def test_production_signs_with_mail_by_default(prod_raw):
    cfg = load_stack("prod", prod_raw, PASSWORDS)
    d = cfg.domains[0]
    auth = cfg.deliverability.of(d.domain)
    assert auth.dkim == dk.DkimSettings(enabled=True, selectors=("mail",), sign="mail", key_size=2048)
    env = pf.mailserver_env(cfg, d)
    assert env["ENABLE_RSPAMD"] == "1" and env["ENABLE_RSPAMD_REDIS"] == "0"
    assert env["RSPAMD_LEARN"] == "0" and env["RSPAMD_GREYLISTING"] == "0"
    assert env["ENABLE_OPENDKIM"] == "0" and env["ENABLE_AMAVIS"] == "0" and env["ENABLE_POSTGREY"] == "0"
    assert "smtp_helo_name = mail.example1.local" in pf.render_main_cf(cfg, d).splitlines()
    files = pf.static_files(cfg, d)
    conf = files[dk.SIGNING_FILE]
    assert 'selector = "mail";' in conf
    assert f'path = "/tmp/docker-mailserver/{dk.key_file(d.domain, "mail")}";' in conf
    assert "check_pubkey = false;" in conf and "sign_local = false;" in conf
    assert files[dk.CONTROLLER_FILE].endswith('bind_socket = "127.0.0.1:11334";\n')


def test_domain_override_wins_and_dkim_can_be_turned_on_in_the_lab(dev_raw):
    dev_raw["dkim"] = {"enabled": True, "selectors": ["mail"]}
    dev_raw["domains"][1]["dkim"] = {"selectors": ["mail", "mail2026"], "sign": "mail2026"}
    cfg = load_stack("dev", dev_raw)
    assert cfg.deliverability.of("example1.local").dkim.selectors == ("mail",)
    second = cfg.deliverability.of("example2.local").dkim
    assert second.enabled and second.selectors == ("mail", "mail2026") and second.sign == "mail2026"


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("selector", ["Mail", "mail.2026", "-mail", "mail_1", "", "x" * 64])
def test_selector_must_be_a_dns_label(prod_raw, selector):
    prod_raw["domains"][0]["dkim"] = {"selectors": ["mail", selector]}
    msg = only(prod_raw)
    assert msg.startswith("mailstack:domains[0] (example1.local).dkim.selectors[1]: ")
    assert "is not a DNS label" in msg


def test_sign_must_be_a_selector(prod_raw):
    prod_raw["dkim"] = {"selectors": ["mail"], "sign": "mail2026"}
    msg = only(prod_raw)
    assert msg.startswith("mailstack:dkim.sign: sign 'mail2026' is not among the selectors ['mail']")


def test_dkim_cannot_be_off_in_production(prod_raw):
    prod_raw["domains"][1]["dkim"] = {"enabled": False}
    msg = only(prod_raw)
    assert msg.startswith("mailstack:domains[1] (example2.local).dkim.enabled: DKIM cannot be switched off")


@pytest.mark.parametrize(("size", "fix"), [(1024, "too weak"), (2047, "too weak"), (2500, "must be one of")])
def test_key_size(prod_raw, size, fix):
    prod_raw["dkim"] = {"keySize": size}
    msg = only(prod_raw)
    assert msg.startswith("mailstack:dkim.keySize: ") and fix in msg


def test_dmarc_policy(prod_raw):
    prod_raw["dmarc"] = {"policy": "monitor"}
    msg = only(prod_raw)
    assert msg == (
        "mailstack:dmarc.policy: DMARC policy must be one of none, quarantine, reject, got 'monitor'"
    )


@pytest.mark.parametrize("key", ["dmarc", "tlsrpt"])
@pytest.mark.parametrize(
    "uri", ["ftp://example.org/r", "dmarc@example.org", "mailto:no-domain", "mailto:a@b.org;x"]
)
def test_report_address_must_be_mailto_or_https(prod_raw, key, uri):
    prod_raw["domains"][0][key] = {"rua": [uri]}
    msg = only(prod_raw)
    assert msg.startswith(f"mailstack:domains[0] (example1.local).{key}.rua[0]: report address {uri!r}")


def test_production_needs_egress(prod_raw):
    del prod_raw["egress"]
    msg = only(prod_raw)
    assert msg.startswith("mailstack:egress: is required in a production stack")


@pytest.mark.parametrize(
    ("egress", "where", "fix"),
    [
        ({"address": "10.0.0.5", "name": "mail.example1.local"}, "address", "not a public unicast"),
        ({"address": "nope", "name": "mail.example1.local"}, "address", "public IPv4 address"),
        ({"address": "203.0.113.10", "name": "mail"}, "name", "fully qualified"),
    ],
)
def test_egress_is_checked(prod_raw, egress, where, fix):
    prod_raw["egress"] = egress
    msg = only(prod_raw)
    assert msg.startswith(f"mailstack:egress.{where}: ") and fix in msg


def test_lab_egress_may_be_a_private_host_address(dev_raw):
    dev_raw["domains"][1]["egress"] = {"address": "10.0.0.5", "name": "out.example2.local"}
    cfg = load_stack("dev", dev_raw)
    assert cfg.deliverability.of("example2.local").dns.egress.address == "10.0.0.5"
    dev_raw["domains"][1]["egress"]["address"] = "0.0.0.0"
    assert only(dev_raw).startswith("mailstack:domains[1] (example2.local).egress.address: 0.0.0.0 is not")


def test_production_needs_a_public_address(prod_raw):
    del prod_raw["domains"][1]["publicAddress"]
    msg = only(prod_raw)
    assert msg.startswith("mailstack:domains[1] (example2.local).publicAddress: is required")


def test_egress_name_of_another_mail_host_must_share_its_address(prod_raw):
    prod_raw["egress"] = {"address": "203.0.113.99", "name": "mail.example1.local"}
    msg = only(prod_raw)
    assert "egress name mail.example1.local" in msg and "203.0.113.10" in msg


def test_every_bad_input_is_reported_at_once(prod_raw):
    prod_raw["dkim"] = {"selectors": ["Bad"], "keySize": 512}
    prod_raw["dmarc"] = {"policy": "monitor", "rua": ["x"]}
    del prod_raw["egress"]
    assert len(problems_of(prod_raw)) == 5


def test_smtp_helo_name_is_not_a_user_setting(dev_raw):
    dev_raw["postfix"] = {"smtp_helo_name": "mx.example.org"}
    assert "mailstack:egress.name" in only(dev_raw)


def test_per_domain_egress_warns_about_docker_28(prod_raw):
    prod_raw["domains"][1]["egress"] = {"address": "203.0.113.11", "name": "mail.example2.local"}
    cfg = load_stack("prod", prod_raw, PASSWORDS)
    (warning,) = cfg.deliverability.of("example2.local").warnings
    assert warning.startswith("mailstack:domains[1] (example2.local).egress: per-domain egress needs Docker")
    assert cfg.deliverability.helo_name("example2.local") == "mail.example2.local"
    assert cfg.deliverability.helo_name("example1.local") == "mail.example1.local"
    assert cfg.deliverability.of("example1.local").warnings == ()
    assert warning in cfg.warnings  # shown by the program at preview


# ----------------------------------------------------------------------------------------- records


def records_of(raw: dict, selectors: dict[str, dict[str, str]] | None = None) -> dict[str, list[Record]]:
    cfg = load_stack("prod", raw, PASSWORDS)
    hostnames = {d.domain: d.hostname for d in cfg.domains}
    return cfg.deliverability.records(hostnames, selectors or {})


def by_key(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {(r.name, r.type): r for r in records}


def test_split_txt_keeps_every_string_within_255_octets():
    value = "v=DKIM1; k=rsa; p=" + "A" * 600
    parts = split_txt(value)
    assert [len(p) for p in parts] == [255, 255, 108]
    assert "".join(parts) == value


def test_records_of_a_production_domain(prod_raw):
    prod_raw["dmarc"] = {"policy": "quarantine", "rua": ["mailto:dmarc@example2.local"]}
    prod_raw["tlsrpt"] = {"rua": ["https://reports.example2.local/tls"]}
    prod_raw["bindAddress"] = "0.0.0.0"
    value = dk.txt_value(public_pem())
    zones = records_of(prod_raw, {"example1.local": {"mail": value}, "example2.local": {"mail": value}})
    one = by_key(zones["example1.local"])
    assert one[("example1.local", "MX")].value == "10 mail.example1.local."
    assert one[("mail.example1.local", "A")].value == "203.0.113.10"
    assert one[("example1.local", "TXT")].value == ("v=spf1 ip4:203.0.113.10 -all",)
    assert one[("mail.example1.local", "TXT")].value == ("v=spf1 a -all",)
    dkim = one[("mail._domainkey.example1.local", "TXT")].value
    assert "".join(dkim) == value and all(len(s) <= 255 for s in dkim) and len(dkim) == 2
    assert value.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOC")
    assert one[("_dmarc.example1.local", "TXT")].value == (
        "v=DMARC1; p=quarantine; rua=mailto:dmarc@example2.local",
    )
    assert one[("_smtp._tls.example1.local", "TXT")].value == (
        "v=TLSRPTv1; rua=https://reports.example2.local/tls",
    )
    assert one[("_submission._tcp.example1.local", "SRV")].value == "0 1 2587 mail.example1.local."
    assert one[("_imap._tcp.example1.local", "SRV")].value == "0 1 2143 mail.example1.local."
    assert ("_pop3._tcp.example1.local", "SRV") not in one  # not published
    ptr = one[("10.113.0.203.in-addr.arpa", "PTR")]
    assert ptr.value == "mail.example1.local." and "reverse DNS" in ptr.advice
    two = by_key(zones["example2.local"])
    # example1.local's reports go to example2.local, which authorises them
    assert two[("example1.local._report._dmarc.example2.local", "TXT")].value == ("v=DMARC1",)
    assert ("example2.local._report._dmarc.example2.local", "TXT") not in two
    assert two[("example2.local", "TXT")].value == ("v=spf1 ip4:203.0.113.10 -all",)  # the shared egress


def test_no_srv_record_for_ports_on_a_private_address(prod_raw):
    zones = records_of(prod_raw)  # bindAddress 127.0.0.1: nothing is reachable from outside
    assert not [r for recs in zones.values() for r in recs if r.type == "SRV"]


def test_egress_name_outside_the_mail_domains_gets_its_own_zone(prod_raw):
    prod_raw["egress"] = {"address": "198.51.100.7", "name": "out.provider.example.net"}
    zones = records_of(prod_raw)
    own = by_key(zones["out.provider.example.net"])
    assert own[("out.provider.example.net", "A")].value == "198.51.100.7"
    assert own[("out.provider.example.net", "TXT")].value == ("v=spf1 a -all",)
    assert own[("7.100.51.198.in-addr.arpa", "PTR")].value == "out.provider.example.net."


def test_zone_fragment_parses_with_dnspython(prod_raw):
    value = dk.txt_value(public_pem())
    zones = records_of(prod_raw, {"example1.local": {"mail": value, "mail2": value}})
    for zone, records in zones.items():
        text = render_zone(zone, records)
        parsed = dns.zone.from_text(text, origin=zone, relativize=False, check_origin=False)
        published = [r for r in records if not r.advice]
        count = sum(len(rdataset) for _, rdataset in parsed.iterate_rdatasets())
        assert count == len(published)
        for r in published:
            rdataset = parsed.find_rdataset(r.name + ".", dns.rdatatype.from_text(r.type))
            if r.type == "TXT":
                assert any(b"".join(rd.strings).decode() == "".join(r.value) for rd in rdataset)
        assert "; 10.113.0.203.in-addr.arpa. 3600 IN PTR" in text or zone != "example1.local"
