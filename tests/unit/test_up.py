"""``make up``'s helper: CLI discovery and install fallback, local backend, lab passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import up


def _offline(_root: Path) -> Path:
    raise OSError("offline")


def test_cli_on_path_wins(tmp_path):
    def never(_root: Path) -> Path:
        raise AssertionError("must not install")

    assert up.find_cli(which=lambda _n: "/usr/local/bin/pulumi", installer=never, cli_dir=tmp_path) == Path(
        "/usr/local/bin/pulumi"
    )


def test_project_copy_used_before_installing(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pulumi").write_text("#!/bin/sh\n")
    with pytest.raises(up.UpError):  # not executable: no CLI, and installing fails here
        up.find_cli(which=lambda _n: None, installer=_offline, cli_dir=tmp_path)
    (tmp_path / "bin" / "pulumi").chmod(0o755)
    assert up.find_cli(which=lambda _n: None, installer=None, cli_dir=tmp_path) == tmp_path / "bin" / "pulumi"


def test_installs_when_missing(tmp_path):
    seen = []

    def installer(root: Path) -> Path:
        seen.append(root)
        return root / "bin" / "pulumi"

    assert (
        up.find_cli(which=lambda _n: None, installer=installer, cli_dir=tmp_path)
        == tmp_path / "bin" / "pulumi"
    )
    assert seen == [tmp_path]


def test_install_failure_says_what_to_install(tmp_path):
    def offline(_root: Path) -> Path:
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(up.UpError) as err:
        up.find_cli(which=lambda _n: None, installer=offline, cli_dir=tmp_path)
    assert "name resolution" in str(err.value) and "pulumi.com/docs/install" in str(err.value)
    assert up.PULUMI_VERSION in str(err.value)


def test_environment_uses_local_backend_and_keeps_user_choices():
    env = up.environment({})
    assert env["PULUMI_BACKEND_URL"] == f"file://{up.STATE_DIR}"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == up.DEV_PASSPHRASE
    mine = up.environment({"PULUMI_BACKEND_URL": "file:///x", "PULUMI_CONFIG_PASSPHRASE_FILE": "/p"})
    assert mine["PULUMI_BACKEND_URL"] == "file:///x" and "PULUMI_CONFIG_PASSPHRASE" not in mine


def test_lab_passwords_only_for_dev():
    commands = up.lab_password_commands("dev", up.ROOT / "Pulumi.dev.yaml")
    keys = [c[4] for c in commands]
    assert keys == [f'mailstack:passwords["user{i}@example{1 if i < 3 else 2}.local"]' for i in range(1, 5)]
    assert all(c[:4] == ["config", "set", "--secret", "--path"] and c[5] == "password123" for c in commands)
    assert up.lab_password_commands("prod", up.ROOT / "Pulumi.dev.yaml") == []


def test_main_reports_missing_cli(monkeypatch, capsys):
    def no_cli(*_a, **_k):
        raise up.UpError("no CLI")

    monkeypatch.setattr(up, "find_cli", no_cli)
    assert up.main(["--stack", "dev"]) == 2
    assert "no CLI" in capsys.readouterr().err
