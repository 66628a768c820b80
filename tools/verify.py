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
* deletes exactly the test messages afterwards (``UID STORE +FLAGS \\Deleted`` and ``UID EXPUNGE`` on
  their UIDs only), and prints a sender x recipient matrix, the probe results and a summary.

Exit codes: 0 all passed, 1 some check failed, 2 the check could not run as asked (no such stack, not
deployed, outputs of another version, a port unreachable). Passwords are never printed.
Standard library only, so it runs anywhere Python 3.11 does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email.message
import email.utils
import http.cookiejar
import imaplib
import json
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path

SCHEMA = 1
"""Version of the ``verify`` stack output this module reads."""

PROJECT_DIR = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECT_TIMEOUT = 10.0
POLL_INTERVAL = 1.0
AUTH_TIMEOUT = 30.0
"""Minimum socket timeout of SMTP/IMAP/HTTP sessions: Dovecot delays a failed login by 2 s, and every
login from an IP with recent failures (e.g. the previous run's wrong-password probes) by up to 15 s."""
PROGRESS_EVERY = 5.0
RELAY_PROBE_DOMAIN = "relay-probe.invalid"
EHLO_NAME = "verify.mailstack.invalid"
SUBJECT_PREFIX = "mailstack verify"
SENT_FOLDER_NAMES = frozenset({"sent", "sent messages", "sent items", "sent mail", "inbox.sent"})
MASK = "********"
REPLY_MAX = 160

Progress = Callable[[str], None]


class VerifyError(Exception):
    """The check cannot run as asked; the message is one line naming the problem and the fix (exit 2)."""


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Account:
    """A mail account the check logs in with; the password never appears in ``repr``."""

    address: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Target:
    """One domain of the stack as the check sees it: where to connect and which account to use."""

    domain: str
    server: str
    hostname: str
    host: str
    smtp_port: int
    submission_port: int
    imap_port: int
    tls: str
    account: Account
    webmail_url: str | None = None

    @property
    def label(self) -> str:
        """Name used in messages: ``server (domain)``."""
        return f"{self.server} ({self.domain})"


def load_targets(outputs: dict) -> list[Target]:
    """Build the targets from stack outputs (the whole ``pulumi stack output --json`` object).

    The ``verify`` output has schema 1::

        {"schema": 1, "stack": "dev", "domains": [{"domain": "example1.local", "server": "mta1",
          "hostname": "mail.example1.local", "host": "127.0.0.1",
          "ports": {"smtp": 2525, "submission": 2587, "imap": 2143}, "tls": "none",
          "account": {"address": "user1@example1.local", "password": "..."},
          "webmail": {"url": "http://127.0.0.1:8081/"} or null}, ...]}

    A JSON string holding that object is accepted too. Raises ``VerifyError`` with a one-line message.
    """
    if not isinstance(outputs, dict):
        raise VerifyError(
            "stack outputs are not a JSON object: pass the output of `pulumi stack output --json`"
        )
    if "verify" not in outputs:
        raise VerifyError(
            "the stack has no `verify` output: it is not deployed yet (run `make up`) or was deployed by an "
            "older mailstack (re-run pulumi up with this version of mailstack)"
        )
    verify = outputs["verify"]
    if verify == "[secret]":
        raise VerifyError(
            "the `verify` output is hidden as [secret]: read it with `pulumi stack output --json --show-secrets`"
        )
    if isinstance(verify, str):
        try:
            verify = json.loads(verify)
        except json.JSONDecodeError as exc:
            raise VerifyError(
                f"the `verify` output is not valid JSON ({exc.msg}): re-run pulumi up"
            ) from None
    if not isinstance(verify, dict):
        raise VerifyError(
            "the `verify` output is not an object: re-run pulumi up with this version of mailstack"
        )
    schema = verify.get("schema")
    if isinstance(schema, bool) or schema != SCHEMA:
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
            raise VerifyError(
                f"the `verify` output has schema {schema} but this tool reads schema {SCHEMA}: "
                "update mailstack (git pull) and run the check again"
            )
        raise VerifyError(
            f"the `verify` output has schema {schema!r} but this tool reads schema {SCHEMA}: the stack was "
            "deployed by an older mailstack; re-run pulumi up with this version of mailstack"
        )
    domains = verify.get("domains")
    if not isinstance(domains, list) or not domains:
        raise VerifyError("the `verify` output lists no domains: add a domain to the stack and run pulumi up")
    problems: list[str] = []
    targets = [t for i, d in enumerate(domains) if (t := _parse_domain(i, d, problems)) is not None]
    seen: set[str] = set()
    for t in targets:
        if t.domain in seen:
            problems.append(f"domain {t.domain} is listed twice")
        seen.add(t.domain)
    if problems:
        raise VerifyError(
            "the `verify` output is malformed: " + "; ".join(problems) + " (re-run pulumi up with this "
            "version of mailstack)"
        )
    return targets


def _parse_domain(index: int, item: object, problems: list[str]) -> Target | None:
    where = f"verify.domains[{index}]"
    if not isinstance(item, dict):
        problems.append(f"{where} is not an object")
        return None
    before = len(problems)

    def text(obj: dict, key: str, path: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"{path}.{key} must be a non-empty string")
            return ""
        return value

    def port(obj: dict, key: str, path: str) -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            problems.append(f"{path}.{key} must be a port number (1-65535)")
            return 0
        return value

    domain = text(item, "domain", where)
    server = text(item, "server", where)
    hostname = text(item, "hostname", where)
    host = text(item, "host", where)
    tls = text(item, "tls", where)
    ports = item.get("ports")
    if not isinstance(ports, dict):
        problems.append(f"{where}.ports must be an object with smtp, submission and imap")
        ports = {}
    smtp, submission, imap = (port(ports, k, f"{where}.ports") for k in ("smtp", "submission", "imap"))
    account = item.get("account")
    if not isinstance(account, dict):
        problems.append(f"{where}.account must be an object with address and password")
        account = {}
    address = text(account, "address", f"{where}.account")
    password = account.get("password")
    if not isinstance(password, str) or not password:
        problems.append(f"{where}.account.password must be a non-empty string")
    if address and domain and not address.lower().endswith("@" + domain.lower()):
        problems.append(f"{where}.account.address {address} is not in domain {domain}")
    webmail = item.get("webmail")
    url: str | None = None
    if webmail is not None:
        url = webmail.get("url") if isinstance(webmail, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"{where}.webmail must be null or an object with an http(s) url")
            url = None
    if len(problems) > before:
        return None
    return Target(
        domain=domain,
        server=server,
        hostname=hostname,
        host=host,
        smtp_port=smtp,
        submission_port=submission,
        imap_port=imap,
        tls=tls,
        account=Account(address, str(password)),
        webmail_url=url,
    )


def override_host(targets: Iterable[Target], host: str) -> list[Target]:
    """Connect to ``host`` for every domain (a remote Docker host); webmail URLs get that host too."""
    result = []
    for t in targets:
        url = t.webmail_url
        if url:
            parts = urllib.parse.urlsplit(url)
            netloc = f"[{host}]" if ":" in host else host
            if parts.port:
                netloc += f":{parts.port}"
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        result.append(replace(t, host=host, webmail_url=url))
    return result


def read_outputs_file(path: str | Path) -> dict:
    """Read stack outputs saved with ``pulumi stack output --json --show-secrets > FILE``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyError(
            f"outputs file {path} does not exist: pass the file written by "
            "`pulumi stack output --json --show-secrets`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyError(f"cannot read outputs file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise VerifyError(
            f"outputs file {path} is not JSON ({exc.msg} at line {exc.lineno}): write it with "
            "`pulumi stack output --json --show-secrets > FILE`"
        ) from None
    if not isinstance(data, dict):
        raise VerifyError(f"outputs file {path} does not hold a JSON object of stack outputs")
    return data


def pulumi_command(project_dir: Path = PROJECT_DIR) -> str | None:
    """Return the Pulumi CLI to use: the project's ``.pulumi-cli/bin/pulumi`` if present, else the PATH one."""
    local = project_dir / ".pulumi-cli" / "bin" / "pulumi"
    if local.is_file():
        return str(local)
    return shutil.which("pulumi")


def read_stack_outputs(stack: str | None, project_dir: Path = PROJECT_DIR) -> dict:
    """Run ``pulumi stack output --json --show-secrets [--stack NAME]`` in the project directory."""
    cli = pulumi_command(project_dir)
    if cli is None:
        raise VerifyError(
            "the pulumi CLI was not found (neither .pulumi-cli/bin/pulumi nor pulumi on PATH): "
            "install it, or pass --outputs FILE with the stack's outputs"
        )
    cmd = [cli, "stack", "output", "--json", "--show-secrets", "--non-interactive"]
    if stack:
        cmd += ["--stack", stack]
    try:
        proc = subprocess.run(cmd, cwd=project_dir, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise VerifyError(
            "`pulumi stack output` did not answer within 120 s: check the backend login "
            "(pulumi whoami) or pass --outputs FILE"
        ) from None
    if proc.returncode != 0:
        err = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        name = stack or "(current)"
        if re.search(r"no stack named|stack .* not found|no stack selected", err, re.IGNORECASE):
            raise VerifyError(
                f"no such stack {name}: deploy it first (make up / pulumi up --stack {name}) "
                "or name an existing stack with --stack"
            )
        raise VerifyError(f"`pulumi stack output` failed for stack {name}: {err[:300]}")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise VerifyError("`pulumi stack output --json` did not print JSON: check the Pulumi CLI") from None
    if not isinstance(data, dict):
        raise VerifyError("`pulumi stack output --json` did not print an object of outputs")
    return data


# -------------------------------------------------------------------------------------------- results


@dataclass
class PairResult:
    """Outcome of one A -> B delivery: ``ok`` with the delivery time, or the reason it failed."""

    sender: str
    recipient: str
    ok: bool = False
    seconds: float | None = None
    reason: str = ""
    token: str = ""

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

    @property
    def passed(self) -> bool:
        """True when every pair, probe, webmail check and the cleanup passed and every port answered."""
        return (
            all(p.ok for p in self.pairs.values())
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


# ------------------------------------------------------------------------------------------- helpers


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


def _one_line(text: str, limit: int = REPLY_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _smtp_reply(code: int, message: bytes | str) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return _one_line(f"{code} {message}")


def describe_error(exc: BaseException) -> str:
    """Short one-line description of a network/protocol exception, including the server's reply."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(_smtp_reply(c, m) for c, m in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"connection closed by the server ({exc})" if str(exc) else "connection closed by the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return _one_line(f"TLS error: {exc.reason or exc}")
    if isinstance(exc, imaplib.IMAP4.error):
        arg = exc.args[0] if exc.args else ""
        text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
        return _one_line(text or type(exc).__name__)
    if isinstance(exc, OSError):
        return _one_line(exc.strerror or str(exc))
    return _one_line(f"{type(exc).__name__}: {exc}")


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


# ----------------------------------------------------------------------------------------- mailboxes


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

    def holds_token(self, uid: bytes, token: str) -> bool:
        """True when message ``uid`` carries ``token`` in its body (fetched with PEEK: no \\Seen flag)."""
        typ, data = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
        if typ != "OK":
            return False
        raw = b"".join(part[1] for part in data if isinstance(part, tuple))
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


# ----------------------------------------------------------------------------------------- the check


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


@dataclass
class _Sent:
    pair: PairResult
    recipient: Target
    sent_at: float
    reply: str


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
            return time.monotonic(), _smtp_reply(code, reply)
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


# ------------------------------------------------------------------------------------------- probes


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
                t.server, t.domain, name, False, "a WRONG password was accepted: " + _smtp_reply(code, reply)
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
    reply = _one_line(" ".join(d.decode("utf-8", "replace") for d in data if isinstance(d, bytes)))
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
                    t.server, t.domain, name, True, "refused at MAIL FROM: " + _smtp_reply(code, reply)
                )
            code, reply = smtp.rcpt(rcpt)
            smtp.rset()
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    if code >= 400:
        return ProbeResult(t.server, t.domain, name, True, _smtp_reply(code, reply))
    return ProbeResult(t.server, t.domain, name, False, "OPEN RELAY: accepted " + _smtp_reply(code, reply))


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
                    "inconclusive: MAIL FROM:<> refused: " + _smtp_reply(code, reply),
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
                    + _smtp_reply(ccode, creply),
                )
            code, reply = smtp.rcpt(rcpt)
            smtp.rset()  # no DATA: nothing is delivered
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult(t.server, t.domain, name, False, describe_error(exc))
    if 500 <= code < 600:
        return ProbeResult(t.server, t.domain, name, True, _smtp_reply(code, reply))
    if 400 <= code < 500:
        return ProbeResult(
            t.server, t.domain, name, False, "deferred, not rejected: " + _smtp_reply(code, reply)
        )
    return ProbeResult(
        t.server, t.domain, name, False, "unknown recipient ACCEPTED: " + _smtp_reply(code, reply)
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


# ------------------------------------------------------------------------------------------ webmail


class _FormParser(HTMLParser):
    """Collect ``<input>`` names and values, and Roundcube's displayed messages."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            a = dict(attrs)
            if a.get("name"):
                self.inputs[a["name"] or ""] = a.get("value") or ""
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse_page(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser


def _page_message(page: _FormParser, html: str) -> str:
    m = re.search(r"display_message\(\s*\"((?:[^\"\\]|\\.)*)\"", " ".join(page.scripts) or html)
    if m:
        return _one_line(m.group(1).replace('\\"', '"'), 100)
    return "the login page was shown again"


def check_webmail(target: Target, *, timeout: float = AUTH_TIMEOUT) -> WebmailResult:
    """GET the webmail URL (Roundcube login form), then log in with the domain's account over plain HTTP.

    Success: the login POST ends (after redirects) on a ``_task=mail`` URL that shows no login form.
    """
    url = target.webmail_url or ""
    scrub = Scrubber([target.account.password])

    def result(ok: bool, detail: str) -> WebmailResult:
        return WebmailResult(target.domain, url, ok, scrub(detail))

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", "mailstack-verify")]
    try:
        with opener.open(url, timeout=timeout) as resp:
            html = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return result(False, f"GET {url} answered HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return result(
            False,
            f"GET {url} failed: {describe_error(reason) if isinstance(reason, BaseException) else reason}",
        )
    form = _parse_page(html)
    missing = [n for n in ("_user", "_pass", "_token") if n not in form.inputs]
    if missing:
        return result(False, f"GET {url} is not the Roundcube login page (no {', '.join(missing)} field)")
    parts = urllib.parse.urlsplit(url)
    login_url = urllib.parse.urlunsplit(parts._replace(query="_task=login", fragment=""))
    body = urllib.parse.urlencode(
        {
            "_task": "login",
            "_action": "login",
            "_token": form.inputs["_token"],
            "_timezone": "UTC",
            "_url": "",
            "_user": target.account.address,
            "_pass": target.account.password,
        }
    ).encode()
    request = urllib.request.Request(login_url, data=body, method="POST")
    try:
        with opener.open(request, timeout=timeout) as resp:
            final_url = resp.geturl()
            html = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        page_html = exc.read().decode("utf-8", "replace")
        page = _parse_page(page_html)
        return result(
            False,
            f"login as {target.account.address} refused: HTTP {exc.code}: {_page_message(page, page_html)}",
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return result(
            False,
            f"login POST failed: {describe_error(reason) if isinstance(reason, BaseException) else reason}",
        )
    page = _parse_page(html)
    task = urllib.parse.parse_qs(urllib.parse.urlsplit(final_url).query).get("_task", [""])[0]
    if task == "mail" and "_pass" not in page.inputs:
        return result(True, f"login page served; login as {target.account.address} succeeded")
    return result(False, f"login as {target.account.address} failed: {_page_message(page, html)}")


# ------------------------------------------------------------------------------------------- run


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
) -> Report:
    """Run the whole check and return the report (the caller renders it and picks the exit code).

    ``pairs`` limits the delivery matrix (default: every ordered pair, A -> A included); ``token_factory``
    makes the per-message tokens (tests may pass their own).
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
        _wait_for_messages(sent, mailboxes, timeout, poll_interval, say)
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
    sent: list[_Sent], mailboxes: dict[str, Mailbox], timeout: float, poll_interval: float, say: Progress
) -> None:
    """Poll every recipient INBOX in one loop until each message arrived or its deadline passed."""
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
                    if mb.holds_token(uids[-1], s.pair.token):
                        s.pair.ok, s.pair.reason = True, ""
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


# ----------------------------------------------------------------------------------------- output


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
    if c.errors:
        summary += ", cleanup failed"
    if report.unreachable:
        summary += f", {len(report.unreachable)} port(s) unreachable"
    out += ["", f"Summary: {'PASS' if report.passed else 'FAIL'}: {summary}"]
    return scrub("\n".join(out)) + "\n"


# -------------------------------------------------------------------------------------------- CLI


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
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        outputs = read_outputs_file(args.outputs) if args.outputs else read_stack_outputs(args.stack)
        targets = load_targets(outputs)
        verify = outputs["verify"]
        stack_name = verify.get("stack", "") if isinstance(verify, dict) else ""
    except VerifyError as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    if args.host:
        targets = override_host(targets, args.host)
    report = run(
        targets,
        timeout=args.timeout,
        webmail=not args.no_webmail,
        progress=_stderr,
        stack=str(stack_name or args.stack or ""),
    )
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
