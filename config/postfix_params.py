"""Postfix main.cf parameter names of the pinned docker-mailserver image, and who owns which of them.

``mailstack:postfix`` lets the user add main.cf settings. This module answers, without running Postfix:

- is a name a parameter that the Postfix of docker-mailserver 15.1.0 knows (``is_known_parameter``), and
  if not, what did the user probably mean (``unknown_parameter_hint``);
- is it a parameter docker-mailserver sets from its environment (``ENV_CONTROLLED``) or one mailstack
  computes itself (``MANAGED_BY_MAILSTACK``), so a ``mailstack:postfix`` value would fight with it.

The parameter list is ``config/postfix-parameters.txt``, generated from ``postconf -d`` of Debian 12's
Postfix (docker-mailserver 15.1.0 is built on Debian 12 and installs Debian's postfix package); its header
says how. The contract test ``tests/contract/test_postfix_params.py`` checks it against the installed
Postfix.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

PARAMETERS_FILE = Path(__file__).with_name("postfix-parameters.txt")
"""The shipped list of ``postconf -d`` parameter names, one per line, ``#`` comments."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERSION_RE = re.compile(r"#\s*postfix-version:\s*(\d+\.\d+(?:\.\d+)?)\s*")


def _load_parameters(path: Path) -> tuple[str, frozenset[str]]:
    """Read the Postfix version (from its ``# postfix-version:`` header line) and the names in ``path``."""
    version: str | None = None
    names: set[str] = set()
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _VERSION_RE.fullmatch(line)
            if match:
                version = match.group(1)
            continue
        if not _NAME_RE.fullmatch(line):
            raise ValueError(f"{path}:{lineno}: not a Postfix parameter name: {line!r}")
        names.add(line)
    if version is None:
        raise ValueError(f"{path}: missing the '# postfix-version: X.Y.Z' header line")
    if not names:
        raise ValueError(f"{path}: no parameter names")
    return version, frozenset(names)


_LOADED = _load_parameters(PARAMETERS_FILE)

POSTFIX_VERSION: str = _LOADED[0]
"""Postfix version of docker-mailserver 15.1.0 (Debian 12 bookworm's postfix 3.7.11-0+deb12u1)."""

POSTCONF_DEFAULT_PARAMETERS: frozenset[str] = _LOADED[1]
"""The names ``postconf -d`` prints for that Postfix with an empty main.cf and master.cf."""

DMS_DEFINED_PARAMETERS: frozenset[str] = frozenset(
    {
        # Defined in docker-mailserver v15.1.0 target/postfix/main.cf and referenced from
        # smtpd_sender_restrictions (main.cf) and the submission services (master.cf). Extracted as the
        # names assigned in that main.cf that `postconf -d` does not know. The startup scripts define a few
        # more only for features mailstack turns off (dkim_milter, dmarc_milter, rspamd_milter).
        "dms_smtpd_sender_restrictions",
        "mua_sender_restrictions",
    }
)
"""Custom ``$``-parameters that docker-mailserver 15.1.0's own main.cf defines (``target/postfix/main.cf``)."""

KNOWN_PARAMETERS: frozenset[str] = POSTCONF_DEFAULT_PARAMETERS | DMS_DEFINED_PARAMETERS
"""Every parameter name a main.cf of docker-mailserver 15.1.0 may set by that exact name."""

PER_TRANSPORT_PARAMETERS: dict[str, str] = {
    suffix: base
    for suffix, base in {
        # postconf(5) of Postfix 3.7: "transport_<suffix> (default: $<base>)", where transport is the
        # master.cf name of a delivery transport, e.g. relay_destination_concurrency_limit.
        "delivery_slot_cost": "default_delivery_slot_cost",
        "delivery_slot_discount": "default_delivery_slot_discount",
        "delivery_slot_loan": "default_delivery_slot_loan",
        "destination_concurrency_failed_cohort_limit": "default_destination_concurrency_failed_cohort_limit",
        "destination_concurrency_limit": "default_destination_concurrency_limit",
        "destination_concurrency_negative_feedback": "default_destination_concurrency_negative_feedback",
        "destination_concurrency_positive_feedback": "default_destination_concurrency_positive_feedback",
        "destination_rate_delay": "default_destination_rate_delay",
        "destination_recipient_limit": "default_destination_recipient_limit",
        "extra_recipient_limit": "default_extra_recipient_limit",
        "initial_destination_concurrency": "initial_destination_concurrency",
        "minimum_delivery_slots": "default_minimum_delivery_slots",
        "recipient_limit": "default_recipient_limit",
        "recipient_refill_delay": "default_recipient_refill_delay",
        "recipient_refill_limit": "default_recipient_refill_limit",
        "time_limit": "command_time_limit",
        "transport_rate_delay": "default_transport_rate_delay",
    }.items()
    if base in POSTCONF_DEFAULT_PARAMETERS
}
"""Suffix of a per-transport parameter ``<transport>_<suffix>`` -> the global parameter it overrides.

Postfix accepts ``<transport>_<suffix>`` for every delivery transport named in master.cf (the standard
ones such as ``smtp``, ``relay``, ``lmtp`` and custom ones alike); ``postconf -d`` lists them only for the
services of the master.cf it reads, so the shipped list leaves them out and ``is_known_parameter`` accepts
them by shape, when the base parameter (e.g. ``default_destination_concurrency_limit``) exists.
"""

_TLS_LEVEL_HINT = "managed by docker-mailserver's TLS_LEVEL (modern); mailstack has no key for it"
_POSTSCREEN_HINT = "managed by docker-mailserver's POSTSCREEN_ACTION; mailstack has no key for it"

ENV_CONTROLLED: dict[str, str] = {
    # setup.d/postfix.sh `_setup_postfix_early` (docker-mailserver v15.1.0)
    "message_size_limit": "mailstack:messageSizeLimit (POSTFIX_MESSAGE_SIZE_LIMIT)",
    "mailbox_size_limit": "mailstack:mailboxSizeLimit (POSTFIX_MAILBOX_SIZE_LIMIT)",
    "virtual_mailbox_limit": "mailstack:mailboxSizeLimit (POSTFIX_MAILBOX_SIZE_LIMIT)",
    "inet_protocols": "managed by mailstack: always ipv4 (POSTFIX_INET_PROTOCOLS)",
    "myhostname": "the domain's `hostname` key in mailstack:domains (default mail.<domain>)",
    "mydomain": (
        "the domain's `hostname` key in mailstack:domains (docker-mailserver uses the hostname "
        "without its first label)"
    ),
    "virtual_transport": (
        "managed by docker-mailserver: LMTP delivery to its own Dovecot (SMTP_ONLY, POSTFIX_DAGENT); "
        "mailstack has no key for it"
    ),
    "virtual_mailbox_maps": (
        "managed by docker-mailserver from the accounts mailstack generates from the users in "
        "mailstack:domains (ACCOUNT_PROVISIONER=FILE)"
    ),
    # helpers/ssl.sh `_setup_ssl`: SSL_TYPE (certificate files, and plaintext mode when empty)
    "smtpd_tls_security_level": "mailstack:tls (SSL_TYPE)",
    "smtp_tls_security_level": "mailstack:tls (SSL_TYPE)",
    "smtpd_tls_auth_only": "mailstack:tls (SSL_TYPE)",
    "smtpd_tls_chain_files": "mailstack:tls (SSL_TYPE)",
    "smtpd_tls_CAfile": "mailstack:tls (SSL_TYPE)",
    "smtp_tls_CAfile": "mailstack:tls (SSL_TYPE)",
    # helpers/ssl.sh `_apply_tls_level`: TLS_LEVEL, default `modern`, applied on every start
    "smtpd_tls_protocols": _TLS_LEVEL_HINT,
    "smtpd_tls_mandatory_protocols": _TLS_LEVEL_HINT,
    "smtp_tls_protocols": _TLS_LEVEL_HINT,
    "tls_high_cipherlist": _TLS_LEVEL_HINT,
    # setup.d/security/misc.sh `__setup__security__postscreen`
    "postscreen_greet_action": _POSTSCREEN_HINT,
    "postscreen_bare_newline_action": _POSTSCREEN_HINT,
    "postscreen_dnsbl_action": (
        "managed by docker-mailserver's ENABLE_DNSBL and POSTSCREEN_ACTION (DNSBL off in mailstack)"
    ),
    "postscreen_dnsbl_sites": "managed by docker-mailserver's ENABLE_DNSBL (off in mailstack)",
    # setup.d/security/spoofing.sh `_setup_spoof_protection` (SPOOF_PROTECTION=0 rewrites it)
    "mua_sender_restrictions": "managed by docker-mailserver's SPOOF_PROTECTION; mailstack has no key for it",
}
"""Postfix parameters docker-mailserver 15.1.0 sets from its environment on every start of a mailstack
server, mapped to a hint naming the right mailstack key (or saying mailstack has none).

A ``mailstack:postfix`` value for one of these would override (postfix-main.cf is applied last) a
setting that other parts of the image derive from the same variable, e.g. Dovecot's quota limits from
``POSTFIX_MESSAGE_SIZE_LIMIT``. Sources: target/scripts/startup/setup.d/postfix.sh, networking.sh,
security/misc.sh, security/spoofing.sh and target/scripts/helpers/ssl.sh at tag v15.1.0. ``mynetworks``
(networking.sh, PERMIT_DOCKER) is in ``MANAGED_BY_MAILSTACK``. Parameters written only for features
mailstack leaves off are in ``ENV_FEATURE_PARAMETERS``.
"""

ENV_FEATURE_PARAMETERS: dict[str, str] = {
    # helpers/relay.sh: only with DEFAULT_RELAY_HOST / RELAY_HOST / postfix-relaymap.cf /
    # postfix-sasl-password.cf, none of which mailstack sets or generates.
    "relayhost": "docker-mailserver's DEFAULT_RELAY_HOST",
    "sender_dependent_relayhost_maps": "docker-mailserver's RELAY_HOST and postfix-relaymap.cf",
    "smtp_sasl_password_maps": "docker-mailserver's RELAY_USER/RELAY_PASSWORD and postfix-sasl-password.cf",
    "smtp_sasl_auth_enable": "docker-mailserver's RELAY_USER/RELAY_PASSWORD and postfix-sasl-password.cf",
    "smtp_sasl_security_options": (
        "docker-mailserver's RELAY_USER/RELAY_PASSWORD and postfix-sasl-password.cf"
    ),
    "smtp_sender_dependent_authentication": "docker-mailserver's postfix-sasl-password.cf",
    # setup.d/security/spoofing.sh: only with SPOOF_PROTECTION=1
    "smtpd_sender_login_maps": "docker-mailserver's SPOOF_PROTECTION=1",
    # setup.d/postfix.sh `_setup_SRS`: only with ENABLE_SRS=1
    "sender_canonical_maps": "docker-mailserver's ENABLE_SRS",
    "sender_canonical_classes": "docker-mailserver's ENABLE_SRS (SRS_SENDER_CLASSES)",
    "recipient_canonical_maps": "docker-mailserver's ENABLE_SRS",
    "recipient_canonical_classes": "docker-mailserver's ENABLE_SRS",
}
"""Parameters docker-mailserver 15.1.0 writes from its environment only when an optional feature is on
(relay host, spoof protection, SRS) that mailstack leaves off, mapped to the variable that would set them.

In a mailstack deployment docker-mailserver does not touch them, so a ``mailstack:postfix`` value takes
effect as given; this table documents where they would otherwise come from.
"""

MANAGED_BY_MAILSTACK: dict[str, str] = {
    "transport_maps": (
        "mailstack computes it from mailstack:domains (every other domain is routed to its server)"
    ),
    "mynetworks": (
        "mailstack computes it from mailstack:domains (loopback and the peer mail servers only; "
        "PERMIT_DOCKER=none)"
    ),
    "virtual_mailbox_domains": (
        "mailstack computes it from mailstack:domains (docker-mailserver builds it from the generated "
        "accounts and aliases)"
    ),
    "virtual_alias_maps": (
        "mailstack computes it from mailstack:domains (the `aliases` of each domain, via postfix-virtual.cf)"
    ),
    "smtp_helo_name": (
        "mailstack sets it from mailstack:egress.name (the PTR name of the address mail leaves from, which "
        "SPF and forward-confirmed reverse DNS check); set mailstack:egress instead"
    ),
    "smtpd_milters": (
        "docker-mailserver adds Rspamd's milter to it when mailstack:dkim is on; a value here would remove "
        "the DKIM signer"
    ),
}
"""Parameters whose value mailstack derives from its own configuration (routing, peer trust, the mail
domains and aliases), mapped to a hint; a ``mailstack:postfix`` value would break that computation."""

_TRANSPORT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def per_transport_base(name: str) -> str | None:
    """Return the global parameter that ``name`` overrides for one transport, or None.

    ``relay_destination_concurrency_limit`` -> ``default_destination_concurrency_limit``;
    ``mytransport_time_limit`` -> ``command_time_limit``. Only the shape is checked: whether the
    transport exists in master.cf is for Postfix to say (``postconf`` warns about unused parameters).
    """
    # Longest suffix first: mta2_destination_recipient_limit is mta2's destination_recipient_limit.
    for suffix, base in sorted(PER_TRANSPORT_PARAMETERS.items(), key=lambda item: -len(item[0])):
        tail = "_" + suffix
        if name.endswith(tail) and _TRANSPORT_RE.fullmatch(name[: -len(tail)]):
            return base
    return None


def is_known_parameter(name: str) -> bool:
    """Tell whether Postfix 3.7 of docker-mailserver 15.1.0 accepts ``name`` as a main.cf parameter.

    True for the ``postconf -d`` names, docker-mailserver's own ``$``-parameters, and per-transport
    names ``<transport>_<suffix>`` whose base parameter exists (see ``PER_TRANSPORT_PARAMETERS``), e.g.
    ``mta2_destination_concurrency_limit`` for a custom ``mta2`` transport.
    """
    return name in KNOWN_PARAMETERS or per_transport_base(name) is not None


def unknown_parameter_hint(name: str) -> str | None:
    """Return None for a known parameter; otherwise a hint with the closest known names.

    ``unknown_parameter_hint("queue_run_dealy")`` gives ``"did you mean queue_run_delay?"``. For a name
    with nothing close, the hint says which Postfix it is not a parameter of.
    """
    if is_known_parameter(name):
        return None
    matches = difflib.get_close_matches(name, sorted(KNOWN_PARAMETERS), n=3, cutoff=0.75)
    if not matches:
        return (
            f"no Postfix {POSTFIX_VERSION} parameter has a similar name "
            "(`postconf -d` lists them; docker-mailserver 15.1.0 ships this Postfix)"
        )
    if len(matches) == 1:
        return f"did you mean {matches[0]}?"
    return f"did you mean {', '.join(matches[:-1])} or {matches[-1]}?"
