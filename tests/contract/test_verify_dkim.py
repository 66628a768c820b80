"""make verify's DKIM column end to end: Postfix submission -> Rspamd's milter (mailstack's files) -> Dovecot.

The two-domain lab of ``mailfixture`` with Debian's Rspamd as the milter of example1.local's submission
service (as docker-mailserver adds Rspamd to ``smtpd_milters``), signing with mailstack's generated
``dkim_signing.conf`` and a key the real config writer installed. example2.local has no signer. The check
reads the DKIM records of a ``dns`` output and verifies every delivered message with dkimpy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config import dkim as dk
from config.dns import Record, split_txt
from tests.contract.conftest import contract_required, require_tool
from tests.contract.mailfixture import MailLab
from tests.contract.rspamdfixture import RspamdSigner, new_key
from tools import verify
from tools.mailcheck.dkimcheck import dkim_records

D1, D2 = "example1.local", "example2.local"


def _require(condition: bool, message: str) -> None:
    if not condition:
        if contract_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def signed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MailLab, RspamdSigner]]:
    rspamd = require_tool("rspamd", "rspamd")
    postfix = require_tool("postfix", "postfix")
    postsuper = require_tool("postsuper", "postfix")
    dovecot = require_tool("dovecot", "dovecot-core")
    _require(os.geteuid() == 0, "Postfix and Rspamd as _rspamd need root: run the contract tests as root")
    signer = RspamdSigner(rspamd=rspamd, domain=D1)
    signer.start()
    lab = MailLab(postfix=postfix, dovecot=dovecot, postsuper=postsuper, milters={D1: signer.milter_port})
    try:
        lab.start()
        yield lab, signer
    finally:
        logs = tmp_path_factory.mktemp("verify-dkim-logs")
        lab.stop(keep_logs_in=logs)
        signer.stop(keep_logs_in=logs)


def _zones(signer: RspamdSigner, d1_record: tuple[str, ...] | None = None, d2: bool = False) -> dict:
    zones = {D1: [Record(f"mail._domainkey.{D1}", "TXT", d1_record or signer.record())], D2: []}
    if d2:  # a record for a domain whose server does not sign
        zones[D2] = [Record(f"mail._domainkey.{D2}", "TXT", split_txt(dk.txt_value(new_key()[1])))]
    return zones


def _run(lab: MailLab, zones: dict) -> verify.Report:
    return verify.run(
        verify.load_targets(lab.outputs()),
        timeout=30,
        poll_interval=0.2,
        webmail=False,
        probes=False,
        dkim_keys=dkim_records(zones),
    )


def test_signed_mail_passes_and_the_column_shows_the_signature(signed_lab) -> None:
    lab, signer = signed_lab
    report = _run(lab, _zones(signer))
    text = verify.render_report(report)
    assert report.passed, text
    for b in (D1, D2):
        assert report.pairs[(D1, b)].dkim_ok is True and report.pairs[(D1, b)].dkim == f"d={D1} s=mail"
        assert report.pairs[(D2, b)].dkim_ok is None  # no DKIM record: not checked
    assert "DKIM of the delivered messages (rows: sender, columns: recipient)" in text
    assert f"ok d={D1} s=mail" in text and "2/2 DKIM signatures ok" in text
    assert report.cleanup.deleted_inbox == 4


def test_unsigned_mail_of_a_domain_with_a_record_fails(signed_lab) -> None:
    lab, signer = signed_lab
    report = _run(lab, _zones(signer, d2=True))
    assert not report.passed and report.exit_code == 1
    for b in (D1, D2):
        pair = report.pairs[(D2, b)]
        assert pair.ok and pair.dkim_ok is False and pair.dkim.startswith("unsigned")
    assert "2/4 DKIM signatures ok" in verify.render_report(report)


def test_a_record_of_another_key_fails(signed_lab) -> None:
    lab, signer = signed_lab
    other = split_txt(dk.txt_value(new_key()[1]))
    report = _run(lab, _zones(signer, d1_record=other))
    assert not report.passed
    assert report.pairs[(D1, D2)].dkim == f"bad signature: d={D1} s=mail does not verify"
