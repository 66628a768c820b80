"""Check after deploying that mail flows between every pair of the stack's domains.

Usage::

    python -m tools.verify [--stack NAME] [--outputs FILE] [--host HOST] [--timeout SECONDS] [--no-webmail]

The check reads the stack output ``verify`` (schema 1, one account per domain; see ``load_targets``)
from ``pulumi stack output --json --show-secrets`` or from a JSON file, then:

* for every ordered pair of domains A -> B (A -> A too) logs in to A's submission port as A's account,
  sends a message carrying a unique token to B's account, and polls B's IMAP INBOX until it arrives;
  all messages are sent first and then polled in one loop, so the run takes as long as the slowest pair;
* probes every server: a wrong password is refused on submission (535) and IMAP (NO); the smtp port does
  not relay for a foreign domain; an unknown local recipient is rejected (5xx);
* checks each webmail: the Roundcube login page is served and a login with the domain's account succeeds;
* verifies the DKIM signature of every delivered message with dkimpy against the keys of the ``dns`` output
  (so it works before the records are published): an unsigned or badly signed message fails its pair;
* resolves every record of the ``dns`` output (dnspython; ``--nameserver HOST[:PORT]`` for a chosen
  resolver) and reports each as ok, missing or different; zones under reserved names (``.local``...) are
  skipped with the reason (``--no-dns`` skips the DNS check, ``--only-dns`` runs nothing else);
* deletes exactly the test messages afterwards (``UID STORE +FLAGS \\Deleted`` and ``UID EXPUNGE`` on
  their UIDs only), and prints a sender x recipient matrix, the probe results and a summary.

Exit codes: 0 all passed, 1 some check failed, 2 the check could not run as asked (no such stack, not
deployed, outputs of another version, a port unreachable). Passwords are never printed.
Standard library only, so it runs anywhere Python 3.11 does. The building blocks live in
``tools/mailcheck`` (outputs, SMTP/IMAP clients, probes, webmail, results); this module runs them.

From Python (the e2e suite)::

    from tools import verify
    report = verify.run(verify.load_targets(outputs), timeout=300)
    assert report.passed, verify.render_report(report)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import imaplib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tools.dns import load_records
from tools.mailcheck import dnscheck
from tools.mailcheck.dkimcheck import check_signature, dkim_records
from tools.mailcheck.mail import (
    AUTH_TIMEOUT,
    SUBJECT_PREFIX,
    Mailbox,
    Submission,
    SubmissionError,
    build_message,
    describe_error,
    new_token,
    port_error,
    send_all,
)
from tools.mailcheck.probes import RELAY_PROBE_DOMAIN, probe_server
from tools.mailcheck.results import CleanupResult, PairResult, ProbeResult, Report, Scrubber, WebmailResult
from tools.mailcheck.targets import (
    SCHEMA,
    Account,
    Target,
    VerifyError,
    load_targets,
    override_host,
)
from tools.mailcheck.webmail import check_webmail
from tools.stackoutputs import OutputsError, read_outputs_file, read_stack_outputs

__all__ = [
    "AUTH_TIMEOUT",
    "RELAY_PROBE_DOMAIN",
    "SCHEMA",
    "SUBJECT_PREFIX",
    "Account",
    "CleanupResult",
    "PairResult",
    "ProbeResult",
    "Report",
    "Scrubber",
    "Target",
    "VerifyError",
    "WebmailResult",
    "build_message",
    "check_pair",
    "check_webmail",
    "cleanup",
    "load_targets",
    "main",
    "override_host",
    "probe_server",
    "read_outputs_file",
    "read_stack_outputs",
    "render_report",
    "run",
]

DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for each test message (``--timeout``)."""
DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a TCP connection when checking that the ports answer."""
POLL_INTERVAL = 1.0
PROGRESS_EVERY = 5.0

Progress = Callable[[str], None]


@dataclass
class _Sent:
    pair: PairResult
    recipient: Target
    sent_at: float
    reply: str


def check_pair(
    sender: Target,
    recipient: Target,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    poll_interval: float = POLL_INTERVAL,
) -> PairResult:
    """Send one test message ``sender`` -> ``recipient``, wait for it in the recipient's INBOX, delete it."""
    report = run(
        [sender] if sender == recipient else [sender, recipient],
        timeout=timeout,
        connect_timeout=connect_timeout,
        poll_interval=poll_interval,
        webmail=False,
        probes=False,
        pairs=[(sender.domain, recipient.domain)],
    )
    return report.pairs[(sender.domain, recipient.domain)]


def _unreachable_line(t: Target, service: str, port: int, reason: str) -> str:
    return (
        f"{t.domain} ({t.server}): {service} port {t.host}:{port} is unreachable ({reason}): check that the "
        "stack is up and the port is published (docker ps), or pass --host for a remote Docker host"
    )


def run(
    targets: Sequence[Target],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    poll_interval: float = POLL_INTERVAL,
    webmail: bool = True,
    probes: bool = True,
    progress: Progress | None = None,
    stack: str = "",
    pairs: Sequence[tuple[str, str]] | None = None,
    token_factory: Callable[[], str] = new_token,
    dkim_keys: Mapping[str, Mapping[str, str]] | None = None,
) -> Report:
    """Run the whole check and return the report (the caller renders it and picks the exit code).

    ``pairs`` limits the delivery matrix (default: every ordered pair, A -> A included); ``token_factory``
    makes the per-message tokens (tests may pass their own). ``dkim_keys`` (mail domain to its DKIM records,
    ``tools.mailcheck.dkimcheck.dkim_records``) turns on the DKIM check of messages from those domains.
    """
    say = progress or (lambda _msg: None)
    # The port check uses connect_timeout; sessions wait longer, since logins may be delayed on purpose.
    io_timeout = max(connect_timeout, AUTH_TIMEOUT)
    by_domain = {t.domain: t for t in targets}
    wanted = list(pairs) if pairs is not None else [(a.domain, b.domain) for a in targets for b in targets]
    secrets = tuple(t.account.password for t in targets)
    scrub = Scrubber(secrets)
    report = Report(
        stack=stack,
        domains=[t.domain for t in targets],
        pairs={(a, b): PairResult(a, b) for a, b in wanted},
        secrets=secrets,
        webmail_skipped=not webmail,
        dkim_checked=bool(dkim_keys),
    )

    # 1. Every port must accept a TCP connection; the unreachable ones are reported, the rest still checked.
    down: dict[tuple[str, str], str] = {}
    checks = [
        (t, svc, port)
        for t in targets
        for svc, port in (("smtp", t.smtp_port), ("submission", t.submission_port), ("IMAP", t.imap_port))
    ]
    say(f"checking {len(checks)} ports of {len(targets)} domain(s)")
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(checks))) as pool:
        errors = list(pool.map(lambda c: port_error(c[0].host, c[2], connect_timeout), checks))
    for (t, svc, port), err in zip(checks, errors, strict=True):
        if err:
            down[(t.domain, svc)] = f"{svc} {t.host}:{port} unreachable: {err}"
            report.unreachable.append(_unreachable_line(t, svc, port, err))

    # 2. Log in everywhere at once: each recipient's IMAP (no message is sent to a mailbox the check cannot
    #    read) and each sender's submission port. In parallel, so that refused logins, which Dovecot delays
    #    on purpose, cost their delay only once.
    recipients = [by_domain[d] for d in dict.fromkeys(b for _, b in wanted)]
    senders = [by_domain[d] for d in dict.fromkeys(a for a, _ in wanted)]
    mailboxes: dict[str, Mailbox] = {}
    mailbox_error: dict[str, str] = {}
    submissions: dict[str, Submission] = {}
    submission_error: dict[str, str] = {}

    def open_mailbox(t: Target) -> Mailbox | str:
        if (t.domain, "IMAP") in down:
            return down[(t.domain, "IMAP")]
        try:
            mb = Mailbox(t, io_timeout)
        except (imaplib.IMAP4.error, OSError) as exc:
            return f"IMAP {t.host}:{t.imap_port} login as {t.account.address} failed: {describe_error(exc)}"
        try:
            if mb.open("INBOX", readonly=True):
                return mb
            reason = f"IMAP {t.host}:{t.imap_port}: INBOX of {t.account.address} cannot be opened"
        except (imaplib.IMAP4.error, OSError) as exc:
            reason = f"IMAP {t.host}:{t.imap_port}: {describe_error(exc)}"
        mb.close()
        return reason

    def open_submission(t: Target) -> Submission | str:
        if (t.domain, "submission") in down:
            return down[(t.domain, "submission")]
        try:
            return Submission(t, io_timeout)
        except SubmissionError as exc:
            return str(exc)

    sent: list[_Sent] = []
    probe_futures: list[concurrent.futures.Future] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=16)
    try:
        mb_futures = {t.domain: pool.submit(open_mailbox, t) for t in recipients}
        sub_futures = {t.domain: pool.submit(open_submission, t) for t in senders}
        for domain, fut in mb_futures.items():
            mb_or_error = fut.result()
            if isinstance(mb_or_error, Mailbox):
                mailboxes[domain] = mb_or_error
            else:
                mailbox_error[domain] = mb_or_error
        for domain, fut in sub_futures.items():
            sub_or_error = fut.result()
            if isinstance(sub_or_error, Submission):
                submissions[domain] = sub_or_error
            else:
                submission_error[domain] = sub_or_error

        # 3. Send every message (senders in parallel, each over its own session).
        jobs: dict[str, list[Target]] = {a: [] for a in submissions}
        for a, b in wanted:
            unreadable = (
                f"cannot read the recipient's mailbox: {mailbox_error[b]}" if b in mailbox_error else ""
            )
            if a in submission_error:
                reasons = [submission_error[a], unreadable] if unreadable else [submission_error[a]]
                report.pairs[(a, b)].reason = "; and ".join(reasons)
            elif unreadable:
                report.pairs[(a, b)].reason = "not sent: " + unreadable
            else:
                jobs[a].append(by_domain[b])
        tokens = {(a, b.domain): token_factory() for a, rcpts in jobs.items() for b in rcpts}
        for a, b in tokens:
            report.pairs[(a, b)].token = tokens[(a, b)]
        say(f"sending {len(tokens)} test message(s)")
        send_futures = {
            a: pool.submit(
                send_all, submissions.pop(a), rcpts, {b.domain: tokens[(a, b.domain)] for b in rcpts}
            )
            for a, rcpts in jobs.items()
        }
        for a, fut in send_futures.items():
            for rcpt, sent_at, detail in fut.result():
                if sent_at is None:
                    report.pairs[(a, rcpt.domain)].reason = detail
                else:
                    sent.append(_Sent(report.pairs[(a, rcpt.domain)], rcpt, sent_at, detail))

        # 4. Probes and webmail checks run in the background while the loop below waits for the mail.
        if probes:
            probe_futures += [
                pool.submit(
                    probe_server,
                    t,
                    timeout=io_timeout,
                    skip={svc: why for (domain, svc), why in down.items() if domain == t.domain},
                )
                for t in targets
            ]
        web_futures = [
            pool.submit(check_webmail, t, timeout=io_timeout) for t in targets if webmail and t.webmail_url
        ]
        _wait_for_messages(sent, mailboxes, timeout, poll_interval, say, dkim_keys or {})
        for fut in probe_futures:
            report.probes += fut.result()
        report.webmail = [fut.result() for fut in web_futures]
    finally:
        # 5. Delete exactly the test messages, also after an error or Ctrl-C, reusing the sessions.
        if sent:
            say("deleting the test messages")
            report.cleanup = cleanup(
                sent_pairs=[s.pair for s in sent], targets=by_domain, timeout=io_timeout, sessions=mailboxes
            )
        for mb in mailboxes.values():
            mb.close()
        for sub in submissions.values():  # only left over when an error came between login and sending
            sub.close()
        pool.shutdown(wait=False, cancel_futures=True)

    for p in report.pairs.values():
        p.reason = scrub(p.reason)
    for pr in report.probes:
        pr.detail = scrub(pr.detail)
    for w in report.webmail:
        w.detail = scrub(w.detail)
    report.cleanup.errors = [scrub(e) for e in report.cleanup.errors]
    report.unreachable = [scrub(u) for u in report.unreachable]
    return report


def _wait_for_messages(
    sent: list[_Sent],
    mailboxes: dict[str, Mailbox],
    timeout: float,
    poll_interval: float,
    say: Progress,
    dkim_keys: Mapping[str, Mapping[str, str]],
) -> None:
    """Poll every recipient INBOX in one loop until each message arrived or its deadline passed.

    An arrived message of a sender with DKIM records has its signature verified against them.
    """
    pending = list(sent)
    if not pending:
        return
    start = time.monotonic()
    last_progress = start
    say(f"waiting for {len(pending)} message(s) (up to {timeout:.0f}s)")
    while pending:
        now = time.monotonic()
        by_rcpt: dict[str, list[_Sent]] = {}
        for s in pending:
            by_rcpt.setdefault(s.recipient.domain, []).append(s)
        for domain, items in by_rcpt.items():
            mb = mailboxes[domain]
            try:
                mb.refresh()
                for s in items:
                    uids = mb.search(s.pair.token)
                    if not uids:
                        continue
                    s.pair.seconds = time.monotonic() - s.sent_at
                    raw = mb.fetch(uids[-1])
                    if mb.holds_token(uids[-1], s.pair.token, raw):
                        s.pair.ok, s.pair.reason = True, ""
                        if s.pair.sender in dkim_keys:
                            s.pair.dkim_ok, s.pair.dkim = check_signature(
                                raw, s.pair.sender, dkim_keys[s.pair.sender]
                            )
                    else:
                        s.pair.reason = (
                            "a message with the token's Subject arrived but its body lacks the token"
                        )
                    pending.remove(s)
            except (imaplib.IMAP4.error, OSError) as exc:
                for s in items:
                    s.pair.reason = (
                        f"IMAP {s.recipient.host}:{s.recipient.imap_port} failed while waiting: "
                        f"{describe_error(exc)}"
                    )
                    pending.remove(s)
        now = time.monotonic()
        expired = [s for s in pending if now - s.sent_at >= timeout]
        for s in expired:
            s.pair.reason = f"not delivered within {timeout:.0f}s (submission accepted it: {s.reply})"
            pending.remove(s)
        if not pending:
            break
        if now - last_progress >= PROGRESS_EVERY:
            last_progress = now
            names = ", ".join(f"{s.pair.sender} -> {s.pair.recipient}" for s in pending)
            say(f"still waiting ({now - start:.0f}s of {timeout:.0f}s): {names}")
        time.sleep(poll_interval)


def cleanup(
    *,
    sent_pairs: Sequence[PairResult],
    targets: dict[str, Target],
    timeout: float,
    sessions: dict[str, Mailbox] | None = None,
) -> CleanupResult:
    """Delete the test messages of ``sent_pairs``: from the recipient's INBOX, and any copy in a Sent folder.

    Only messages found by their token are touched: ``UID STORE +FLAGS.SILENT (\\Deleted)`` and
    ``UID EXPUNGE`` on exactly those UIDs; nothing else in any mailbox changes. ``sessions`` are logged-in
    mailboxes to reuse (no new login, so no login delay after the probes' deliberate failures); a domain
    without one, or whose session broke, gets a fresh login. The caller closes ``sessions``.
    """
    result = CleanupResult()
    inbox_tokens: dict[str, list[PairResult]] = {}
    sent_tokens: dict[str, list[PairResult]] = {}
    for p in sent_pairs:
        inbox_tokens.setdefault(p.recipient, []).append(p)
        sent_tokens.setdefault(p.sender, []).append(p)
    found: set[str] = set()
    searched: set[str] = set()

    def clean(mb: Mailbox, domain: str) -> tuple[int, int]:
        inbox = sent = 0
        if domain in inbox_tokens and mb.open("INBOX", readonly=False):
            uids = []
            for p in inbox_tokens[domain]:
                hits = mb.search(p.token)
                if hits:
                    found.add(p.token)
                uids += hits
            inbox = mb.delete(uids)
            searched.add(domain)
        if domain in sent_tokens:
            for folder in mb.sent_folders():
                if mb.open(folder, readonly=False):
                    sent += mb.delete([u for p in sent_tokens[domain] for u in mb.search(p.token)])
        return inbox, sent

    for domain in dict.fromkeys([*inbox_tokens, *sent_tokens]):
        t = targets[domain]
        session = (sessions or {}).get(domain)
        try:
            try:
                if session is None:
                    raise imaplib.IMAP4.abort("no session")
                inbox, sent = clean(session, domain)
            except imaplib.IMAP4.abort:  # no session, or it broke: once more with a fresh login
                fresh = Mailbox(t, timeout)
                try:
                    inbox, sent = clean(fresh, domain)
                finally:
                    fresh.close()
            result.deleted_inbox += inbox
            result.deleted_sent += sent
        except (imaplib.IMAP4.error, OSError) as exc:
            result.errors.append(f"cleanup in {t.label}: {describe_error(exc)}")
    for p in sent_pairs:
        if p.recipient in searched and p.token not in found:
            result.not_found.append(
                f"{p.sender} -> {p.recipient}: Subject '{SUBJECT_PREFIX} {p.token}' is not in the INBOX "
                "(not delivered yet; delete it by hand if it arrives later)"
            )
    return result


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render_report(report: Report) -> str:
    """The report as text: delivery matrix, probes per server, webmail, cleanup, summary. No passwords."""
    scrub = Scrubber(report.secrets)
    out: list[str] = [
        f"mailstack verify: stack {report.stack or '(outputs file)'}, {len(report.domains)} domain(s)",
        "",
    ]
    senders = [d for d in report.domains if any(a == d for a, _ in report.pairs)]
    rcpts = [d for d in report.domains if any(b == d for _, b in report.pairs)]
    out.append("Delivery (rows: sender, columns: recipient)")
    rows = [["sender \\ recipient", *rcpts]]
    for a in senders:
        rows.append([a, *((report.pairs[(a, b)].cell() if (a, b) in report.pairs else "-") for b in rcpts)])
    out += ["  " + line for line in _table(rows)]

    if report.dkim_checked:
        out += ["", "DKIM of the delivered messages (rows: sender, columns: recipient)"]
        rows = [["sender \\ recipient", *rcpts]]
        for a in senders:
            rows.append(
                [a, *((report.pairs[(a, b)].dkim_cell() if (a, b) in report.pairs else "-") for b in rcpts)]
            )
        out += ["  " + line for line in _table(rows)]

    if report.dns_resolver:
        out += ["", *dnscheck.render(report.dns, report.dns_resolver)]

    if report.probes:
        out += ["", "Probes"]
        for server, domain in dict.fromkeys((p.server, p.domain) for p in report.probes):
            out.append(f"  {server} ({domain})")
            for p in report.probes:
                if (p.server, p.domain) == (server, domain):
                    out.append(f"    {'ok  ' if p.ok else 'FAIL'}  {p.name}: {p.detail}")
    out += ["", "Webmail"]
    if report.webmail_skipped:
        out.append("  skipped (--no-webmail)")
    elif not report.webmail:
        out.append("  none configured")
    for w in report.webmail:
        out.append(f"  {'ok  ' if w.ok else 'FAIL'}  {w.domain} {w.url}: {w.detail}")

    c = report.cleanup
    out += [
        "",
        "Cleanup",
        f"  deleted {c.deleted_inbox + c.deleted_sent} test message(s) "
        f"({c.deleted_inbox} from INBOX, {c.deleted_sent} from Sent folders)",
    ]
    out += [f"  not found: {n}" for n in c.not_found]
    out += [f"  FAIL  {e}" for e in c.errors]
    if report.unreachable:
        out += ["", "Unreachable"] + [f"  {u}" for u in report.unreachable]

    n_pairs = sum(p.ok for p in report.pairs.values())
    n_probes = sum(p.ok for p in report.probes)
    n_web = sum(w.ok for w in report.webmail)
    summary = (
        f"{n_pairs}/{len(report.pairs)} deliveries ok, {n_probes}/{len(report.probes)} probes ok, "
        f"{n_web}/{len(report.webmail)} webmail logins ok"
    )
    if report.dkim_checked:
        checked = [p for p in report.pairs.values() if p.dkim_ok is not None]
        summary += f", {sum(bool(p.dkim_ok) for p in checked)}/{len(checked)} DKIM signatures ok"
    if report.dns_resolver:
        records = [r for r in report.dns if r.record is not None]
        summary += f", {sum(r.ok for r in records)}/{len(records)} DNS records ok"
    if c.errors:
        summary += ", cleanup failed"
    if report.unreachable:
        summary += f", {len(report.unreachable)} port(s) unreachable"
    out += ["", f"Summary: {'PASS' if report.passed else 'FAIL'}: {summary}"]
    return scrub("\n".join(out)) + "\n"


def _stderr(message: str) -> None:
    print(f"verify: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (0 pass, 1 failure, 2 cannot run)."""
    parser = argparse.ArgumentParser(prog="python -m tools.verify", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help="Pulumi stack to read the outputs of (default: the selected stack)")
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        help="JSON file of stack outputs (pulumi stack output --json --show-secrets > FILE)",
    )
    parser.add_argument("--host", help="connect to this host for every domain (a remote Docker host)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for each message (default %(default)s)",
    )
    parser.add_argument("--no-webmail", action="store_true", help="skip the webmail checks")
    parser.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="resolver of the DNS check (default: the system's); e.g. your DNS host's name server",
    )
    dns_mode = parser.add_mutually_exclusive_group()
    dns_mode.add_argument("--no-dns", action="store_true", help="skip the DNS check")
    dns_mode.add_argument("--only-dns", action="store_true", help="run only the DNS check (no mail is sent)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.nameserver:
        try:
            dnscheck.parse_nameserver(args.nameserver)
        except ValueError:
            parser.error(f"--nameserver {args.nameserver!r} is not HOST[:PORT]")
    try:
        outputs = read_outputs_file(args.outputs) if args.outputs else read_stack_outputs(args.stack)
        zones = load_records(outputs) if "dns" in outputs or args.only_dns else None
        targets = [] if args.only_dns else load_targets(outputs)
        verify = outputs.get("verify")
        stack_name = verify.get("stack", "") if isinstance(verify, dict) else ""
    except OutputsError as exc:  # VerifyError included
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    dns_results: list[dnscheck.DnsResult] = []
    resolver_label = ""
    if zones is not None and not args.no_dns:
        resolver_label = args.nameserver or "system resolver"
        _stderr(f"checking the DNS records of {len(zones)} zone(s) ({resolver_label})")
        dns_results = dnscheck.check_zones(zones, dnscheck.make_resolver(args.nameserver))
    if args.only_dns:
        lines = dnscheck.render(dns_results, resolver_label)
        bad = [r for r in dns_results if not r.ok]
        records = [r for r in dns_results if r.record is not None]
        verdict = "FAIL" if bad else "PASS"
        print(
            "\n".join(lines), f"\nSummary: {verdict}: {len(records) - len(bad)}/{len(records)} DNS records ok"
        )
        return 1 if bad else 0
    if args.host:
        targets = override_host(targets, args.host)
    try:
        report = run(
            targets,
            timeout=args.timeout,
            webmail=not args.no_webmail,
            progress=_stderr,
            stack=str(stack_name or args.stack or ""),
            dkim_keys=dkim_records(zones) if zones else None,
        )
    except KeyboardInterrupt:
        print("verify: interrupted (test messages that had arrived were deleted)", file=sys.stderr)
        return 130
    report.dns, report.dns_resolver = dns_results, resolver_label
    if len(report.unreachable) == 3 * len(targets):  # not a single port answers: one line, no matrix
        print(
            f"verify: error: no mail port of the stack answers (e.g. {report.unreachable[0].split(': check')[0]}):"
            " is it deployed and running? run `make up`, check `docker ps`, or pass --host for a remote Docker host",
            file=sys.stderr,
        )
        return 2
    print(render_report(report), end="", flush=True)
    for line in report.unreachable:
        print(f"verify: error: {line}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
