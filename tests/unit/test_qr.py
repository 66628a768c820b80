"""tools.qr with fake stack outputs: PNG and terminal output, errors, and no config text unless --show."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import pytest

from tools import qr

PEER1 = (
    "[Interface]\nAddress = 10.13.13.2/32\nPrivateKey = cGVlcjEtZmFrZS1wcml2YXRlLWtleS0wMDAwMDAwMDA=\n"
    "DNS = 10.13.13.1\n\n[Peer]\nPublicKey = c2VydmVyLWZha2UtcHVibGljLWtleS0wMDAwMDAwMDA=\n"
    "Endpoint = localhost:51820\nAllowedIPs = 10.13.13.0/24, 172.28.0.0/24\nPersistentKeepalive = 25\n"
)
PEER2 = PEER1.replace("10.13.13.2", "10.13.13.3").replace("cGVlcjEt", "cGVlcjIt")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps({"vpnEndpoint": "localhost:51820", "vpnPeerConfigs": {"peer1": PEER1, "peer2": PEER2}})
    )
    return path


def test_png_is_written_private_and_is_a_png(
    outputs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "peer1.png"
    assert qr.main(["peer1", "--outputs", str(outputs_file), "--png", str(png)]) == 0
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == qr.make_qr(PEER1).symbol_size(scale=8, border=4)
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    out = capsys.readouterr()
    assert "PrivateKey" not in out.out + out.err
    assert str(png) in out.out


def test_existing_png_is_tightened_to_0600(outputs_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "old.png"
    png.write_bytes(b"old")
    os.chmod(png, 0o644)
    assert qr.main(["peer2", "--outputs", str(outputs_file), "--png", str(png)]) == 0
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_terminal_output_without_config_text(outputs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert qr.main(["peer1", "--outputs", str(outputs_file)]) == 0
    first = capsys.readouterr().out
    lines = first.splitlines()
    assert len(lines) > 20  # a real symbol, not a message
    assert any(ch in first for ch in "\u2580\u2584\u2588")  # half/full blocks of the compact rendering
    for secret_part in ("PrivateKey", "cGVlcjEtZmFrZS1wcml2YXRlLWtleS0wMDAwMDAwMDA=", "[Interface]"):
        assert secret_part not in first
    assert qr.main(["peer2", "--outputs", str(outputs_file)]) == 0
    assert capsys.readouterr().out != first  # the code depends on the peer's config


def test_show_prints_the_config(outputs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert qr.main(["peer1", "--outputs", str(outputs_file), "--show"]) == 0
    assert capsys.readouterr().out.endswith(PEER1)


def test_unknown_peer_lists_known_peers(outputs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert qr.main(["peer9", "--outputs", str(outputs_file)]) == 1
    err = capsys.readouterr().err
    assert "unknown VPN peer 'peer9'; known peers: peer1, peer2" in err
    assert "PrivateKey" not in err


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"vpnEndpoint": "x"}, "no `vpnPeerConfigs` output"),
        ({"vpnPeerConfigs": "[secret]"}, "hidden as [secret]"),
        ({"vpnPeerConfigs": ["peer1"]}, "not a JSON object of peer configs"),
        ({"vpnPeerConfigs": {"peer1": "hello"}}, "is not a WireGuard config"),
        (["not", "an", "object"], "not a JSON object of stack outputs"),
    ],
)
def test_bad_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outputs: object, expected: str
) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    assert qr.main(["peer1", "--outputs", str(path)]) == 1
    assert expected in capsys.readouterr().err


def test_configs_as_json_string_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"vpnPeerConfigs": json.dumps({"peer1": PEER1})}))
    assert qr.main(["peer1", "--outputs", str(path), "--show"]) == 0
    assert capsys.readouterr().out.endswith(PEER1)


def test_missing_or_invalid_outputs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert qr.main(["peer1", "--outputs", str(tmp_path / "nope.json")]) == 1
    assert "cannot read outputs file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert qr.main(["peer1", "--outputs", str(bad)]) == 1
    assert "is not JSON" in capsys.readouterr().err


def fake_pulumi(bin_dir: Path, record: Path, outputs: object, code: int = 0) -> None:
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{record}"\n'
        f'printf "%s" "$PULUMI_BACKEND_URL" > "{record}.backend"\n'
        f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF\n"
        f"{'echo boom >&2' if code else ''}\n"
        f"exit {code}\n"
    )
    script.chmod(0o755)


def test_reads_the_stack_through_the_pulumi_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "args.txt"
    fake_pulumi(tmp_path / "bin", record, {"vpnPeerConfigs": {"peer1": PEER1}})
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert qr.main(["peer1", "--stack", "dev", "--show"]) == 0
    assert capsys.readouterr().out.endswith(PEER1)
    assert record.read_text().split() == [
        "stack",
        "output",
        "--json",
        "--show-secrets",
        "--non-interactive",
        "--stack",
        "dev",
    ]
    assert record.with_suffix(".txt.backend").read_text() == "file://" + str(qr.ROOT / ".pulumi-state")


def test_pulumi_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_pulumi(tmp_path / "bin", tmp_path / "args.txt", {}, code=255)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    assert qr.main(["peer1"]) == 1
    assert "`pulumi stack output` failed for stack (current): boom" in capsys.readouterr().err


def test_stack_and_outputs_are_exclusive(outputs_file: Path) -> None:
    with pytest.raises(SystemExit):
        qr.main(["peer1", "--stack", "dev", "--outputs", str(outputs_file)])
