"""DKIM signing with Rspamd inside docker-mailserver: settings, validation and the generated files.

``mailstack:dkim`` (stack-wide) and a domain's ``dkim`` (its override) say which keys exist and which one
signs::

    mailstack:dkim: {enabled: true, selectors: [mail], sign: mail, keySize: 2048}

Every listed selector has one RSA key in Pulumi state (``components/dkim.py``) and one TXT record in the
``dns`` output; only ``sign`` is installed on the server. So a rotation is: add a selector, ``pulumi up``,
publish its record, switch ``sign``, ``pulumi up``, and later drop the old selector.

The signer is Rspamd (``ENABLE_RSPAMD=1``): docker-mailserver's change detector watches every file under
``rspamd/`` of the config volume and restarts Rspamd when one changes, so a new key or a new signing
selector applies without replacing the server (docs/upstream.md, "DKIM signing with Rspamd").

Plain Python, no Pulumi import.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization

SELECTOR_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""A selector is one DNS label (lowercase: DNS names compare case-insensitively, file names do not)."""
DEFAULT_SELECTORS = ("mail",)
"""docker-mailserver's default selector (Rspamd's own default is ``dkim``: always set it explicitly)."""
MIN_KEY_SIZE = 2048
"""RFC 8301 section 3.2: signers must use at least 1024 bits and should use 2048; mailstack refuses less."""
KEY_SIZES = (2048, 3072, 4096)
"""Accepted RSA sizes. 4096-bit records are long (three TXT strings) and some DNS hosting UIs cut them."""
DEFAULT_KEY_SIZE = 2048
KEYS = frozenset({"enabled", "selectors", "sign", "keySize"})

RSPAMD_DIR = "rspamd"
"""docker-mailserver's Rspamd directory inside the config volume (``/tmp/docker-mailserver/rspamd``)."""
KEY_DIR = f"{RSPAMD_DIR}/dkim"
SIGNING_FILE = f"{RSPAMD_DIR}/override.d/dkim_signing.conf"
CONTROLLER_FILE = f"{RSPAMD_DIR}/override.d/worker-controller.inc"
CONTROLLER_SOCKET = "127.0.0.1:11334"
"""Rspamd's controller (web UI and ``rspamc``) listens on loopback only, never on the Docker network."""
RSPAMD_OWNER = "_rspamd"
"""Rspamd reads the keys in place as this user (docker-mailserver checks the key file's owner at start)."""
KEY_MODE = "0640"


class Problems(Protocol):
    """Where validation messages go (``config.model._Problems``)."""

    def add(self, where: str, message: str) -> None:
        """Record one problem of the item ``where``."""


@dataclass(frozen=True)
class DkimSettings:
    """DKIM of one domain after merging the stack-wide and the domain's settings."""

    enabled: bool
    selectors: tuple[str, ...] = DEFAULT_SELECTORS
    """Every selector that has a key (and a published record)."""
    sign: str = DEFAULT_SELECTORS[0]
    """The selector the server signs with; one of ``selectors``."""
    key_size: int = DEFAULT_KEY_SIZE
    """RSA size of keys created from now on (an existing selector's key never changes)."""


def parse_dkim(
    stack_raw: Any, domain_raw: Any, where_stack: str, where_domain: str, production: bool, problems: Problems
) -> DkimSettings:
    """Merge ``mailstack:dkim`` with a domain's ``dkim`` override and validate the result.

    On by default when ``production`` is true, off otherwise; a production stack cannot switch it off.
    Each problem names the item it comes from (the domain's override when it set the value).
    """
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw, where in ((stack_raw, where_stack), (domain_raw, where_domain)):
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problems.add(where, "must be an object {enabled, selectors, sign, keySize}")
            continue
        for key in sorted(set(raw) - KEYS):
            problems.add(f"{where}.{key}", f"unknown key; allowed keys are {', '.join(sorted(KEYS))}")
        for key in KEYS & set(raw):
            merged[key], origin[key] = raw[key], f"{where}.{key}"

    def at(key: str) -> str:
        return origin.get(key, f"{where_domain}.{key}")

    enabled = merged.get("enabled", production)
    if not isinstance(enabled, bool):
        problems.add(at("enabled"), f"must be true or false, got {enabled!r}")
        enabled = production
    if production and not enabled:
        problems.add(
            at("enabled"),
            "DKIM cannot be switched off in a production stack: large mailbox providers reject or junk "
            "unsigned mail; remove `enabled: false`",
        )
    selectors_raw = merged.get("selectors", list(DEFAULT_SELECTORS))
    selectors: list[str] = []
    if isinstance(selectors_raw, str):
        selectors_raw = [selectors_raw]
    if not isinstance(selectors_raw, list) or not selectors_raw:
        problems.add(at("selectors"), "must be a non-empty list of selectors, e.g. [mail]")
        selectors_raw = list(DEFAULT_SELECTORS)
    for i, sel in enumerate(selectors_raw):
        if not isinstance(sel, str) or not SELECTOR_RE.match(sel):
            problems.add(
                f"{at('selectors')}[{i}]",
                f"selector {sel!r} is not a DNS label: use 1-63 lowercase letters, digits and inner '-', "
                "e.g. mail or mail2026",
            )
        elif sel in selectors:
            problems.add(f"{at('selectors')}[{i}]", f"selector {sel} is listed twice")
        else:
            selectors.append(sel)
    if not selectors:
        selectors = list(DEFAULT_SELECTORS)
    sign = merged.get("sign", selectors[0])
    if not isinstance(sign, str) or sign not in selectors:
        problems.add(
            at("sign"),
            f"sign {sign!r} is not among the selectors {selectors}: add it to selectors (and publish its "
            "record) before signing with it",
        )
        sign = selectors[0]
    key_size = merged.get("keySize", DEFAULT_KEY_SIZE)
    if isinstance(key_size, bool) or not isinstance(key_size, int):
        problems.add(at("keySize"), f"must be one of {', '.join(map(str, KEY_SIZES))}, got {key_size!r}")
        key_size = DEFAULT_KEY_SIZE
    elif key_size < MIN_KEY_SIZE:
        problems.add(
            at("keySize"),
            f"{key_size}-bit keys are too weak: use at least {MIN_KEY_SIZE} (RFC 8301); receivers ignore or "
            "distrust shorter ones",
        )
        key_size = DEFAULT_KEY_SIZE
    elif key_size not in KEY_SIZES:
        problems.add(at("keySize"), f"must be one of {', '.join(map(str, KEY_SIZES))}, got {key_size}")
        key_size = DEFAULT_KEY_SIZE
    return DkimSettings(enabled=enabled, selectors=tuple(selectors), sign=sign, key_size=key_size)


def key_file(domain: str, selector: str) -> str:
    """Path of a private key inside the config volume, relative to it."""
    return f"{KEY_DIR}/{domain}.{selector}.private.pem"


def render_signing_conf(domain: str, selector: str, config_dir: str) -> str:
    """Rspamd's ``dkim_signing.conf`` override: sign mail from ``domain`` with one key, nothing else.

    * ``sign_authenticated``: mail submitted by logged-in users (587, and the webmail) is signed;
      ``sign_local`` is off, so nothing else is (relayed or inbound mail never);
    * ``use_domain = "header"`` with ``allow_username_mismatch``: the key of the From: domain signs;
    * ``check_pubkey = false``: no DNS lookup of the record before every signature (with it, each message
      waits for that lookup, and with ``allow_pubkey_mismatch = false`` nothing is signed until the record
      is published); mailstack's rotation publishes a record before signing with it, and ``make verify``
      checks the signatures against the key in the stack outputs;
    * ``use_redis = false``: the key is read from the file, no Redis needed.
    """
    path = f"{config_dir}/{key_file(domain, selector)}"
    return (
        "# Generated by mailstack: DKIM signing (Rspamd), reloaded live by docker-mailserver.\n"
        "enabled = true;\n"
        "sign_authenticated = true;\n"
        "sign_local = false;\n"
        "sign_inbound = false;\n"
        "try_fallback = false;\n"
        'use_domain = "header";\n'
        "use_esld = false;\n"
        "allow_username_mismatch = true;\n"
        "use_redis = false;\n"
        "check_pubkey = false;\n"
        "domain {\n"
        f"  {domain} {{\n"
        f'    path = "{path}";\n'
        f'    selector = "{selector}";\n'
        "  }\n"
        "}\n"
    )


def render_controller_override() -> str:
    """Rspamd's controller on loopback only (docker-mailserver binds it to every interface)."""
    return (
        "# Generated by mailstack: Rspamd's controller and web UI stay inside the container.\n"
        f'bind_socket = "{CONTROLLER_SOCKET}";\n'
    )


def rspamd_env(settings: DkimSettings) -> dict[str, str]:
    """docker-mailserver variables for the signer: Rspamd for DKIM signing, without its extras.

    No Redis (signing reads the key file), no learning, no greylisting; OpenDKIM, OpenDMARC,
    policyd-spf, Amavis, SpamAssassin and Postgrey stay off (the lab's environment already sets them).
    Nothing when DKIM is off: docker-mailserver's default (``ENABLE_RSPAMD=0``), so such a server's
    environment stays exactly as before.
    """
    if not settings.enabled:
        return {}
    return {
        "ENABLE_RSPAMD": "1",
        "ENABLE_RSPAMD_REDIS": "0",
        "RSPAMD_LEARN": "0",
        "RSPAMD_GREYLISTING": "0",
        "RSPAMD_NEURAL": "0",
        "RSPAMD_CHECK_AUTHENTICATED": "0",
    }


def public_key_b64(public_key_pem: str) -> str:
    """The ``p=`` value: base64 of the DER SubjectPublicKeyInfo of a PEM public key (RFC 6376 3.6.1)."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def txt_value(public_key_pem: str) -> str:
    """The DKIM TXT record value of a key: ``v=DKIM1; k=rsa; p=<base64>`` (one string, not yet split)."""
    return f"v=DKIM1; k=rsa; p={public_key_b64(public_key_pem)}"


def record_name(domain: str, selector: str) -> str:
    """Where a selector's record lives: ``<selector>._domainkey.<domain>``."""
    return f"{selector}._domainkey.{domain}"
