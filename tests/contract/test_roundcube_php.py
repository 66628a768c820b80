"""The generated Roundcube PHP file against Debian's php-cli: lint, then evaluate it.

``php -l`` proves every generated file (each TLS mode, each domain, a domain name that needs
escaping) parses. Evaluating it after a stand-in for the image's ``config.docker.inc.php`` (the
values the entrypoint writes from the environment, and the DES key read from the secret file)
proves the values PHP sees: booleans are booleans, escaped strings round-trip, and the file
overrides neither ``des_key`` nor the IMAP/SMTP hosts.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config import roundcube as rc
from config.model import StackConfig, load_stack
from tests.contract.conftest import require_tool
from tests.unit.conftest import DEV_RAW

TLS_MODES = ("none", "self-signed", "manual", "letsencrypt")

DUMP = r"""
$config = ['plugins' => []];
foreach (array_slice($argv, 1) as $file) {
    include $file;
}
echo json_encode($config, JSON_THROW_ON_ERROR);
"""


@pytest.fixture(scope="module")
def php() -> str:
    return require_tool("php", "php-cli")


def stack_for(tls: str) -> StackConfig:
    raw = json.loads(json.dumps(DEV_RAW))
    for i, port in enumerate((8081, 8082)):
        raw["domains"][i]["webmail"] = {"port": port}
    # Certificate paths belong to the mail servers; the renderers only look at the TLS mode.
    return dataclasses.replace(load_stack("dev", raw), tls=tls)


def cases() -> list[tuple[str, str]]:
    return [(tls, d) for tls in TLS_MODES for d in ("example1.local", "example2.local")]


def evaluate(php: str, *files: Path) -> dict[str, Any]:
    result = subprocess.run(
        [php, "-n", "-d", "display_errors=stderr", "-r", DUMP, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("tls", "domain"), cases())
def test_generated_php_passes_php_lint(php: str, tmp_path: Path, tls: str, domain: str) -> None:
    stack = stack_for(tls)
    path = tmp_path / rc.CONFIG_FILE
    path.write_text(rc.render_config_php(stack, stack.domain(domain)))
    result = subprocess.run(
        [php, "-n", "-l", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No syntax errors detected" in result.stdout


@pytest.mark.parametrize(("tls", "domain"), cases())
def test_php_values_after_the_images_config(php: str, tmp_path: Path, tls: str, domain: str) -> None:
    stack = stack_for(tls)
    d = stack.domain(domain)
    env = rc.webmail_env(stack, d)
    key_file = tmp_path / "roundcube_des_key"
    key_file.write_text("A" * rc.DES_KEY_LENGTH)  # the shape of the uploaded secret: 24 chars, no newline
    # Stand-in for what the entrypoint writes from the environment before including our file.
    docker_inc = tmp_path / "config.docker.inc.php"
    docker_inc.write_text(
        "<?php\n"
        f"$config['imap_host'] = {rc.php_string(env['ROUNDCUBEMAIL_DEFAULT_HOST'] + ':' + env['ROUNDCUBEMAIL_DEFAULT_PORT'])};\n"
        f"$config['smtp_host'] = {rc.php_string(env['ROUNDCUBEMAIL_SMTP_SERVER'] + ':' + env['ROUNDCUBEMAIL_SMTP_PORT'])};\n"
        f"$config['username_domain'] = {rc.php_string(env['ROUNDCUBEMAIL_USERNAME_DOMAIN'])};\n"
        f"$config['des_key'] = file_get_contents({rc.php_string(str(key_file))});\n"
    )
    ours = tmp_path / rc.CONFIG_FILE
    ours.write_text(rc.render_config_php(stack, d))

    config = evaluate(php, docker_inc, ours)

    host = d.server if tls == "none" else f"tls://{d.hostname}"
    assert config["imap_host"] == f"{host}:143"
    assert config["smtp_host"] == f"{host}:587"
    assert config["username_domain"] == domain
    assert len(config["des_key"]) == 24
    assert config["product_name"] == f"mailstack webmail ({domain})"
    assert config["max_message_size"] == stack.message_size_limit
    if tls == "none":
        assert "imap_conn_options" not in config and "smtp_conn_options" not in config
        return
    if tls == "self-signed":
        expected = {"verify_peer": False, "verify_peer_name": False, "allow_self_signed": True}
    else:
        expected = {"verify_peer": True, "verify_peer_name": True, "peer_name": d.hostname}
    assert config["imap_conn_options"] == {"ssl": expected}
    assert config["smtp_conn_options"] == {"ssl": expected}


@pytest.mark.parametrize(
    "name", ["o'brien.example", "back\\slash.example", "trail\\", "quote'\\'.example", "?>.example"]
)
def test_escaped_strings_round_trip_through_php(php: str, tmp_path: Path, name: str) -> None:
    stack = stack_for("manual")
    odd = dataclasses.replace(stack.domains[0], domain=name, hostname=f"mail.{name}")
    path = tmp_path / rc.CONFIG_FILE
    path.write_text(rc.render_config_php(stack, odd))
    lint = subprocess.run(
        [php, "-n", "-l", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    config = evaluate(php, path)
    assert config["product_name"] == f"mailstack webmail ({name})"
    assert config["imap_conn_options"]["ssl"]["peer_name"] == f"mail.{name}"
