"""tools.verify without mail servers: reading the outputs, clear errors, the report text, no passwords."""

from __future__ import annotations

import copy
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from tools import verify
from tools.stackoutputs import OutputsError

PASSWORD1 = "s3cret-One_pw"
PASSWORD2 = "s3cret-Two_pw"


def _domain(n: int, password: str, **changes: object) -> dict:
    item = {
        "domain": f"example{n}.local",
        "server": f"mta{n}",
        "hostname": f"mail.example{n}.local",
        "host": "127.0.0.1",
        "ports": {"smtp": 2525 + n * 1000, "submission": 2587 + n * 1000, "imap": 2143 + n * 1000},
        "tls": "none",
        "account": {"address": f"user{n}@example{n}.local", "password": password},
        "webmail": {"url": f"http://127.0.0.1:808{n}/"},
    }
    item.update(changes)
    return item


def _outputs(**changes: object) -> dict:
    verify_output = {"schema": 1, "stack": "dev", "domains": [_domain(1, PASSWORD1), _domain(2, PASSWORD2)]}
    verify_output.update(changes)
    return {"verify": verify_output, "other": "ignored"}


def _error(outputs: object) -> str:
    with pytest.raises(verify.VerifyError) as info:
        verify.load_targets(outputs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert PASSWORD1 not in message and PASSWORD2 not in message
    return message


# ------------------------------------------------------------------------------------- load_targets


def test_load_targets_reads_schema_1() -> None:
    t1, t2 = verify.load_targets(_outputs())
    assert (t1.domain, t1.server, t1.hostname, t1.host) == (
        "example1.local",
        "mta1",
        "mail.example1.local",
        "127.0.0.1",
    )
    assert (t1.smtp_port, t1.submission_port, t1.imap_port) == (3525, 3587, 3143)
    assert t1.tls == "none"
    assert t1.account == verify.Account("user1@example1.local", PASSWORD1)
    assert t2.webmail_url == "http://127.0.0.1:8082/"
    assert PASSWORD1 not in repr(t1) and PASSWORD1 not in repr(t1.account)


def test_load_targets_accepts_null_webmail_and_a_json_string() -> None:
    outputs = _outputs(domains=[_domain(1, PASSWORD1, webmail=None)])
    outputs["verify"] = json.dumps(outputs["verify"])
    (target,) = verify.load_targets(outputs)
    assert target.webmail_url is None


def test_missing_verify_output_means_not_deployed() -> None:
    message = _error({})
    assert "no `verify` output" in message
    assert "not deployed yet (run `make up`)" in message
    assert "re-run pulumi up with this version of mailstack" in message


def test_hidden_secret_asks_for_show_secrets() -> None:
    assert "--show-secrets" in _error({"verify": "[secret]"})


@pytest.mark.parametrize("schema", [0, None, "1", True])
def test_older_or_missing_schema_asks_to_rerun_up(schema: object) -> None:
    outputs = _outputs(schema=schema)
    if schema is None:
        del outputs["verify"]["schema"]
    message = _error(outputs)
    assert f"schema {schema!r}" in message
    assert "deployed by an older mailstack; re-run pulumi up with this version of mailstack" in message


def test_newer_schema_asks_to_update_the_tool() -> None:
    message = _error(_outputs(schema=2))
    assert "schema 2 but this tool reads schema 1" in message
    assert "update mailstack" in message


def test_malformed_domains_name_every_problem() -> None:
    bad = _domain(1, PASSWORD1, ports={"smtp": 0, "submission": "2587"}, tls="")
    bad["account"] = {"address": "user1@elsewhere.local", "password": ""}
    message = _error(_outputs(domains=[bad, _domain(2, PASSWORD2, webmail={"url": "ftp://x"})]))
    for problem in (
        "verify.domains[0].tls must be a non-empty string",
        "verify.domains[0].ports.smtp must be a port number (1-65535)",
        "verify.domains[0].ports.submission must be a port number",
        "verify.domains[0].ports.imap must be a port number",
        "verify.domains[0].account.password must be a non-empty string",
        "verify.domains[0].account.address user1@elsewhere.local is not in domain example1.local",
        "verify.domains[1].webmail must be null or an object with an http(s) url",
    ):
        assert problem in message
    assert message.startswith("the `verify` output is malformed: ")


def test_no_domains_and_duplicate_domains() -> None:
    assert "lists no domains" in _error(_outputs(domains=[]))
    assert "domain example1.local is listed twice" in _error(
        _outputs(domains=[_domain(1, PASSWORD1), _domain(1, PASSWORD2)])
    )


def test_override_host_moves_every_domain() -> None:
    targets = verify.override_host(verify.load_targets(_outputs()), "192.0.2.7")
    assert [t.host for t in targets] == ["192.0.2.7", "192.0.2.7"]
    assert [t.webmail_url for t in targets] == ["http://192.0.2.7:8081/", "http://192.0.2.7:8082/"]


# ---------------------------------------------------------------------------------- reading outputs


def test_outputs_file_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputsError, match="does not exist"):
        verify.read_outputs_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(OutputsError, match="is not JSON"):
        verify.read_outputs_file(bad)


def NO_PATH(_name: str) -> None:
    """A ``which`` that finds nothing on PATH, so the project's fake CLI is the one used."""


def _fake_pulumi(project: Path, script: str) -> None:
    cli = project / ".pulumi-cli" / "bin" / "pulumi"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n" + script)
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)


def test_stack_outputs_from_the_project_cli(tmp_path: Path) -> None:
    outputs = _outputs()
    _fake_pulumi(tmp_path, f"echo \"$@\" > args.txt\ncat <<'EOF'\n{json.dumps(outputs)}\nEOF\n")
    assert verify.read_stack_outputs("dev", tmp_path, which=NO_PATH) == outputs
    args = (tmp_path / "args.txt").read_text().split()
    assert args == ["stack", "output", "--json", "--show-secrets", "--non-interactive", "--stack", "dev"]


def test_no_such_stack_is_a_clear_error(tmp_path: Path) -> None:
    _fake_pulumi(tmp_path, "echo \"error: no stack named 'nope' found\" >&2\nexit 255\n")
    with pytest.raises(OutputsError) as info:
        verify.read_stack_outputs("nope", tmp_path, which=NO_PATH)
    assert str(info.value).startswith("no such stack nope: deploy it first")


def test_other_cli_failures_are_passed_on(tmp_path: Path) -> None:
    _fake_pulumi(
        tmp_path, "echo 'error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE' >&2\nexit 255\n"
    )
    with pytest.raises(OutputsError, match="failed for stack dev: error: passphrase must be set"):
        verify.read_stack_outputs("dev", tmp_path, which=NO_PATH)


def test_missing_cli_says_to_use_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OutputsError, match="pass --outputs FILE"):
        verify.read_stack_outputs("dev", tmp_path, which=NO_PATH)


# ---------------------------------------------------------------------------------------------- main


def test_main_exits_2_with_one_line_for_an_undeployed_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "outputs.json"
    path.write_text("{}")
    assert verify.main(["--outputs", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("verify: error: the stack has no `verify` output")


def test_main_exits_2_for_an_older_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(_outputs(schema=0)))
    assert verify.main(["--outputs", str(path)]) == 2
    assert "re-run pulumi up with this version of mailstack" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_exits_2_with_one_line_when_nothing_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Per-port lines (some ports up, some down) are covered against real servers in tests/contract.
    port = _closed_port()
    ports = {"smtp": port, "submission": port, "imap": port}
    domains = [
        _domain(1, PASSWORD1, ports=ports, webmail=None),
        _domain(2, PASSWORD2, ports=ports, webmail=None),
    ]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(_outputs(domains=domains)))

    assert verify.main(["--outputs", str(path), "--timeout", "5"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("verify: error: ")]
    assert errors == [
        "verify: error: no mail port of the stack answers (e.g. example1.local (mta1): smtp port "
        f"127.0.0.1:{port} is unreachable (connection refused)): is it deployed and running? run `make up`, "
        "check `docker ps`, or pass --host for a remote Docker host"
    ]
    assert PASSWORD1 not in err and PASSWORD2 not in err


# -------------------------------------------------------------------------------------- render_report


def _report() -> verify.Report:
    d1, d2 = "example1.local", "example2.local"
    pairs = {
        (d1, d1): verify.PairResult(d1, d1, ok=True, seconds=0.42),
        (d1, d2): verify.PairResult(d1, d2, ok=True, seconds=1.8),
        # A server that echoes what it got must not get the password printed.
        (d2, d1): verify.PairResult(d2, d1, reason=f"submission refused login: 535 bad password {PASSWORD2}"),
        (d2, d2): verify.PairResult(
            d2, d2, reason="not delivered within 120s (submission accepted it: 250 ok)"
        ),
    }
    probes = [
        verify.ProbeResult("mta1", d1, "IMAP refuses a wrong password", True, "NO [AUTHENTICATIONFAILED]"),
        verify.ProbeResult(
            "mta2", d2, "smtp refuses to relay", False, f"OPEN RELAY: accepted 250 {PASSWORD1}"
        ),
    ]
    webmail = [verify.WebmailResult(d1, "http://127.0.0.1:8081/", False, f"login failed for {PASSWORD1}")]
    cleanup = verify.CleanupResult(deleted_inbox=2, not_found=["example2.local -> example2.local: ..."])
    return verify.Report(
        stack="dev",
        domains=[d1, d2],
        pairs=pairs,
        probes=probes,
        webmail=webmail,
        cleanup=cleanup,
        secrets=(PASSWORD1, PASSWORD2),
    )


def test_render_report_matrix_probes_summary() -> None:
    text = verify.render_report(_report())
    lines = text.splitlines()
    assert lines[0] == "mailstack verify: stack dev, 2 domain(s)"
    header = next(i for i, line in enumerate(lines) if line.startswith("  sender \\ recipient"))
    assert lines[header].split() == ["sender", "\\", "recipient", "example1.local", "example2.local"]
    row1, row2 = lines[header + 1], lines[header + 2]
    assert row1.split() == ["example1.local", "ok", "0.4s", "ok", "1.8s"]
    assert row2.split()[:2] == ["example2.local", "FAIL:"]
    assert "FAIL: submission refused login: 535 bad password ********  FAIL: not delivered" in row2
    assert "FAIL: not delivered within 120s (submission accepted it: 250 ok)" in row2
    # Columns line up: the second column starts at the same offset in every row.
    assert lines[header].index("example2.local") == row1.index("ok 1.8s")
    assert "  mta2 (example2.local)" in lines
    assert "    FAIL  smtp refuses to relay: OPEN RELAY: accepted 250 ********" in lines
    assert "  not found: example2.local -> example2.local: ..." in lines
    assert lines[-1] == "Summary: FAIL: 2/4 deliveries ok, 1/2 probes ok, 0/1 webmail logins ok"


def test_render_report_never_prints_passwords() -> None:
    text = verify.render_report(_report())
    assert PASSWORD1 not in text and PASSWORD2 not in text
    assert text.count("********") == 3
    clean = verify.Report(stack="dev", domains=[], pairs={}, secrets=(PASSWORD1, PASSWORD2))
    assert PASSWORD1 not in repr(clean) and PASSWORD2 not in repr(clean)


def test_report_exit_codes() -> None:
    report = _report()
    assert report.exit_code == 1
    passing = copy.deepcopy(report)
    for pair in passing.pairs.values():
        pair.ok = True
    passing.probes = [p for p in passing.probes if p.ok]
    passing.webmail = []
    assert passing.passed and passing.exit_code == 0
    passing.unreachable = ["example1.local (mta1): IMAP port 127.0.0.1:1 is unreachable"]
    assert passing.exit_code == 2
    passing.unreachable = []
    passing.cleanup.errors = ["cleanup in mta1: boom"]
    assert passing.exit_code == 1


def test_scrubber_masks_longest_first() -> None:
    scrub = verify.Scrubber(["abc", "abcdef", ""])
    assert scrub("x abcdef y abc") == "x ******** y ********"


def test_message_carries_the_token_everywhere() -> None:
    t1, t2 = verify.load_targets(_outputs())
    msg = verify.build_message(t1, t2, "tok123")
    assert msg["Subject"] == "mailstack verify tok123"
    assert msg["Message-ID"] == "<mailstack-verify.tok123@example1.local>"
    assert "tok123" in msg.get_content()
    assert (msg["From"], msg["To"]) == ("user1@example1.local", "user2@example2.local")
    assert PASSWORD1 not in msg.as_string()


def test_module_runs_as_python_dash_m() -> None:
    import subprocess
    import sys

    root = Path(verify.__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.verify", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 0
    for option in ("--stack", "--outputs", "--host", "--timeout", "--no-webmail"):
        assert option in proc.stdout
