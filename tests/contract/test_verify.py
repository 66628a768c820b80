"""tools.verify against real servers: Debian's Postfix and Dovecot (mailfixture.MailLab) on loopback.

The lab has two domains (example1.local on "mta1", example2.local on "mta2"). The tests run the check as
the CLI does and break one thing at a time: a route, a password, an IMAP server. The webmail check runs
against ``RoundcubeStandIn``, a tiny HTTP server with a Roundcube-like login flow: a stand-in only; the real
Roundcube is exercised by the e2e suite.

Only the CLI test (first, on purpose) runs the probes: every wrong-password probe makes Dovecot delay the
next logins from 127.0.0.1 by a few seconds (auth penalty), which the next test's first logins pay once.
The lab's own IMAP logins come from 127.0.0.2 (``LabIMAP``) and do not pay it.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.contract.conftest import contract_required, require_tool
from tests.contract.mailfixture import MailLab, closed_port
from tools import verify

D1, D2 = "example1.local", "example2.local"
PAIRS = [(D1, D1), (D1, D2), (D2, D1), (D2, D2)]
TIMEOUT = 15.0  # generous: the lab delivers in about a second


def _require(condition: bool, message: str) -> None:
    if not condition:
        if contract_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _require_file(path: str, package: str) -> None:
    _require(os.path.exists(path), f"{path} not found: install Debian package {package} with `make deps`")


@pytest.fixture(scope="module")
def mail_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailLab]:
    """The two-domain lab, started once for the module and always stopped (logs kept in a tmp dir)."""
    postfix = require_tool("postfix", "postfix")
    postsuper = require_tool("postsuper", "postfix")
    dovecot = require_tool("dovecot", "dovecot-core")
    _require_file("/usr/lib/dovecot/imap", "dovecot-imapd")
    _require_file("/usr/lib/dovecot/lmtp", "dovecot-lmtpd")
    _require(os.geteuid() == 0, "starting Postfix needs root: run the contract tests as root (as CI does)")
    lab = MailLab(postfix=postfix, dovecot=dovecot, postsuper=postsuper)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop(keep_logs_in=tmp_path_factory.mktemp("mail-lab-logs"))


@pytest.fixture
def lab(mail_lab: MailLab) -> Iterator[MailLab]:
    """The lab for one test; afterwards routes, IMAP and the mail queues are put back."""
    yield mail_lab
    mail_lab.restore()


def _targets(lab: MailLab) -> list[verify.Target]:
    return verify.load_targets(lab.outputs())


def _run(lab: MailLab, **kwargs: object) -> verify.Report:
    options: dict = {"timeout": TIMEOUT, "poll_interval": 0.2, "webmail": False, "probes": False}
    options.update(kwargs)
    return verify.run(_targets(lab), **options)


def _matrix(text: str) -> str:
    return text.split("\n\n")[1]  # the "Delivery" block


def _assert_no_password(text: str, *passwords: str) -> None:
    for password in passwords:
        assert password not in text


# ------------------------------------------------------------------------------------------ lab


def test_cli_all_pairs_probes_and_webmail_pass(
    lab: MailLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d1 = lab.domain(D1)
    outputs = lab.outputs()
    with RoundcubeStandIn(d1.user, d1.password) as webmail:
        outputs["verify"]["domains"][0]["webmail"] = {"url": webmail.url}
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(outputs))

        code = verify.main(["--outputs", str(path), "--timeout", str(TIMEOUT)])

        assert webmail.logins == [d1.user]
    out, err = capsys.readouterr()
    assert code == 0, out + err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  example")}
    assert set(rows) == {D1, D2}
    for cells in rows.values():
        assert cells[0::2] == ["ok", "ok"] and all(c.endswith("s") for c in cells[1::2])
    assert out.count("    ok    ") == 8  # four probes on each of the two servers
    assert "relay-probe.invalid: 554 5.7.1" in out
    assert "Recipient address rejected: User unknown in virtual mailbox table" in out
    assert f"ok    {D1} {webmail.url}: login page served; login as {d1.user} succeeded" in out
    assert "deleted 4 test message(s) (4 from INBOX, 0 from Sent folders)" in out
    assert "Summary: PASS: 4/4 deliveries ok, 8/8 probes ok, 1/1 webmail logins ok" in out
    assert "waiting for 4 message(s)" in err  # progress goes to stderr
    _assert_no_password(out + err, d1.password, lab.domain(D2).password)
    for name in (D1, D2):
        assert not any(verify.SUBJECT_PREFIX in subject for subject, _ in lab.messages(name))


def test_cleanup_deletes_exactly_the_test_messages(lab: MailLab) -> None:
    # Already in the mailboxes: a normal message, one flagged \Deleted (a plain EXPUNGE would remove it),
    # and in a Sent folder copies of every test message (as if the server saved them) plus another message.
    tokens = [f"fixedtoken{i}{secrets.token_hex(8)}" for i in range(4)]
    for name in (D1, D2):
        lab.append(name, "kept: ordinary message")
        lab.append(name, "kept: flagged deleted", flags="\\Deleted")
    lab.append(D1, "kept: sent earlier", mailbox="Sent")
    for token in tokens:
        lab.append(D1, f"{verify.SUBJECT_PREFIX} {token}", mailbox="Sent")
    inbox_before = {name: lab.messages(name) for name in (D1, D2)}
    handed_out = iter(tokens)
    try:
        report = _run(lab, token_factory=lambda: next(handed_out))

        assert [p.ok for p in report.pairs.values()] == [True] * 4, verify.render_report(report)
        assert report.cleanup.deleted_inbox == 4
        # Only the copies of what example1.local sent are its Sent copies; the others stay.
        sent_by_d1 = {report.pairs[(D1, D1)].token, report.pairs[(D1, D2)].token}
        assert report.cleanup.deleted_sent == 2
        assert report.cleanup.errors == [] and report.cleanup.not_found == []
        for name in (D1, D2):
            assert lab.messages(name) == inbox_before[name]
            assert ("kept: flagged deleted", "\\Deleted") in lab.messages(name)
        left_in_sent = {subject for subject, _ in lab.messages(D1, "Sent")}
        expected = {"kept: sent earlier"} | {
            f"{verify.SUBJECT_PREFIX} {t}" for t in tokens if t not in sent_by_d1
        }
        assert left_in_sent == expected
        assert report.exit_code == 0
    finally:
        lab.delete_mailbox(D1, "Sent")


def test_broken_route_fails_exactly_that_cell(lab: MailLab) -> None:
    lab.set_route(D1, D2, closed_port())  # mta1 now sends example2.local mail to a closed port

    report = _run(lab, timeout=4.0)

    broken = report.pairs[(D1, D2)]
    assert not broken.ok
    assert broken.reason.startswith("not delivered within 4s")
    assert "250 2.0.0 Ok: queued as" in broken.reason  # the submission server's reply
    assert [report.pairs[p].ok for p in PAIRS if p != (D1, D2)] == [True] * 3
    assert report.cleanup.deleted_inbox == 3
    assert len(report.cleanup.not_found) == 1 and report.cleanup.not_found[0].startswith(f"{D1} -> {D2}")
    assert report.exit_code == 1
    text = verify.render_report(report)
    assert "FAIL: not delivered within 4s" in text
    assert _matrix(text).count("FAIL: ") == 1
    assert "Summary: FAIL: 3/4 deliveries ok" in text


def test_stopped_imap_fails_its_column_and_is_named(lab: MailLab) -> None:
    lab.stop_imap(D2)
    d2 = lab.domain(D2)

    report = _run(lab)

    for sender in (D1, D2):
        cell = report.pairs[(sender, D2)]
        assert not cell.ok
        assert (
            cell.reason == f"not sent: cannot read the recipient's mailbox: IMAP 127.0.0.1:{d2.imap_port} "
            "unreachable: connection refused"
        )
        assert cell.token == ""  # nothing was sent into a mailbox the check cannot clean up
    assert report.pairs[(D1, D1)].ok and report.pairs[(D2, D1)].ok  # mta2 still sends (its SASL is up)
    assert len(report.unreachable) == 1
    line = report.unreachable[0]
    assert line.startswith(
        f"{D2} (mta2): IMAP port 127.0.0.1:{d2.imap_port} is unreachable (connection refused)"
    )
    assert report.exit_code == 2
    lab.start_imap(D2)
    assert not any(verify.SUBJECT_PREFIX in subject for subject, _ in lab.messages(D2))


def test_check_pair_one_direction(lab: MailLab) -> None:
    t1, t2 = _targets(lab)
    result = verify.check_pair(t2, t1, timeout=TIMEOUT, poll_interval=0.2)
    assert result.ok and result.seconds is not None and result.seconds < TIMEOUT
    assert not any(verify.SUBJECT_PREFIX in subject for subject, _ in lab.messages(D1))


def _with_tls(lab: MailLab, tls: str) -> list[verify.Target]:
    outputs = lab.outputs()
    for domain in outputs["verify"]["domains"]:
        domain["tls"] = tls
    return verify.load_targets(outputs)


def test_starttls_verifies_the_certificate_against_the_server_name(
    lab: MailLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict = {"timeout": TIMEOUT, "poll_interval": 0.2, "webmail": False, "probes": False}
    untrusted = verify.run(_with_tls(lab, "manual"), **options)
    for pair in untrusted.pairs.values():
        assert not pair.ok and "TLS error: CERTIFICATE_VERIFY_FAILED" in pair.reason

    logs_before = {name: (lab.log(name, "postfix"), lab.log(name, "dovecot")) for name in (D1, D2)}
    monkeypatch.setenv("SSL_CERT_FILE", str(lab.ca_file))  # now the lab's CA is trusted
    trusted = verify.run(_with_tls(lab, "manual"), **options)

    assert [p.ok for p in trusted.pairs.values()] == [True] * 4, verify.render_report(trusted)
    for name in (D1, D2):
        postfix_log = lab.log(name, "postfix")[len(logs_before[name][0]) :]
        dovecot_log = lab.log(name, "dovecot")[len(logs_before[name][1]) :]
        assert "TLS connection established from localhost[127.0.0.1]" in postfix_log
        assert "sasl_username=" in postfix_log
        assert f"Login: user=<{lab.domain(name).user}>" in dovecot_log and ", TLS, " in dovecot_log


def test_starttls_self_signed_skips_verification(lab: MailLab) -> None:
    report = verify.run(
        _with_tls(lab, "self-signed"), timeout=TIMEOUT, poll_interval=0.2, webmail=False, probes=False
    )
    assert [p.ok for p in report.pairs.values()] == [True] * 4, verify.render_report(report)


def test_wrong_password_fails_that_domains_row_and_column(lab: MailLab) -> None:
    outputs = lab.outputs()
    bad_password = "not-the-password-" + secrets.token_hex(4)
    outputs["verify"]["domains"][1]["account"]["password"] = bad_password
    targets = verify.load_targets(outputs)
    d2 = lab.domain(D2)

    report = verify.run(targets, timeout=TIMEOUT, poll_interval=0.2, webmail=False, probes=False)

    assert report.pairs[(D1, D1)].ok
    login_refused = (
        f"submission 127.0.0.1:{d2.submission_port} refused login as {d2.user}: "
        "535 5.7.8 Error: authentication failed"
    )
    unreadable = (
        f"cannot read the recipient's mailbox: IMAP 127.0.0.1:{d2.imap_port} login as {d2.user} "
        "failed: [AUTHENTICATIONFAILED] Authentication failed."
    )
    assert report.pairs[(D2, D1)].reason.startswith(login_refused)
    assert report.pairs[(D1, D2)].reason == "not sent: " + unreadable
    assert report.pairs[(D2, D2)].reason.startswith(login_refused)
    assert report.pairs[(D2, D2)].reason.endswith("; and " + unreadable)
    assert report.exit_code == 1
    text = verify.render_report(report)
    assert _matrix(text).count("FAIL: ") == 3
    _assert_no_password(text + repr(report) + repr(targets), bad_password, lab.domain(D1).password)


# -------------------------------------------------------------------------------------- webmail


class RoundcubeStandIn:
    """A Roundcube-like login flow (NOT Roundcube): login page with ``_user``/``_pass``/``_token``, session
    cookie, POST ``?_task=login`` that redirects to ``./?_task=mail`` for the one accepted credential and
    answers 401 with "Login failed." otherwise. The real Roundcube is checked by the e2e suite."""

    def __init__(self, user: str, password: str, *, login_page: bool = True) -> None:
        self.user, self.password, self.login_page = user, password, login_page
        self.sessions: dict[str, dict] = {}
        self.logins: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _session(self) -> tuple[str, dict] | None:
                for part in self.headers.get("Cookie", "").split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == "roundcube_sessid" and value in stand_in.sessions:
                        return value, stand_in.sessions[value]
                return None

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _login_page(self, status: int = 200, message: str = "") -> None:
                sid, token = secrets.token_hex(8), secrets.token_hex(8)
                stand_in.sessions[sid] = {"token": token, "user": None}
                script = f'rcmail.display_message("{message}","warning",0);' if message else ""
                form = (
                    '<form name="login-form" method="post" action="./?_task=login">'
                    f'<input type="hidden" name="_token" value="{token}">'
                    '<input type="hidden" name="_task" value="login"><input type="hidden" name="_action" value="login">'
                    '<input name="_user" id="rcmloginuser"><input name="_pass" type="password"></form>'
                )
                if not stand_in.login_page:
                    form = "<p>It works!</p>"
                self._send(
                    status,
                    f"<html><body>{form}<script>{script}</script></body></html>",
                    {"Set-Cookie": f"roundcube_sessid={sid}; path=/; HttpOnly"},
                )

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                session = self._session()
                if query.get("_task") == ["mail"] and session and session[1]["user"]:
                    self._send(200, '<html><script>rcmail.set_env({"task":"mail"});</script>Inbox</html>')
                else:
                    self._login_page()

            def do_POST(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                session = self._session()
                valid = (
                    query.get("_task") == ["login"]
                    and form.get("_action") == "login"
                    and session is not None
                    and form.get("_token") == session[1]["token"]
                )
                if not valid:
                    self._login_page(401, "Invalid request! No data was saved.")
                elif (form.get("_user"), form.get("_pass")) == (stand_in.user, stand_in.password):
                    stand_in.logins.append(form["_user"])
                    session[1]["user"] = form["_user"]
                    self.send_response(302)
                    self.send_header("Location", "./?_task=mail&_mbox=INBOX")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._login_page(401, "Login failed.")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RoundcubeStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _webmail_target(url: str, password: str) -> verify.Target:
    return verify.Target(
        domain=D1,
        server="mta1",
        hostname=f"mail.{D1}",
        host="127.0.0.1",
        smtp_port=1,
        submission_port=1,
        imap_port=1,
        tls="none",
        account=verify.Account(f"user1@{D1}", password),
        webmail_url=url,
    )


def test_webmail_login_succeeds_with_the_right_password() -> None:
    with RoundcubeStandIn(f"user1@{D1}", "right-password") as web:
        result = verify.check_webmail(_webmail_target(web.url, "right-password"), timeout=10)
    assert result.ok, result.detail
    assert web.logins == [f"user1@{D1}"]


def test_webmail_wrong_password_is_a_failure_with_the_page_message() -> None:
    with RoundcubeStandIn(f"user1@{D1}", "right-password") as web:
        result = verify.check_webmail(_webmail_target(web.url, "wrong-password"), timeout=10)
    assert not result.ok
    assert result.detail == f"login as user1@{D1} refused: HTTP 401: Login failed."
    assert "wrong-password" not in result.detail


def test_webmail_page_that_is_not_roundcube_fails() -> None:
    with RoundcubeStandIn(f"user1@{D1}", "pw", login_page=False) as web:
        result = verify.check_webmail(_webmail_target(web.url, "pw"), timeout=10)
    assert not result.ok
    assert "is not the Roundcube login page (no _user, _pass, _token field)" in result.detail


def test_webmail_unreachable_fails() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    result = verify.check_webmail(_webmail_target(url, "pw"), timeout=5)
    assert not result.ok
    assert result.detail == f"GET {url} failed: connection refused"


def test_webmail_override_host_keeps_the_port() -> None:
    target = _webmail_target("http://127.0.0.1:8081/roundcube/", "pw")
    (moved,) = verify.override_host([target], "10.0.0.5")
    assert moved.webmail_url == "http://10.0.0.5:8081/roundcube/"
    assert moved.host == "10.0.0.5"
    assert replace(moved, host="127.0.0.1", webmail_url=target.webmail_url) == target
