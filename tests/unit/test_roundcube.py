"""Roundcube renderers: environment per TLS mode, connection options, upload limit, PHP escaping."""

from __future__ import annotations

import dataclasses
import re

import pytest

from config import roundcube as rc
from config.model import StackConfig, load_stack

TLS_ON = ("self-signed", "manual", "letsencrypt")


@pytest.fixture
def dev(dev_raw) -> StackConfig:
    dev_raw["domains"][0]["webmail"] = {"port": 8081}
    dev_raw["domains"][1]["webmail"] = {"port": 8082}
    return load_stack("dev", dev_raw)


def with_tls(stack: StackConfig, mode: str) -> StackConfig:
    """The same stack with another TLS mode (certificate paths are not the renderers' business)."""
    return dataclasses.replace(stack, tls=mode)


def php_size_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"([0-9]+)([KM])", text).groups()
    return int(number) * {"K": 1024, "M": 1024 * 1024}[unit]


def test_env_tls_none_uses_plain_alias_and_separate_ports(dev):
    for domain in dev.domains:
        env = rc.webmail_env(dev, domain)
        assert env["ROUNDCUBEMAIL_DEFAULT_HOST"] == domain.server
        assert env["ROUNDCUBEMAIL_SMTP_SERVER"] == domain.server
        assert env["ROUNDCUBEMAIL_DEFAULT_PORT"] == "143"
        assert env["ROUNDCUBEMAIL_SMTP_PORT"] == "587"
        assert env["ROUNDCUBEMAIL_USERNAME_DOMAIN"] == domain.domain
    env1 = rc.webmail_env(dev, dev.domain("example1.local"))
    assert env1["ROUNDCUBEMAIL_DEFAULT_HOST"] == "mta1"
    assert env1["ROUNDCUBEMAIL_DB_TYPE"] == "sqlite"
    assert env1["ROUNDCUBEMAIL_SKIN"] == "elastic"
    assert env1["ROUNDCUBEMAIL_PLUGINS"] == "archive,zipdownload"
    for value in env1.values():
        assert "tls://" not in value


@pytest.mark.parametrize("mode", TLS_ON)
def test_env_with_tls_uses_starttls_to_full_hostname(dev, mode):
    stack = with_tls(dev, mode)
    for domain in stack.domains:
        env = rc.webmail_env(stack, domain)
        assert env["ROUNDCUBEMAIL_DEFAULT_HOST"] == f"tls://mail.{domain.domain}"
        assert env["ROUNDCUBEMAIL_SMTP_SERVER"] == f"tls://mail.{domain.domain}"
        assert env["ROUNDCUBEMAIL_DEFAULT_PORT"] == "143"
        assert env["ROUNDCUBEMAIL_SMTP_PORT"] == "587"


@pytest.mark.parametrize("mode", ("none", *TLS_ON))
def test_hosts_never_carry_a_port(dev, mode):
    stack = with_tls(dev, mode)
    for domain in stack.domains:
        env = rc.webmail_env(stack, domain)
        for key in ("ROUNDCUBEMAIL_DEFAULT_HOST", "ROUNDCUBEMAIL_SMTP_SERVER"):
            assert ":" not in env[key].removeprefix("tls://"), env[key]


@pytest.mark.parametrize("mode", ("none", "self-signed"))
def test_guard_refuses_a_host_with_a_port(dev, mode):
    stack = with_tls(dev, mode)
    bad = dataclasses.replace(stack.domains[0], server="mta1:143", hostname="mail.example1.local:143")
    with pytest.raises(ValueError, match="bare host name"):
        rc.webmail_env(stack, bad)


@pytest.mark.parametrize("mode", ("none", *TLS_ON))
def test_no_des_key_or_secret_in_env(dev, mode):
    stack = with_tls(dev, mode)
    for domain in stack.domains:
        env = rc.webmail_env(stack, domain)
        assert not any("DES" in key or "PASSWORD" in key for key in env)
        assert "des_key" not in str(env).lower()


@pytest.mark.parametrize(
    "limit",
    [10_240_000, 52_428_800, 26_214_400, 1_048_576, 1_000_000, 2_000_000, 100_000_000, 5_000],
)
def test_upload_limit_fits_message_size_limit_after_base64(dev_raw, limit):
    dev_raw["messageSizeLimit"] = limit
    stack = load_stack("dev", dev_raw)
    text = rc.webmail_env(stack, stack.domains[0])["ROUNDCUBEMAIL_UPLOAD_MAX_FILESIZE"]
    upload = php_size_bytes(text)
    # base64 makes an attachment 4/3 larger; the encoded upload must still fit with room for headers
    assert upload * 4 / 3 < limit
    if limit >= 1_048_576 / 0.7:
        assert text.endswith("M")
    # and it is not needlessly small: at least 60 % of the limit once rounding to a unit is allowed for
    unit = 1024 * 1024 if text.endswith("M") else 1024
    assert upload + unit > 0.7 * limit - 1


def test_upload_limit_of_the_default_stack(dev):
    assert dev.message_size_limit == 10_240_000
    assert rc.webmail_env(dev, dev.domains[0])["ROUNDCUBEMAIL_UPLOAD_MAX_FILESIZE"] == "6M"


def test_php_tls_none_has_no_connection_options(dev):
    text = rc.render_config_php(dev, dev.domain("example1.local"))
    assert text.startswith("<?php\n") and text.endswith("\n")
    assert "$config['product_name'] = 'mailstack webmail (example1.local)';" in text
    assert f"$config['max_message_size'] = {dev.message_size_limit};" in text
    assert "conn_options" not in text
    assert "des_key" not in text


def _ssl_block(text: str, setting: str) -> str:
    match = re.search(rf"\$config\['{setting}'\] = \[\n(.*?)\n\];", text, re.S)
    assert match, f"{setting} missing"
    return match.group(1)


def test_php_self_signed_relaxes_verification(dev):
    stack = with_tls(dev, "self-signed")
    text = rc.render_config_php(stack, stack.domain("example2.local"))
    for setting in ("imap_conn_options", "smtp_conn_options"):
        block = _ssl_block(text, setting)
        assert "'verify_peer' => false," in block
        assert "'verify_peer_name' => false," in block
        assert "'allow_self_signed' => true," in block
    assert "mailstack webmail (example2.local)" in text
    assert "des_key" not in text


@pytest.mark.parametrize("mode", ("manual", "letsencrypt"))
def test_php_ca_certificates_keep_verification(dev, mode):
    stack = with_tls(dev, mode)
    text = rc.render_config_php(stack, stack.domain("example1.local"))
    for setting in ("imap_conn_options", "smtp_conn_options"):
        block = _ssl_block(text, setting)
        assert "'verify_peer' => true," in block
        assert "'verify_peer_name' => true," in block
        assert "'peer_name' => 'mail.example1.local'," in block
        assert "false" not in block and "allow_self_signed" not in block
    assert "des_key" not in text


@pytest.mark.parametrize("mode", ("none", *TLS_ON))
def test_php_is_deterministic_and_per_domain(dev, mode):
    stack = with_tls(dev, mode)
    first = [rc.render_config_php(stack, d) for d in stack.domains]
    second = [rc.render_config_php(stack, d) for d in stack.domains]
    assert first == second
    assert first[0] != first[1]


def test_php_string_escapes_quotes_and_backslashes():
    assert rc.php_string("plain") == "'plain'"
    assert rc.php_string("it's") == "'it\\'s'"
    assert rc.php_string("a\\b") == "'a\\\\b'"
    # a trailing backslash must not escape the closing quote
    assert rc.php_string("end\\") == "'end\\\\'"
    assert rc.php_string("\\'") == "'\\\\\\''"
    with pytest.raises(ValueError):
        rc.php_string("nul\x00")


def test_product_name_is_escaped(dev):
    odd = dataclasses.replace(dev.domains[0], domain="o'brien\\.example")
    text = rc.render_config_php(dev, odd)
    assert "$config['product_name'] = 'mailstack webmail (o\\'brien\\\\.example)';" in text


def test_php_size():
    assert rc.php_size(10 * 1024 * 1024) == "10M"
    assert rc.php_size(10 * 1024 * 1024 - 1) == "9M"
    assert rc.php_size(700_000) == "683K"
    assert rc.php_size(10) == "1K"


def test_webmail_url(dev_raw):
    dev_raw["domains"][0]["webmail"] = {"port": 8081}
    dev_raw["domains"][1]["webmail"] = {"port": 8082}
    dev_raw["domains"][1]["bindAddress"] = "0.0.0.0"
    stack = load_stack("dev", dev_raw)
    assert rc.webmail_url(stack.domains[0]) == "http://127.0.0.1:8081/"
    assert rc.webmail_url(stack.domains[1]) == "http://127.0.0.1:8082/"
    dev_raw["domains"][1]["bindAddress"] = "192.0.2.10"
    assert rc.webmail_url(load_stack("dev", dev_raw).domains[1]) == "http://192.0.2.10:8082/"
    with pytest.raises(ValueError):
        rc.webmail_url(dataclasses.replace(stack.domains[0], webmail=None))
