"""The DKIM column of ``make verify``: each delivered test message must be signed by its sender's domain.

The signature is verified with dkimpy against the keys of the ``dns`` stack output (the records mailstack
generated), not against public DNS: the check works before the records are published, and proves that the
server signs with the key whose record the stack publishes. An unsigned message, a signature of another
domain, or one that does not verify fails.
"""

from __future__ import annotations

import email
from collections.abc import Mapping, Sequence

import dkim

from config.dns import Record

DOMAINKEY = "._domainkey."


def dkim_records(zones: Mapping[str, Sequence[Record]]) -> dict[str, dict[str, str]]:
    """Mail domain to ``{record name: joined TXT value}`` of its DKIM records (domains without DKIM absent)."""
    result: dict[str, dict[str, str]] = {}
    for records in zones.values():
        for r in records:
            if r.type == "TXT" and DOMAINKEY in r.name:
                domain = r.name.split(DOMAINKEY, 1)[1]
                value = "".join(r.value) if isinstance(r.value, tuple) else r.value
                result.setdefault(domain, {})[r.name.lower()] = value
    return result


def check_signature(raw: bytes, domain: str, records: Mapping[str, str]) -> tuple[bool, str]:
    """Verify the DKIM signatures of ``raw``: ``(True, "d=... s=...")`` when one of ``domain`` verifies.

    ``records`` maps ``<selector>._domainkey.<domain>`` to the TXT value the key is looked up in.
    """
    message = email.message_from_bytes(raw)
    count = len(message.get_all("DKIM-Signature") or [])
    if count == 0:
        return False, "unsigned: the message has no DKIM-Signature"

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        del timeout
        value = records.get(name.decode("ascii", "replace").rstrip(".").lower())
        return value.encode("ascii") if value is not None else None

    seen = []
    for index in range(count):
        checker = dkim.DKIM(raw)
        try:
            good = checker.verify(idx=index, dnsfunc=lookup)
        except dkim.DKIMException as exc:
            seen.append(f"signature {index + 1}: {exc}")
            continue
        signer = (checker.domain or b"").decode("ascii", "replace").lower()
        selector = (checker.selector or b"").decode("ascii", "replace")
        if good and signer == domain.lower():
            return True, f"d={signer} s={selector}"
        if good:
            seen.append(f"signed by d={signer}, not {domain}")
        else:
            known = f"{selector}._domainkey.{signer}" in records
            why = "does not verify" if known else "names a key the stack does not publish"
            seen.append(f"d={signer} s={selector} {why}")
    return False, "bad signature: " + "; ".join(seen)
