"""The HTTPS edge's model: one Caddy per stack in front of the webmails, MTA-STS and autoconfig.

The edge terminates HTTPS for every web name of the stack (``webmail.<domain>``, ``mta-sts.<domain>``,
``autoconfig.<domain>``) and, with ``mailstack:tls: acme``, obtains and renews the certificate of every
mail server hostname, which docker-mailserver then reads from the edge's data volume.

This module holds the typed settings (:class:`EdgeConfig`) the pure renderers (``config.caddy``,
``config.mtasts``, ``config.autoconfig``) and the components read. It imports nothing from Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from config.addresses import Request

if TYPE_CHECKING:
    from config.model import Domain, HostPort

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
    public_address: str | None
    """The address every web name of the domain (and its MX host) resolves to (what the A records name;
    the domain's ``publicAddress``); ``None`` when unknown (the lab), then no A record is advised."""
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


# --- validation ------------------------------------------------------------------------------------

EDGE_KEYS = frozenset(
    {"enabled", "ca", "acmeCa", "addresses", "httpPort", "httpsPort", "mtaSts", "certificateTimeout"}
)
MTA_STS_KEYS = frozenset({"mode", "maxAge"})
AUTOCONFIG_KEYS = frozenset({"wellKnown"})
DOMAIN_KEYS = frozenset({"mtaSts", "autoconfig"})
"""Per-domain keys this module reads (``config.model`` allows them in a domain entry)."""
WEBMAIL_KEYS = frozenset({"host"})
"""Keys of a domain's ``webmail`` this module reads (``config.model`` reads ``port`` and ``alias``)."""
TRUSTED_TLS = ("acme", "manual", "letsencrypt")
"""TLS modes whose mail server certificates other servers can verify (``enforce`` needs one)."""
EDGE_KEY = "edge"
"""Memory key of the edge's fixed address (``config.memory``)."""

_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Add = Callable[[str, str], None]
"""How problems are reported: ``add(item, message)``."""


def webmail_key(domain: str) -> str:
    """Memory key of a domain's webmail address (fixed while the edge serves it)."""
    return f"webmail:{domain}"


def is_enabled(raw: Mapping[str, Any]) -> bool:
    """Whether the stack has an edge: ``mailstack:edge.enabled``, by default on exactly with ``tls: acme``."""
    edge = raw.get("edge")
    if isinstance(edge, Mapping) and isinstance(edge.get("enabled"), bool):
        return bool(edge["enabled"])
    return raw.get("tls") == "acme"


def address_requests(raw: Mapping[str, Any], domains: Sequence[Domain]) -> list[Request]:
    """The fixed addresses the edge needs on the stack network: each webmail it serves, then its own."""
    if not is_enabled(raw):
        return []
    requests = [
        Request(webmail_key(d.domain), webmail_key(d.domain), f"mailstack:domains[{i}] ({d.domain}).webmail")
        for i, d in enumerate(domains)
        if d.webmail is not None
    ]
    requests.append(Request(EDGE_KEY, EDGE_KEY, "mailstack:edge"))
    return requests


def _fqdn(name: Any) -> bool:
    if not isinstance(name, str) or len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(_LABEL_RE.match(label) for label in labels)


def _int(value: Any, where: str, low: int, high: int, add: Add) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        add(where, f"must be an integer between {low} and {high}, got {value!r}")
        return None
    number = int(value)
    if not low <= number <= high:
        add(where, f"must be between {low} and {high}, got {number}")
        return None
    return number


def _keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str, add: Add) -> None:
    for key in sorted(set(raw) - allowed):
        add(f"{where}.{key}", f"unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _mta_sts(raw: Any, where: str, base: MtaSts, add: Add) -> MtaSts:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        add(where, "must be an object {mode, maxAge}")
        return base
    _keys(raw, MTA_STS_KEYS, where, add)
    mode, max_age = base.mode, base.max_age
    if "mode" in raw:
        if raw["mode"] in MTA_STS_MODES:
            mode = raw["mode"]
        else:
            add(f"{where}.mode", f"must be one of {', '.join(MTA_STS_MODES)}, got {raw['mode']!r}")
    if "maxAge" in raw:
        max_age = _int(raw["maxAge"], f"{where}.maxAge", 1, MAX_MTA_STS_MAX_AGE, add) or max_age
    return MtaSts(mode=mode, max_age=max_age)


def _addresses(raw: Any, default: list[str], ca: str, add: Add) -> tuple[str, ...]:
    where = "mailstack:edge.addresses"
    if raw is None:
        values = default
    elif isinstance(raw, list) and raw:
        values = []
        for i, item in enumerate(raw):
            try:
                values.append(str(IPv4Address(str(item))))
            except ValueError:
                add(f"{where}[{i}]", f"must be an IPv4 address of the Docker host, got {item!r}")
    else:
        add(where, "must be a non-empty list of the Docker host's addresses for 80 and 443")
        return tuple(default)
    for value in values:
        ip = IPv4Address(value)
        if ip.is_unspecified:
            add(
                where,
                "0.0.0.0 would take 80 and 443 on every address of the host, so no second stack could have an "
                "edge there: list the public addresses (each stack on a host needs its own)",
            )
        elif ca == "acme" and (ip.is_loopback or ip.is_link_local):
            add(
                where,
                f"{value} cannot be reached by the ACME CA, which connects to ports 80/443 at the address the "
                "names resolve to: use the public address, or ca: internal for a local try",
            )
    return tuple(sorted(set(values), key=IPv4Address))


def parse_edge(
    raw: Mapping[str, Any],
    raw_domains: Sequence[Mapping[str, Any]],
    domains: Sequence[Domain],
    *,
    tls: str,
    production: bool,
    addresses: Mapping[str, IPv4Address],
    public_addresses: Mapping[str, str | None],
    image: str,
    add: Add,
) -> EdgeConfig | None:
    """Validate ``mailstack:edge``, ``mailstack:acmeEmail`` and the domains' edge keys; ``None`` without edge.

    ``addresses`` are the fixed addresses allocated for :func:`address_requests`; ``public_addresses``
    the address each domain's names resolve to (its ``publicAddress``, ``config.deliverability``) or
    ``None`` when unknown.
    """
    edge_raw = raw.get("edge")
    if edge_raw is not None and not isinstance(edge_raw, Mapping):
        add("mailstack:edge", "must be an object {enabled, ca, addresses, mtaSts, ...}")
        edge_raw = {}
    edge_raw = edge_raw or {}
    _keys(edge_raw, EDGE_KEYS, "mailstack:edge", add)
    enabled = is_enabled(raw)
    email = raw.get("acmeEmail")
    if not enabled:
        if tls == "acme":
            add(
                "mailstack:edge.enabled",
                "tls: acme gets its certificates through the edge: leave the edge on",
            )
        if email is not None:
            add("mailstack:acmeEmail", "is only used by the HTTPS edge (tls: acme or mailstack:edge.enabled)")
        for i, (d, item) in enumerate(zip(domains, raw_domains, strict=True)):
            where = f"mailstack:domains[{i}] ({d.domain})"
            for key in sorted(DOMAIN_KEYS & set(item)):
                add(f"{where}.{key}", "is only used with the HTTPS edge (mailstack:edge.enabled)")
            wraw = item.get("webmail")
            if isinstance(wraw, Mapping) and "host" in wraw:
                add(f"{where}.webmail.host", "is only used with the HTTPS edge (mailstack:edge.enabled)")
            if d.webmail is not None and d.webmail.port is None:
                add(f"{where}.webmail.port", "is missing: give the host port, or let the HTTPS edge serve it")
        return None

    ca = edge_raw.get("ca", "acme")
    if ca not in CA_MODES:
        add("mailstack:edge.ca", f"must be one of {', '.join(CA_MODES)}, got {ca!r}")
        ca = "acme"
    if production and ca == "internal":
        add(
            "mailstack:edge.ca",
            "internal (Caddy's own CA) is for the lab: browsers and mail servers elsewhere do not trust it; "
            "use acme in production",
        )
    acme_ca = edge_raw.get("acmeCa", LETSENCRYPT_CA)
    if not isinstance(acme_ca, str) or not re.fullmatch(r"https://[a-z0-9.-]+(:[0-9]+)?(/[^\s]*)?", acme_ca):
        add("mailstack:edge.acmeCa", f"must be the https:// URL of an ACME directory, got {acme_ca!r}")
        acme_ca = LETSENCRYPT_CA
    if ca == "acme":
        if email is None:
            add(
                "mailstack:acmeEmail",
                "is required with an ACME CA: the contact address of the ACME account (expiry notices), "
                "e.g. postmaster@example.org",
            )
        elif not isinstance(email, str) or not _EMAIL_RE.match(email):
            add("mailstack:acmeEmail", f"is not an e-mail address: {email!r}")
            email = None
    elif email is not None and (not isinstance(email, str) or not _EMAIL_RE.match(email)):
        add("mailstack:acmeEmail", f"is not an e-mail address: {email!r}")
    if ca == "acme":
        http_port: int | None = HTTP_PORT
        https_port = HTTPS_PORT
        for key, fixed in (("httpPort", HTTP_PORT), ("httpsPort", HTTPS_PORT)):
            if key in edge_raw and edge_raw[key] != fixed:
                add(
                    f"mailstack:edge.{key}",
                    f"must be {fixed} with an ACME CA: its challenges arrive on ports 80 and 443 of the "
                    "public address (use ca: internal for other ports)",
                )
    else:
        http_port = None
        if "httpPort" in edge_raw and edge_raw["httpPort"] is not None:
            http_port = _int(edge_raw["httpPort"], "mailstack:edge.httpPort", 1, 65535, add)
        https_port = LAB_HTTPS_PORT
        if "httpsPort" in edge_raw:
            https_port = _int(edge_raw["httpsPort"], "mailstack:edge.httpsPort", 1, 65535, add) or https_port
    timeout = DEFAULT_CERTIFICATE_TIMEOUT
    if "certificateTimeout" in edge_raw:
        timeout = (
            _int(edge_raw["certificateTimeout"], "mailstack:edge.certificateTimeout", 30, 3600, add)
            or timeout
        )

    publics = [public_addresses.get(d.domain) for d in domains]
    # The edge binds where the domain's own ports are bound (the host's address; behind NAT the public
    # address, which the DNS records name, may be another).
    binds = [d.bind_address for d in domains]
    default = sorted({b for b in binds if b != "0.0.0.0"}, key=IPv4Address)
    if "addresses" not in edge_raw and "0.0.0.0" in binds:
        add(
            "mailstack:edge.addresses",
            "is required when a domain binds 0.0.0.0: list the host addresses the edge publishes 80 and 443 on",
        )
    listen = _addresses(edge_raw.get("addresses"), default, ca, add)
    stack_mta_sts = _mta_sts(edge_raw.get("mtaSts"), "mailstack:edge.mtaSts", MtaSts(), add)

    # Every name the edge serves, with the item that claims it; mail hostnames and domains come first.
    claimed: dict[str, str] = {}
    for i, d in enumerate(domains):
        claimed.setdefault(d.hostname, f"the mail server hostname of domains[{i}] ({d.domain})")
    result: list[EdgeDomain] = []
    for i, (d, item) in enumerate(zip(domains, raw_domains, strict=True)):
        where = f"mailstack:domains[{i}] ({d.domain})"
        if binds[i] != "0.0.0.0" and binds[i] not in listen:
            add(
                "mailstack:edge.addresses",
                f"does not list {binds[i]}, where {d.domain}'s ports are published (and its names, MX host "
                f"{d.hostname} included, resolve to): the edge could not answer there (nor obtain their "
                "certificates)",
            )
        mta_sts = _mta_sts(item.get("mtaSts"), f"{where}.mtaSts", stack_mta_sts, add)
        if mta_sts.mode == "enforce" and (tls not in TRUSTED_TLS or (tls == "acme" and ca == "internal")):
            add(
                f"{where}.mtaSts.mode" if "mtaSts" in item else "mailstack:edge.mtaSts.mode",
                f"enforce makes other servers refuse {d.hostname} unless its certificate is publicly trusted; "
                f"tls: {tls}{' with ca: internal' if tls == 'acme' else ''} is not: use tls: acme (or manual/"
                "letsencrypt with a CA-signed certificate), or mode testing",
            )
        well_known = False
        auto_raw = item.get("autoconfig")
        if auto_raw is not None:
            if not isinstance(auto_raw, Mapping):
                add(f"{where}.autoconfig", "must be an object {wellKnown}")
            else:
                _keys(auto_raw, AUTOCONFIG_KEYS, f"{where}.autoconfig", add)
                value = auto_raw.get("wellKnown", False)
                if not isinstance(value, bool):
                    add(f"{where}.autoconfig.wellKnown", f"must be true or false, got {value!r}")
                else:
                    well_known = value
        if well_known and tls == "none":
            add(
                f"{where}.autoconfig.wellKnown",
                "needs TLS on the mail servers (nothing is advertised without)",
            )
            well_known = False
        webmail_host = None
        upstream = None
        if d.webmail is not None:
            wraw = item.get("webmail") if isinstance(item.get("webmail"), Mapping) else {}
            webmail_host = wraw.get("host", f"webmail.{d.domain}")
            if not _fqdn(webmail_host):
                add(
                    f"{where}.webmail.host",
                    f"{webmail_host!r} must be a fully qualified lowercase name such as webmail.{d.domain}",
                )
                webmail_host = f"webmail.{d.domain}"
            upstream = f"webmail-{d.server}:80"
            if production and d.webmail.port is not None and not IPv4Address(d.bind_address).is_loopback:
                add(
                    f"{where}.webmail.port",
                    f"publishes Roundcube's plain HTTP on {d.bind_address}: logins would cross the network in "
                    f"clear text; remove the port (the edge serves it at https://{webmail_host}/)",
                )
        names = [n for n in (webmail_host, f"mta-sts.{d.domain}") if n]
        if tls != "none":
            names.append(f"autoconfig.{d.domain}")
            if well_known:
                names.append(d.domain)
        for name in names:
            owner = claimed.get(name)
            if owner is not None:
                add(
                    f"{where}.webmail.host" if name == webmail_host else where,
                    f"{name} is already {owner}: every name the edge serves must be unique, and no mail "
                    "server hostname (pick another webmail host)",
                )
            else:
                claimed[name] = f"a web name of domains[{i}] ({d.domain})"
        result.append(
            EdgeDomain(
                domain=d.domain,
                hostname=d.hostname,
                public_address=publics[i],
                webmail_host=webmail_host,
                webmail_upstream=upstream,
                mta_sts=mta_sts,
                autoconfig=tls != "none",
                well_known_autoconfig=well_known,
            )
        )
    webmails = {
        d.domain: addresses[webmail_key(d.domain)]
        for d in domains
        if d.webmail is not None and webmail_key(d.domain) in addresses
    }
    return EdgeConfig(
        ca=ca,
        domains=tuple(result),
        addresses=listen,
        address=addresses.get(EDGE_KEY, IPv4Address(0)),
        webmail_addresses=webmails,
        acme_ca=acme_ca,
        email=email if isinstance(email, str) else None,
        http_port=http_port,
        https_port=https_port,
        certificate_timeout=timeout,
        image=image,
    )


def host_ports(edge: EdgeConfig) -> list[tuple[str, HostPort]]:
    """The edge's published ports, labelled with the item they come from (for the port-collision check)."""
    from config.model import HostPort  # config.model imports this module

    ports: list[tuple[str, HostPort]] = []
    for address in edge.addresses:
        if edge.http_port is not None:
            ports.append(("mailstack:edge.httpPort", HostPort("http", edge.http_port, HTTP_PORT, address)))
        ports.append(("mailstack:edge.httpsPort", HostPort("https", edge.https_port, HTTPS_PORT, address)))
    return ports
