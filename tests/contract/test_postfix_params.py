"""The shipped Postfix parameter list (config/postfix-parameters.txt) against the installed Postfix.

The list belongs to the Postfix of docker-mailserver 15.1.0 (Debian 12's 3.7). It is compared with
`postconf -d` only when the installed Postfix has the same major.minor version; otherwise the test is
skipped with both versions named.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from config import postfix_params as pp


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _postconf_d(postconf: str, config_dir: Path, master_cf: str = "") -> dict[str, str]:
    """`postconf -c config_dir -d` as {name: default}, with an empty main.cf and the given master.cf."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "main.cf").write_text("")
    (config_dir / "master.cf").write_text(master_cf)
    result = subprocess.run(
        [postconf, "-c", str(config_dir), "-d"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"postconf -d failed ({result.returncode}): {result.stderr}"
    assert "warning" not in result.stderr, result.stderr
    params: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" =")
        assert sep, f"unexpected postconf -d line: {line!r}"
        params[name] = value.strip()
    return params


@pytest.fixture
def postconf(require_tool) -> str:
    """Path of the installed postconf, skipping when its major.minor differs from the shipped list's."""
    path = require_tool("postconf", "postfix")
    result = subprocess.run([path, "-d", "-h", "mail_version"], capture_output=True, text=True, timeout=30)
    installed = result.stdout.strip()
    assert result.returncode == 0 and installed, f"postconf -d mail_version failed: {result.stderr}"
    if _major_minor(installed) != _major_minor(pp.POSTFIX_VERSION):
        pytest.skip(
            f"installed Postfix is {installed}, the shipped list is for Postfix {pp.POSTFIX_VERSION} "
            "(docker-mailserver 15.1.0, Debian 12): only the same major.minor is comparable"
        )
    return path


def test_shipped_list_equals_postconf_d(postconf: str, tmp_path: Path) -> None:
    installed = set(_postconf_d(postconf, tmp_path))
    missing = sorted(installed - pp.POSTCONF_DEFAULT_PARAMETERS)
    extra = sorted(pp.POSTCONF_DEFAULT_PARAMETERS - installed)
    assert not missing and not extra, (
        f"config/postfix-parameters.txt differs from `postconf -d` of the installed Postfix: "
        f"missing {missing}, not known to it {extra} (regenerate with the command in its header)"
    )


def test_dms_parameters_are_custom_and_known(postconf: str, tmp_path: Path) -> None:
    installed = set(_postconf_d(postconf, tmp_path))
    assert not (pp.DMS_DEFINED_PARAMETERS & installed), "a docker-mailserver custom name became built in"
    assert pp.DMS_DEFINED_PARAMETERS <= pp.KNOWN_PARAMETERS


# Two delivery transports Postfix derives per-transport parameters for: an smtp(8) client under a custom
# name, as mailstack's routing could use, and a pipe(8) service (which also gets <name>_time_limit).
_MASTER_CF = (
    "mta2      unix  -       -       n       -       -       smtp\n"
    "filter-x  unix  -       n       n       -       -       pipe\n"
    "  flags=Rq user=nobody argv=/bin/true\n"
)


def test_per_transport_rule_matches_postfix(postconf: str, tmp_path: Path) -> None:
    params = _postconf_d(postconf, tmp_path / "custom", _MASTER_CF)
    service_specific = {
        name: value for name, value in params.items() if name not in pp.POSTCONF_DEFAULT_PARAMETERS
    }
    suffixes: set[str] = set()
    for name, value in service_specific.items():
        transport = "mta2" if name.startswith("mta2_") else "filter-x"
        assert name.startswith(transport + "_"), f"unexpected name in postconf -d: {name}"
        suffixes.add(name[len(transport) + 1 :])
        assert pp.is_known_parameter(name), name
        # Postfix's default for <transport>_<suffix> is $<base>; ours must name the same base.
        base = pp.per_transport_base(name)
        assert value == f"${base}", f"{name}: postconf default {value!r}, mailstack base {base!r}"
    assert suffixes == set(pp.PER_TRANSPORT_PARAMETERS), (
        f"per-transport suffixes of Postfix {sorted(suffixes)} != mailstack's "
        f"{sorted(pp.PER_TRANSPORT_PARAMETERS)}"
    )


def test_stock_master_cf_names_are_all_known(postconf: str, tmp_path: Path) -> None:
    stock = Path("/usr/share/postfix/master.cf.dist")
    if not stock.exists():
        pytest.skip(f"{stock} (Debian's stock master.cf) is not installed")
    params = _postconf_d(postconf, tmp_path, stock.read_text())
    unknown = sorted(name for name in params if not pp.is_known_parameter(name))
    assert not unknown, f"postconf -d names for Debian's stock master.cf that mailstack rejects: {unknown}"
