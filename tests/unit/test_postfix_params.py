"""Unit tests of config.postfix_params: known names, typo hints, and who owns which parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import postfix_params as pp


def test_pinned_postfix_is_3_7() -> None:
    # docker-mailserver 15.1.0 is Debian 12 based and installs Debian's postfix 3.7.11.
    assert pp.POSTFIX_VERSION.split(".")[:2] == ["3", "7"]
    assert len(pp.POSTCONF_DEFAULT_PARAMETERS) > 800


@pytest.mark.parametrize(
    "name",
    [
        "queue_run_delay",
        "smtpd_tls_CAfile",
        "lmtp_tls_security_level",
        "default_destination_concurrency_limit",
        "dms_smtpd_sender_restrictions",
        "mua_sender_restrictions",
    ],
)
def test_listed_names_are_known(name: str) -> None:
    assert pp.is_known_parameter(name)
    assert pp.unknown_parameter_hint(name) is None


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("relay_destination_concurrency_limit", "default_destination_concurrency_limit"),
        ("mta2_destination_concurrency_limit", "default_destination_concurrency_limit"),
        ("mta2_destination_recipient_limit", "default_destination_recipient_limit"),
        ("mta2_recipient_limit", "default_recipient_limit"),
        ("smtp-amavis_destination_rate_delay", "default_destination_rate_delay"),
        ("policyd-spf_time_limit", "command_time_limit"),
        ("mta2_initial_destination_concurrency", "initial_destination_concurrency"),
        ("mta2_transport_rate_delay", "default_transport_rate_delay"),
    ],
)
def test_per_transport_names_are_known(name: str, base: str) -> None:
    assert name not in pp.KNOWN_PARAMETERS
    assert pp.per_transport_base(name) == base
    assert pp.is_known_parameter(name)


@pytest.mark.parametrize(
    "name",
    [
        "queue_run_dealy",
        "_destination_concurrency_limit",  # no transport name
        "mta2_destination_concurency_limit",  # misspelt suffix
        "mta2 destination_concurrency_limit",
        "dms_smtpd_sender_restriction",
        "",
    ],
)
def test_unknown_names(name: str) -> None:
    assert not pp.is_known_parameter(name)
    assert pp.per_transport_base(name) is None
    assert pp.unknown_parameter_hint(name)


def test_typo_hint_names_the_right_parameter() -> None:
    assert pp.unknown_parameter_hint("queue_run_dealy") == "did you mean queue_run_delay?"
    assert pp.unknown_parameter_hint("mynetwork") == "did you mean mynetworks?"


def test_hint_lists_several_close_names() -> None:
    hint = pp.unknown_parameter_hint("smtpd_tls_securty_level")
    assert hint is not None
    assert hint.startswith("did you mean smtpd_tls_security_level, ")
    assert hint.endswith("?") and " or " in hint


def test_hint_without_close_name_says_which_postfix() -> None:
    hint = pp.unknown_parameter_hint("xyzzy")
    assert hint is not None
    assert "did you mean" not in hint
    assert pp.POSTFIX_VERSION in hint


def test_message_size_limit_is_env_controlled() -> None:
    assert (
        pp.ENV_CONTROLLED["message_size_limit"] == "mailstack:messageSizeLimit (POSTFIX_MESSAGE_SIZE_LIMIT)"
    )
    assert (
        pp.ENV_CONTROLLED["mailbox_size_limit"] == "mailstack:mailboxSizeLimit (POSTFIX_MAILBOX_SIZE_LIMIT)"
    )
    assert "mailstack:mailboxSizeLimit" in pp.ENV_CONTROLLED["virtual_mailbox_limit"]
    assert "ipv4" in pp.ENV_CONTROLLED["inet_protocols"]
    assert "`hostname`" in pp.ENV_CONTROLLED["myhostname"]
    assert "`hostname`" in pp.ENV_CONTROLLED["mydomain"]
    assert pp.ENV_CONTROLLED["smtpd_tls_security_level"] == "mailstack:tls (SSL_TYPE)"


def test_routing_and_peer_trust_are_managed_by_mailstack() -> None:
    for name in ("transport_maps", "mynetworks"):
        assert pp.MANAGED_BY_MAILSTACK[name].startswith("mailstack computes it from mailstack:domains")
    # Settings a user may tune freely are in neither table.
    for name in ("queue_run_delay", "relayhost", "smtpd_banner"):
        assert name not in pp.ENV_CONTROLLED
        assert name not in pp.MANAGED_BY_MAILSTACK


@pytest.mark.parametrize(
    "table",
    [pp.ENV_CONTROLLED, pp.ENV_FEATURE_PARAMETERS, pp.MANAGED_BY_MAILSTACK],
    ids=["env", "feature", "managed"],
)
def test_owned_parameters_are_real_postfix_parameters(table: dict[str, str]) -> None:
    # A misspelt key would silently never match the user's setting.
    unknown = sorted(name for name in table if name not in pp.KNOWN_PARAMETERS)
    assert not unknown
    assert all(hint.strip() for hint in table.values())


def test_ownership_tables_are_disjoint() -> None:
    env, feature, managed = (
        set(pp.ENV_CONTROLLED),
        set(pp.ENV_FEATURE_PARAMETERS),
        set(pp.MANAGED_BY_MAILSTACK),
    )
    assert not env & feature
    assert not env & managed
    assert not feature & managed


def test_dms_parameters_are_not_postfix_builtins() -> None:
    assert pp.DMS_DEFINED_PARAMETERS == {"dms_smtpd_sender_restrictions", "mua_sender_restrictions"}
    assert not pp.DMS_DEFINED_PARAMETERS & pp.POSTCONF_DEFAULT_PARAMETERS
    assert pp.KNOWN_PARAMETERS == pp.POSTCONF_DEFAULT_PARAMETERS | pp.DMS_DEFINED_PARAMETERS


def test_every_per_transport_base_exists_in_3_7() -> None:
    # postconf(5) of 3.7 documents 17 transport_<suffix> overrides; all their bases exist in 3.7.
    assert len(pp.PER_TRANSPORT_PARAMETERS) == 17
    assert set(pp.PER_TRANSPORT_PARAMETERS.values()) <= pp.POSTCONF_DEFAULT_PARAMETERS


def test_loader_reads_version_and_names(tmp_path: Path) -> None:
    path = tmp_path / "params.txt"
    path.write_text("# header\n# postfix-version: 3.8.6\n\nqueue_run_delay\nsmtpd_tls_CAfile\n")
    assert pp._load_parameters(path) == ("3.8.6", frozenset({"queue_run_delay", "smtpd_tls_CAfile"}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue_run_delay\n", "postfix-version"),
        ("# postfix-version: 3.7.11\n", "no parameter names"),
        ("# postfix-version: 3.7.11\nqueue_run_delay = 300s\n", ":2: not a Postfix parameter name"),
    ],
)
def test_loader_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        pp._load_parameters(path)
