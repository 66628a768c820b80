"""Resource policies called directly with ``ResourceValidationArgs``: compliant, each violation, missing, unknown."""

from __future__ import annotations

import pytest
from passlib.hash import md5_crypt, sha256_crypt

from policy.mailstack_policies import credentials, env_secrets, health, images, plaintext, relay, wireguard
from policy.mailstack_policies.resources import REMOTE_IMAGE, VOLUME
from tests.policy.builders import (
    STRONG,
    U_ARR,
    U_OBJ,
    U_STR,
    mail_files,
    mailserver,
    resource_args,
    run,
    sha512,
    vpn,
    webmail,
    writer,
)

# --- images-pinned -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "docker.io/mailserver/docker-mailserver:15.1.0",
        "docker.io/roundcube/roundcubemail:1.6.16-apache",
        "lscr.io/linuxserver/wireguard:1.0.20250521-r1-ls101",
        "registry.example.org:5000/mail/dms:15.1.0",
        "docker.io/mailserver/docker-mailserver@sha256:" + "ab" * 32,
    ],
)
def test_images_pinned_accepts_exact_references(ref: str) -> None:
    assert run(images.validate_images_pinned, resource_args({"name": ref}, REMOTE_IMAGE, "img")) == []
    assert run(images.validate_images_pinned, resource_args({"image": ref, "name": "c"})) == []


def test_images_pinned_accepts_image_ids_on_containers() -> None:
    assert run(images.validate_images_pinned, resource_args(mailserver())) == []


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("docker.io/mailserver/docker-mailserver", "has no tag"),
        ("registry.example.org:5000/mail/dms", "has no tag"),
        ("docker.io/mailserver/docker-mailserver:latest", "moving tag 'latest'"),
        ("docker.io/mailserver/docker-mailserver:edge", "moving tag 'edge'"),
        ("docker.io/roundcube/roundcubemail:latest-apache", "moving tag 'latest-apache'"),
        ("docker.io/roundcube/roundcubemail:1.6.x-apache", "wildcard tag"),
        ("docker.io/mailserver/docker-mailserver:15", "every release of its 15 line"),
        ("docker.io/roundcube/roundcubemail:1.6-apache", "every release of its 1.6 line"),
    ],
)
def test_images_pinned_reports_moving_references(ref: str, why: str) -> None:
    found = run(images.validate_images_pinned, resource_args({"name": ref}, REMOTE_IMAGE, "mailstack-image"))
    assert len(found) == 1
    message, urn = found[0]
    assert "Image 'mailstack-image'" in message and ref in message and why in message
    assert "Pin an exact version tag" in message and urn is None
    on_container = run(
        images.validate_images_pinned, resource_args({"image": ref, "name": "mailstack-dev-mta1"})
    )
    assert len(on_container) == 1 and "Container 'mailstack-dev-mta1'" in on_container[0][0]


def test_images_pinned_missing_and_unknown_and_other_types() -> None:
    assert run(images.validate_images_pinned, resource_args({}, REMOTE_IMAGE)) == []
    assert run(images.validate_images_pinned, resource_args({"name": "c"})) == []
    assert run(images.validate_images_pinned, resource_args({"image": U_STR})) == []
    assert run(images.validate_images_pinned, resource_args({"name": U_STR}, REMOTE_IMAGE)) == []
    assert run(images.validate_images_pinned, resource_args({"name": "x:latest"}, VOLUME)) == []


# --- no-open-relay -----------------------------------------------------------------------------


def _writer_with(**changes: str) -> dict:
    files = mail_files("example1.local", "mta1", {"example2.local": ("mta2", "172.28.8.157")})
    files.update(changes)
    return writer("example1.local", "mta1", files)


def test_open_relay_accepts_the_generated_configuration() -> None:
    assert run(relay.validate_no_open_relay, resource_args(mailserver())) == []
    assert run(relay.validate_no_open_relay, resource_args(_writer_with())) == []


@pytest.mark.parametrize("value", ["none", "", "NONE"])
def test_open_relay_accepts_permit_docker_none(value: str) -> None:
    props = mailserver(env_values={"PERMIT_DOCKER": value})
    assert run(relay.validate_no_open_relay, resource_args(props)) == []


@pytest.mark.parametrize("value", ["network", "connected-networks", "host", "container"])
def test_open_relay_reports_permit_docker(value: str) -> None:
    found = run(relay.validate_no_open_relay, resource_args(mailserver(env_values={"PERMIT_DOCKER": value})))
    assert len(found) == 1
    assert f"PERMIT_DOCKER={value}" in found[0][0] and "'mailstack-dev-mta1' (example1.local)" in found[0][0]
    assert "set PERMIT_DOCKER=none" in found[0][0]


def test_open_relay_reports_wide_cidr_entries_but_not_loopback() -> None:
    cidr = "127.0.0.0/8 loopback\n172.28.8.157/32 mta2\n172.28.0.0/16 everybody\n10.13.13.0/24 vpn\n"
    found = run(
        relay.validate_no_open_relay, resource_args(_writer_with(**{"postfix-mynetworks.cidr": cidr}))
    )
    assert len(found) == 1
    assert "172.28.0.0/16, 10.13.13.0/24" in found[0][0] and "127.0.0.0/8" not in found[0][0]
    assert "single hosts only (/32)" in found[0][0]


def test_open_relay_reports_wide_mynetworks_in_main_cf() -> None:
    main = "mynetworks = 127.0.0.0/8, [::1]/128 172.16.0.0/12\n"
    found = run(relay.validate_no_open_relay, resource_args(_writer_with(**{"postfix-main.cf": main})))
    assert len(found) == 1 and "trusts the networks 172.16.0.0/12:" in found[0][0]


def test_open_relay_reports_restriction_overrides_that_permit_everybody() -> None:
    main = (
        "transport_maps = texthash:/tmp/docker-mailserver/postfix-transport.cf\n"
        "smtpd_relay_restrictions = permit_mynetworks permit\n"
        "smtpd_recipient_restrictions = permit_sasl_authenticated,\n"
        "    permit_mynetworks\n"
        "smtpd_client_restrictions =\n"
    )
    found = run(relay.validate_no_open_relay, resource_args(_writer_with(**{"postfix-main.cf": main})))
    assert len(found) == 1
    message = found[0][0]
    assert "open relay" in message
    assert "smtpd_client_restrictions, smtpd_recipient_restrictions, smtpd_relay_restrictions" in message


def test_open_relay_accepts_an_override_another_list_still_guards() -> None:
    # docker-mailserver's recipient and client restrictions still say reject_unauth_destination.
    main = "smtpd_relay_restrictions = permit\n"
    assert run(relay.validate_no_open_relay, resource_args(_writer_with(**{"postfix-main.cf": main}))) == []
    ended = (
        "smtpd_relay_restrictions = permit_sasl_authenticated reject_unauth_destination permit\n"
        "smtpd_recipient_restrictions = permit\nsmtpd_client_restrictions = permit\n"
    )
    assert run(relay.validate_no_open_relay, resource_args(_writer_with(**{"postfix-main.cf": ended}))) == []


def test_open_relay_missing_and_unknown() -> None:
    assert run(relay.validate_no_open_relay, resource_args({"name": "bare"})) == []
    unknown_env = {**mailserver(), "envs": U_ARR}
    assert run(relay.validate_no_open_relay, resource_args(unknown_env)) == []
    props = _writer_with()
    for upload in props["uploads"]:
        upload["content"] = U_STR
    assert run(relay.validate_no_open_relay, resource_args(props)) == []
    assert run(relay.validate_no_open_relay, resource_args({**props, "uploads": U_ARR})) == []


# --- no-plaintext-exposure ------------------------------------------------------------------------

PROD = {"production": True}
PUBLIC = "203.0.113.10"


def test_plaintext_accepts_loopback_and_tls() -> None:
    assert run(plaintext.validate_plaintext, resource_args(mailserver(ip="127.0.0.1"), config=PROD)) == []
    tls = mailserver(ip=PUBLIC, env_values={"SSL_TYPE": "letsencrypt"})
    assert run(plaintext.validate_plaintext, resource_args(tls, config=PROD)) == []
    assert run(plaintext.validate_plaintext, resource_args(webmail(ip="127.0.0.1"), config=PROD)) == []
    smtp_only = mailserver(ip=PUBLIC, ports={25: 25})
    assert run(plaintext.validate_plaintext, resource_args(smtp_only, config=PROD)) == []


def test_plaintext_reports_public_login_ports_without_tls() -> None:
    found = run(plaintext.validate_plaintext, resource_args(mailserver(ip=PUBLIC), config=PROD))
    assert len(found) == 1
    message = found[0][0]
    assert f"submission on {PUBLIC}:2587" in message and f"IMAP on {PUBLIC}:2143" in message
    assert ":2525" not in message, "port 25 takes no logins and stays public"
    assert "Set mailstack:tls to letsencrypt or manual" in message


def test_plaintext_treats_a_missing_ip_as_all_addresses() -> None:
    props = mailserver()
    props["ports"] = [{"internal": 143.0, "external": 143.0}]
    found = run(plaintext.validate_plaintext, resource_args(props, config=PROD))
    assert len(found) == 1 and "0.0.0.0:143" in found[0][0]


def test_plaintext_reports_public_webmail() -> None:
    found = run(plaintext.validate_plaintext, resource_args(webmail(ip="0.0.0.0"), config=PROD))
    assert len(found) == 1 and "plain HTTP on 0.0.0.0:8081" in found[0][0]


def test_plaintext_checks_only_production() -> None:
    props = mailserver(ip=PUBLIC)
    assert run(plaintext.validate_plaintext, resource_args(props, config={"production": False})) == []
    # Without configuration the pack assumes production (the safe default).
    assert len(run(plaintext.validate_plaintext, resource_args(props))) == 1


def test_plaintext_missing_and_unknown() -> None:
    assert run(plaintext.validate_plaintext, resource_args({"name": "bare"}, config=PROD)) == []
    assert (
        run(
            plaintext.validate_plaintext, resource_args({**mailserver(ip=PUBLIC), "envs": U_ARR}, config=PROD)
        )
        == []
    )
    partly = mailserver(ip=PUBLIC)
    partly["envs"] = [e if not e.startswith("SSL_TYPE=") else U_STR for e in partly["envs"]]
    assert run(plaintext.validate_plaintext, resource_args(partly, config=PROD)) == []
    unknown_ip = mailserver()
    unknown_ip["ports"] = [{"internal": 143.0, "external": 143.0, "ip": U_STR}]
    assert run(plaintext.validate_plaintext, resource_args(unknown_ip, config=PROD)) == []
    assert (
        run(
            plaintext.validate_plaintext,
            resource_args({**mailserver(ip=PUBLIC), "ports": U_ARR}, config=PROD),
        )
        == []
    )


# --- no-secrets-in-env -------------------------------------------------------------------------------


def test_secrets_accepts_the_components_environments() -> None:
    manual = mailserver(
        env_values={"SSL_TYPE": "manual", "SSL_KEY_PATH": "/etc/mailstack-certs/mail/privkey.pem"}
    )
    for props in (mailserver(), manual, vpn(), webmail()):
        assert run(env_secrets.validate_secrets_in_env, resource_args(props)) == []


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("ROUNDCUBEMAIL_DES_KEY", "0123456789abcdefghijklmn", "a password, key or token"),
        ("RELAY_PASSWORD", "hunter2hunter2", "a password, key or token"),
        ("ROUNDCUBEMAIL_DB_PASSWORD", "s3cret-s3cret", "a password, key or token"),
        ("SERVER_PRIVATE_KEY", "c2VjcmV0", "a password, key or token"),
        ("WG_CONF", "[Interface]\nPrivateKey = abc=\n", "a WireGuard private key"),
        ("TLS_KEY", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "a PEM private key"),
        ("ACCOUNTS", "user1@example1.local|{SHA512-CRYPT}$6$salt$hash", "a password hash"),
    ],
)
def test_secrets_reports_secret_values(name: str, value: str, kind: str) -> None:
    props = mailserver()
    props["envs"] = [*props["envs"], f"{name}={value}"]
    found = run(env_secrets.validate_secrets_in_env, resource_args(props))
    assert len(found) == 1
    message = found[0][0]
    assert f"gets {name} in its plain environment" in message and kind in message
    assert "'mailstack-dev-mta1'" in message and "as a file" in message
    assert value not in message, "a violation message must never print the secret"


@pytest.mark.parametrize(
    "entry",
    [
        "RELAY_PASSWORD=",
        "ROUNDCUBEMAIL_DES_KEY_FILE=/run/secrets/des",
        "RELAY_PASSWORD__FILE=/run/x",
        "SSL_KEY_PATH=/k",
    ],
)
def test_secrets_accepts_empty_values_and_file_references(entry: str) -> None:
    props = mailserver()
    props["envs"] = [*props["envs"], entry]
    assert run(env_secrets.validate_secrets_in_env, resource_args(props)) == []


def test_secrets_missing_and_unknown() -> None:
    assert run(env_secrets.validate_secrets_in_env, resource_args({"name": "bare"})) == []
    assert run(env_secrets.validate_secrets_in_env, resource_args({"envs": U_ARR})) == []
    assert (
        run(env_secrets.validate_secrets_in_env, resource_args({"envs": ["A=1", U_STR, "RELAY_PASSWORD=x1"]}))
        != []
    )
    assert run(env_secrets.validate_secrets_in_env, resource_args({"envs": ["A=1", U_STR]})) == []


# --- no-weak-credentials ---------------------------------------------------------------------------


def _accounts_writer(accounts: dict[str, str]) -> dict:
    return writer("example1.local", "mta1", mail_files("example1.local", "mta1", {}, accounts))


def test_weak_credentials_accepts_strong_passwords() -> None:
    props = _accounts_writer(
        {"user1@example1.local": sha512(STRONG), "user2@example1.local": sha512(STRONG[::-1])}
    )
    assert run(credentials.validate_weak_credentials, resource_args(props)) == []


@pytest.mark.parametrize(
    "password",
    ["password123", "Password123", "changeme", "123456", "user2", "user2123", "user2@example1.local"],
)
def test_weak_credentials_reports_well_known_passwords(password: str) -> None:
    props = _accounts_writer(
        {"user1@example1.local": sha512(STRONG), "user2@example1.local": sha512(password)}
    )
    found = run(credentials.validate_weak_credentials, resource_args(props))
    assert len(found) == 1
    message = found[0][0]
    assert "account user2@example1.local" in message and "user1@" not in message
    assert 'mailstack:passwords["user2@example1.local"]' in message
    assert "'mailstack-dev-mta1-config-0123456789abcdef'" in message
    if password in ("password123", "Password123", "changeme"):
        assert password.lower() not in message.lower(), "the message must not reveal the password"


def test_weak_credentials_checks_other_crypt_schemes_and_plain_storage() -> None:
    weak = {
        "a@example1.local": "{SHA256-CRYPT}" + sha256_crypt.using(rounds=5000).hash("qwerty"),
        "b@example1.local": md5_crypt.hash("letmein"),
        "c@example1.local": "{PLAIN}" + STRONG,
        "d@example1.local": "{SSHA512}unverifiable",
    }
    found = run(credentials.validate_weak_credentials, resource_args(_accounts_writer(weak)))
    assert [m.split("account ")[1].split(":")[0] for m, _ in found] == [
        "a@example1.local",
        "b@example1.local",
        "c@example1.local",
    ]
    assert "stored unhashed" in found[2][0]


def test_weak_credentials_missing_and_unknown() -> None:
    assert run(credentials.validate_weak_credentials, resource_args({"name": "bare"})) == []
    props = _accounts_writer({"user1@example1.local": sha512("password123")})
    for upload in props["uploads"]:
        upload["content"] = U_STR
    assert run(credentials.validate_weak_credentials, resource_args(props)) == []
    assert run(credentials.validate_weak_credentials, resource_args({**props, "uploads": U_ARR})) == []
    broken = _accounts_writer({"user1@example1.local": "{SHA512-CRYPT}$6$garbage"})
    assert run(credentials.validate_weak_credentials, resource_args(broken)) == []


def test_pack_and_config_share_one_rule_set() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from config import model, rules

    assert credentials.WEAK_PASSWORDS is rules.WEAK_PASSWORDS is model.WEAK_PASSWORDS
    assert images.image_problem is rules.image_problem is model.image_problem
    # the pack's own virtualenv has only pulumi-policy and passlib: the shared rules need nothing else
    root = Path(__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r}); import config.rules; "
        "extra = sorted({m.split('.')[0] for m in sys.modules} & {'cryptography', 'passlib', 'pulumi', 'yaml'}); "
        "print(extra)"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- health-and-restart ----------------------------------------------------------------------------


def test_health_accepts_long_running_containers_with_checks() -> None:
    for props in (mailserver(), vpn(), webmail()):
        assert run(health.validate_health_and_restart, resource_args(props)) == []


def test_health_exempts_run_once_containers() -> None:
    assert run(health.validate_health_and_restart, resource_args(_writer_with())) == []
    unlabelled = {"name": "job", "attach": True, "restart": "no"}
    assert run(health.validate_health_and_restart, resource_args(unlabelled)) == []
    assert run(health.validate_health_and_restart, resource_args({"name": "job", "mustRun": False})) == []


@pytest.mark.parametrize("check", [None, {"tests": ["NONE"]}, {"tests": []}, {"interval": "10s"}])
def test_health_reports_a_missing_health_check(check: dict | None) -> None:
    props = mailserver()
    if check is None:
        del props["healthcheck"]
    else:
        props["healthcheck"] = check
    found = run(health.validate_health_and_restart, resource_args(props))
    assert (
        len(found) == 1
        and "'mailstack-dev-mta1' (mailserver)" in found[0][0]
        and "no health check" in found[0][0]
    )


@pytest.mark.parametrize("restart", [None, "no"])
def test_health_reports_a_missing_restart_policy(restart: str | None) -> None:
    props = vpn()
    if restart is None:
        del props["restart"]
    else:
        props["restart"] = restart
    found = run(health.validate_health_and_restart, resource_args(props))
    assert len(found) == 1 and "restart policy 'no'" in found[0][0] and "unless-stopped" in found[0][0]


def test_health_unknown_values() -> None:
    assert (
        run(health.validate_health_and_restart, resource_args({**mailserver(), "healthcheck": U_OBJ})) == []
    )
    assert run(health.validate_health_and_restart, resource_args({**mailserver(), "restart": U_STR})) == []
    props = mailserver()
    props["healthcheck"] = {"tests": U_ARR}
    assert run(health.validate_health_and_restart, resource_args(props)) == []
    props = {**mailserver(), "labels": U_ARR, "attach": U_STR}
    assert run(health.validate_health_and_restart, resource_args(props)) == []


# --- wireguard-hardening ---------------------------------------------------------------------------


def test_wireguard_accepts_the_generated_vpn() -> None:
    assert run(wireguard.validate_wireguard, resource_args(vpn())) == []
    assert run(wireguard.validate_wireguard, resource_args(vpn(role_label=False))) == []
    fail2ban = mailserver(env_values={"ENABLE_FAIL2BAN": "1"})
    fail2ban["capabilities"] = {"adds": ["NET_ADMIN"]}
    assert run(wireguard.validate_wireguard, resource_args(fail2ban)) == []


@pytest.mark.parametrize("value", [None, "true", "TRUE", "yes"])
def test_wireguard_reports_log_confs(value: str | None) -> None:
    props = vpn(env_values={"LOG_CONFS": value}) if value is not None else vpn()
    if value is None:
        props["envs"] = [e for e in props["envs"] if not e.startswith("LOG_CONFS=")]
    found = run(wireguard.validate_wireguard, resource_args(props))
    assert len(found) == 1 and "VPN 'mailstack-dev-vpn' has LOG_CONFS" in found[0][0]
    assert "set LOG_CONFS=false" in found[0][0]


def test_wireguard_reports_a_vpn_without_net_admin() -> None:
    found = run(wireguard.validate_wireguard, resource_args(vpn(adds=[])))
    assert len(found) == 1 and "lacks the NET_ADMIN capability" in found[0][0]


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"capabilities": {"adds": ["NET_ADMIN"]}}, "the capabilities NET_ADMIN"),
        ({"capabilities": {"adds": ["CAP_SYS_ADMIN"]}}, "the capabilities SYS_ADMIN"),
        ({"privileged": True}, "privileged mode"),
    ],
)
def test_wireguard_reports_network_power_elsewhere(extra: dict, what: str) -> None:
    for props, name in ((mailserver(), "'mailstack-dev-mta1' (mailserver)"), (webmail(), "(webmail)")):
        found = run(wireguard.validate_wireguard, resource_args({**props, **extra}))
        assert len(found) == 1 and name in found[0][0] and what in found[0][0] and "remove it" in found[0][0]


def test_wireguard_missing_and_unknown() -> None:
    assert run(wireguard.validate_wireguard, resource_args({"name": "bare"})) == []
    assert run(wireguard.validate_wireguard, resource_args({**vpn(), "capabilities": U_OBJ})) == []
    props = vpn()
    props["capabilities"] = {"adds": U_ARR}
    assert run(wireguard.validate_wireguard, resource_args(props)) == []
    # With the environment unknown the role comes from the label, and LOG_CONFS cannot be judged yet.
    assert run(wireguard.validate_wireguard, resource_args({**vpn(), "envs": U_ARR})) == []
    partly = vpn()
    partly["envs"] = [e if not e.startswith("LOG_CONFS=") else U_STR for e in partly["envs"]]
    assert run(wireguard.validate_wireguard, resource_args(partly)) == []
