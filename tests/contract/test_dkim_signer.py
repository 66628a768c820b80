"""The signer reads mailstack's files and really signs: Debian's Rspamd on loopback, dkimpy verifies.

Rspamd runs with the generated ``dkim_signing.conf`` and a key the real config writer installed (owned by
``_rspamd``, mode 0640); ``rspamc`` submits a message as an authenticated user, as Postfix's submission
service does through the milter. dkimpy then verifies the signature against the TXT record mailstack
publishes for that key (the ``dns`` output's split strings, joined); a record of another key fails.
"""

from __future__ import annotations

import email.utils
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from config import dkim as dk
from config.dns import Record
from tests.contract.conftest import contract_required, require_tool
from tests.contract.rspamdfixture import RSPAMD_CONF, RspamdSigner, new_key
from tools.mailcheck.dkimcheck import check_signature, dkim_records

DOMAIN = "example.org"
SENDER = f"admin@{DOMAIN}"


def _message(sender: str = SENDER) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.net\r\nSubject: mailstack signer test\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: <signer-test@{DOMAIN}>\r\n\r\n"
        "signed by Rspamd with the key mailstack generated\r\n"
    ).encode()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RspamdSigner]:
    rspamd = require_tool("rspamd", "rspamd")
    if os.geteuid() != 0:
        message = "running Rspamd as _rspamd needs root: run the contract tests as root (as CI does)"
        if contract_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    s = RspamdSigner(rspamd=rspamd, domain=DOMAIN)
    s.start()
    try:
        yield s
    finally:
        s.stop(keep_logs_in=tmp_path_factory.mktemp("rspamd-logs"))


@pytest.fixture(scope="module")
def rspamc() -> str:
    return require_tool("rspamc", "rspamd")


def _lookup(record: str):
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        del timeout
        return record.encode() if name == f"mail._domainkey.{DOMAIN}.".encode() else None

    return dnsfunc


def test_writer_installs_the_key_for_rspamd(signer: RspamdSigner) -> None:
    key = signer.config_dir / dk.key_file(DOMAIN, "mail")
    info = key.stat()
    assert pwd.getpwuid(info.st_uid).pw_name == "_rspamd" and oct(info.st_mode & 0o777) == "0o640"
    assert key.read_text() == signer.private_pem


def test_rspamd_signs_and_dkimpy_verifies_against_the_published_record(
    signer: RspamdSigner, rspamc: str
) -> None:
    signed = signer.sign(rspamc, _message(), SENDER)
    assert b"DKIM-Signature:" in signed, signed.decode(errors="replace")
    record = "".join(signer.record())
    assert all(len(part) <= 255 for part in signer.record()) and len(signer.record()) == 2
    assert dkim.verify(signed, dnsfunc=_lookup(record))
    header = signed.split(b"DKIM-Signature:", 1)[1].split(b"\r\n\r\n", 1)[0]
    assert b"d=example.org;" in header and b"s=mail;" in header
    # The same through make verify's DKIM column, fed with the dns output's records.
    zones = {DOMAIN: [Record(f"mail._domainkey.{DOMAIN}", "TXT", signer.record())]}
    assert check_signature(signed, DOMAIN, dkim_records(zones)[DOMAIN]) == (True, "d=example.org s=mail")


def test_a_record_of_another_key_fails(signer: RspamdSigner, rspamc: str) -> None:
    signed = signer.sign(rspamc, _message(), SENDER)
    _, other_public = new_key()
    other = dk.txt_value(other_public)
    assert not dkim.verify(signed, dnsfunc=_lookup(other))
    ok, why = check_signature(signed, DOMAIN, {f"mail._domainkey.{DOMAIN}": other})
    assert not ok and why == "bad signature: d=example.org s=mail does not verify"


def test_a_tampered_message_fails(signer: RspamdSigner, rspamc: str) -> None:
    signed = signer.sign(rspamc, _message(), SENDER)
    tampered = signed.replace(b"signed by Rspamd", b"SIGNED BY RSPAMD")
    assert not dkim.verify(tampered, dnsfunc=_lookup("".join(signer.record())))


def test_mail_from_another_domain_is_not_signed(signer: RspamdSigner, rspamc: str) -> None:
    signed = signer.sign(rspamc, _message("someone@example.net"), "someone@example.net")
    assert b"DKIM-Signature:" not in signed
    ok, why = check_signature(signed, "example.net", {})
    assert not ok and why.startswith("unsigned")


def test_unauthenticated_mail_is_not_signed(signer: RspamdSigner, rspamc: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [rspamc, "-h", f"127.0.0.1:{signer.normal_port}", "--mime", "-i", "198.51.100.7"],
        input=_message(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"DKIM-Signature:" not in done.stdout  # sign_local off, sign_inbound off: relayed mail stays as is


def test_controller_override_keeps_the_web_ui_on_loopback(tmp_path: Path) -> None:
    rspamadm = require_tool("rspamadm", "rspamd")
    conf = tmp_path / "etc"
    import shutil

    shutil.copytree(RSPAMD_CONF, conf)
    # docker-mailserver's own local.d binds the controller to every interface (target/rspamd/local.d).
    (conf / "local.d" / "worker-controller.inc").write_text('bind_socket = "0.0.0.0:11334";\n')
    (conf / "override.d" / "worker-controller.inc").write_text(dk.render_controller_override())
    (conf / "override.d" / "dkim_signing.conf").write_text(
        dk.render_signing_conf(DOMAIN, "mail", "/tmp/docker-mailserver")
    )
    args = [rspamadm, f"--var=CONFDIR={conf}", f"--var=LOCAL_CONFDIR={conf}"]
    test = subprocess.run(
        [*args, "configtest", "-c", str(conf / "rspamd.conf")], capture_output=True, text=True
    )
    assert test.returncode == 0 and "syntax OK" in test.stdout, test.stdout + test.stderr
    dump = subprocess.run(
        [*args, "configdump", "-c", str(conf / "rspamd.conf"), "worker"], capture_output=True, text=True
    ).stdout
    controller = dump.split("controller {", 1)[1].split("}", 1)[0]
    assert 'bind_socket = "127.0.0.1:11334";' in controller and "0.0.0.0" not in controller
    signing = subprocess.run(
        [*args, "configdump", "-c", str(conf / "rspamd.conf"), "dkim_signing"], capture_output=True, text=True
    ).stdout
    for line in ("check_pubkey = false;", "sign_local = false;", "use_redis = false;", 'selector = "mail";'):
        assert line in signing, signing
