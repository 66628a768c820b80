"""The HTTPS edge's pure renderers: Caddyfile, MTA-STS policy, autoconfig XML, certificate paths."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from ipaddress import IPv4Address

import pytest

from config import autoconfig, caddy, dovecot, edge_dns, mtasts
from config.edge import LETSENCRYPT_STAGING_CA, MtaSts
from tests.edge_support import edge_stack

SITE_RE = re.compile(r"^(\S+) \{$", re.MULTILINE)


def sites(text: str) -> list[str]:
    return [s for s in SITE_RE.findall(text) if s != "servers"]


# --- MTA-STS ---------------------------------------------------------------------------------------


def test_policy_lists_exactly_the_mx_host_with_lf_lines():
    text = mtasts.render_policy("mail.example.org", MtaSts())
    assert text == "version: STSv1\nmode: testing\nmx: mail.example.org\nmax_age: 604800\n"


def test_policy_enforce_and_max_age_are_rendered():
    text = mtasts.render_policy("mail.example.org", MtaSts(mode="enforce", max_age=86400))
    assert "mode: enforce\n" in text and "max_age: 86400\n" in text


@pytest.mark.parametrize("settings", [MtaSts(mode="strict"), MtaSts(max_age=0), MtaSts(max_age=31557601)])
def test_policy_refuses_values_rfc8461_does_not_allow(settings):
    with pytest.raises(ValueError):
        mtasts.render_policy("mail.example.org", settings)


def test_policy_id_changes_exactly_when_the_policy_does():
    a = mtasts.render_policy("mail.example.org", MtaSts())
    b = mtasts.render_policy("mail.example.org", MtaSts(mode="enforce"))
    c = mtasts.render_policy("mx.example.org", MtaSts())
    assert mtasts.policy_id(a) == mtasts.policy_id(mtasts.render_policy("mail.example.org", MtaSts()))
    assert len({mtasts.policy_id(a), mtasts.policy_id(b), mtasts.policy_id(c)}) == 3
    assert re.fullmatch(r"v=STSv1; id=[A-Za-z0-9]{1,32}", mtasts.record_value(a))


# --- autoconfig ------------------------------------------------------------------------------------


def _servers(xml: str) -> list[dict[str, str]]:
    root = ET.fromstring(xml)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    found = []
    for el in root.iter():
        if el.tag in ("incomingServer", "outgoingServer"):
            found.append({"type": el.get("type"), **{c.tag: (c.text or "") for c in el}})
    return found


@pytest.mark.parametrize("pop3", [False, True])
def test_autoconfig_names_exactly_the_published_ports_over_starttls(pop3):
    stack, _ = edge_stack(pop3=pop3)
    domain = stack.domains[0]
    servers = _servers(autoconfig.render_autoconfig(stack, domain))
    expected = {("imap", domain.ports["imap"]), ("smtp", domain.ports["submission"])}
    if pop3:
        expected.add(("pop3", 110))
    assert {(s["type"], int(s["port"])) for s in servers} == expected
    assert {s["socketType"] for s in servers} == {"STARTTLS"}
    assert {s["authentication"] for s in servers} == {"password-cleartext"}
    assert {s["hostname"] for s in servers} == {domain.hostname}
    assert {s["username"] for s in servers} == {"%EMAILADDRESS%"}


def test_autoconfig_refuses_a_stack_without_tls():
    stack, _ = edge_stack(tls="none")
    with pytest.raises(ValueError, match="without TLS"):
        autoconfig.render_autoconfig(stack, stack.domains[0])


# --- certificate paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://acme-v02.api.letsencrypt.org/directory", "acme-v02.api.letsencrypt.org-directory"),
        (LETSENCRYPT_STAGING_CA, "acme-staging-v02.api.letsencrypt.org-directory"),
        ("https://acme.zerossl.com/v2/DV90", "acme.zerossl.com-v2-dv90"),
        ("https://localhost:14000/dir", "localhost-14000-dir"),
    ],
)
def test_issuer_directory_follows_certmagic(url, key):
    _, edge = edge_stack()
    assert caddy.issuer_directory(dataclasses.replace(edge, acme_ca=url)) == key


def test_certificate_paths_for_acme_and_the_internal_ca():
    _, edge = edge_stack()
    assert caddy.certificate_files(edge, "mail.example.org") == (
        "caddy/certificates/acme-v02.api.letsencrypt.org-directory/mail.example.org/mail.example.org.crt",
        "caddy/certificates/acme-v02.api.letsencrypt.org-directory/mail.example.org/mail.example.org.key",
    )
    lab = dataclasses.replace(edge, ca="internal")
    env = caddy.mailserver_tls_env(lab, "mail.example.org")
    assert env == {
        "SSL_TYPE": "manual",
        "SSL_CERT_PATH": "/etc/mailstack-edge/caddy/certificates/local/mail.example.org/mail.example.org.crt",
        "SSL_KEY_PATH": "/etc/mailstack-edge/caddy/certificates/local/mail.example.org/mail.example.org.key",
    }


# --- Caddyfile -------------------------------------------------------------------------------------


def test_caddyfile_has_one_site_per_web_name_and_mail_host():
    stack, edge = edge_stack()
    text = caddy.render_caddyfile(stack, edge)
    assert sites(text) == [
        "http://127.0.0.1:2020",
        "webmail.example.org",
        "mta-sts.example.org",
        "autoconfig.example.org",
        "mail.example.org",
        "mta-sts.example.net",
        "autoconfig.example.net",
        "mail.example.net",
    ]
    assert "\tacme_ca https://acme-v02.api.letsencrypt.org/directory\n" in text
    assert "\temail postmaster@example.org\n" in text
    assert "\treverse_proxy webmail-mx1:80\n" in text
    assert "local_certs" not in text


def test_caddyfile_obtains_mail_certificates_only_with_tls_acme():
    stack, edge = edge_stack(tls="manual")
    assert "mail.example.org" not in sites(caddy.render_caddyfile(stack, edge))


def test_caddyfile_serves_no_autoconfig_without_tls():
    stack, edge = edge_stack(tls="none")
    found = sites(caddy.render_caddyfile(stack, edge))
    assert not [s for s in found if s.startswith("autoconfig.")] and "example.org" not in found


def test_caddyfile_bare_domain_site_is_opt_in():
    stack, edge = edge_stack(well_known=True)
    text = caddy.render_caddyfile(stack, edge)
    assert "example.org" in sites(text) and "example.net" in sites(text)
    assert "handle /.well-known/autoconfig/mail/config-v1.1.xml {" in text


def test_caddyfile_lab_mode_uses_the_internal_ca_without_redirects():
    stack, edge = edge_stack()
    text = caddy.render_caddyfile(stack, dataclasses.replace(edge, ca="internal"))
    assert "\tlocal_certs\n" in text and "\tskip_install_trust\n" in text
    assert "\tauto_https disable_redirects\n" in text
    assert "acme_ca" not in text


def test_caddyfile_listen_and_upstream_overrides_for_tests():
    stack, edge = edge_stack()
    text = caddy.render_caddyfile(
        stack,
        edge,
        listen=caddy.Listen(bind="127.0.0.1", http_port=18080, https_port=18443, health_port=18081),
        upstreams={"webmail.example.org": "127.0.0.1:18082"},
    )
    for line in ("default_bind 127.0.0.1", "http_port 18080", "https_port 18443"):
        assert f"\t{line}\n" in text
    assert "http://127.0.0.1:18081 {" in text and "reverse_proxy 127.0.0.1:18082" in text


def test_caddyfile_serves_the_policy_whose_id_it_names():
    stack, edge = edge_stack(mode="enforce")
    text = caddy.render_caddyfile(stack, edge)
    policy = mtasts.render_policy("mail.example.org", MtaSts(mode="enforce"))
    assert f"its TXT id is {mtasts.policy_id(policy)}." in text
    assert "\t\t\tmode: enforce\n" in text


def test_caddyfile_is_deterministic():
    stack, edge = edge_stack(well_known=True)
    assert caddy.render_caddyfile(stack, edge) == caddy.render_caddyfile(*edge_stack(well_known=True))


# --- dovecot.cf and DNS records --------------------------------------------------------------------


def test_dovecot_trusts_exactly_the_webmail_addresses():
    text = dovecot.render_dovecot_cf([IPv4Address("172.30.0.200"), IPv4Address("172.30.0.131")])
    assert text.splitlines()[-1] == "login_trusted_networks = 172.30.0.131/32 172.30.0.200/32"
    with pytest.raises(ValueError):
        dovecot.render_dovecot_cf([])


def test_edge_records_announce_the_served_policy_and_every_web_name():
    _, edge = edge_stack()
    records = edge_dns.edge_records(edge, "example.org")
    policy = mtasts.render_policy("mail.example.org", MtaSts())
    assert records[0] == {
        "name": "_mta-sts.example.org",
        "type": "TXT",
        "value": [f"v=STSv1; id={mtasts.policy_id(policy)}"],
        "ttl": 3600,
    }
    assert [(r["name"], r["value"]) for r in records[1:]] == [
        ("webmail.example.org", "203.0.113.10"),
        ("mta-sts.example.org", "203.0.113.10"),
        ("autoconfig.example.org", "203.0.113.10"),
    ]
    assert [r["name"] for r in edge_dns.edge_records(edge, "example.net")][1:] == [
        "mta-sts.example.net",
        "autoconfig.example.net",
    ]
