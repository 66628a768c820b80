"""Thunderbird autoconfiguration (``config-v1.1.xml``) for one mail domain.

It advertises exactly what the stack publishes: the domain's IMAP (and POP3 when published) and
submission host ports on its mail server hostname, each with STARTTLS, and ``password-cleartext``
(docker-mailserver offers PLAIN and LOGIN only; Thunderbird's ``password-encrypted`` would mean
CRAM-MD5). Without TLS on the mail servers nothing may be advertised, so rendering refuses.
Format: Mozilla's "Autoconfig file format definition"
(https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat). No Pulumi import.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from config.model import Domain, StackConfig

PATH = "/mail/config-v1.1.xml"
"""Path on ``autoconfig.<domain>`` (and, opt-in, under ``/.well-known/autoconfig`` on the bare domain)."""
WELL_KNOWN_PATH = f"/.well-known/autoconfig{PATH}"
SOCKET_TYPE = "STARTTLS"
"""docker-mailserver offers STARTTLS on 143, 110 and 587 once it has a certificate (no implicit TLS
ports are published by mailstack)."""
AUTHENTICATION = "password-cleartext"

_INCOMING = (("imap", "imap"), ("pop3", "pop3"))


def advertised_ports(domain: Domain) -> list[tuple[str, int]]:
    """``(service, host port)`` of every server the file lists, in its order."""
    services = [(kind, domain.ports[key]) for key, kind in _INCOMING if key in domain.ports]
    services.append(("smtp", domain.ports["submission"]))
    return services


def _server(tag: str, kind: str, hostname: str, port: int) -> list[str]:
    return [
        f'    <{tag} type="{kind}">',
        f"      <hostname>{escape(hostname)}</hostname>",
        f"      <port>{port}</port>",
        f"      <socketType>{SOCKET_TYPE}</socketType>",
        f"      <authentication>{AUTHENTICATION}</authentication>",
        "      <username>%EMAILADDRESS%</username>",
        f"    </{tag}>",
    ]


def render_autoconfig(stack: StackConfig, domain: Domain) -> str:
    """The ``config-v1.1.xml`` of ``domain`` (deterministic; LF line endings)."""
    if stack.tls == "none":
        raise ValueError(
            f"{domain.domain}: no autoconfiguration without TLS on the mail servers "
            "(password-cleartext is only advertised over TLS)"
        )
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{escape(domain.domain)}">',
        f"    <domain>{escape(domain.domain)}</domain>",
        f"    <displayName>{escape(domain.domain)} mail</displayName>",
        f"    <displayShortName>{escape(domain.domain)}</displayShortName>",
    ]
    for kind, port in advertised_ports(domain):
        tag = "outgoingServer" if kind == "smtp" else "incomingServer"
        lines += _server(tag, kind, domain.hostname, port)
    lines += ["  </emailProvider>", "</clientConfig>"]
    return "\n".join(lines) + "\n"
