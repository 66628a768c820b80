"""Negative probes on one server: wrong passwords refused, no open relay, unknown recipients rejected."""

from __future__ import annotations

import concurrent.futures
import imaplib
import re
import smtplib
from collections.abc import Callable, Mapping

from tools.mailcheck.mail import (
    AUTH_TIMEOUT,
    describe_error,
    imap_connect,
    new_token,
    one_line,
    smtp_auth_once,
    smtp_reply,
    smtp_session,
)
from tools.mailcheck.results import ProbeResult, Scrubber
from tools.mailcheck.targets import Target

RELAY_PROBE_DOMAIN = "relay-probe.invalid"


def _probe_wrong_password_submission(
    t: Target, timeout: float, wrong: str, skip: Mapping[str, str]
) -> ProbeResult:
    name = f"submission {t.host}:{t.submission_port} refuses a wrong password"
    if "submission" in skip:
        return ProbeResult(t.server, t.domain, name, False, "not run: " + skip["submission"])
    try:
        with smtp_session(t, t.submission_port, timeout, starttls=t.tls != "none") as smtp:
            try:
                code, reply = smtp_auth_once(smtp, t.account.address, wrong)
            except smtplib.SMTPAuthenticationError as exc:
                ok = exc.smtp_code == 535
                detail = describe_error(exc) + ("" if ok else " (expected 535)")
                return ProbeResult(t.server, t.domain, name, ok, detail)
            except smtplib.SMTPNotSupportedError:
                return ProbeResult(
                    t.server, t.domain, name, False, "AUTH is not offered, so it cannot be checked"
                )
            return ProbeResult(
                t.server, t.domain, name, False, "a WRONG password was accepted: " + smtp_reply(code, reply)
            )
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))


def _probe_wrong_password_imap(t: Target, timeout: float, wrong: str, skip: Mapping[str, str]) -> ProbeResult:
    name = f"IMAP {t.host}:{t.imap_port} refuses a wrong password"
    if "IMAP" in skip:
        return ProbeResult(t.server, t.domain, name, False, "not run: " + skip["IMAP"])
    try:
        conn = imap_connect(t, timeout)
    except (imaplib.IMAP4.error, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    try:
        typ, data = conn._simple_command("LOGIN", t.account.address, conn._quote(wrong))
    except imaplib.IMAP4.error as exc:  # a BAD reply
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    except OSError as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            conn.shutdown()
    reply = one_line(" ".join(d.decode("utf-8", "replace") for d in data if isinstance(d, bytes)))
    if typ == "OK":
        return ProbeResult(t.server, t.domain, name, False, "a WRONG password was accepted")
    inconclusive = re.search(r"\[(UNAVAILABLE|PRIVACYREQUIRED|SERVERBUG)\]", reply)
    if inconclusive:
        return ProbeResult(t.server, t.domain, name, False, f"{typ} {reply} (refused for another reason)")
    return ProbeResult(t.server, t.domain, name, True, f"{typ} {reply}")


def _probe_relay(t: Target, timeout: float, token: str, skip: Mapping[str, str]) -> ProbeResult:
    rcpt = f"relay-probe-{token}@{RELAY_PROBE_DOMAIN}"
    name = f"smtp {t.host}:{t.smtp_port} refuses to relay to {RELAY_PROBE_DOMAIN}"
    if "smtp" in skip:
        return ProbeResult(t.server, t.domain, name, False, "not run: " + skip["smtp"])
    try:
        with smtp_session(t, t.smtp_port, timeout, starttls=False) as smtp:
            code, reply = smtp.mail("")
            if code >= 400:
                return ProbeResult(
                    t.server, t.domain, name, True, "refused at MAIL FROM: " + smtp_reply(code, reply)
                )
            code, reply = smtp.rcpt(rcpt)
            smtp.rset()
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    if code >= 400:
        return ProbeResult(t.server, t.domain, name, True, smtp_reply(code, reply))
    return ProbeResult(t.server, t.domain, name, False, "OPEN RELAY: accepted " + smtp_reply(code, reply))


def _probe_unknown_user(t: Target, timeout: float, token: str, skip: Mapping[str, str]) -> ProbeResult:
    rcpt = f"no-such-user-{token}@{t.domain}"
    name = f"smtp {t.host}:{t.smtp_port} rejects an unknown recipient at {t.domain}"
    if "smtp" in skip:
        return ProbeResult(t.server, t.domain, name, False, "not run: " + skip["smtp"])
    try:
        with smtp_session(t, t.smtp_port, timeout, starttls=False) as smtp:
            code, reply = smtp.mail("")
            if code >= 400:
                return ProbeResult(
                    t.server,
                    t.domain,
                    name,
                    False,
                    "inconclusive: MAIL FROM:<> refused: " + smtp_reply(code, reply),
                )
            # Control: the real account must be accepted, else a 5xx below may have another cause.
            ccode, creply = smtp.rcpt(t.account.address)
            if ccode >= 400:
                smtp.rset()
                return ProbeResult(
                    t.server,
                    t.domain,
                    name,
                    False,
                    f"inconclusive: the known account {t.account.address} was refused too: "
                    + smtp_reply(ccode, creply),
                )
            code, reply = smtp.rcpt(rcpt)
            smtp.rset()  # no DATA: nothing is delivered
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    if 500 <= code < 600:
        return ProbeResult(t.server, t.domain, name, True, smtp_reply(code, reply))
    if 400 <= code < 500:
        return ProbeResult(
            t.server, t.domain, name, False, "deferred, not rejected: " + smtp_reply(code, reply)
        )
    return ProbeResult(
        t.server, t.domain, name, False, "unknown recipient ACCEPTED: " + smtp_reply(code, reply)
    )


def probe_server(
    target: Target, *, timeout: float = AUTH_TIMEOUT, skip: Mapping[str, str] | None = None
) -> list[ProbeResult]:
    """Run the four negative probes on one server, in parallel (a refused login is slowed down on purpose).

    ``skip`` maps a service (``smtp``, ``submission``, ``IMAP``) known to be unreachable to the reason; the
    probes that need it fail with that reason instead of waiting for a timeout.
    """
    token = new_token()
    wrong = f"{target.account.password}-wrong-{token[:8]}"
    down = dict(skip or {})
    jobs: list[Callable[[], ProbeResult]] = [
        lambda: _probe_wrong_password_submission(target, timeout, wrong, down),
        lambda: _probe_wrong_password_imap(target, timeout, wrong, down),
        lambda: _probe_relay(target, timeout, token, down),
        lambda: _probe_unknown_user(target, timeout, token, down),
    ]
    scrub = Scrubber([target.account.password, wrong])
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    for r in results:
        r.detail = scrub(r.detail)
    return results
