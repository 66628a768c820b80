"""SMTP and IMAP clients of the check: sessions, the test message, the mailbox that finds and deletes it."""

from __future__ import annotations

import email.message
import email.utils
import imaplib
import re
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tools.mailcheck.targets import Target

AUTH_TIMEOUT = 30.0
"""Minimum socket timeout of SMTP/IMAP/HTTP sessions: Dovecot delays a failed login by 2 s, and every
login from an IP with recent failures (e.g. the previous run's wrong-password probes) by up to 15 s."""
EHLO_NAME = "verify.mailstack.invalid"
SUBJECT_PREFIX = "mailstack verify"
"""Subject of a test message: this prefix and the message's token."""
SENT_FOLDER_NAMES = frozenset({"sent", "sent messages", "sent items", "sent mail", "inbox.sent"})
REPLY_MAX = 160


def one_line(text: str, limit: int = REPLY_MAX) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def smtp_reply(code: int, message: bytes | str) -> str:
    """An SMTP reply as one line: ``550 5.1.1 <x@y>: Recipient address rejected``."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return one_line(f"{code} {message}")


def describe_error(exc: BaseException) -> str:
    """Short one-line description of a network/protocol exception, including the server's reply."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(smtp_reply(c, m) for c, m in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return smtp_reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"connection closed by the server ({exc})" if str(exc) else "connection closed by the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return one_line(f"TLS error: {exc.reason or exc}")
    if isinstance(exc, imaplib.IMAP4.error):
        arg = exc.args[0] if exc.args else ""
        text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
        return one_line(text or type(exc).__name__)
    if isinstance(exc, OSError):
        return one_line(exc.strerror or str(exc))
    return one_line(f"{type(exc).__name__}: {exc}")


def _tls_context(target: Target) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if target.tls == "self-signed":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def port_error(host: str, port: int, timeout: float) -> str | None:
    """Return why ``host:port`` does not accept a TCP connection, or None when it does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return describe_error(exc)


@contextmanager
def smtp_session(target: Target, port: int, timeout: float, *, starttls: bool) -> Iterator[smtplib.SMTP]:
    """Open an SMTP session (EHLO, and STARTTLS when asked) and always QUIT/close it."""
    smtp = smtplib.SMTP(target.host, port, local_hostname=EHLO_NAME, timeout=timeout)
    try:
        smtp.ehlo()
        if starttls:
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(f"STARTTLS not offered (outputs say tls={target.tls})")
            smtp._host = target.hostname  # certificate is checked against the server's name, not the IP
            smtp.starttls(context=_tls_context(target))
            smtp.ehlo()
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def smtp_auth_once(smtp: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """SMTP AUTH with one mechanism, once (PLAIN, else LOGIN).

    ``smtplib.SMTP.login`` would retry a refused password with every other mechanism the server offers:
    twice the delay Dovecot puts on a failure, and a second failed attempt in the server's log.
    Raises ``SMTPNotSupportedError`` (no AUTH offered) or ``SMTPAuthenticationError`` (refused).
    """
    mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
    if not mechanisms:
        raise smtplib.SMTPNotSupportedError("AUTH not offered")
    smtp.user, smtp.password = user, password
    if "PLAIN" in mechanisms:
        return smtp.auth("PLAIN", smtp.auth_plain)
    return smtp.auth("LOGIN", smtp.auth_login)


def imap_connect(target: Target, timeout: float) -> imaplib.IMAP4:
    """Connect to the target's IMAP port (STARTTLS unless ``tls`` is ``none``); not yet logged in."""
    conn = imaplib.IMAP4(target.host, target.imap_port, timeout=timeout)
    try:
        if target.tls != "none":
            conn.host = target.hostname  # certificate is checked against the server's name, not the IP
            conn.starttls(ssl_context=_tls_context(target))
        if "LOGINDISABLED" in conn.capabilities:
            raise imaplib.IMAP4.error(f"server disables IMAP LOGIN here (outputs say tls={target.tls})")
    except BaseException:
        conn.shutdown()
        raise
    return conn


def _quote_mailbox(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """An IMAP session on one account, used to find, check and delete test messages by token."""

    def __init__(self, target: Target, timeout: float) -> None:
        """Connect and log in as the target's account (raises on failure); nothing is selected yet."""
        self.target = target
        self.conn = imap_connect(target, timeout)
        try:
            self.conn.login(target.account.address, target.account.password)
            self.conn.capabilities = tuple(self._capabilities())  # they change after login (UIDPLUS...)
        except BaseException:
            self.conn.shutdown()
            raise
        self.selected: str | None = None

    def _capabilities(self) -> list[str]:
        typ, data = self.conn.capability()
        if typ != "OK" or not data or not isinstance(data[-1], bytes):
            return list(self.conn.capabilities)
        return data[-1].decode("ascii", "replace").upper().split()

    def open(self, mailbox: str = "INBOX", *, readonly: bool = True) -> bool:
        """Select (or EXAMINE when ``readonly``) a mailbox; False when it does not exist."""
        typ, _ = self.conn.select(_quote_mailbox(mailbox), readonly=readonly)
        self.selected = mailbox if typ == "OK" else None
        return typ == "OK"

    def refresh(self) -> None:
        """Let the server report newly delivered messages (NOOP)."""
        self.conn.noop()

    def search(self, token: str) -> list[bytes]:
        """UIDs of the messages whose Subject holds ``token`` in the selected mailbox."""
        typ, data = self.conn.uid("SEARCH", "HEADER", "Subject", token)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID SEARCH failed: {data!r}")
        return [uid for chunk in data if chunk for uid in chunk.split()]

    def fetch(self, uid: bytes) -> bytes:
        """The whole message ``uid`` as delivered (fetched with PEEK: no \\Seen flag); empty when it is gone."""
        typ, data = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
        if typ != "OK":
            return b""
        return b"".join(part[1] for part in data if isinstance(part, tuple))

    def holds_token(self, uid: bytes, token: str, raw: bytes | None = None) -> bool:
        """True when message ``uid`` (or its already fetched ``raw`` text) carries ``token`` in its body."""
        raw = self.fetch(uid) if raw is None else raw
        return token.encode() in raw.split(b"\r\n\r\n", 1)[-1]

    def delete(self, uids: Sequence[bytes]) -> int:
        """Flag exactly ``uids`` \\Deleted and expunge only them (UID EXPUNGE, RFC 4315 UIDPLUS)."""
        if not uids:
            return 0
        if "UIDPLUS" not in self.conn.capabilities:
            raise imaplib.IMAP4.error("server lacks UIDPLUS, so the test messages cannot be expunged alone")
        uid_set = b",".join(uids).decode()
        typ, data = self.conn.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID STORE failed: {data!r}")
        typ, data = self.conn.uid("EXPUNGE", uid_set)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID EXPUNGE failed: {data!r}")
        return len(uids)

    def sent_folders(self) -> list[str]:
        """Names of the account's Sent folders (\\Sent special-use or a usual name); none are created."""
        typ, data = self.conn.list()
        if typ != "OK":
            return []
        found = []
        for line in data:
            if not isinstance(line, bytes):
                continue
            m = re.match(rb'\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$', line)
            if not m:
                continue
            name = m.group("name").decode("utf-8", "replace")
            if name.startswith('"') and name.endswith('"'):
                name = re.sub(r"\\(.)", r"\1", name[1:-1])
            flags = m.group("flags").decode("ascii", "replace").lower().split()
            if "\\noselect" in flags or "\\nonexistent" in flags:
                continue
            if "\\sent" in flags or name.lower() in SENT_FOLDER_NAMES:
                found.append(name)
        return found

    def close(self) -> None:
        """LOGOUT (never CLOSE: CLOSE would expunge every message flagged \\Deleted, not just ours)."""
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            self.conn.shutdown()


def new_token() -> str:
    """A fresh unique token for one test message."""
    return uuid.uuid4().hex


def build_message(sender: Target, recipient: Target, token: str) -> email.message.EmailMessage:
    """The test message: the token is in the Subject, the body and the Message-ID."""
    msg = email.message.EmailMessage()
    msg["From"] = sender.account.address
    msg["To"] = recipient.account.address
    msg["Subject"] = f"{SUBJECT_PREFIX} {token}"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<mailstack-verify.{token}@{sender.domain}>"
    msg["X-Mailstack-Verify"] = token
    msg.set_content(
        f"mailstack verify test message, token {token}\n"
        f"from {sender.account.address} ({sender.label}) to {recipient.account.address} ({recipient.label}).\n"
        "The check deletes this message after it arrives.\n"
    )
    return msg


class SubmissionError(Exception):
    """The submission session could not be opened; the message is the cell reason."""


class Submission:
    """A logged-in SMTP submission session of one sender (STARTTLS first unless ``tls`` is ``none``)."""

    def __init__(self, sender: Target, timeout: float) -> None:
        """Connect and log in as the sender's account; raises ``SubmissionError`` with the reason."""
        self.sender = sender
        self.where = f"submission {sender.host}:{sender.submission_port}"
        self._session = smtp_session(sender, sender.submission_port, timeout, starttls=sender.tls != "none")
        try:
            self.smtp = self._session.__enter__()
        except (smtplib.SMTPException, OSError) as exc:
            raise SubmissionError(f"{self.where}: {describe_error(exc)}") from None
        try:
            smtp_auth_once(self.smtp, sender.account.address, sender.account.password)
        except smtplib.SMTPNotSupportedError:
            self.close()
            raise SubmissionError(f"{self.where} offers no AUTH (outputs say tls={sender.tls})") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SubmissionError(
                f"{self.where} refused login as {sender.account.address}: {describe_error(exc)}"
            ) from None

    def send(self, rcpt: Target, token: str) -> tuple[float | None, str]:
        """Send the test message to ``rcpt``: ``(monotonic time accepted, server reply)`` or ``(None, why)``."""
        msg = build_message(self.sender, rcpt, token)
        try:
            code, reply = self.smtp.mail(self.sender.account.address)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, self.sender.account.address)
            code, reply = self.smtp.rcpt(rcpt.account.address)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({rcpt.account.address: (code, reply)})
            code, reply = self.smtp.data(msg.as_bytes())
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
            return time.monotonic(), smtp_reply(code, reply)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            return None, f"{self.where}: {describe_error(exc)}"
        except smtplib.SMTPException as exc:
            try:
                self.smtp.rset()
            except (smtplib.SMTPException, OSError):
                pass
            return None, f"{self.where} refused the message: {describe_error(exc)}"

    def close(self) -> None:
        """QUIT (or just close) the session."""
        self._session.__exit__(None, None, None)


def send_all(
    submission: Submission, recipients: Sequence[Target], tokens: dict[str, str]
) -> list[tuple[Target, float | None, str]]:
    """Send one test message per recipient over ``submission`` (tokens by recipient domain), then QUIT."""
    try:
        return [(r, *submission.send(r, tokens[r.domain])) for r in recipients]
    finally:
        submission.close()
