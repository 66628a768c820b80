"""The edge's two one-shot scripts, run by the real shells with the real Caddy.

The Caddyfile writer (run by BusyBox's sh, the Caddy image's Alpine /bin/sh) installs a file
only after ``caddy validate`` accepted it, and leaves the installed one alone otherwise. The certificate
wait (the mail server image's bash) succeeds once both files exist and fails after its bound otherwise.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.edge import WAIT_SCRIPT, WRITER_SCRIPT
from config import caddy
from tests.contract.caddyfixture import caddy_binary
from tests.contract.conftest import require_tool
from tests.edge_support import edge_stack


@pytest.fixture(name="dirs")
def dirs_fixture(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    binary = caddy_binary()
    staging, config = tmp_path / "staging", tmp_path / "config"
    staging.mkdir()
    config.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "caddy").symlink_to(binary)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MAILSTACK_STAGING": str(staging),
        "MAILSTACK_CONFIG_DIR": str(config),
        "XDG_DATA_HOME": str(tmp_path / "validate-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "validate-config"),
        "HOME": str(tmp_path),
    }
    return staging, config, env


def _write(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    busybox = require_tool("busybox", "busybox")
    return subprocess.run(
        [busybox, "sh", "-c", WRITER_SCRIPT, "mailstack-edge-writer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_writer_installs_a_valid_caddyfile(dirs):
    staging, config, env = dirs
    stack, edge = edge_stack()
    text = caddy.render_caddyfile(stack, edge)
    (staging / "Caddyfile").write_text(text)
    result = _write(env)
    assert result.returncode == 0, result.stderr
    assert (config / "Caddyfile").read_text() == text
    assert oct((config / "Caddyfile").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in config.iterdir()) == ["Caddyfile"]  # no temporary file left


def test_the_writer_refuses_a_broken_caddyfile_and_keeps_the_installed_one(dirs):
    staging, config, env = dirs
    (config / "Caddyfile").write_text("# the running edge's file\n")
    (staging / "Caddyfile").write_text("webmail.example.org {\n\treverse_proxy\n")
    result = _write(env)
    assert result.returncode == 1
    assert "does not validate" in result.stderr
    assert (config / "Caddyfile").read_text() == "# the running edge's file\n"


def _wait(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = require_tool("bash", "bash")
    return subprocess.run(
        [bash, "-c", WAIT_SCRIPT, "mailstack-certificate-wait"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_wait_reports_the_certificate_once_both_files_exist(tmp_path):
    require_tool("openssl", "openssl")
    cert_dir = tmp_path / "caddy" / "certificates" / "local" / "mail.example.org"
    cert_dir.mkdir(parents=True)
    key = cert_dir / "mail.example.org.key"
    cert = cert_dir / "mail.example.org.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=mail.example.org", "-keyout", str(key), "-out", str(cert), "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {"MAILSTACK_HOST": "mail.example.org", "MAILSTACK_CERT": str(cert), "MAILSTACK_KEY": str(key)}
    result = _wait({**env, "MAILSTACK_TIMEOUT": "5"})
    assert result.returncode == 0, result.stderr
    assert "the certificate of mail.example.org is there" in result.stdout and "notAfter=" in result.stdout


def test_the_wait_gives_up_after_its_bound(tmp_path):
    env = {
        "MAILSTACK_HOST": "mail.example.org",
        "MAILSTACK_CERT": str(tmp_path / "missing.crt"),
        "MAILSTACK_KEY": str(tmp_path / "missing.key"),
        "MAILSTACK_TIMEOUT": "2",
    }
    result = _wait(env)
    assert result.returncode == 1
    assert "no certificate for mail.example.org after 2s" in result.stderr
