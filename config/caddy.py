"""The edge's Caddyfile and where Caddy keeps the certificates docker-mailserver reads.

:func:`render_caddyfile` writes one site per web name of the stack: each webmail host proxied to its
Roundcube, ``mta-sts.<domain>`` serving the policy as ``text/plain``, ``autoconfig.<domain>`` serving
``/mail/config-v1.1.xml``, the opt-in bare-domain ``/.well-known/autoconfig/`` site, and, with
``mailstack:tls: acme``, one site per mail server hostname so that Caddy obtains and renews its
certificate. The ACME CA is pinned with the global ``acme_ca`` so the issuer directory of the
certificate paths never changes (docker-mailserver docs/content/config/security/ssl.md, "Caddy").

:func:`certificate_files` gives those paths relative to Caddy's data directory, computed as certmagic
names them (caddyserver/certmagic ``storage.go`` ``KeyBuilder.SiteCert``/``SitePrivateKey``/``Safe``,
``acmeissuer.go`` ``issuerKey``; the internal CA's key is its id, ``local``, caddyserver/caddy v2.11.2
``modules/caddytls/internalissuer.go``). This module imports nothing from Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from config import autoconfig, mtasts
from config.edge import EdgeConfig
from config.model import StackConfig

CONFIG_DIR = "/etc/caddy"
"""Where the edge reads its Caddyfile (the config volume, filled by the edge's writer)."""
CADDYFILE = "Caddyfile"
DATA_DIR = "/data"
"""The image's ``XDG_DATA_HOME``: Caddy keeps certificates, keys and the ACME account under ``caddy/``."""
CERTIFICATE_MOUNT = "/etc/mailstack-edge"
"""Where a mail server mounts the edge's data volume, read-only, as a directory (never single files,
which would keep the old inode after Caddy's rename-on-renewal)."""
HEALTH_PORT = 2020
"""Port of the edge's loopback-only health site (inside the container)."""
INTERNAL_ISSUER = "local"
"""Issuer directory of Caddy's default internal CA."""

RUN_COMMAND = ["caddy", "run", "--config", f"{CONFIG_DIR}/{CADDYFILE}", "--adapter", "caddyfile", "--watch"]
"""The edge's command: ``--watch`` polls the Caddyfile every second and loads a changed one in place,
so a new domain needs no restart (caddyserver/caddy v2.11.2 ``cmd/main.go`` ``watchConfigFile``)."""

_HEREDOC = "MAILSTACK_BODY"
_SAFE_RE = re.compile(r"[^\w@.-]")


@dataclass(frozen=True)
class Listen:
    """Where Caddy itself listens; the defaults are the container's (all addresses, 80 and 443).

    Tests set a loopback ``bind`` and free high ports; the lab's host ports are Docker's business.
    """

    bind: str | None = None
    http_port: int | None = None
    https_port: int | None = None
    health_port: int = HEALTH_PORT


def safe_key(text: str) -> str:
    """One storage path component made of a name (certmagic's ``KeyBuilder.Safe``)."""
    text = text.lower().strip()
    for old, new in ((" ", "_"), ("+", "_plus_"), ("*", "wildcard_"), (":", "-"), ("..", "")):
        text = text.replace(old, new)
    return _SAFE_RE.sub("", text)


def issuer_key(ca_url: str) -> str:
    """The issuer key (certmagic's ``ACMEIssuer.issuerKey``): the CA URL's host, then its path with ``/`` as ``-``."""
    parts = urlsplit(ca_url)
    if not parts.netloc:
        return ca_url
    key = parts.netloc
    path = parts.path.replace("/", "-").replace("\\", "-").strip("-")
    return f"{key}-{path}" if path else key


def issuer_directory(edge: EdgeConfig) -> str:
    """The directory under ``caddy/certificates/`` holding the certificates of ``edge``'s CA."""
    return INTERNAL_ISSUER if edge.lab else safe_key(issuer_key(edge.acme_ca))


def certificate_files(edge: EdgeConfig, hostname: str) -> tuple[str, str]:
    """``(certificate, key)`` of ``hostname`` relative to Caddy's data directory (the volume's root).

    The certificate file holds the full chain (leaf first), the key an ECDSA P-256 key by default.
    """
    host = safe_key(hostname)
    base = f"caddy/certificates/{issuer_directory(edge)}/{host}/{host}"
    return f"{base}.crt", f"{base}.key"


def mailserver_tls_env(edge: EdgeConfig, hostname: str) -> dict[str, str]:
    """docker-mailserver's ``SSL_TYPE=manual`` settings for the certificate the edge keeps for ``hostname``."""
    cert, key = certificate_files(edge, hostname)
    return {
        "SSL_TYPE": "manual",
        "SSL_CERT_PATH": f"{CERTIFICATE_MOUNT}/{cert}",
        "SSL_KEY_PATH": f"{CERTIFICATE_MOUNT}/{key}",
    }


def _body(text: str) -> list[str]:
    """``text`` as a Caddyfile heredoc (indented for a ``respond`` inside a ``handle``), with its final LF."""
    if "{" in text or "}" in text or _HEREDOC in text:
        raise ValueError("a served body must not contain braces (Caddy placeholders) or the heredoc marker")
    if not text.endswith("\n"):
        raise ValueError("a served body must end with a newline")
    lines = [f"\t\trespond <<{_HEREDOC}"]
    lines += [f"\t\t\t{line}" if line else "" for line in text[:-1].split("\n")]
    lines += ["", f"\t\t\t{_HEREDOC} 200"]
    return lines


def _handle(path: str, content_type: str, text: str) -> list[str]:
    return [
        f"\thandle {path} {{",
        f'\t\theader Content-Type "{content_type}"',
        *_body(text),
        "\t}",
    ]


def _site(address: str, lines: list[str]) -> list[str]:
    return [f"{address} {{", *lines, "}"]


def _globals(stack: StackConfig, edge: EdgeConfig, listen: Listen) -> list[str]:
    lines = ["{", "\t# The edge is configured only through this file (--watch); no admin API."]
    lines.append("\tadmin off")
    if listen.bind is not None:
        lines.append(f"\tdefault_bind {listen.bind}")
    if listen.http_port is not None:
        lines.append(f"\thttp_port {listen.http_port}")
    if listen.https_port is not None:
        lines.append(f"\thttps_port {listen.https_port}")
    if edge.lab:
        lines += [
            "\t# The lab: certificates from Caddy's own CA, which no other host trusts.",
            "\tlocal_certs",
            "\tskip_install_trust",
            "\t# Redirects would drop the lab's non-standard HTTPS port.",
            "\tauto_https disable_redirects",
        ]
    else:
        if edge.email:
            lines.append(f"\temail {edge.email}")
        lines.append(f"\tacme_ca {edge.acme_ca}")
    lines += [
        "\tservers {",
        "\t\t# HTTP/3 would need 443/udp, which is not published.",
        "\t\tprotocols h1 h2",
        "\t}",
        "}",
    ]
    return lines


def render_caddyfile(
    stack: StackConfig,
    edge: EdgeConfig,
    *,
    listen: Listen = Listen(),
    upstreams: Mapping[str, str] | None = None,
) -> str:
    """The edge's Caddyfile for ``stack`` (deterministic: same model, same bytes).

    ``upstreams`` replaces the Roundcube address of a webmail host (tests point it at a local stub).
    """
    upstreams = upstreams or {}
    blocks: list[list[str]] = [_globals(stack, edge, listen)]
    blocks.append(
        [
            "# Health probe of the container (loopback only).",
            *_site(
                f"http://127.0.0.1:{listen.health_port}",
                ["\tbind 127.0.0.1", '\trespond "ok" 200'],
            ),
        ]
    )
    for d in stack.domains:
        e = edge.domain(d.domain)
        if e.webmail_host is not None:
            upstream = upstreams.get(e.webmail_host, e.webmail_upstream)
            blocks.append(
                [
                    f"# Webmail of {d.domain}: Roundcube learns the browser's address from X-Forwarded-For.",
                    *_site(e.webmail_host, [f"\treverse_proxy {upstream}"]),
                ]
            )
        policy = mtasts.render_policy(d.hostname, e.mta_sts)
        blocks.append(
            [
                f"# MTA-STS policy of {d.domain} (RFC 8461); its TXT id is {mtasts.policy_id(policy)}.",
                *_site(
                    e.mta_sts_host,
                    [*_handle(mtasts.POLICY_PATH, "text/plain; charset=utf-8", policy), "\trespond 404"],
                ),
            ]
        )
        if e.autoconfig:
            xml = autoconfig.render_autoconfig(stack, d)
            blocks.append(
                [
                    f"# Mail client autoconfiguration of {d.domain}.",
                    *_site(
                        e.autoconfig_host,
                        [*_handle(autoconfig.PATH, "application/xml; charset=utf-8", xml), "\trespond 404"],
                    ),
                ]
            )
            if e.well_known_autoconfig:
                blocks.append(
                    [
                        f"# Opt-in: autoconfiguration on the bare domain {d.domain}.",
                        *_site(
                            d.domain,
                            [
                                *_handle(autoconfig.WELL_KNOWN_PATH, "application/xml; charset=utf-8", xml),
                                "\trespond 404",
                            ],
                        ),
                    ]
                )
        if stack.tls == "acme":
            blocks.append(
                [
                    f"# Mail server of {d.domain}: this site makes Caddy obtain and renew its certificate.",
                    *_site(d.hostname, ["\trespond 404"]),
                ]
            )
    header = "# Generated by mailstack: the HTTPS edge of this stack. Do not edit; `pulumi up` rewrites it.\n"
    return header + "\n".join("\n".join(block) for block in blocks) + "\n"
