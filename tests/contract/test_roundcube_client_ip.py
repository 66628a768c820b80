"""Each webmail user is their own client to Dovecot: mailstack's Roundcube plugin and login_trusted_networks.

Roundcube's own IMAP library (Debian's roundcube-core, extracted by ``make deps``; the plugin API and the
pre-login IMAP ID are the same as in the image's 1.6.16) logs in to the real Dovecot of the contract tests'
mail lab, with the plugin and the generated settings loaded. Dovecot's log line must show
``rip=<browser address>`` exactly when the request came from the edge (``proxy_whitelist``) and Dovecot
trusts the webmail's address (the generated ``dovecot.cf``); otherwise the forwarded address is ignored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from config import dovecot, roundcube
from tests.contract.conftest import contract_required, require_tool
from tests.contract.mailfixture import MailLab

HERE = Path(__file__).resolve().parent
ROUNDCUBE_DIR = Path(os.environ.get("MAILSTACK_ROUNDCUBE_DIR", "/var/lib/mailstack-tests/roundcube-core"))
"""Where ``tools/install-debian-deps.sh`` extracts Debian's roundcube-core (never installed as a package)."""
EDGE = IPv4Address("172.30.0.130")
"""The edge's address on the stack network, as Roundcube would see it in REMOTE_ADDR."""
BROWSER = "198.51.100.7"
WEBMAIL_CLIENT = IPv4Address("127.0.0.1")
"""The PHP client's address as Dovecot sees it: the webmail container's address in the stack."""


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    if contract_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def mail_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailLab]:
    """Two domains: the first trusts the webmail's address (127.0.0.1), the second another address."""
    postfix = require_tool("postfix", "postfix")
    postsuper = require_tool("postsuper", "postfix")
    dovecot_bin = require_tool("dovecot", "dovecot-core")
    _require(os.geteuid() == 0, "starting Postfix needs root: run the contract tests as root (as CI does)")
    lab = MailLab(postfix=postfix, dovecot=dovecot_bin, postsuper=postsuper)
    lab.domains[0].dovecot_extra = dovecot.render_dovecot_cf([WEBMAIL_CLIENT])
    lab.domains[1].dovecot_extra = dovecot.render_dovecot_cf([IPv4Address("127.0.0.9")])
    lab.start()
    try:
        yield lab
    finally:
        lab.stop(keep_logs_in=tmp_path_factory.mktemp("client-ip-logs"))


@pytest.fixture(scope="module")
def webmail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Roundcube configuration directory and plugin directory with mailstack's plugin and settings."""
    php = require_tool("php", "php-cli")
    lib = ROUNDCUBE_DIR / "usr/share/roundcube/program/lib/Roundcube/rcube_imap_generic.php"
    _require(lib.exists(), f"{lib} not found: run `make deps` (it extracts Debian's roundcube-core there)")
    mbstring = subprocess.run([php, "-r", "exit(extension_loaded('mbstring') ? 0 : 1);"], check=False)
    _require(mbstring.returncode == 0, "PHP has no mbstring: install Debian package php-mbstring (make deps)")
    root = tmp_path_factory.mktemp("roundcube")
    (root / "plugins" / roundcube.CLIENT_IP_PLUGIN).mkdir(parents=True)
    (root / "plugins" / roundcube.CLIENT_IP_PLUGIN / f"{roundcube.CLIENT_IP_PLUGIN}.php").write_text(
        roundcube.client_ip_plugin()
    )
    (root / "config").mkdir()
    shutil.copy(ROUNDCUBE_DIR / "etc/roundcube/defaults.inc.php", root / "config" / "defaults.inc.php")
    (root / "config" / "mailstack.php").write_text(
        "<?php\n" + "\n".join(roundcube.render_edge_php([EDGE], https_only=True)) + "\n"
    )
    (root / "config" / "config.inc.php").write_text(
        "<?php\n"
        f"$config['plugins'] = ['{roundcube.CLIENT_IP_PLUGIN}'];\n"
        "$config['log_driver'] = 'stdout';\n"
        "include(__DIR__ . '/mailstack.php');\n"
    )
    return root


def _login(webmail: Path, lab: MailLab, domain: str, remote: str, xff: str = "") -> dict[str, object]:
    d = lab.domain(domain)
    args = [
        require_tool("php", "php-cli"),
        str(HERE / "roundcube_login.php"),
        str(ROUNDCUBE_DIR / "usr/share/roundcube"),
        str(webmail / "plugins"),
        str(webmail / "config"),
        "127.0.0.1",
        str(d.imap_port),
        d.user,
        d.password,
        remote,
        xff,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _logins(lab: MailLab, domain: str) -> list[str]:
    """The ``rip`` of every IMAP login of ``domain``'s account in Dovecot's log, oldest first."""
    user = re.escape(lab.domain(domain).user)
    pattern = rf"imap-login: (?:Info: )?Login: user=<{user}>.*?\brip=([0-9a-f.:]+)"
    return re.findall(pattern, lab.log(domain, "dovecot"))


def _login_rip(webmail: Path, lab: MailLab, domain: str, remote: str, xff: str = "") -> str:
    """Log in through Roundcube and return the ``rip`` Dovecot logged for that login."""
    before = len(_logins(lab, domain))
    result = _login(webmail, lab, domain, remote, xff)
    assert result["connected"] is True, result
    deadline = time.monotonic() + 10  # Dovecot's log process writes a moment later
    while len(found := _logins(lab, domain)) <= before:
        assert time.monotonic() < deadline, "the login is not in Dovecot's log"
        time.sleep(0.05)
    return found[-1]


def test_php_lints_the_plugin():
    php = require_tool("php", "php-cli")
    result = subprocess.run(
        [php, "-l", str(roundcube.CLIENT_IP_PLUGIN_SOURCE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_login_through_the_edge_reaches_dovecot_from_the_browser_address(mail_lab, webmail):
    rip = _login_rip(webmail, mail_lab, "example1.local", str(EDGE), f"203.0.113.99, {BROWSER}")
    assert rip == BROWSER


def test_a_forwarded_address_from_anything_but_the_edge_is_not_believed(mail_lab, webmail):
    assert _login_rip(webmail, mail_lab, "example1.local", "10.9.9.9", BROWSER) == "10.9.9.9"


def test_dovecot_ignores_the_address_from_a_client_it_does_not_trust(mail_lab, webmail):
    assert _login_rip(webmail, mail_lab, "example2.local", str(EDGE), BROWSER) == str(WEBMAIL_CLIENT)
