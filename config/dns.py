"""The identity mail leaves with, and the DNS records each mail domain needs.

Configuration (all validated here, each problem naming its item):

* ``mailstack:egress: {address, name}``: the public address outgoing mail leaves from (Docker's SNAT
  address: the host's default-route address, not the address the ports are published on) and the name the
  PTR record of that address gives. Every server says that name in HELO (Postfix ``smtp_helo_name``), SPF
  names that address, and the ``dns`` output advises the PTR. Required in production.
* a domain's ``egress: {address, name}``: opt-in, that server sends from its own public address through its
  own network (``com.docker.network.host_ipv4``; needs Docker Engine 28 or newer, see ``EGRESS_WARNING``).
* a domain's ``publicAddress``: the address the MX host's A record names (default: its ``bindAddress`` when
  that is a public unicast address; required otherwise in production).
* ``mailstack:dmarc: {policy, subdomainPolicy, rua, adkim, aspf}`` and ``mailstack:tlsrpt: {rua}``, both
  with a per-domain override (``dmarc``, ``tlsrpt``).

``records_for`` builds every record to publish from the validated model and the DKIM public keys;
``render_zone`` prints them as a zone-file fragment. Plain Python, no Pulumi import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from config.dkim import Problems, record_name

DEFAULT_TTL = 3600
TXT_CHUNK = 255
"""Octets per TXT character-string (RFC 1035 section 3.3); longer values are split (RFC 6376 3.6.2.2)."""
DMARC_POLICIES = ("none", "quarantine", "reject")
ALIGNMENT = ("r", "s")
DMARC_KEYS = frozenset({"policy", "subdomainPolicy", "rua", "adkim", "aspf"})
TLSRPT_KEYS = frozenset({"rua"})
EGRESS_KEYS = frozenset({"address", "name"})
RESERVED_SUFFIXES = (".local", ".test", ".internal", ".example", ".invalid", ".localhost")
"""Names that public DNS never resolves (RFC 2606, RFC 6761, RFC 6762, ICANN's .internal)."""
DOCUMENTATION_NETWORKS = (
    IPv4Network("192.0.2.0/24"),
    IPv4Network("198.51.100.0/24"),
    IPv4Network("203.0.113.0/24"),
)
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
FQDN_RE = re.compile(rf"^({_LABEL}\.)+{_LABEL}$")
EGRESS_WARNING = (
    "per-domain egress needs Docker Engine 28 or newer on the mail host: it sends {domain}'s mail through its "
    "own network by giving that network the highest gw_priority, which older engines ignore silently (they "
    "pick the default route by network order, so mail may leave from another address than SPF and PTR say); "
    "check with `docker version` and, after deploying, `make e2e` or `docker exec <server> ip route`"
)
"""Preview warning for every domain with its own ``egress``."""
CLIENT_SERVICES = (("submission", "_submission._tcp"), ("imap", "_imap._tcp"), ("pop3", "_pop3._tcp"))
"""RFC 6186 client SRV records for the services mailstack can publish (no implicit-TLS 465/993/995 yet)."""


@dataclass(frozen=True)
class Egress:
    """Where outgoing mail leaves from: a public IPv4 address and the name its PTR record gives."""

    address: str
    name: str


@dataclass(frozen=True)
class Dmarc:
    """The DMARC record of a domain (only tags RFC 9989 keeps: no pct, rf or ri)."""

    policy: str = "none"
    subdomain_policy: str | None = None
    rua: tuple[str, ...] = ()
    adkim: str | None = None
    aspf: str | None = None

    def value(self) -> str:
        """The TXT value: ``v=DMARC1; p=none; rua=mailto:...``."""
        tags = [("v", "DMARC1"), ("p", self.policy)]
        if self.subdomain_policy:
            tags.append(("sp", self.subdomain_policy))
        if self.adkim:
            tags.append(("adkim", self.adkim))
        if self.aspf:
            tags.append(("aspf", self.aspf))
        if self.rua:
            tags.append(("rua", ",".join(self.rua)))
        return "; ".join(f"{k}={v}" for k, v in tags)


@dataclass(frozen=True)
class DomainDns:
    """The deliverability settings of one domain."""

    public_address: str | None
    """Address of the MX host's A record; ``None`` when unknown (then no A record is generated)."""
    egress: Egress | None
    """Where this server's mail leaves from: its own egress, else the stack's, else unknown (lab)."""
    own_egress: bool = False
    """True when the domain opted into its own egress network."""
    dmarc: Dmarc = field(default_factory=Dmarc)
    tlsrpt: tuple[str, ...] = ()
    """TLS-RPT report URIs (``mailto:`` or ``https:``); empty: no TLS-RPT record."""


@dataclass(frozen=True)
class Record:
    """One DNS record: ``name`` without the trailing dot, ``value`` in zone-file presentation form.

    TXT values are a list of strings of at most 255 octets each, joined without separators by readers.
    ``advice`` marks a record that is not set in the domain's zone (a PTR: set by whoever owns the address).
    """

    name: str
    type: str
    value: str | tuple[str, ...]
    ttl: int = DEFAULT_TTL
    advice: str = ""

    def as_output(self) -> dict[str, Any]:
        """The record as the ``dns`` stack output carries it."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "value": list(self.value) if isinstance(self.value, tuple) else self.value,
            "ttl": self.ttl,
        }
        if self.advice:
            out["advice"] = self.advice
        return out


def is_reserved(name: str) -> bool:
    """True for names under a suffix that public DNS never resolves (``.local``, ``.test``...)."""
    return any(name.lower().rstrip(".").endswith(s) for s in RESERVED_SUFFIXES)


def is_public(address: str) -> bool:
    """True for a public unicast IPv4 address, or one of the documentation ranges that stand in for one.

    The documentation ranges (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are accepted so that
    examples and tests can use them; private, loopback, link-local, multicast and 0.0.0.0 are not public.
    """
    ip = IPv4Address(address)
    return (ip.is_global and not ip.is_multicast) or any(ip in n for n in DOCUMENTATION_NETWORKS)


def split_txt(value: str) -> tuple[str, ...]:
    """Split a TXT value into character-strings of at most 255 octets (ASCII values only)."""
    data = value.encode("ascii")
    return tuple(data[i : i + TXT_CHUNK].decode("ascii") for i in range(0, len(data), TXT_CHUNK)) or ("",)


def _uris(raw: Any, where: str, schemes: tuple[str, ...], problems: Problems) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        problems.add(where, f"must be a list of {' or '.join(schemes)} URIs")
        return ()
    result = []
    for i, uri in enumerate(items):
        at = f"{where}[{i}]" if not isinstance(raw, str) else where
        if not isinstance(uri, str) or not uri.startswith(schemes) or any(c in uri for c in " ;,!\"'"):
            problems.add(
                at,
                f"report address {uri!r} must be a {' or '.join(s.rstrip(':') + ':' for s in schemes)} URI "
                "without spaces, ';' or ',', e.g. mailto:dmarc@example.org",
            )
            continue
        if uri.startswith("mailto:") and not re.fullmatch(r"mailto:[^@\s]+@[a-z0-9.-]+\.[a-z0-9-]+", uri):
            problems.add(at, f"report address {uri!r} is not mailto:<local>@<domain>")
            continue
        result.append(uri)
    return tuple(result)


def _merge(layers: Sequence[tuple[Any, str]], keys: frozenset[str], shape: str, problems: Problems) -> tuple:
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw, where in layers:
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problems.add(where, f"must be an object {shape}")
            continue
        for key in sorted(set(raw) - keys):
            problems.add(f"{where}.{key}", f"unknown key; allowed keys are {', '.join(sorted(keys))}")
        for key in keys & set(raw):
            merged[key], origin[key] = raw[key], f"{where}.{key}"
    return merged, origin


def parse_dmarc(
    stack_raw: Any, domain_raw: Any, where_stack: str, where_domain: str, problems: Problems
) -> Dmarc:
    """Merge ``mailstack:dmarc`` with a domain's ``dmarc`` and validate it."""
    merged, origin = _merge(
        [(stack_raw, where_stack), (domain_raw, where_domain)], DMARC_KEYS, "{policy, rua, ...}", problems
    )

    def at(key: str) -> str:
        return origin.get(key, f"{where_domain}.{key}")

    def policy(key: str, default: str | None) -> str | None:
        value = merged.get(key, default)
        if value is not None and value not in DMARC_POLICIES:
            problems.add(at(key), f"DMARC policy must be one of {', '.join(DMARC_POLICIES)}, got {value!r}")
            return default
        return value

    def alignment(key: str) -> str | None:
        value = merged.get(key)
        if value is not None and value not in ALIGNMENT:
            problems.add(at(key), f"must be r (relaxed) or s (strict), got {value!r}")
            return None
        return value

    return Dmarc(
        policy=policy("policy", "none") or "none",
        subdomain_policy=policy("subdomainPolicy", None),
        rua=_uris(merged.get("rua"), at("rua"), ("mailto:", "https:"), problems),
        adkim=alignment("adkim"),
        aspf=alignment("aspf"),
    )


def parse_tlsrpt(
    stack_raw: Any, domain_raw: Any, where_stack: str, where_domain: str, problems: Problems
) -> tuple[str, ...]:
    """Merge ``mailstack:tlsrpt`` with a domain's ``tlsrpt``; the report URIs (RFC 8460 section 3)."""
    merged, origin = _merge(
        [(stack_raw, where_stack), (domain_raw, where_domain)], TLSRPT_KEYS, "{rua}", problems
    )
    return _uris(merged.get("rua"), origin.get("rua", f"{where_domain}.rua"), ("mailto:", "https:"), problems)


def parse_egress(raw: Any, where: str, problems: Problems, production: bool = True) -> Egress | None:
    """Validate an ``egress`` object: an IPv4 address (public in production) and a fully qualified name.

    Outside production any unicast host address is accepted (a lab or test host behind NAT).
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(
            where, "must be an object {address, name}: the public address mail leaves from and its PTR name"
        )
        return None
    for key in sorted(set(raw) - EGRESS_KEYS):
        problems.add(f"{where}.{key}", f"unknown key; allowed keys are {', '.join(sorted(EGRESS_KEYS))}")
    address, name = raw.get("address"), raw.get("name")
    ok = True
    try:
        ip = str(IPv4Address(str(address)))
    except ValueError:
        problems.add(
            f"{where}.address", f"must be the public IPv4 address outgoing mail leaves from, got {address!r}"
        )
        ok = False
    else:
        if (
            (production and not is_public(ip))
            or IPv4Address(ip).is_unspecified
            or IPv4Address(ip).is_multicast
        ):
            problems.add(
                f"{where}.address",
                f"{ip} is not a public unicast address: receivers see the host's public (NAT) address, give that",
            )
            ok = False
    if not isinstance(name, str) or not FQDN_RE.match(name):
        problems.add(
            f"{where}.name", f"must be the fully qualified name the address's PTR gives, got {name!r}"
        )
        ok = False
    return Egress(address=ip, name=name) if ok else None  # type: ignore[arg-type]


def parse_public_address(
    raw: Any, bind_address: str, where: str, production: bool, problems: Problems
) -> str | None:
    """The MX host's public address: explicit, else a public ``bindAddress``; required in production."""
    if raw is not None:
        try:
            ip = str(IPv4Address(str(raw)))
        except ValueError:
            problems.add(f"{where}.publicAddress", f"must be an IPv4 address, got {raw!r}")
            return None
        if production and not is_public(ip):
            problems.add(f"{where}.publicAddress", f"{ip} is not a public unicast address")
        return ip
    if is_public(bind_address):
        return bind_address
    if production:
        problems.add(
            f"{where}.publicAddress",
            f"is required: bindAddress {bind_address} is not public, so give the public address the A record of "
            "the mail host names (the address other servers connect to)",
        )
        return None
    return bind_address if bind_address != "0.0.0.0" else None


@dataclass(frozen=True)
class DnsDomain:
    """What ``records_for`` needs to know about one domain (a view of ``config.model.Domain``)."""

    domain: str
    hostname: str
    dns: DomainDns
    client_ports: Mapping[str, int]
    """Host ports of the client services that are reachable on the public address (submission, imap...)."""
    dkim_selectors: Mapping[str, str] = field(default_factory=dict)
    """Selector to its TXT value (unsplit); empty when DKIM is off."""


def zone_of(name: str, zones: Iterable[str]) -> str:
    """The longest of ``zones`` that ``name`` is in (itself or a subdomain), else ``name`` itself."""
    best = ""
    for zone in zones:
        if (name == zone or name.endswith("." + zone)) and len(zone) > len(best):
            best = zone
    return best or name


def records_for(domains: Sequence[DnsDomain], stack_egress: Egress | None) -> dict[str, list[Record]]:
    """Every record to publish, grouped by zone (the mail domains, plus any egress name outside them)."""
    zones = [d.domain for d in domains]
    out: dict[str, list[Record]] = {}

    def put(rec: Record) -> None:
        # A PTR lives in the address owner's reverse zone: it is listed, as advice, with its name's zone.
        owner = rec.value.rstrip(".") if rec.type == "PTR" and isinstance(rec.value, str) else rec.name
        out.setdefault(zone_of(owner, zones), []).append(rec)

    for d in domains:
        out.setdefault(d.domain, [])
    helo: dict[str, Egress] = {}
    for d in domains:
        put(Record(d.domain, "MX", f"10 {d.hostname}."))
        if d.dns.public_address:
            put(Record(d.hostname, "A", d.dns.public_address))
        if d.dns.egress is not None:
            put(Record(d.domain, "TXT", split_txt(f"v=spf1 ip4:{d.dns.egress.address} -all")))
            helo.setdefault(d.dns.egress.name, d.dns.egress)
        for selector, value in sorted(d.dkim_selectors.items()):
            put(Record(record_name(d.domain, selector), "TXT", split_txt(value)))
        put(Record(f"_dmarc.{d.domain}", "TXT", split_txt(d.dns.dmarc.value())))
        for uri in d.dns.dmarc.rua:
            if not uri.startswith("mailto:"):
                continue
            dest = uri.removeprefix("mailto:").rsplit("@", 1)[1]
            if dest != d.domain and zone_of(dest, zones) in zones:
                # RFC 7489 7.1: a report destination in another domain authorises the reports.
                put(Record(f"{d.domain}._report._dmarc.{dest}", "TXT", ("v=DMARC1",)))
        if d.dns.tlsrpt:
            put(
                Record(
                    f"_smtp._tls.{d.domain}", "TXT", split_txt(f"v=TLSRPTv1; rua={','.join(d.dns.tlsrpt)}")
                )
            )
        for service, label in CLIENT_SERVICES:
            if service in d.client_ports:
                put(Record(f"{label}.{d.domain}", "SRV", f"0 1 {d.client_ports[service]} {d.hostname}."))
    if stack_egress is not None:
        helo.setdefault(stack_egress.name, stack_egress)
    hostnames = {d.hostname: d.dns.public_address for d in domains}
    for name, egress in sorted(helo.items()):
        # The HELO name: forward-confirmed reverse DNS (PTR -> name -> the same address) and its own SPF.
        if hostnames.get(name) != egress.address:
            put(Record(name, "A", egress.address))
        put(Record(name, "TXT", ("v=spf1 a -all",)))
        put(
            Record(
                reverse_name(egress.address),
                "PTR",
                f"{name}.",
                advice=f"set the reverse DNS of {egress.address} to {name} where the address is hosted "
                "(your provider's panel), not in your zone",
            )
        )
    # Records whose zone is not a mail domain (an egress name elsewhere) keep their own group.
    return {zone: _dedupe(recs) for zone, recs in out.items()}


def _dedupe(records: list[Record]) -> list[Record]:
    seen: set[tuple[str, str, str]] = set()
    result = []
    for r in records:
        key = (r.name, r.type, repr(r.value))
        if key not in seen:
            seen.add(key)
            result.append(r)
    return result


def reverse_name(address: str) -> str:
    """The in-addr.arpa name of an IPv4 address."""
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def helo_conflicts(domains: Sequence[DnsDomain]) -> list[str]:
    """Problems with the HELO names: an egress name that is also an MX host with another public address."""
    problems = []
    hosts = {d.hostname: d for d in domains}
    for egress in {d.dns.egress for d in domains if d.dns.egress is not None}:
        host = hosts.get(egress.name)
        if host is not None and host.dns.public_address not in (None, egress.address):
            problems.append(
                f"egress name {egress.name} is the mail host of {host.domain}, whose A record "
                f"names {host.dns.public_address}, not the egress address {egress.address}: one name cannot have "
                "both; use another name for the egress, or make them the same address"
            )
    return sorted(set(problems))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_zone(zone: str, records: Sequence[Record], *, include_advice: bool = False) -> str:
    """A zone-file fragment for ``zone`` (``$ORIGIN`` and absolute names).

    Advice records (the PTR) are comments, unless ``include_advice`` (a test server answering them too).
    """
    lines = [f"; mailstack: records for {zone}", f"$ORIGIN {zone}."]
    for r in records:
        value = " ".join(_quote(s) for s in r.value) if isinstance(r.value, tuple) else r.value
        line = f"{r.name}. {r.ttl} IN {r.type} {value}"
        if r.advice and not include_advice:
            lines.append(f"; {r.advice}:")
            lines.append(f"; {line}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"
