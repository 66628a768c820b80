"""Unit tests of the e2e helpers that need neither Docker nor Pulumi (they run everywhere, not marked e2e).

Docker is replaced by a fake command runner that answers like the docker CLI; the stack configuration is
validated with the real ``config.model.load_stack`` after rebuilding it from the ``--path`` keys the way
Pulumi does, so a plan that the program would refuse fails here and not after minutes of deploying.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import OpType

from config.model import DEFAULT_IMAGES, load_stack
from tests.e2e import support
from tests.e2e.support import CommandResult, Secret, Timeouts

PORTS = list(range(41001, 41001 + support.PORTS_NEEDED))
SUBNET = IPv4Network("10.213.7.0/24")


def plan(seed: int = 7) -> support.Plan:
    return support.make_plan("e2e-0badcafe", PORTS, SUBNET, random.Random(seed))


# ----------------------------------------------------------------------------------- fake docker


class FakeRunner:
    """Answers commands by their longest matching argument prefix and records every call."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(args))
        best: tuple[str, ...] | None = None
        for prefix in self.answers:
            if tuple(args[: len(prefix)]) == prefix and (best is None or len(prefix) > len(best)):
                best = prefix
        if best is None:
            raise AssertionError(f"unexpected command {list(args)}")
        return self.answers[best]


OK = CommandResult(0, "ok\n")
INFO_OK = {("docker", "info"): CommandResult(0, "27.3.1\n"), ("docker", "context"): CommandResult(0, "")}
PULUMI_OK = {("/opt/pulumi/bin/pulumi", "version"): CommandResult(0, "v3.200.0\n")}


def which_all(name: str) -> str | None:
    return {"docker": "/usr/bin/docker", "pulumi": "/opt/pulumi/bin/pulumi"}.get(name)


def which_none(name: str) -> str | None:
    return None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with a venv python, as after `make deps`."""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    return tmp_path


# -------------------------------------------------------------------------------------- timeouts


def test_timeouts_defaults_and_overrides() -> None:
    assert Timeouts.from_env({}) == Timeouts()
    t = Timeouts.from_env({"MAILSTACK_E2E_PULL_TIMEOUT": "60", "MAILSTACK_E2E_LOGIN_TIMEOUT": "12.5"})
    assert (t.pull, t.login, t.verify) == (60.0, 12.5, Timeouts().verify)


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1e9"])
def test_timeouts_refuse_bad_values_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="MAILSTACK_E2E_VERIFY_TIMEOUT"):
        Timeouts.from_env({"MAILSTACK_E2E_VERIFY_TIMEOUT": value})


def test_every_timeout_has_an_environment_variable() -> None:
    assert set(Timeouts.ENV) == {f.name for f in dataclasses.fields(Timeouts)}


# --------------------------------------------------------------------------------------- secrets


def test_secret_is_masked_everywhere_but_reveal() -> None:
    s = Secret("hunter2-abc")
    for text in (repr(s), str(s), f"{s}", repr([s]), repr({"pw": s})):
        assert "hunter2" not in text
    assert s.reveal() == "hunter2-abc"
    assert s == Secret("hunter2-abc") and s != Secret("other")


def test_new_passwords_are_unique_and_cannot_be_retyped_by_pulumi() -> None:
    values = [support.new_password().reveal() for _ in range(50)]
    assert len(set(values)) == 50
    for v in values:
        assert re.fullmatch(r"E2e-[A-Za-z0-9_-]{20,}", v), "must start with letters and be long"
    seeded = [support.new_password(random.Random(1)).reveal() for _ in range(2)]
    assert seeded[0] == seeded[1]


# -------------------------------------------------------------------------------------- commands


def test_run_command_reports_status_output_missing_program_and_timeout() -> None:
    ok = support.run_command([sys.executable, "-c", "print('hi')"], 30)
    assert ok.ok and ok.stdout.strip() == "hi"
    failed = support.run_command([sys.executable, "-c", "import sys; sys.exit('boom')"], 30)
    assert not failed.ok and failed.returncode == 1 and failed.reason() == "boom"
    missing = support.run_command(["/nonexistent/docker-xyz", "info"], 30)
    assert missing.returncode == 127 and "not found" in missing.reason()
    start = time.monotonic()
    slow = support.run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert slow.timed_out and not slow.ok and slow.reason() == "did not finish in time"
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------------------- prerequisites


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("", True),
        ("unix:///var/run/docker.sock", True),
        ("unix:///Users/me/.docker/run/docker.sock", True),
        ("npipe:////./pipe/docker_engine", True),
        ("tcp://127.0.0.1:2375", True),
        ("tcp://localhost:2376", True),
        ("tcp://[::1]:2375", True),
        ("tcp://10.0.0.5:2376", False),
        ("ssh://admin@mail.example.com", False),
    ],
)
def test_is_local_docker_endpoint(endpoint: str, local: bool) -> None:
    assert support.is_local_docker_endpoint(endpoint) is local


def test_docker_problem_without_cli() -> None:
    problem = support.docker_problem(FakeRunner({}), {}, 5, which_none)
    assert problem is not None and problem.startswith("docker:") and "not on PATH" in problem


def test_docker_problem_when_the_engine_is_down() -> None:
    run = FakeRunner(
        {
            ("docker", "info"): CommandResult(
                1,
                "",
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            )
        }
    )
    problem = support.docker_problem(run, {}, 5, which_all)
    assert problem is not None
    assert "Cannot connect to the Docker daemon" in problem and "start the Docker engine" in problem


def test_docker_problem_when_docker_info_hangs() -> None:
    run = FakeRunner({("docker", "info"): CommandResult(-1, "", "", timed_out=True)})
    problem = support.docker_problem(run, {}, 7, which_all)
    assert problem is not None and "did not answer within 7 s" in problem


def test_docker_problem_for_a_remote_engine() -> None:
    problem = support.docker_problem(
        FakeRunner(INFO_OK), {"DOCKER_HOST": "ssh://root@mx.example.com"}, 5, which_all
    )
    assert problem is not None and "ssh://root@mx.example.com" in problem and "127.0.0.1" in problem
    remote_context = FakeRunner({**INFO_OK, ("docker", "context"): CommandResult(0, "tcp://10.1.2.3:2376\n")})
    problem = support.docker_problem(remote_context, {}, 5, which_all)
    assert problem is not None and "tcp://10.1.2.3:2376" in problem


def test_docker_problem_none_for_a_local_engine() -> None:
    assert support.docker_problem(FakeRunner(INFO_OK), {}, 5, which_all) is None
    assert (
        support.docker_problem(
            FakeRunner(INFO_OK), {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, 5, which_all
        )
        is None
    )


def test_find_pulumi_prefers_path_then_the_project_cli(tmp_path: Path) -> None:
    assert support.find_pulumi(tmp_path, which_all) == "/opt/pulumi/bin/pulumi"
    assert support.find_pulumi(tmp_path, which_none) is None
    local = tmp_path / ".pulumi-cli" / "bin" / "pulumi"
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o644)
    assert support.find_pulumi(tmp_path, which_none) is None, "a non-executable file is no CLI"
    local.chmod(0o755)
    assert support.find_pulumi(tmp_path, which_none) == str(local)
    assert support.find_pulumi(tmp_path, which_all) == "/opt/pulumi/bin/pulumi"


def test_pulumi_problem() -> None:
    missing = support.pulumi_problem(None, FakeRunner({}), 5)
    assert missing is not None and missing.startswith("pulumi:") and "install it" in missing
    broken = FakeRunner({("/opt/pulumi/bin/pulumi", "version"): CommandResult(2, "", "exec format error")})
    assert "exec format error" in (support.pulumi_problem("/opt/pulumi/bin/pulumi", broken, 5) or "")
    assert support.pulumi_problem("/opt/pulumi/bin/pulumi", FakeRunner(PULUMI_OK), 5) is None


def test_venv_problem(tmp_path: Path, project: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    problem = support.venv_problem(empty)
    assert problem is not None and "make deps" in problem
    assert support.venv_problem(project) is None


def test_stack_images_follow_the_configuration() -> None:
    assert support.stack_images({"domains": [{"domain": "a.local"}]}) == [DEFAULT_IMAGES["mailserver"]]
    with_webmail = {"domains": [{"domain": "a.local", "webmail": {"port": 8081}}]}
    assert support.stack_images(with_webmail) == [DEFAULT_IMAGES["mailserver"], DEFAULT_IMAGES["webmail"]]
    with_vpn = {"domains": [], "vpn": {"enabled": True}, "images": {"vpn": "example/wg:1.2.3"}}
    assert support.stack_images(with_vpn) == [DEFAULT_IMAGES["mailserver"], "example/wg:1.2.3"]
    assert support.stack_images({"domains": [], "vpn": {"enabled": False}}) == [DEFAULT_IMAGES["mailserver"]]


def test_e2e_images_are_the_pinned_mail_server_and_webmail() -> None:
    assert support.e2e_images() == [DEFAULT_IMAGES["mailserver"], DEFAULT_IMAGES["webmail"]]


def test_prerequisites_all_present(project: Path) -> None:
    run = FakeRunner({**INFO_OK, **PULUMI_OK, ("docker", "image", "inspect"): OK})
    found = support.check_prerequisites(project, ["img:1"], run=run, env={}, which=which_all)
    assert found.ok and found.pulumi_cli == "/opt/pulumi/bin/pulumi"
    assert not any(c[:2] == ["docker", "pull"] for c in run.calls), "a present image must not be pulled"


def test_prerequisites_report_every_missing_piece(tmp_path: Path) -> None:
    run = FakeRunner({})
    found = support.check_prerequisites(tmp_path, ["img:1"], run=run, env={}, which=which_none)
    assert not found.ok and found.pulumi_cli is None
    reason = found.reason()
    assert reason.startswith("e2e prerequisites missing: ")
    for part in (
        "docker: the docker CLI is not on PATH",
        "pulumi: the Pulumi CLI",
        "venv: ",
        "images: not checked",
    ):
        assert part in reason
    assert run.calls == [], "nothing can run without the CLIs"


def test_prerequisites_pull_a_missing_image(project: Path) -> None:
    said: list[str] = []
    run = FakeRunner(
        {
            **INFO_OK,
            **PULUMI_OK,
            ("docker", "image", "inspect"): CommandResult(1, "", "Error: No such image: img:1"),
            ("docker", "pull"): OK,
        }
    )
    found = support.check_prerequisites(project, ["img:1"], run=run, env={}, which=which_all, say=said.append)
    assert found.ok
    assert ["docker", "pull", "--quiet", "img:1"] in run.calls
    assert any("pulling img:1" in s for s in said)


def test_prerequisites_name_the_image_that_cannot_be_pulled(project: Path) -> None:
    run = FakeRunner(
        {
            **INFO_OK,
            **PULUMI_OK,
            ("docker", "image", "inspect"): CommandResult(1, "", "No such image"),
            ("docker", "pull", "--quiet", "a:1"): CommandResult(
                1, "", "Error response from daemon: pull access denied"
            ),
            ("docker", "pull", "--quiet", "b:2"): CommandResult(-1, "", "", timed_out=True),
        }
    )
    found = support.check_prerequisites(project, ["a:1", "b:2"], run=run, env={}, which=which_all)
    assert found.problems == [
        "images: cannot pull a:1 (Error response from daemon: pull access denied); check the registry access "
        "of the Docker engine",
        f"images: pulling b:2 did not finish within {Timeouts().pull:.0f} s; pull it by hand (docker pull b:2) "
        "or raise MAILSTACK_E2E_PULL_TIMEOUT",
    ]


# ------------------------------------------------------------------------------ ports and subnets


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = support.free_ports(support.PORTS_NEEDED)
    assert len(set(ports)) == support.PORTS_NEEDED
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError):
        support.free_ports(0)


def test_parse_subnets_reads_docker_inspect_output() -> None:
    text = "172.17.0.0/16 \n172.28.0.0/16 fd00:dead:beef::/64 \n\n10.213.5.0/24 172.18.0.0/16 \nnone\n"
    assert support.parse_subnets(text) == [
        IPv4Network("172.17.0.0/16"),
        IPv4Network("172.28.0.0/16"),
        IPv4Network("10.213.5.0/24"),
        IPv4Network("172.18.0.0/16"),
    ]


def test_parse_proc_routes_skips_the_default_route() -> None:
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "tun0\t0000D50A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        "garbage line\n"
    )
    assert support.parse_proc_routes(text) == [IPv4Network("192.0.2.0/24"), IPv4Network("10.213.0.0/16")]


def test_host_routes_of_this_machine_parse() -> None:
    routes = support.host_routes()
    assert all(isinstance(r, IPv4Network) and r.prefixlen > 0 for r in routes)
    assert support.host_routes(Path("/nonexistent/route")) == []


def test_choose_subnet_avoids_used_networks_and_routes() -> None:
    used = [IPv4Network("172.17.0.0/16"), IPv4Network("10.213.0.0/17")]
    for seed in range(20):
        net = support.choose_subnet(used, random.Random(seed))
        assert net.prefixlen == 24
        assert any(net.subnet_of(pool) for pool in support.SUBNET_POOLS)
        assert not any(net.overlaps(u) for u in used)
    assert support.choose_subnet(used, random.Random(3)) == support.choose_subnet(used, random.Random(3))


def test_choose_subnet_moves_to_the_next_pool_and_fails_when_all_are_taken() -> None:
    first, second = support.SUBNET_POOLS[:2]
    assert support.choose_subnet([first], random.Random(1)).subnet_of(second)
    with pytest.raises(RuntimeError, match="docker network prune"):
        support.choose_subnet(list(support.SUBNET_POOLS), random.Random(1))
    with pytest.raises(RuntimeError):
        support.choose_subnet([IPv4Network("0.0.0.0/1"), IPv4Network("128.0.0.0/1")], random.Random(1))


def test_docker_subnets_asks_every_network() -> None:
    run = FakeRunner(
        {
            ("docker", "network", "ls"): CommandResult(0, "aaa\nbbb\n"),
            ("docker", "network", "inspect"): CommandResult(0, "172.17.0.0/16 \n172.28.0.0/16 \n"),
        }
    )
    assert support.docker_subnets(run, 5) == [IPv4Network("172.17.0.0/16"), IPv4Network("172.28.0.0/16")]
    assert run.calls[1][-2:] == ["aaa", "bbb"]
    broken = FakeRunner({("docker", "network", "ls"): CommandResult(1, "", "permission denied")})
    with pytest.raises(RuntimeError, match="permission denied"):
        support.docker_subnets(broken, 5)


# ----------------------------------------------------------------------------------- stack plan


def test_make_plan_needs_distinct_ports() -> None:
    with pytest.raises(ValueError):
        support.make_plan("e2e-1", PORTS[:-1], SUBNET)
    with pytest.raises(ValueError):
        support.make_plan("e2e-1", [*PORTS[:-1], PORTS[0]], SUBNET)


def test_stack_names_are_unique_and_docker_safe() -> None:
    names = {support.new_stack_name() for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"e2e-[0-9a-f]{8}", n) for n in names)


PATH_TOKEN = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"]+)"\]|\[(\d+)\]')


def _set_path(doc: dict[str, Any], key: str, text: str) -> None:
    """Apply ``pulumi config set --path KEY TEXT`` to ``doc``: ``ns:name`` then ``.key``, ``["key"]`` or
    ``[index]`` segments; an index may only append; values that look like integers or booleans are typed
    the way Pulumi stores them."""
    head = re.match(r"^[a-z]+:[A-Za-z_][A-Za-z0-9_]*", key)
    assert head, key
    rest = key[head.end() :]
    tokens = [m.groups() for m in PATH_TOKEN.finditer(rest)]
    assert "".join(m.group(0) for m in PATH_TOKEN.finditer(rest)) == rest, f"unparsable path {key}"
    path: list[str | int] = [head.group(0)] + [a or b or int(c) for a, b, c in tokens]
    value: Any = text
    if text in ("true", "false"):
        value = text == "true"
    elif re.fullmatch(r"-?[0-9]+", text):
        value = int(text)
    node: Any = doc
    for here, nxt in zip(path, [*path[1:], None], strict=True):
        new: Any = value if nxt is None else ([] if isinstance(nxt, int) else {})
        if isinstance(here, int):
            assert isinstance(node, list) and here <= len(node), f"{key}: index {here} skips items"
            if here == len(node):
                node.append(new)
            elif nxt is None:
                node[here] = new
        elif nxt is None or here not in node:
            assert isinstance(node, dict), key
            node[here] = new
        node = node[here]


def _config_from_entries(*entry_lists: list[support.ConfigEntry]) -> tuple[dict[str, Any], dict[str, str]]:
    """What the program reads after the entries are set: the namespaced config minus passwords, and the
    passwords."""
    doc: dict[str, Any] = {}
    for entries in entry_lists:
        for e in entries:
            _set_path(doc, e.key, e.plain_value())
    raw = {k.split(":", 1)[1]: v for k, v in doc.items()}
    assert all(k.startswith("mailstack:") for k in doc)
    return raw, raw.pop("passwords")


def test_initial_config_is_what_the_program_accepts() -> None:
    p = plan()
    raw, passwords = _config_from_entries(support.initial_entries(p))
    assert passwords == {a: s.reveal() for a, s in p.account_passwords().items()}
    cfg = load_stack(p.stack, raw, passwords)
    assert cfg.protect_data is False and cfg.production is False and cfg.tls == "none"
    assert cfg.network.name == p.network_name and cfg.network.subnet == SUBNET
    assert [d.domain for d in cfg.domains] == [s.domain for s in support.DOMAINS]
    assert [d.server for d in cfg.domains] == [s.server for s in support.DOMAINS]
    ports = sorted(port for d in cfg.domains for port in d.ports.values())
    webmail = [d.webmail.port for d in cfg.domains if d.webmail]
    assert sorted(ports + webmail) == PORTS
    assert [d.domain for d in cfg.domains if d.webmail] == [support.WEBMAIL_DOMAIN]
    assert dict(cfg.postfix) == support.POSTFIX_SETTINGS
    assert cfg.explicit_passwords == frozenset(p.passwords)
    assert all(d.bind_address == "127.0.0.1" for d in cfg.domains)
    assert raw == p.raw_config(), "the --path keys must rebuild exactly the planned config"


def test_change_entries_add_a_user_an_alias_and_two_passwords_only() -> None:
    p = plan()
    change = support.change_entries(p)
    assert [(e.key, e.secret) for e in change] == [
        ("mailstack:domains[0].users[2].name", False),
        ("mailstack:domains[0].users[2].quota", False),
        ("mailstack:domains[1].aliases.info[0]", False),
        ('mailstack:passwords["user3@example2.local"]', True),
        ('mailstack:passwords["user5@example1.local"]', True),
    ]
    raw, passwords = _config_from_entries(support.initial_entries(p), change)
    assert raw == p.raw_config(changed=True)
    cfg = load_stack(p.stack, raw, passwords)
    d1, d2 = cfg.domains
    assert [u.address for u in d1.users] == ["user1@example1.local", "user2@example1.local", support.NEW_USER]
    assert [(a.address, a.targets) for a in d2.aliases] == [(support.ALIAS, (support.ALIAS_TARGET,))]
    assert passwords[support.NEW_USER] == p.new_user_password.reveal()
    assert (
        passwords[support.CHANGED_USER]
        == p.changed_password.reveal()
        != p.passwords[support.CHANGED_USER].reveal()
    )


def test_writer_user_entries_add_one_user_of_the_second_domain_and_its_password() -> None:
    p = plan()
    entries = support.writer_user_entries(p)
    assert [(e.key, e.secret) for e in entries] == [
        ("mailstack:domains[1].users[2].name", False),
        ("mailstack:domains[1].users[2].quota", False),
        ('mailstack:passwords["user6@example2.local"]', True),
    ]
    raw, passwords = _config_from_entries(support.initial_entries(p), support.change_entries(p), entries)
    assert raw == p.raw_config(changed=True, writer_user=True)
    cfg = load_stack(p.stack, raw, passwords)
    assert support.WRITER_USER in [u.address for u in cfg.domains[1].users]
    assert passwords[support.WRITER_USER] == p.writer_user_password.reveal()


def test_retry_command_is_read_from_the_programs_own_error_text() -> None:
    from components.maildomain import writer_failure

    urn = (
        "urn:pulumi:e2e-0badcafe::mailstack::mailstack:index:MailStack$mailstack:index:MailDomain"
        "$docker:index/container:Container::example2.local-config-writer"
    )
    text = writer_failure(
        "e2e-0badcafe", "mta2", "example2.local", "mailstack-e2e-0badcafe-mta2", 1, "x\n", urn
    )
    wrapped = f"error: Running program failed:\n{text}\n\nstderr: ..."
    assert support.retry_command(wrapped) == ("e2e-0badcafe", urn)
    assert support.retry_command("error: something else") is None


def test_volume_shell_mounts_the_volume_read_write_without_network() -> None:
    argv = support.volume_shell("vol", "img:1", "helper", "mkdir /c/x")
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[argv.index("--volume") + 1] == "vol:/c" and argv[argv.index("--network") + 1] == "none"
    assert argv[argv.index("--entrypoint") + 1] == "sh" and argv[-3:] == ["img:1", "-c", "mkdir /c/x"]


def test_only_passwords_are_secret_and_no_plain_value_holds_one() -> None:
    p = plan()
    entries = support.initial_entries(p) + support.change_entries(p)
    secrets_ = {e.plain_value() for e in entries if e.secret}
    assert len(secrets_) == len(p.passwords) + 2
    assert all(e.key.startswith("mailstack:passwords[") == e.secret for e in entries)
    assert not any(e.plain_value() in secrets_ for e in entries if not e.secret)
    assert all("E2e-" not in repr(e) for e in entries if e.secret)


def test_flatten_config_paths_and_scalars() -> None:
    flat = support.flatten_config(
        "ns",
        {"flag": False, "n": 3, "m": {"a-b": "x", "ok": [1, {"y": True}]}, "passwords": {"u@d.local": "p"}},
    )
    assert flat == {
        "ns:flag": "false",
        "ns:n": "3",
        'ns:m["a-b"]': "x",
        "ns:m.ok[0]": "1",
        "ns:m.ok[1].y": "true",
        'ns:passwords["u@d.local"]': "p",
    }


@pytest.mark.parametrize(
    ("raw", "error"),
    [({"a": []}, ValueError), ({"a": {}}, ValueError), ({"a": 1.5}, TypeError), ({"a-b": 1}, ValueError)],
)
def test_flatten_config_refuses_what_a_path_cannot_express(raw: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        support.flatten_config("ns", raw)


def test_path_segment_refuses_quotes() -> None:
    assert support.path_segment("ok_1") == ".ok_1"
    assert support.path_segment("user1@example1.local") == '["user1@example1.local"]'
    with pytest.raises(ValueError):
        support.path_segment('bad"key')


def test_config_delta() -> None:
    before = {"a": "1", "b": "2"}
    assert support.config_delta(before, {"a": "1", "b": "3", "c": "4"}) == {"b": "3", "c": "4"}
    assert support.config_delta(before, dict(before)) == {}
    with pytest.raises(ValueError, match="cannot remove"):
        support.config_delta(before, {"a": "1"})


def test_plan_names() -> None:
    p = plan()
    assert p.network_name == "mailstack-e2e-0badcafe"
    assert p.container("mta1") == "mailstack-e2e-0badcafe-mta1"


# ------------------------------------------------------------------------------ deadline and poll


def test_child_processes_finds_a_child_by_name() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert (child.pid, "sleep") in support.child_processes(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in [pid for pid, _ in support.child_processes(os.getpid())]


def test_deadline_interrupts_a_hanging_child_and_raises() -> None:
    said: list[str] = []
    start = time.monotonic()
    with pytest.raises(support.DeadlineExceeded, match="slow thing did not finish within 0 s"):
        with support.deadline(0.3, "slow thing", said.append, name="sleep", grace=4):
            subprocess.run(["sleep", "30"], check=False)
    assert time.monotonic() - start < 10
    assert any("interrupting the sleep CLI" in s for s in said)


def test_deadline_does_nothing_to_a_quick_operation() -> None:
    said: list[str] = []
    with support.deadline(5, "quick", said.append, name="sleep"):
        subprocess.run(["sleep", "0.1"], check=True)
    assert said == []


def test_deadline_passes_other_errors_through() -> None:
    with pytest.raises(KeyError), support.deadline(5, "quick", name="sleep"):
        raise KeyError("x")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_poll_succeeds_after_a_few_tries() -> None:
    clock = FakeClock()
    answers = iter(["not yet", "not yet", None])
    ok, elapsed, reason = support.poll(lambda: next(answers), 30, 2, clock=clock, sleep=clock.sleep)
    assert (ok, elapsed, reason) == (True, 4.0, "")


def test_poll_gives_up_with_the_last_reason_and_reports_progress() -> None:
    clock = FakeClock()
    said: list[str] = []
    ok, elapsed, reason = support.poll(
        lambda: f"refused at {clock.now:.0f}", 12, 1, said.append, "login", clock=clock, sleep=clock.sleep
    )
    assert not ok and elapsed == 12 and reason == "refused at 12"
    assert said and all(s.startswith("waiting for login (") for s in said)


# ------------------------------------------------------------------------- docker answers, results


def test_unexpected_ops() -> None:
    assert support.unexpected_ops({OpType.SAME: 12}) == {}
    assert support.unexpected_ops({"same": 3, "update": 0}) == {}
    assert support.unexpected_ops({OpType.SAME: 9, OpType.UPDATE: 1, "replace": 2}) == {
        "update": 1,
        "replace": 2,
    }
    assert support.unexpected_ops(None) == {}


def test_parse_container_identity() -> None:
    text = json.dumps(
        [
            {
                "Id": "0123456789abcdef" * 4,
                "RestartCount": 0,
                "State": {
                    "Status": "running",
                    "StartedAt": "2025-11-25T13:00:00Z",
                    "Health": {"Status": "healthy"},
                },
            }
        ]
    )
    ident = support.parse_container_identity(text)
    assert (ident.status, ident.health, ident.restart_count) == ("running", "healthy", 0)
    assert ident.describe().startswith("id 0123456789ab, started 2025-11-25T13:00:00Z")
    no_health = json.dumps([{"Id": "x", "State": {"Status": "exited"}}])
    assert support.parse_container_identity(no_health).health == "none"


def test_container_identity_absent_and_broken() -> None:
    absent = FakeRunner(
        {("docker", "container", "inspect"): CommandResult(1, "[]", "Error: No such container: x")}
    )
    assert support.container_identity("x", absent, 5) is None
    broken = FakeRunner({("docker", "container", "inspect"): CommandResult(1, "", "permission denied")})
    with pytest.raises(RuntimeError, match="permission denied"):
        support.container_identity("x", broken, 5)


class FakeDockerObjects:
    """A docker CLI that lists and removes containers, networks and volumes from dicts of name -> stack label."""

    def __init__(self, objects: dict[str, dict[str, str]]) -> None:
        self.objects = objects
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(args))
        kind = args[1]
        store = self.objects[kind]
        if args[2] == "ls":
            flt = args[args.index("--filter") + 1]
            if flt.startswith("label=mailstack.stack="):
                names = [n for n, label in store.items() if label == flt.split("=", 2)[2]]
            else:
                names = [n for n in store if flt.split("=", 1)[1] in n]
            return CommandResult(0, "".join(f"{n}\n" for n in names))
        if args[2] == "rm":
            for name in args[3:]:
                if not name.startswith("--"):
                    store.pop(name, None)
            return CommandResult(0, "")
        raise AssertionError(args)


def test_remove_stack_docker_objects_touches_only_this_stack_in_order() -> None:
    docker = FakeDockerObjects(
        {
            "container": {
                "mailstack-e2e-ab-mta1": "e2e-ab",
                "mailstack-e2e-ab-mta1-config-1234": "e2e-ab",
                "mailstack-e2e-ab-volume-reader": "",
                "mailstack-e2e-abc-mta1": "e2e-abc",
                "my-mailstack-e2e-ab-thing": "",
            },
            "network": {"mailstack-e2e-ab": "e2e-ab", "mailstack-e2e-abc": "e2e-abc", "bridge": ""},
            "volume": {
                "mailstack-e2e-ab-example1-local-mail": "e2e-ab",
                "renamed-by-hand": "e2e-ab",
                "x": "",
            },
        }
    )
    left = support.remove_stack_docker_objects("e2e-ab", docker, 5)
    assert left == []
    assert docker.objects == {
        "container": {"mailstack-e2e-abc-mta1": "e2e-abc", "my-mailstack-e2e-ab-thing": ""},
        "network": {"mailstack-e2e-abc": "e2e-abc", "bridge": ""},
        "volume": {"x": ""},
    }
    removals = [c[1] for c in docker.calls if c[2] == "rm"]
    assert removals == ["container", "network", "volume"]


def test_maildir_reader_command_and_errors() -> None:
    cmd = support.volume_reader("vol", "img:1", "reader", "grep", "-rlF", "tok", "/m/d/u")
    assert cmd[:3] == ["docker", "run", "--rm"] and "--network" in cmd and "vol:/m:ro" in cmd
    assert cmd[cmd.index("--entrypoint") + 1 :] == ["grep", "img:1", "-rlF", "tok", "/m/d/u"]
    found = FakeRunner({("docker", "run"): CommandResult(0, "/m/d/u/new/2\n/m/d/u/cur/1\n")})
    assert support.maildir_files_with("vol", "img:1", "d/u", "tok", found, 5, "r") == [
        "/m/d/u/cur/1",
        "/m/d/u/new/2",
    ]
    none = FakeRunner({("docker", "run"): CommandResult(1, "")})
    assert support.maildir_files_with("vol", "img:1", "d/u", "tok", none, 5, "r") == []
    error = FakeRunner({("docker", "run"): CommandResult(2, "", "grep: /m/d/u: No such file or directory")})
    with pytest.raises(RuntimeError, match="No such file"):
        support.maildir_files_with("vol", "img:1", "d/u", "tok", error, 5, "r")


def test_imap_login_problem_names_an_unreachable_server() -> None:
    (port,) = support.free_ports(1)
    problem = support.imap_login_problem("127.0.0.1", port, "u@d.local", Secret("pw-abc"), timeout=2)
    assert problem is not None and problem.startswith(f"cannot connect to IMAP 127.0.0.1:{port}")
    assert "pw-abc" not in problem


# --------------------------------------------------------------------- the plan through the real program


def test_the_program_deploys_the_plan_and_the_change_touches_no_mail_server() -> None:
    """Run __main__.py under mocks with the e2e config before and after the change step: the names the
    e2e tests rely on exist, and no mail server container's inputs change (the e2e then proves on Docker
    that the container ids stay the same)."""
    from tests.components.harness import run_program, unwrap

    p = plan()

    def deploy(changed: bool) -> Any:
        raw = p.raw_config(changed=changed)
        raw["passwords"] = {a: s.reveal() for a, s in p.account_passwords(changed=changed).items()}
        return run_program(raw, stack=p.stack, secret_keys=("mailstack:passwords",))

    before, after = deploy(False), deploy(True)
    servers = [p.container(spec.server) for spec in support.DOMAINS]
    for name in servers:
        assert name in before.containers(), f"{name} is not a container of the program"
        assert before.containers()[name].inputs == after.containers()[name].inputs, (
            f"{name} would be replaced"
        )
    volumes = {r.name for r in before.of_type("docker:index/volume:Volume")}
    assert {f"{s.domain}-{role}" for s in support.DOMAINS for role in ("mail", "state")} <= volumes
    network = before.of_type("docker:index/network:Network")
    assert [unwrap(n.inputs)["name"] for n in network] == [p.network_name]
    domains = unwrap(before.outputs["domains"])
    for spec in support.DOMAINS:
        assert domains[spec.domain]["container"] == p.container(spec.server)
        assert sorted(domains[spec.domain]["volumes"]) == ["config", "logs", "mail", "state"]
    verify_domains = unwrap(before.outputs["verify"])["domains"]
    webmail = {d["domain"]: d["webmail"] for d in verify_domains}
    assert webmail[support.WEBMAIL_DOMAIN] == {"url": f"http://127.0.0.1:{p.webmail_port}/"}
    assert [d for d, w in webmail.items() if w] == [support.WEBMAIL_DOMAIN]


# --- the deliverability step --------------------------------------------------------------------------


def test_deliverability_step_turns_dkim_on_and_gives_one_domain_its_egress() -> None:
    p = plan()
    entries = {e.key: e.value for e in support.deliverability_entries(p, "10.1.2.3")}
    assert entries == {
        "mailstack:dkim.enabled": "true",
        "mailstack:domains[1].egress.address": "10.1.2.3",
        "mailstack:domains[1].egress.name": support.EGRESS_NAME,
    }
    raw = p.raw_config(changed=True, writer_user=True, egress_address="10.1.2.3")
    passwords = {a: s.reveal() for a, s in p.account_passwords(changed=True).items()}
    passwords[support.WRITER_USER] = p.writer_user_password.reveal()
    cfg = load_stack(p.stack, raw, passwords)  # the model accepts it (a lab egress may be private)
    assert cfg.deliverability.helo_name(support.EGRESS_DOMAIN) == support.EGRESS_NAME
    assert cfg.deliverability.of(support.EGRESS_DOMAIN).dns.own_egress
    assert p.egress_network() == f"mailstack-{p.stack}-example2-local-egress"


def test_route_parsers() -> None:
    table = (
        "default via 172.31.0.1 dev eth1\n172.30.0.0/24 dev eth0 proto kernel scope link src 172.30.0.200\n"
    )
    assert support.default_gateway(table) == "172.31.0.1"
    assert support.default_gateway("172.30.0.0/24 dev eth0\n") is None

    def run(args: Sequence[str], timeout: float) -> CommandResult:
        assert list(args) == ["ip", "-4", "route", "get", "192.0.2.1"]
        return CommandResult(0, "192.0.2.1 via 10.0.0.1 dev ens3 src 10.0.0.7 uid 0\n    cache\n")

    assert support.host_source_address(run, 5) == "10.0.0.7"
    assert support.host_source_address(lambda a, t: CommandResult(2, "", "RTNETLINK answers"), 5) is None
