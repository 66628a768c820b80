"""Roundcube (roundcube/roundcubemail, apache variant) settings for one domain's webmail.

Two pure renderers: :func:`webmail_env` gives the container environment the image's entrypoint
turns into ``config.docker.inc.php``, and :func:`render_config_php` gives the extra PHP file the
entrypoint includes after it (every ``/var/roundcube/config/*.php``; docs/upstream.md, "Roundcube").

Facts of the pinned image (roundcubemail-docker at the 1.6.16 build, ``apache/docker-entrypoint.sh``):

* it writes ``imap_host = '<DEFAULT_HOST>:<DEFAULT_PORT>'`` and ``smtp_host = '<SMTP_SERVER>:<SMTP_PORT>'``,
  so a host must never carry a port (``tls://mta1:143`` would become ``tls://mta1:143:143``);
* when ``/run/secrets/roundcube_des_key`` exists it appends
  ``$config['des_key'] = file_get_contents('/run/secrets/roundcube_des_key');`` itself, without trimming,
  so the secret file must hold exactly the key (24 characters, no newline) and the PHP file here does
  not set ``des_key`` at all;
* ``ROUNDCUBEMAIL_UPLOAD_MAX_FILESIZE`` becomes both ``upload_max_filesize`` and ``post_max_size``.

This module imports nothing from Pulumi.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

from config.model import Domain, StackConfig

IMAP_PORT = 143
"""IMAP with optional STARTTLS on the mail server (never a host port: inside the stack network)."""
SUBMISSION_PORT = 587
"""SMTP submission with optional STARTTLS on the mail server."""
HTTP_PORT = 80
"""The apache variant (root image) listens on 80."""

DES_KEY_LENGTH = 24
"""Roundcube's default cipher (``des-ede3-cbc``) needs a key of exactly 24 characters."""
DES_KEY_PATH = "/run/secrets/roundcube_des_key"
"""The secret file the image's entrypoint reads the DES key from."""
CONFIG_DIR = "/var/roundcube/config"
"""Every ``*.php`` here is included, alphabetically, after the environment-derived configuration."""
CONFIG_FILE = "mailstack.php"
"""Name of the generated PHP file inside :data:`CONFIG_DIR`."""
DB_DIR = "/var/roundcube/db"
"""SQLite database directory (a named volume)."""

PLUGINS = ("archive", "zipdownload")
"""Plugins shipped in the image (no composer, hence no network, at start)."""
SKIN = "elastic"
"""The image's bundled skin; any other one would be installed with composer at start."""

UPLOAD_SHARE = 0.7
"""Share of the mail servers' message size limit one upload may take.

Attachments are base64-encoded in the message (4/3 larger), so 70 % of the limit leaves room for
the encoding (93 %) and the headers and text of the message.
"""

CLIENT_IP_PLUGIN = "mailstack_client_ip"
"""mailstack's own plugin: sends the browser's address to Dovecot in the IMAP ID (``x-originating-ip``)."""
CLIENT_IP_PLUGIN_SOURCE = Path(__file__).resolve().parent / "roundcube_plugin" / f"{CLIENT_IP_PLUGIN}.php"
CLIENT_IP_PLUGIN_PATH = f"/usr/src/roundcubemail/plugins/{CLIENT_IP_PLUGIN}/{CLIENT_IP_PLUGIN}.php"
"""Where the plugin is uploaded: the image's pristine copy, which its entrypoint copies into the empty
docroot on the container's first start (an upload into the docroot itself would make the entrypoint
warn about a non-empty directory and wait 10 s)."""

HEALTHCHECK = ["CMD", "curl", "--fail", "http://localhost/?ping=ping"]
"""Roundcube answers ``?ping=ping`` without a session (the image's own tests probe it with curl)."""

_MIB = 1024 * 1024
_KIB = 1024


def imap_host(stack: StackConfig, domain: Domain) -> str:
    """The IMAP/SMTP host of ``domain``'s server, with the ``tls://`` (STARTTLS) prefix when TLS is on.

    With ``mailstack:tls: none`` the server offers no STARTTLS, so the plain network alias
    (``mta1``) is used. With any TLS mode the full hostname (``mail.example1.local``, the server's
    second network alias) is used, so the name matches the certificate.
    """
    host = domain.server if stack.tls == "none" else f"tls://{domain.hostname}"
    name = host.removeprefix("tls://")
    if ":" in name or not name:
        raise ValueError(
            f"webmail host {host!r} of {domain.domain} must be a bare host name: the image appends "
            "':<port>' itself, so a port (or an empty name) here breaks the login"
        )
    return host


def php_size(size_bytes: int) -> str:
    """A byte count as a PHP ini size, rounded down: ``6M``, or ``683K`` below one MiB (at least ``1K``)."""
    if size_bytes >= _MIB:
        return f"{size_bytes // _MIB}M"
    return f"{max(1, size_bytes // _KIB)}K"


def upload_limit_bytes(stack: StackConfig) -> int:
    """The largest upload in bytes that still fits the message size limit once base64-encoded."""
    return int(stack.message_size_limit * UPLOAD_SHARE)


def webmail_env(stack: StackConfig, domain: Domain) -> dict[str, str]:
    """The container environment of ``domain``'s Roundcube (no secret in it: the DES key is a file)."""
    host = imap_host(stack, domain)
    return {
        "ROUNDCUBEMAIL_DEFAULT_HOST": host,
        "ROUNDCUBEMAIL_DEFAULT_PORT": str(IMAP_PORT),
        "ROUNDCUBEMAIL_SMTP_SERVER": host,
        "ROUNDCUBEMAIL_SMTP_PORT": str(SUBMISSION_PORT),
        "ROUNDCUBEMAIL_UPLOAD_MAX_FILESIZE": php_size(upload_limit_bytes(stack)),
        "ROUNDCUBEMAIL_DB_TYPE": "sqlite",
        "ROUNDCUBEMAIL_SKIN": SKIN,
        "ROUNDCUBEMAIL_PLUGINS": ",".join(plugins(stack, domain)),
        # "user1" is completed to user1@<domain>; the full address (the documented login) is kept as is.
        "ROUNDCUBEMAIL_USERNAME_DOMAIN": domain.domain,
    }


def php_string(value: str) -> str:
    """``value`` as a single-quoted PHP string literal (backslash and single quote are escaped)."""
    if "\x00" in value:
        raise ValueError("a PHP configuration string cannot contain a NUL character")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ssl_options(stack: StackConfig, domain: Domain) -> list[tuple[str, str]] | None:
    """PHP stream-context ``ssl`` options (key, PHP literal) for the mail server connections."""
    if stack.tls == "none":
        return None
    if stack.tls == "self-signed" or (stack.tls == "acme" and stack.edge is not None and stack.edge.lab):
        # The lab's own certificate (or the lab edge's internal CA): encrypted, but no public CA vouches.
        return [
            ("verify_peer", "false"),
            ("verify_peer_name", "false"),
            ("allow_self_signed", "true"),
        ]
    # manual / letsencrypt: a certificate a CA signed for the server's hostname; keep verification on.
    return [
        ("verify_peer", "true"),
        ("verify_peer_name", "true"),
        ("peer_name", php_string(domain.hostname)),
    ]


def render_config_php(stack: StackConfig, domain: Domain) -> str:
    """The PHP file installed as ``/var/roundcube/config/mailstack.php`` for ``domain``'s webmail.

    It names the product after the domain, caps a composed message at the mail servers' message size
    limit, and, with TLS, sets the IMAP and SMTP connection options (verification relaxed only for
    ``self-signed``). It never sets ``des_key``: the image reads the secret file itself. Output is
    deterministic (same model, same bytes).
    """
    lines = [
        "<?php",
        "// Generated by mailstack; included by the image after its environment-derived configuration.",
        f"$config['product_name'] = {php_string(f'mailstack webmail ({domain.domain})')};",
        "// Roundcube refuses attachments that would make the message exceed the mail servers' limit.",
        f"$config['max_message_size'] = {int(stack.message_size_limit)};",
    ]
    if served_by_edge(stack, domain):
        assert stack.edge is not None and domain.webmail is not None
        lines += render_edge_php([stack.edge.address], https_only=domain.webmail.port is None)
    options = _ssl_options(stack, domain)
    if options is not None:
        for setting in ("imap_conn_options", "smtp_conn_options"):
            lines.append(f"$config[{php_string(setting)}] = [")
            lines.append("    'ssl' => [")
            lines.extend(f"        {php_string(key)} => {value}," for key, value in options)
            lines.append("    ],")
            lines.append("];")
    return "\n".join(lines) + "\n"


def served_by_edge(stack: StackConfig, domain: Domain) -> bool:
    """True when the HTTPS edge serves ``domain``'s webmail."""
    return (
        stack.edge is not None
        and domain.webmail is not None
        and domain.domain in stack.edge.webmail_addresses
    )


def plugins(stack: StackConfig, domain: Domain) -> list[str]:
    """The Roundcube plugins of ``domain``'s webmail: the image's, plus mailstack's behind the edge."""
    return [*PLUGINS, CLIENT_IP_PLUGIN] if served_by_edge(stack, domain) else list(PLUGINS)


def webmail_url(domain: Domain, stack: StackConfig | None = None) -> str:
    """The URL a browser opens for ``domain``'s webmail.

    Behind the HTTPS edge ``https://<webmail host>/`` (with the lab's port); otherwise its own plain HTTP
    port on the Docker host (``0.0.0.0`` shown as loopback).
    """
    if domain.webmail is None:
        raise ValueError(f"{domain.domain} has no webmail")
    if stack is not None and stack.edge is not None and served_by_edge(stack, domain):
        host = stack.edge.domain(domain.domain).webmail_host
        port = "" if stack.edge.https_port == 443 else f":{stack.edge.https_port}"
        return f"https://{host}{port}/"
    host = "127.0.0.1" if domain.bind_address == "0.0.0.0" else domain.bind_address
    return f"http://{host}:{domain.webmail.port}/"


def client_ip_plugin() -> str:
    """The source of the :data:`CLIENT_IP_PLUGIN` plugin (the project's own PHP file)."""
    return CLIENT_IP_PLUGIN_SOURCE.read_text()


def render_edge_php(proxies: Iterable[IPv4Address], *, https_only: bool) -> list[str]:
    """PHP lines for a webmail served by the HTTPS edge (Roundcube ``rcube_utils::https_check``).

    ``proxy_whitelist`` (exact addresses, no ranges) makes Roundcube trust ``X-Forwarded-Proto`` and
    ``X-Forwarded-For`` from the edge alone; the client-address plugin reads the same list.
    ``use_https`` tells it every request was HTTPS, which holds only when the webmail publishes no
    plain-HTTP port of its own (it must not be set together with ``force_https``).
    """
    listed = ", ".join(php_string(str(a)) for a in sorted(set(proxies)))
    lines = [
        "// Served by mailstack's HTTPS edge: trust its forwarded headers, and only its.",
        f"$config['proxy_whitelist'] = [{listed}];",
    ]
    if https_only:
        lines.append("$config['use_https'] = true;")
    return lines
