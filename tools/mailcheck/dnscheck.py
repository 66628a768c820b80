"""The DNS check of ``make verify``: every record of the ``dns`` stack output, looked up and compared.

Each expected record is looked up (dnspython; the system resolver, or ``--nameserver HOST[:PORT]``) and
reported as ``ok``, ``missing`` (no such name or no record of that type) or ``different`` (showing what was
found). A zone under a reserved name (``.local``, ``.test``, ``.internal``, ``.example``...) is skipped with
the reason: public DNS never resolves it. SPF and DMARC must be the only record of their kind at their name
(a second ``v=spf1`` record is a permanent error for receivers, RFC 7208 4.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from config.dns import Record, is_reserved

DEFAULT_TIMEOUT = 5.0
EXCLUSIVE_PREFIXES = ("v=spf1", "v=DMARC1")
"""TXT kinds of which a name may hold only one record."""


@dataclass
class DnsResult:
    """The outcome of one expected record."""

    zone: str
    record: Record | None
    status: str
    """``ok``, ``missing``, ``different``, ``error`` (the lookup failed) or ``skipped`` (reserved zone)."""
    found: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True for a published record or a zone skipped on purpose."""
        return self.status in ("ok", "skipped")


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for IPv6) to ``(host, port)``; port 53 by default."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def make_resolver(nameserver: str | None, timeout: float = DEFAULT_TIMEOUT) -> dns.resolver.Resolver:
    """A resolver for the system's name servers, or only for ``nameserver`` (``HOST[:PORT]``)."""
    if nameserver is None:
        resolver = dns.resolver.Resolver()
    else:
        host, port = parse_nameserver(nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def _text(record: Record) -> str:
    if isinstance(record.value, tuple):
        return "".join(record.value)
    return record.value


def _normal(rtype: str, value: str) -> str:
    value = " ".join(value.split())
    if rtype in ("MX", "SRV", "PTR", "CNAME", "NS"):
        return value.lower().rstrip(".") + "."
    return value


def _answers(resolver: dns.resolver.Resolver, name: str, rtype: str) -> list[str]:
    answer = resolver.resolve(dns.name.from_text(name), rtype, raise_on_no_answer=False, search=False)
    if answer.rrset is None:
        return []
    if rtype == "TXT":
        return sorted(b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset)
    return sorted(_normal(rtype, r.to_text()) for r in answer.rrset)


def _tag(value: str) -> str:
    """The version tag a TXT value starts with (``v=spf1``, ``v=dmarc1``), lowercased."""
    words = value.split(";", 1)[0].split()
    return words[0].lower() if words else ""


def check_record(resolver: dns.resolver.Resolver, zone: str, record: Record) -> DnsResult:
    """Look one expected record up and compare it with what the resolver answers."""
    expected = _normal(record.type, _text(record))
    try:
        found = _answers(resolver, record.name, record.type)
    except dns.resolver.NXDOMAIN:
        return DnsResult(zone, record, "missing", detail=f"{record.name} does not exist")
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
        return DnsResult(zone, record, "error", detail=f"lookup failed: {exc}")
    if record.type == "TXT":
        kind = next((p for p in EXCLUSIVE_PREFIXES if expected.startswith(p)), None)
        same_kind = [f for f in found if kind and _tag(f) == kind.lower()]
        if kind and len(same_kind) > 1:
            return DnsResult(
                zone, record, "different", same_kind, f"{len(same_kind)} '{kind}' records: keep only one"
            )
        relevant = same_kind if kind else found
        if not relevant:
            return DnsResult(zone, record, "missing", found, f"no {kind or 'such'} TXT record")
        if expected in [_normal("TXT", f) for f in relevant]:
            return DnsResult(zone, record, "ok", relevant)
        return DnsResult(zone, record, "different", relevant)
    if not found:
        return DnsResult(zone, record, "missing", detail=f"no {record.type} record")
    if expected in found:
        return DnsResult(zone, record, "ok", found)
    return DnsResult(zone, record, "different", found)


def check_zones(zones: Mapping[str, Sequence[Record]], resolver: dns.resolver.Resolver) -> list[DnsResult]:
    """Check every record of every zone; a reserved zone gives one ``skipped`` result with the reason.

    Once the resolver times out, the remaining records are reported as errors without asking again.
    """
    results: list[DnsResult] = []
    silent: str | None = None  # after a timeout the other lookups would only wait as long each
    for zone, records in zones.items():
        if is_reserved(zone):
            suffix = "." + zone.rsplit(".", 1)[-1]
            results.append(
                DnsResult(
                    zone,
                    None,
                    "skipped",
                    detail=f"{suffix} is a reserved name that public DNS never resolves (a lab domain)",
                )
            )
            continue
        for r in records:
            if silent is not None:
                results.append(DnsResult(zone, r, "error", detail=f"not asked: {silent}"))
                continue
            result = check_record(resolver, zone, r)
            if result.status == "error" and "timed out" in result.detail:
                silent = f"the resolver did not answer ({result.detail.removeprefix('lookup failed: ')[:80]})"
            results.append(result)
    return results


def render(results: Sequence[DnsResult], resolver_label: str) -> list[str]:
    """The DNS block of the report."""
    lines = [f"DNS (resolver: {resolver_label})"]
    for zone in dict.fromkeys(r.zone for r in results):
        lines.append(f"  {zone}")
        for r in results:
            if r.zone != zone:
                continue
            if r.record is None:
                lines.append(f"    skipped    {r.detail}")
                continue
            head = f"    {r.status:<10} {r.record.type:<5} {r.record.name}"
            if r.status == "ok":
                lines.append(head)
            elif r.status == "different":
                found = "; ".join(r.found) or "nothing"
                extra = f" ({r.detail})" if r.detail else ""
                lines.append(f"{head}: expected {_text(r.record)!r}, found {found!r}{extra}")
            else:
                lines.append(f"{head}: {r.detail}")
    return lines
