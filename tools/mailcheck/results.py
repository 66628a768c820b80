"""Results of the check (``Report`` and its parts) and the ``Scrubber`` that keeps passwords out of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.mailcheck.dnscheck import DnsResult

MASK = "********"


@dataclass
class PairResult:
    """Outcome of one A -> B delivery: ``ok`` with the delivery time, or the reason it failed."""

    sender: str
    recipient: str
    ok: bool = False
    seconds: float | None = None
    reason: str = ""
    token: str = ""
    dkim_ok: bool | None = None
    """DKIM result of the delivered message: ``None`` when not checked (DKIM off for the sender, or no mail)."""
    dkim: str = ""
    """What the DKIM check found (``d=example.org s=mail``, ``unsigned: ...``)."""

    def dkim_cell(self) -> str:
        """DKIM matrix cell: ``ok d=... s=...``, ``off`` or ``FAIL: <reason>``."""
        if self.dkim_ok is None:
            return self.dkim or "off"
        return f"ok {self.dkim}" if self.dkim_ok else f"FAIL: {self.dkim}"

    def cell(self) -> str:
        """Matrix cell text: ``ok 1.8s`` or ``FAIL: <reason>``."""
        if self.ok:
            return f"ok {self.seconds or 0.0:.1f}s"
        return f"FAIL: {self.reason}"


@dataclass
class ProbeResult:
    """Outcome of one negative probe on one server."""

    server: str
    domain: str
    name: str
    ok: bool
    detail: str


@dataclass
class WebmailResult:
    """Outcome of the webmail check of one domain."""

    domain: str
    url: str
    ok: bool
    detail: str


@dataclass
class CleanupResult:
    """What the cleanup deleted, what it could not find and what went wrong."""

    deleted_inbox: int = 0
    deleted_sent: int = 0
    not_found: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one run found; ``render_report`` turns it into text."""

    stack: str
    domains: list[str]
    pairs: dict[tuple[str, str], PairResult]
    probes: list[ProbeResult] = field(default_factory=list)
    webmail: list[WebmailResult] = field(default_factory=list)
    webmail_skipped: bool = False
    cleanup: CleanupResult = field(default_factory=CleanupResult)
    unreachable: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    dkim_checked: bool = False
    """True when the stack publishes DKIM records for some domain (the report shows the DKIM matrix)."""
    dns: list[DnsResult] = field(default_factory=list)
    dns_resolver: str = ""
    """Where the DNS check asked (``system resolver`` or ``HOST:PORT``); empty when it did not run."""

    @property
    def passed(self) -> bool:
        """True when every pair, probe, webmail check and the cleanup passed and every port answered."""
        return (
            all(p.ok and p.dkim_ok is not False for p in self.pairs.values())
            and all(r.ok for r in self.dns)
            and all(p.ok for p in self.probes)
            and all(w.ok for w in self.webmail)
            and not self.cleanup.errors
            and not self.unreachable
        )

    @property
    def exit_code(self) -> int:
        """0 all passed, 2 some port was unreachable, 1 any other failure."""
        if self.unreachable:
            return 2
        return 0 if self.passed else 1


class Scrubber:
    """Replace every known secret in a text by a mask; used on everything the check prints."""

    def __init__(self, secrets: Iterable[str]) -> None:
        """Remember the non-empty secrets, longest first so that overlapping ones are fully masked."""
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text
