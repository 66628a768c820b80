"""Validation of the HTTPS edge's configuration: every bad input is a preview error naming its item."""

from __future__ import annotations

import copy

import pytest

from config import postfix, roundcube
from config.errors import ConfigError
from config.model import load_stack
from tests.edge_support import edge_raw, prod_raw


@pytest.fixture(name="lab_raw")
def lab_raw_fixture(dev_raw):
    """The dev lab with its two webmails on 8081 and 8082."""
    raw = copy.deepcopy(dev_raw)
    raw["domains"][0]["webmail"] = {"port": 8081}
    raw["domains"][1]["webmail"] = {"port": 8082}
    return raw


def problems(raw: dict, stack: str = "prod") -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_stack(stack, raw)
    return err.value.problems


def one(raw: dict, start: str) -> str:
    found = [p for p in problems(raw) if p.startswith(start)]
    assert found, f"no problem starting with {start!r}"
    return found[0]


def test_the_production_example_has_an_acme_edge_with_webmail_on_fixed_addresses():
    stack = load_stack("prod", prod_raw())
    edge = stack.edge
    assert stack.tls == "acme" and edge is not None and edge.ca == "acme"
    assert edge.email == "postmaster@example.org"
    assert edge.addresses == ("203.0.113.10", "203.0.113.11")
    assert [e.webmail_host for e in edge.domains] == ["webmail.example.org", "webmail.example.net"]
    fixed = [edge.address, *edge.webmail_addresses.values(), *(d.address for d in stack.domains)]
    assert len(set(fixed)) == len(fixed)
    first, last = stack.network.static_pool()
    assert all(first <= int(a) <= last for a in fixed)  # never in the dynamic range the VPN uses
    assert all(d.webmail is not None and d.webmail.port is None for d in stack.domains)


def test_the_dev_lab_has_no_edge_and_no_dovecot_file(lab_raw):
    stack = load_stack("dev", lab_raw)
    assert stack.edge is None
    assert all("dovecot.cf" not in postfix.static_files(stack, d) for d in stack.domains)
    assert roundcube.webmail_url(stack.domains[0], stack) == "http://127.0.0.1:8081/"


def test_the_edge_reaches_the_mail_servers_and_the_webmail():
    stack = load_stack("prod", prod_raw())
    d = stack.domains[0]
    env = postfix.mailserver_env(stack, d)
    assert env["SSL_TYPE"] == "manual"
    assert env["SSL_CERT_PATH"] == (
        "/etc/mailstack-edge/caddy/certificates/acme-v02.api.letsencrypt.org-directory/"
        "mail.example.org/mail.example.org.crt"
    )
    assert postfix.static_files(stack, d)["dovecot.cf"].endswith(
        f"login_trusted_networks = {stack.edge.webmail_addresses[d.domain]}/32\n"
    )
    php = roundcube.render_config_php(stack, d)
    assert f"$config['proxy_whitelist'] = ['{stack.edge.address}'];" in php
    assert "$config['use_https'] = true;" in php
    assert (
        roundcube.webmail_env(stack, d)["ROUNDCUBEMAIL_PLUGINS"] == "archive,zipdownload,mailstack_client_ip"
    )
    assert roundcube.webmail_url(d, stack) == "https://webmail.example.org/"


def test_lab_edge_keeps_the_plain_http_port_and_does_not_claim_https_only(lab_raw):
    raw = copy.deepcopy(lab_raw)
    raw["edge"] = {"enabled": True, "ca": "internal"}
    stack = load_stack("dev", raw)
    assert stack.edge is not None and stack.edge.addresses == ("127.0.0.1",)
    assert stack.edge.https_port == 8443 and stack.edge.http_port is None
    php = roundcube.render_config_php(stack, stack.domains[0])
    assert "proxy_whitelist" in php and "use_https" not in php
    assert roundcube.webmail_url(stack.domains[0], stack) == "https://webmail.example1.local:8443/"


def test_acme_without_an_email():
    raw = prod_raw()
    del raw["acmeEmail"]
    assert "required with an ACME CA" in one(raw, "mailstack:acmeEmail:")


def test_acme_email_must_be_an_address():
    raw = prod_raw()
    raw["acmeEmail"] = "postmaster"
    assert "is not an e-mail address" in one(raw, "mailstack:acmeEmail:")


@pytest.mark.parametrize("host", ["webmail", "Webmail.example.org", "web mail.example.org", 42])
def test_webmail_host_must_be_an_fqdn(host):
    raw = prod_raw()
    raw["domains"][0]["webmail"] = {"host": host}
    assert "fully qualified" in one(raw, "mailstack:domains[0] (example.org).webmail.host:")


def test_webmail_host_colliding_with_another_domains_mail_hostname():
    raw = prod_raw()
    raw["domains"][0]["webmail"] = {"host": "mail.example.net"}
    message = one(raw, "mailstack:domains[0] (example.org).webmail.host:")
    assert "mail.example.net is already the mail server hostname of domains[1] (example.net)" in message


def test_webmail_host_colliding_with_another_domains_web_name():
    raw = prod_raw()
    raw["domains"][1]["webmail"] = {"host": "webmail.example.org"}
    message = one(raw, "mailstack:domains[1] (example.net).webmail.host:")
    assert "already a web name of domains[0] (example.org)" in message


@pytest.mark.parametrize("tls", ["self-signed", "none"])
def test_enforce_without_a_trusted_certificate_mode(tls):
    raw = edge_raw(tls=tls)
    raw["edge"]["mtaSts"] = {"mode": "enforce"}
    assert f"tls: {tls} is not" in one(raw, "mailstack:edge.mtaSts.mode:")


def test_enforce_with_the_internal_ca_is_refused_per_domain():
    raw = edge_raw(ca="internal")
    raw["domains"][1]["mtaSts"] = {"mode": "enforce"}
    assert "with ca: internal is not" in one(raw, "mailstack:domains[1] (example.net).mtaSts.mode:")


def test_enforce_with_acme_is_accepted():
    raw = prod_raw()
    raw["edge"]["mtaSts"] = {"mode": "enforce", "maxAge": 86400}
    edge = load_stack("prod", raw).edge
    assert {(e.mta_sts.mode, e.mta_sts.max_age) for e in edge.domains} == {("enforce", 86400)}


@pytest.mark.parametrize(("value", "text"), [("strict", "must be one of"), (None, "must be one of")])
def test_mta_sts_mode_values(value, text):
    raw = prod_raw()
    raw["edge"]["mtaSts"] = {"mode": value}
    assert text in one(raw, "mailstack:edge.mtaSts.mode:")


def test_mta_sts_max_age_bounds():
    raw = prod_raw()
    raw["domains"][0]["mtaSts"] = {"maxAge": 31557601}
    assert "between 1 and 31557600" in one(raw, "mailstack:domains[0] (example.org).mtaSts.maxAge:")


def test_ports_80_443_already_taken_by_another_container_of_the_stack(lab_raw):
    raw = copy.deepcopy(lab_raw)
    raw["edge"] = {"enabled": True, "ca": "internal", "httpsPort": 8082}
    message = one(raw, "mailstack:edge.httpsPort:")
    assert (
        "host port 8082/tcp is already used by mailstack:domains[1] (example2.local).webmail.port" in message
    )


def test_acme_needs_ports_80_and_443():
    raw = prod_raw()
    raw["edge"]["httpsPort"] = 8443
    assert "must be 443 with an ACME CA" in one(raw, "mailstack:edge.httpsPort:")


def test_the_wildcard_address_is_refused():
    raw = prod_raw()
    raw["edge"]["addresses"] = ["0.0.0.0"]
    assert "each stack on a host needs its own" in one(raw, "mailstack:edge.addresses:")


def test_every_domains_public_address_must_be_listed():
    raw = prod_raw()
    raw["edge"]["addresses"] = ["203.0.113.10"]
    message = one(raw, "mailstack:edge.addresses:")
    assert "does not list 203.0.113.11, where example.net's ports are published" in message


def test_acme_on_loopback_cannot_be_reached(lab_raw):
    raw = copy.deepcopy(lab_raw)
    raw["tls"], raw["acmeEmail"] = "acme", "postmaster@example1.local"
    assert "cannot be reached by the ACME CA" in one(raw, "mailstack:edge.addresses:")


def test_internal_ca_is_refused_in_production():
    raw = prod_raw()
    raw["edge"]["ca"] = "internal"
    assert "is for the lab" in one(raw, "mailstack:edge.ca:")


def test_tls_acme_cannot_switch_the_edge_off():
    raw = prod_raw()
    raw["edge"]["enabled"] = False
    assert "gets its certificates through the edge" in one(raw, "mailstack:edge.enabled:")


def test_production_webmail_port_on_a_public_address_is_refused():
    raw = prod_raw()
    raw["domains"][0]["webmail"] = {"host": "webmail.example.org", "port": 8080}
    assert "plain HTTP on 203.0.113.10" in one(raw, "mailstack:domains[0] (example.org).webmail.port:")


def test_webmail_without_port_needs_the_edge(lab_raw):
    raw = copy.deepcopy(lab_raw)
    raw["domains"][0]["webmail"] = {}
    assert "let the HTTPS edge serve it" in one(raw, "mailstack:domains[0] (example1.local).webmail.port:")


def test_edge_keys_without_the_edge(lab_raw):
    raw = copy.deepcopy(lab_raw)
    raw["domains"][0]["mtaSts"] = {"mode": "testing"}
    raw["domains"][1]["webmail"]["host"] = "webmail.example2.local"
    raw["acmeEmail"] = "postmaster@example1.local"
    found = problems(raw, "dev")
    assert any(p.startswith("mailstack:domains[0] (example1.local).mtaSts:") for p in found)
    assert any(p.startswith("mailstack:domains[1] (example2.local).webmail.host:") for p in found)
    assert any(p.startswith("mailstack:acmeEmail:") for p in found)


def test_well_known_autoconfig_needs_tls():
    raw = edge_raw(tls="none")
    raw["domains"][0]["autoconfig"] = {"wellKnown": True}
    assert "needs TLS" in one(raw, "mailstack:domains[0] (example.org).autoconfig.wellKnown:")


def test_unknown_edge_keys_are_named():
    raw = prod_raw()
    raw["edge"]["adresses"] = []
    assert "unknown key" in one(raw, "mailstack:edge.adresses:")


def test_certificates_path_is_not_for_acme():
    raw = prod_raw()
    raw["certificatesPath"] = "/etc/letsencrypt"
    assert "only used with tls: manual or letsencrypt" in one(raw, "mailstack:certificatesPath:")


def test_a_domain_bound_to_every_address_needs_the_edge_addresses_listed():
    raw = prod_raw()
    del raw["edge"]["addresses"]
    raw["domains"][0]["bindAddress"] = "0.0.0.0"
    assert "is required when a domain binds 0.0.0.0" in one(raw, "mailstack:edge.addresses:")


def test_the_edge_binds_where_the_domains_ports_are_bound_by_default():
    raw = prod_raw()
    del raw["edge"]["addresses"]
    assert load_stack("prod", raw).edge.addresses == ("203.0.113.10", "203.0.113.11")
