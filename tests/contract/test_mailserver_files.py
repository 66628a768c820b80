"""Generated docker-mailserver files read by the real Debian programs that read them in the image.

- the transport map through ``postmap -q <domain> texthash:<file>`` (Postfix's own lookup);
- the peer table through ``postmap -q <address> cidr:<file>``;
- ``postfix-main.cf`` appended to a main.cf, as docker-mailserver does, then ``postconf -n``: no warnings;
- every account hash through ``doveadm pw -t`` (Dovecot's own verification);
- the config writer's script, run by bash on real files: the program's own uploads staged with their
  permissions (the accounts file ends up 0600), stage-then-rename (a failure changes nothing), order,
  exit status, certificate.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from components.maildomain import WRITER_SCRIPT
from config import passwords as pw
from config import postfix as pf
from config import postfix_params
from config.model import load_stack
from tests.contract.conftest import require_tool
from tests.unit.conftest import DEV_RAW, make_domains

SEED = pw.seed_bytes(base64.b64encode(bytes(range(32))).decode())


@pytest.fixture(scope="module")
def stack():
    raw = {**DEV_RAW, "domains": [*DEV_RAW["domains"], *make_domains(3)]}
    raw["domains"][0] = {**raw["domains"][0], "aliases": {"info": ["user1@example1.local"]}}
    return load_stack("dev", raw)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)


def _confdir(tmp_path: Path) -> Path:
    """A Postfix config directory (postmap needs a main.cf; the system one is not configured)."""
    base = Path("/usr/share/postfix/main.cf.debian")
    if not base.exists():
        pytest.fail("postfix is installed but /usr/share/postfix/main.cf.debian is missing")
    path = tmp_path / "etc"
    path.mkdir()
    (path / "main.cf").write_text(base.read_text())
    (path / "master.cf").write_text(Path("/usr/share/postfix/master.cf.dist").read_text())
    return path


def test_transport_map_routes_every_peer_and_not_itself(stack, tmp_path):
    postmap = require_tool("postmap", "postfix")
    confdir = _confdir(tmp_path)
    for d in stack.domains:
        path = tmp_path / f"{d.server}-transport.cf"
        path.write_text(pf.static_files(stack, d)[pf.TRANSPORT_FILE])
        for other in stack.domains:
            result = run(postmap, "-c", str(confdir), "-q", other.domain, f"texthash:{path}")
            if other is d:
                assert result.returncode == 1 and result.stdout == "", (d.server, result)
            else:
                assert result.returncode == 0, result.stderr
                assert result.stdout.strip() == f"smtp:[{other.server}]:25"
        assert run(postmap, "-c", str(confdir), "-q", "elsewhere.example", f"texthash:{path}").returncode == 1


def test_peer_table_trusts_exactly_the_peers(stack, tmp_path):
    postmap = require_tool("postmap", "postfix")
    confdir = _confdir(tmp_path)
    d = stack.domains[0]
    path = tmp_path / "mynetworks.cidr"
    path.write_text(pf.render_mynetworks(stack, d))
    for other in stack.domains:
        result = run(postmap, "-c", str(confdir), "-q", str(other.address), f"cidr:{path}")
        if other is d:
            assert result.returncode == 1
        else:
            assert result.returncode == 0 and result.stdout.strip() == other.server, result
    gateway = str(stack.network.gateway)
    assert run(postmap, "-c", str(confdir), "-q", gateway, f"cidr:{path}").returncode == 1, (
        "the Docker gateway must not be trusted"
    )
    assert run(postmap, "-c", str(confdir), "-q", "127.0.0.1", f"cidr:{path}").returncode == 0


def test_main_cf_accepted_by_postconf(tmp_path):
    postconf = require_tool("postconf", "postfix")
    confdir = _confdir(tmp_path)
    base = (confdir / "main.cf").read_text()
    config = dict(DEV_RAW, postfix={"queue_run_delay": "300s", "maximal_queue_lifetime": "1d"})
    cfg = load_stack("dev", config)
    main_cf = pf.render_main_cf(cfg, cfg.domains[0])
    # docker-mailserver appends postfix-main.cf to its main.cf, which defines its own $-parameters.
    dms_defined = "".join(
        f"{name} = permit_mynetworks\n" for name in sorted(postfix_params.DMS_DEFINED_PARAMETERS)
    )
    (confdir / "main.cf").write_text(base + dms_defined + main_cf)
    result = run(postconf, "-c", str(confdir), "-n")
    unused = [
        line
        for line in result.stderr.splitlines()
        if "unused parameter" in line
        and not any(name in line for name in postfix_params.DMS_DEFINED_PARAMETERS)
    ]
    assert result.returncode == 0 and unused == [], result.stderr
    assert "fatal" not in result.stderr and "error" not in result.stderr
    values = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert values["transport_maps"] == f"texthash:{pf.CONFIG_DIR}/{pf.TRANSPORT_FILE}"
    assert values["mynetworks"] == f"cidr:{pf.CONFIG_DIR}/{pf.MYNETWORKS_FILE}"
    assert values["queue_run_delay"] == "300s"
    # the check itself can fail: an unknown parameter gives Postfix's warning
    (confdir / "main.cf").write_text(base + "queue_run_dealy = 300s\n")
    assert "unused parameter" in run(postconf, "-c", str(confdir), "-n").stderr


def test_every_account_hash_verified_by_doveadm(stack):
    doveadm = require_tool("doveadm", "dovecot-core")
    for d in stack.domains[:3]:
        for u in d.users:
            password = pw.derive_password(SEED, u.address)
            hashed = pw.hash_password(password, pw.derive_salt(SEED, u.address))
            ok = run(doveadm, "pw", "-t", hashed, "-p", password)
            assert ok.returncode == 0 and "(verified)" in ok.stdout, ok.stderr
            bad = run(doveadm, "pw", "-t", hashed, "-p", password + "x")
            assert bad.returncode != 0
    line = pf.render_accounts([("user1@example1.local", pw.hash_password("password123", "abcdefgh"))], "r")
    hashed = line.splitlines()[1].split("|", 1)[1]
    assert "(verified)" in run(doveadm, "pw", "-t", hashed, "-p", "password123").stdout


def test_doveadm_verifies_reused_and_fresh_hashes_alike():
    """The stack's memory hands back deployed hashes; Dovecot must accept them as it accepts fresh ones."""
    from tests.components.conftest import run as run_stack
    from tests.components.harness import dev_config, unwrap

    doveadm = require_tool("doveadm", "dovecot-core")
    first = run_stack(dev_config())
    changed = dev_config()
    changed["passwords"]["user3@example2.local"] = "changed-password-789"
    changed["domains"][0]["users"].append({"name": "user7"})  # a new account, generated password
    second = run_stack(changed, memory=first.outputs["memory"])

    def accounts(program) -> dict[str, str]:
        lines: dict[str, str] = {}
        for reg in program.of_type("docker:index/container:Container"):
            for upload in unwrap(reg.inputs).get("uploads") or []:
                if upload["file"].endswith("/" + pf.ACCOUNTS_FILE):
                    for line in upload["content"].splitlines()[1:]:
                        address, hashed = line.split("|", 1)
                        lines[address] = hashed
        return lines

    before, after = accounts(first), accounts(second)
    reused = {a for a in after if before.get(a) == after[a]}
    fresh = set(after) - reused
    assert fresh == {"user3@example2.local", "user7@example1.local"} and len(reused) == 3
    known = {**changed["passwords"], **unwrap(second.outputs["generatedPasswords"])}
    for address, hashed in after.items():
        ok = run(doveadm, "pw", "-t", hashed, "-p", known[address])
        assert ok.returncode == 0 and "(verified)" in ok.stdout, (address, ok.stderr)
    assert run(doveadm, "pw", "-t", after["user1@example1.local"], "-p", "wrong").returncode != 0


def _writer(
    tmp_path: Path,
    files: dict[str, str],
    env: dict[str, str] | None = None,
    modes: dict[str, int] | None = None,
    args: list[str] | None = None,
):
    """Stage ``files`` (with ``modes``, as the provider's uploads would) and run the writer's script."""
    bash = require_tool("bash", "bash")
    staging, dst = tmp_path / "staging", tmp_path / "config"
    staging.mkdir(exist_ok=True)
    dst.mkdir(exist_ok=True)
    for name, text in files.items():
        (staging / name).write_text(text)
        (staging / name).chmod((modes or {}).get(name, 0o644))
    environ = {
        **os.environ,
        "MAILSTACK_STAGING": str(staging),
        "MAILSTACK_CONFIG_DIR": str(dst),
        **(env or {}),
    }
    argv = args if args is not None else list(files)
    return dst, run(bash, "-c", WRITER_SCRIPT, "mailstack-config-writer", *argv, env=environ)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_writer_installs_the_programs_uploads_with_their_permissions(tmp_path):
    from tests.components.harness import dev_config, run_program, unwrap

    program = run_program(dev_config(), secret_keys=("mailstack:passwords",))
    writer = unwrap(program.named("example1.local-config-writer").inputs)
    staged = {u["file"].rsplit("/", 1)[1]: u for u in writer["uploads"]}
    assert sorted(staged) == sorted(writer["command"])
    dst, result = _writer(
        tmp_path,
        {name: u["content"] for name, u in staged.items()},
        modes={name: int(u["permissions"], 8) for name, u in staged.items()},
        args=writer["command"],
    )
    assert result.returncode == 0, result.stderr
    for name, upload in staged.items():
        assert (dst / name).read_text() == upload["content"], name
        assert _mode(dst / name) == int(upload["permissions"], 8), name
    assert _mode(dst / pf.ACCOUNTS_FILE) == 0o600  # the hashes are owner-only on disk
    assert _mode(dst / pf.TRANSPORT_FILE) == 0o644
    assert result.stdout.splitlines()[-1].endswith(pf.ACCOUNTS_FILE)  # renamed last: it triggers the reload


def test_writer_failure_changes_nothing(tmp_path):
    dst = tmp_path / "config"
    dst.mkdir()
    (dst / pf.VIRTUAL_FILE).write_text("old\n")
    _, result = _writer(
        tmp_path,
        {pf.VIRTUAL_FILE: "new\n", pf.ACCOUNTS_FILE: "x|y\n"},
        args=[pf.VIRTUAL_FILE, "missing.cf", pf.ACCOUNTS_FILE],
    )
    assert result.returncode == 1
    assert "missing.cf is missing from the staged files" in result.stderr
    assert "nothing in" in result.stderr and "was changed" in result.stderr
    assert (dst / pf.VIRTUAL_FILE).read_text() == "old\n"  # staged before, but never renamed into place
    assert not (dst / pf.ACCOUNTS_FILE).exists()
    assert sorted(p.name for p in dst.iterdir()) == [pf.VIRTUAL_FILE]  # no temp file left behind


def test_writer_refuses_a_directory_where_a_file_belongs(tmp_path):
    dst = tmp_path / "config"
    (dst / pf.VIRTUAL_FILE).mkdir(parents=True)
    _, result = _writer(tmp_path, {pf.QUOTAS_FILE: "q\n", pf.VIRTUAL_FILE: "v\n", pf.ACCOUNTS_FILE: "x|y\n"})
    assert result.returncode == 1
    assert (
        f"{dst}/{pf.VIRTUAL_FILE} is not a regular file: remove it; nothing in {dst} was changed"
        in result.stderr
    )
    assert sorted(p.name for p in dst.iterdir()) == [pf.VIRTUAL_FILE]  # the quotas file was never renamed in


def test_writer_stages_files_in_subdirectories(tmp_path):
    staging = tmp_path / "staging"
    (staging / "rspamd").mkdir(parents=True)
    dst, result = _writer(tmp_path, {"rspamd/key.txt": "k\n"}, modes={"rspamd/key.txt": 0o640})
    assert result.returncode == 0, result.stderr
    assert (dst / "rspamd" / "key.txt").read_text() == "k\n" and _mode(dst / "rspamd" / "key.txt") == 0o640
    assert not list((dst / "rspamd").glob(".*"))


def test_writer_replaces_files_atomically_in_order(tmp_path):
    dst, result = _writer(tmp_path, {"postfix-transport.cf": "a smtp:[b]:25\n", pf.ACCOUNTS_FILE: "x|y\n"})
    assert result.returncode == 0, result.stderr
    assert (dst / "postfix-transport.cf").read_text() == "a smtp:[b]:25\n"
    assert result.stdout.splitlines()[-1].endswith(pf.ACCOUNTS_FILE)
    assert not list(dst.glob(".*mailstack-tmp"))
    inode = (dst / pf.ACCOUNTS_FILE).stat().st_ino
    _, again = _writer(tmp_path, {pf.ACCOUNTS_FILE: "x|z\n"})
    assert again.returncode == 0 and (dst / pf.ACCOUNTS_FILE).read_text() == "x|z\n"
    assert (dst / pf.ACCOUNTS_FILE).stat().st_ino != inode  # replaced by rename, never rewritten in place


def test_writer_fails_on_a_missing_file(tmp_path):
    bash = require_tool("bash", "bash")
    (tmp_path / "staging").mkdir()
    (tmp_path / "config").mkdir()
    env = {
        **os.environ,
        "MAILSTACK_STAGING": str(tmp_path / "staging"),
        "MAILSTACK_CONFIG_DIR": str(tmp_path / "config"),
    }
    result = run(bash, "-c", WRITER_SCRIPT, "w", "missing.cf", env=env)
    assert result.returncode != 0


def test_writer_makes_a_self_signed_certificate_once(tmp_path):
    openssl = require_tool("openssl", "openssl")
    env = {"MAILSTACK_SELF_SIGNED": "mail.example1.local"}
    dst, result = _writer(tmp_path, {pf.ACCOUNTS_FILE: "x|y\n"}, env)
    assert result.returncode == 0, result.stderr
    cert = dst / "ssl" / "mail.example1.local-cert.pem"
    subject = run(openssl, "x509", "-in", str(cert), "-noout", "-subject", "-ext", "subjectAltName").stdout
    assert "mail.example1.local" in subject and "DNS:mail.example1.local" in subject
    assert (dst / "ssl" / "mail.example1.local-key.pem").exists()
    assert (dst / "ssl" / "demoCA" / "cacert.pem").read_text() == cert.read_text()
    before = cert.read_text()
    _writer(tmp_path, {pf.ACCOUNTS_FILE: "x|y\n"}, env)
    assert cert.read_text() == before  # kept across re-applies
