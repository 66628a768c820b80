"""The HTTPS edge's model: one Caddy per stack in front of the webmails, MTA-STS and autoconfig.

The edge terminates HTTPS for every web name of the stack (``webmail.<domain>``, ``mta-sts.<domain>``,
``autoconfig.<domain>``) and, with ``mailstack:tls: acme``, obtains and renews the certificate of every
mail server hostname, which docker-mailserver then reads from the edge's data volume.

This module holds the typed settings (:class:`EdgeConfig`) the pure renderers (``config.caddy``,
``config.mtasts``, ``config.autoconfig``) and the components read. It imports nothing from Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

LETSENCRYPT_CA = "https://acme-v02.api.letsencrypt.org/directory"
"""Let's Encrypt's production ACME directory: the default, pinned so the issuer directory stays fixed."""
LETSENCRYPT_STAGING_CA = "https://acme-staging-v02.api.letsencrypt.org/directory"
"""Let's Encrypt's staging directory (untrusted certificates, generous rate limits) for trial runs."""

DEFAULT_IMAGE = "docker.io/library/caddy:2.11.2-alpine"
"""The pinned Caddy image (the official image's newest confirmed tag)."""

CA_MODES = ("acme", "internal")
"""``acme``: certificates from the pinned ACME CA (production). ``internal``: Caddy's own local CA (the lab)."""

MTA_STS_MODES = ("testing", "enforce", "none")
"""RFC 8461 §5 policy modes: ``testing`` reports only, ``enforce`` refuses, ``none`` retires a policy."""
DEFAULT_MTA_STS_MODE = "testing"
DEFAULT_MTA_STS_MAX_AGE = 604800
"""One week: long enough to protect, short enough to retire a mistake quickly."""
MAX_MTA_STS_MAX_AGE = 31557600
"""RFC 8461 §3.2: ``max_age`` is at most 31557600 seconds (about one year)."""

DEFAULT_CERTIFICATE_TIMEOUT = 300
"""Seconds a mail server's certificate wait gives Caddy to obtain the certificate (several ACME tries)."""

HTTP_PORT = 80
"""ACME HTTP-01 challenges and the redirect to HTTPS arrive here."""
HTTPS_PORT = 443
"""HTTPS, and ACME TLS-ALPN-01 challenges."""
LAB_HTTPS_PORT = 8443
"""Default host port of the lab edge (``ca: internal``) on loopback."""


@dataclass(frozen=True)
class MtaSts:
    """The MTA-STS policy settings of one domain."""

    mode: str = DEFAULT_MTA_STS_MODE
    max_age: int = DEFAULT_MTA_STS_MAX_AGE


@dataclass(frozen=True)
class EdgeDomain:
    """What the edge serves for one mail domain."""

    domain: str
    hostname: str
    """The domain's mail server hostname (its MX host): the policy's ``mx`` and, with ``tls: acme``,
    a name the edge obtains a certificate for."""
    public_address: str
    """The host address every web name of the domain (and its MX host) resolves to."""
    webmail_host: str | None = None
    """Where the edge serves the domain's webmail (``webmail.<domain>``), ``None`` without webmail."""
    webmail_upstream: str | None = None
    """``alias:port`` of the domain's Roundcube on the stack network."""
    mta_sts: MtaSts = field(default_factory=MtaSts)
    autoconfig: bool = True
    """Serve ``autoconfig.<domain>`` (only when the mail servers have TLS: nothing is advertised without)."""
    well_known_autoconfig: bool = False
    """Also serve ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`` (opt-in: the bare
    domain's address often belongs to a website elsewhere)."""

    @property
    def mta_sts_host(self) -> str:
        """The policy host of RFC 8461 §3.3."""
        return f"mta-sts.{self.domain}"

    @property
    def autoconfig_host(self) -> str:
        """The first host Thunderbird asks for its configuration."""
        return f"autoconfig.{self.domain}"

    def web_hosts(self) -> list[str]:
        """Every name the edge serves for this domain with a certificate of its own, in a stable order."""
        hosts = [self.webmail_host] if self.webmail_host is not None else []
        hosts.append(self.mta_sts_host)
        if self.autoconfig:
            hosts.append(self.autoconfig_host)
            if self.well_known_autoconfig:
                hosts.append(self.domain)
        return hosts


@dataclass(frozen=True)
class EdgeConfig:
    """The validated ``mailstack:edge`` of a stack."""

    ca: str
    """One of :data:`CA_MODES`."""
    domains: tuple[EdgeDomain, ...]
    addresses: tuple[str, ...]
    """Host addresses 80 and 443 are published on (each domain's public address is one of them)."""
    address: IPv4Address
    """The edge's fixed address on the stack network (Roundcube trusts ``X-Forwarded-*`` from it only)."""
    webmail_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)
    """Fixed address on the stack network of each domain's webmail (Dovecot trusts its forwarded address)."""
    acme_ca: str = LETSENCRYPT_CA
    """The ACME directory (only with ``ca: acme``)."""
    email: str | None = None
    """The ACME account's contact address."""
    http_port: int | None = HTTP_PORT
    """Host port for plain HTTP (ACME HTTP-01, redirects); ``None`` publishes none (the lab)."""
    https_port: int = HTTPS_PORT
    """Host port for HTTPS."""
    certificate_timeout: int = DEFAULT_CERTIFICATE_TIMEOUT
    """Seconds each mail server's certificate wait allows."""
    image: str = DEFAULT_IMAGE

    @property
    def lab(self) -> bool:
        """True for Caddy's internal CA (certificates nobody else trusts; no ACME, no redirects)."""
        return self.ca == "internal"

    def domain(self, name: str) -> EdgeDomain:
        """The edge settings of mail domain ``name``."""
        for d in self.domains:
            if d.domain == name:
                return d
        raise KeyError(name)
