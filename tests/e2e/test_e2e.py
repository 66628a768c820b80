"""End to end: deploy a real two-domain stack on Docker with the Automation API and prove it works.

The tests run in file order against one deployment (the module fixture ``deployment``):

1. the first ``up`` created two healthy mail servers on the chosen network;
2. ``make verify``'s check passes: every ordered pair of domains, the negative probes, the webmail;
3. ``preview`` expects no changes, 4. a second ``up`` changes nothing, 5. ``refresh`` finds no drift,
   and a ``preview`` right after it expects no changes either (the read-back rules hold);
6. a change (new user, changed password, new alias) is applied by ``up`` without replacing or restarting
   any mail server container or volume;
7. the new user can log in within seconds, 8. the changed password replaced the old one,
9. the new user and the new alias receive mail (these messages are kept);
10. the check passes again;
11. a config writer broken on purpose (a directory where a config file belongs) stops ``up`` with the
    error that names the server and gives the retry command, the running server untouched; a plain
    ``up`` stops the same way; once the obstacle is gone the printed ``--replace`` command recovers and
    the added user logs in, still without replacing the server;
12. DKIM on and ``example2.local`` on its own egress network: each server is replaced once and healthy, the
    egress server says its egress name in HELO and takes its default route through the egress network
    (Docker Engine 28 and newer), the host translates that network to the egress address, and every
    delivered test message is signed, verified against the ``dns`` output;
13. the policy pack runs on preview and flags the unprotected data volumes;
14. ``destroy`` removes the containers and the network and keeps the data volumes;
15. the retained mail volumes hold the messages of step 9.

A test that builds on an earlier step is skipped, naming the step, when that step failed.
"""

from __future__ import annotations

import re
import smtplib
import time

import pytest
from pulumi import automation as auto

from config.model import DEFAULT_IMAGES
from tests.e2e import support
from tests.e2e.conftest import Deployment
from tests.e2e.support import (
    ALIAS,
    ALIAS_TARGET,
    CHANGED_USER,
    DOMAINS,
    NEW_USER,
    OBSTACLE,
    PROJECT_DIR,
    WEBMAIL_DOMAIN,
    WRITER_USER,
)
from tools import verify
from tools.dns import load_records
from tools.mailcheck.dkimcheck import dkim_records

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
DATA_ROLES = ("mail", "state", "logs")
"""Volumes retained on destroy (the config volume is regenerated and goes with the stack)."""


def _ports(dep: Deployment, address: str) -> dict[str, int]:
    """Host ports of the domain of ``address``."""
    domain = address.split("@", 1)[1]
    for spec, ports in zip(DOMAINS, dep.plan.ports, strict=True):
        if spec.domain == domain:
            return ports
    raise KeyError(domain)


def _run_check(dep: Deployment, when: str) -> None:
    """Run the verify check on the stack outputs and fail with its report unless everything passed."""
    try:
        targets = verify.load_targets(dep.outputs().raw)
    except verify.VerifyError as exc:
        pytest.fail(f"the verify output of the stack is unusable: {exc}", pytrace=False)
    dep.say(f"mail check {when}: {len(targets)} domains, every ordered pair, probes and webmail")
    report = verify.run(targets, timeout=dep.timeouts.verify, progress=dep.say, stack=dep.plan.stack)
    text = verify.render_report(report)
    dep.say(text)
    expected_pairs = {(a.domain, b.domain) for a in DOMAINS for b in DOMAINS}
    problems = []
    if set(report.pairs) != expected_pairs:
        problems.append(f"checked pairs {sorted(report.pairs)}, expected {sorted(expected_pairs)}")
    probed = {p.domain for p in report.probes}
    if probed != {d.domain for d in DOMAINS}:
        problems.append(f"probes ran on {sorted(probed)}, expected every domain")
    webmail = {w.domain for w in report.webmail}
    if webmail != {WEBMAIL_DOMAIN}:
        problems.append(
            f"webmail checked for {sorted(webmail)}, but the stack configures a webmail for {WEBMAIL_DOMAIN} "
            "(its URL must be in the verify output)"
        )
    if not report.passed:
        problems.append("the check reported failures")
    if problems:
        pytest.fail(f"mail check {when}: " + "; ".join(problems) + f"\n{text}", pytrace=False)


def test_up_created_two_healthy_mail_servers(deployment: Deployment) -> None:
    dep = deployment
    domains = dep.outputs().domains
    assert sorted(domains) == sorted(d.domain for d in DOMAINS), "the domains output lists other domains"
    for spec in DOMAINS:
        name = dep.plan.container(spec.server)
        assert domains[spec.domain]["container"] == name, f"{spec.domain}: unexpected container name"
        ident = dep.servers_before[spec.server]
        assert (ident.status, ident.health) == ("running", "healthy"), f"{name}: {ident.describe()}"
        assert sorted(dep.volumes[spec.domain]) == ["config", "logs", "mail", "state"], (
            f"{spec.domain} volumes"
        )
    subnets = dep.run(
        [
            "docker",
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            dep.plan.network_name,
        ],
        dep.timeouts.docker_info,
    )
    assert subnets.ok, f"network {dep.plan.network_name} is missing: {subnets.reason()}"
    assert support.parse_subnets(subnets.stdout) == [dep.plan.subnet], "the network has another subnet"


def test_mail_flows_between_every_pair_of_domains(deployment: Deployment) -> None:
    _run_check(deployment, "after the first up")


def test_preview_expects_no_changes(deployment: Deployment) -> None:
    dep = deployment
    result = dep.pulumi(
        "pulumi preview --expect-no-changes", dep.stack.preview, expect_no_changes=True, diff=True
    )
    changes = support.unexpected_ops(result.change_summary)
    assert not changes, f"preview right after up wants changes: {changes}"


def test_second_up_changes_nothing(deployment: Deployment) -> None:
    dep = deployment
    result = dep.pulumi("second pulumi up (must change nothing)", dep.stack.up, diff=True)
    changes = support.unexpected_ops(result.summary.resource_changes)
    assert not changes, f"a second up with the same config changed resources: {changes}"
    now = dep.server_identities()
    for server, before in dep.servers_before.items():
        assert now[server] == before, (
            f"{server} was touched by a no-op up: {before.describe()} -> {now[server]}"
        )


def test_refresh_finds_no_drift(deployment: Deployment) -> None:
    dep = deployment
    result = dep.pulumi("pulumi refresh --expect-no-changes", dep.stack.refresh, expect_no_changes=True)
    changes = support.unexpected_ops(result.summary.resource_changes)
    assert not changes, f"refresh found drift between the state and Docker: {changes}"


def test_preview_after_refresh_expects_no_changes(deployment: Deployment) -> None:
    """After a refresh the state holds what the provider reads back (health-check durations in Go's form,
    ports in its order...); a declared value in any other form would show as a change here, every time."""
    dep = deployment
    result = dep.pulumi(
        "pulumi preview --expect-no-changes after the refresh",
        dep.stack.preview,
        expect_no_changes=True,
        diff=True,
    )
    changes = support.unexpected_ops(result.change_summary)
    assert not changes, f"a preview after refresh wants changes (a read-back rule is missing): {changes}"


def test_account_change_replaces_no_mail_server(deployment: Deployment) -> None:
    dep = deployment
    with dep.step("change"):
        dep.set_config(support.change_entries(dep.plan))
        result = dep.pulumi(
            f"pulumi up with the change (add {NEW_USER}, new password for {CHANGED_USER}, alias {ALIAS})",
            dep.stack.up,
        )
        dep.changed_at = time.monotonic()
    dep.say(f"the change's operations: {support.unexpected_ops(result.summary.resource_changes)}")
    now = dep.server_identities()
    for server, before in dep.servers_before.items():
        after = now[server]
        assert after is not None, f"{server} disappeared during the account change"
        assert after.id == before.id, f"{server} was replaced: {before.describe()} -> {after.describe()}"
        assert (after.started_at, after.restart_count) == (before.started_at, before.restart_count), (
            f"{server} was restarted: {before.describe()} -> {after.describe()}"
        )
    dates = dep.volume_dates()
    assert dates == dep.volumes_before, f"volumes were re-created: before {dep.volumes_before}, after {dates}"


def test_new_user_logs_in_within_seconds(deployment: Deployment) -> None:
    dep = deployment
    dep.require("change")
    password = dep.plan.account_passwords(changed=True)[NEW_USER]
    imap = _ports(dep, NEW_USER)["imap"]
    ok, _, reason = support.poll(
        lambda: support.imap_login_problem(HOST, imap, NEW_USER, password),
        dep.timeouts.login,
        say=dep.say,
        what=f"IMAP login of the new user {NEW_USER}",
    )
    since_up = time.monotonic() - (dep.changed_at or 0.0)
    if not ok:
        pytest.fail(
            f"{NEW_USER} could not log in within {dep.timeouts.login:.0f} s of the up ({reason}); the change "
            "detector should pick up the rewritten accounts file within seconds",
            pytrace=False,
        )
    dep.say(f"{NEW_USER} logged in {since_up:.1f} s after pulumi up returned")


def test_changed_password_replaces_the_old_one(deployment: Deployment) -> None:
    dep = deployment
    dep.require("change")
    old = dep.plan.account_passwords()[CHANGED_USER]
    new = dep.plan.account_passwords(changed=True)[CHANGED_USER]
    imap = _ports(dep, CHANGED_USER)["imap"]

    def probe() -> str | None:
        problem = support.imap_login_problem(HOST, imap, CHANGED_USER, new)
        if problem:
            return f"new password: {problem}"
        if support.imap_login_problem(HOST, imap, CHANGED_USER, old) is None:
            return "the old password still works"
        return None

    ok, _, reason = support.poll(
        probe, dep.timeouts.login, say=dep.say, what=f"password change of {CHANGED_USER}"
    )
    assert ok, f"{CHANGED_USER} after {dep.timeouts.login:.0f} s: {reason}"


def test_new_user_and_alias_receive_mail(deployment: Deployment) -> None:
    dep = deployment
    dep.require("change")
    passwords = dep.plan.account_passwords(changed=True)
    to_alias, to_new_user = support.new_token(), support.new_token()
    sends = [
        (NEW_USER, ALIAS, to_alias, ALIAS_TARGET),
        (CHANGED_USER, NEW_USER, to_new_user, NEW_USER),
    ]
    with dep.step("mail-kept"):
        for sender, rcpt, token, _ in sends:
            try:
                support.send_message(
                    HOST, _ports(dep, sender)["submission"], sender, passwords[sender], rcpt, token
                )
            except (smtplib.SMTPException, OSError) as exc:
                pytest.fail(f"{sender} could not send to {rcpt}: {exc}", pytrace=False)
            dep.say(f"sent {token} from {sender} to {rcpt}")
        for sender, rcpt, token, mailbox in sends:
            ok, seconds, reason = support.poll(
                lambda mailbox=mailbox, token=token: support.inbox_has_token(
                    HOST, _ports(dep, mailbox)["imap"], mailbox, passwords[mailbox], token
                ),
                dep.timeouts.verify,
                say=dep.say,
                what=f"{token} ({sender} -> {rcpt}) in {mailbox}'s INBOX",
            )
            assert ok, f"{sender} -> {rcpt}: not in {mailbox}'s INBOX after {seconds:.0f} s: {reason}"
            dep.say(f"{sender} -> {rcpt} arrived in {mailbox}'s INBOX in {seconds:.1f} s")
        dep.kept_mail = [(m.split("@")[1], m.split("@")[0], t) for _, _, t, m in sends]


def test_mail_still_flows_after_the_change(deployment: Deployment) -> None:
    deployment.require("change")
    _run_check(deployment, "after the account change")


def _failing_up(dep: Deployment, what: str) -> str:
    """Run ``pulumi up`` that must fail; return its error text (the test fails if it succeeds)."""
    dep.say(f"{what} (must fail) ...")
    try:
        with support.deadline(dep.timeouts.pulumi, what, dep.say):
            dep.stack.up(on_output=dep.say, color="never")
    except auto.errors.CommandError as exc:
        return str(exc)
    except support.DeadlineExceeded as exc:
        pytest.fail(f"{exc} (raise {support.Timeouts.ENV['pulumi']} on a slow machine)", pytrace=False)
    pytest.fail(f"{what} succeeded, although the config writer cannot write", pytrace=False)


def test_a_failed_config_write_stops_safely_and_the_printed_command_recovers(deployment: Deployment) -> None:
    dep = deployment
    dep.require("change")
    spec = next(d for d in DOMAINS if WRITER_USER.endswith(f"@{d.domain}"))
    volume = dep.volumes[spec.domain]["config"]
    image = DEFAULT_IMAGES["mailserver"]
    helper = f"mailstack-{dep.plan.stack}-config-breaker"
    before = dep.server_identities()[spec.server]
    assert before is not None, f"{spec.server} is not running before the step"

    def shell(script: str, why: str) -> None:
        result = dep.run(support.volume_shell(volume, image, helper, script), dep.timeouts.docker_info * 4)
        assert result.ok, f"could not {why} in {volume}: {result.reason()}"

    with dep.step("writer-recovered"):
        shell(f"rm -f /c/{OBSTACLE} && mkdir /c/{OBSTACLE}", f"put a directory in place of {OBSTACLE}")
        dep.set_config(support.writer_user_entries(dep.plan))
        error = _failing_up(dep, f"pulumi up adding {WRITER_USER} with {spec.server}'s config volume broken")
        expected = f"the config writer of {spec.server} ({spec.domain}) exited with status 1"
        assert expected in error, f"the error does not say {expected!r}:\n{error[-3000:]}"
        assert f"{OBSTACLE} is not a regular file" in error, (
            f"the writer's output is not quoted:\n{error[-3000:]}"
        )
        assert "a running server keeps its previous configuration" in error
        retry = support.retry_command(error)
        assert retry is not None, f"no `pulumi up --stack ... --replace '<urn>'` command in:\n{error[-3000:]}"
        stack_name, urn = retry
        assert stack_name == dep.plan.stack and urn.endswith(f"::{spec.domain}-config-writer"), retry
        after = dep.server_identities()[spec.server]
        assert after is not None and (after.id, after.started_at, after.restart_count) == (
            before.id,
            before.started_at,
            before.restart_count,
        ), f"{spec.server} was touched by the failed up: {before.describe()} -> {after}"
        # the failed writer stays in the state as created: a plain up stops the same way
        again = _failing_up(dep, "a plain pulumi up again")
        assert support.retry_command(again) == retry, "a plain up did not stop with the same retry command"
        shell(f"rmdir /c/{OBSTACLE}", f"remove the directory {OBSTACLE}")
        dep.pulumi(f"pulumi up --replace '{urn}' (the printed recovery)", dep.stack.up, replace=[urn])
    now = dep.server_identities()[spec.server]
    assert now is not None and (now.id, now.started_at, now.restart_count) == (
        before.id,
        before.started_at,
        before.restart_count,
    ), f"{spec.server} was replaced or restarted by the recovery: {before.describe()} -> {now}"
    password = dep.plan.writer_user_password
    ok, _, reason = support.poll(
        lambda: support.imap_login_problem(HOST, _ports(dep, WRITER_USER)["imap"], WRITER_USER, password),
        dep.timeouts.login,
        say=dep.say,
        what=f"IMAP login of {WRITER_USER} after the recovery",
    )
    assert ok, f"{WRITER_USER} cannot log in after the recovery: {reason}"


def _docker_major(dep: Deployment) -> int | None:
    found = dep.run(["docker", "version", "--format", "{{.Server.Version}}"], dep.timeouts.docker_info)
    match = re.match(r"(\d+)\.", found.stdout.strip()) if found.ok else None
    return int(match.group(1)) if match else None


def _in_server(dep: Deployment, server: str, *command: str) -> str:
    found = dep.run(["docker", "exec", dep.plan.container(server), *command], dep.timeouts.docker_info)
    assert found.ok, f"docker exec {server} {' '.join(command)} failed: {found.reason()}"
    return found.stdout


def test_dkim_and_an_own_egress_sign_and_route(deployment: Deployment) -> None:
    dep = deployment
    dep.require("up")
    address = support.host_source_address(dep.run, dep.timeouts.docker_info)
    if address is None:
        pytest.skip("the Docker host has no default route (ip -4 route get): no address to send mail from")
    with dep.step("deliverability"):
        dep.set_config(support.deliverability_entries(dep.plan, address))
        dep.pulumi(
            f"pulumi up: DKIM on, {support.EGRESS_DOMAIN} sending from {address} (replaces each server once)",
            dep.stack.up,
        )
    for spec in DOMAINS:
        ident = dep.server_identities()[spec.server]
        assert ident is not None and (ident.status, ident.health) == ("running", "healthy"), (
            f"{spec.server} after turning DKIM on: {ident.describe() if ident else 'missing'}"
        )
    egress_server = next(d.server for d in DOMAINS if d.domain == support.EGRESS_DOMAIN)
    other_server = next(d.server for d in DOMAINS if d.domain != support.EGRESS_DOMAIN)
    assert _in_server(dep, egress_server, "postconf", "-h", "smtp_helo_name").strip() == support.EGRESS_NAME
    # The route inside the server: its default gateway is the egress network's (Engine 28 honours
    # gw_priority); the other server keeps the stack network's.
    inspect = dep.run(
        [
            "docker",
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
            dep.plan.egress_network(),
        ],
        dep.timeouts.docker_info,
    )
    assert inspect.ok, f"the egress network {dep.plan.egress_network()} is missing: {inspect.reason()}"
    gateway, subnet = inspect.stdout.split()
    major = _docker_major(dep)
    routes = _in_server(dep, egress_server, "ip", "-4", "route")
    if major is not None and major >= 28:
        assert support.default_gateway(routes) == gateway, (
            f"{egress_server} does not route through its egress network ({gateway}):\n{routes}"
        )
        assert f"via {gateway}" in _in_server(dep, egress_server, "ip", "-4", "route", "get", "192.0.2.1")
    else:
        dep.say(f"Docker Engine {major} ignores gw_priority: the route check needs 28 or newer ({routes!r})")
    assert support.default_gateway(_in_server(dep, other_server, "ip", "-4", "route")) == str(
        dep.plan.subnet.network_address + 1
    )
    # The source address: the host translates the egress network to the configured address.
    nat = dep.run(["iptables", "-t", "nat", "-S", "POSTROUTING"], dep.timeouts.docker_info)
    if nat.ok:
        rules = [line for line in nat.stdout.splitlines() if f"-s {subnet}" in line]
        assert any(f"--to-source {address}" in line for line in rules), (
            f"no SNAT of {subnet} to {address} on the host: {rules}"
        )
    else:
        dep.say(f"iptables is not readable here ({nat.reason()}): the SNAT rule was not checked")
    # Every delivered test message is signed by its sender's domain, verified against the dns output.
    outputs = dep.outputs().raw
    keys = dkim_records(load_records(outputs))
    assert sorted(keys) == sorted(d.domain for d in DOMAINS), (
        f"DKIM records in the dns output: {sorted(keys)}"
    )
    report = verify.run(
        verify.load_targets(outputs), timeout=dep.timeouts.verify, webmail=False, probes=False, dkim_keys=keys
    )
    text = verify.render_report(report)
    dep.say(text)
    unsigned = [f"{a} -> {b}: {p.dkim_cell()}" for (a, b), p in report.pairs.items() if p.dkim_ok is not True]
    assert report.passed and not unsigned, f"mail is not signed as published: {unsigned}\n{text}"


def test_policy_pack_runs_on_preview(deployment: Deployment) -> None:
    dep = deployment
    pack = PROJECT_DIR / "policy"
    pack_config = pack / "config" / "dev.json"
    for path in (pack / "PulumiPolicy.yaml", pack_config):
        assert path.is_file(), (
            f"{path.relative_to(PROJECT_DIR)} is missing: the policy pack must ship with it"
        )
    events: list = []
    dep.pulumi(
        "pulumi preview --policy-pack policy --policy-pack-config policy/config/dev.json",
        dep.stack.preview,
        policy_packs=[str(pack)],
        policy_pack_configs=[str(pack_config)],
        on_event=events.append,
    )
    reported = [e.policy_event for e in events if getattr(e, "policy_event", None) is not None]
    for p in reported:
        dep.say(
            f"policy {p.policy_pack_name}/{p.policy_name} [{p.enforcement_level}]: {p.message.strip()[:200]}"
        )
    mandatory = [p.policy_name for p in reported if p.enforcement_level == "mandatory"]
    assert not mandatory, f"the dev policy config must keep every policy advisory, got mandatory: {mandatory}"
    # protectData is false in this stack: mail-data-protected must flag every mail and state volume.
    flagged = {
        p.resource_urn.rsplit("::", 1)[-1]
        for p in reported
        if p.policy_name == "mail-data-protected" and p.resource_urn
    }
    expected = {f"{d.domain}-{role}" for d in DOMAINS for role in ("mail", "state")}
    missing = sorted(expected - flagged)
    assert not missing, (
        f"the policy mail-data-protected did not flag the unprotected data volumes {missing} (this stack sets "
        f"protectData: false); it flagged: {sorted(flagged)}"
    )


def test_destroy_removes_containers_and_keeps_data_volumes(deployment: Deployment) -> None:
    dep = deployment
    with dep.step("destroy"):
        dep.pulumi(f"pulumi destroy of {dep.plan.stack}", dep.stack.destroy)
        dep.destroyed = True
    left = {server: ident for server, ident in dep.server_identities().items() if ident is not None}
    assert not left, f"mail server containers survived destroy: {sorted(left)}"
    assert not support.network_exists(dep.plan.network_name, dep.run, dep.timeouts.docker_info), (
        f"network {dep.plan.network_name} survived destroy"
    )
    dates = dep.volume_dates()
    lost = [
        dep.volumes[d][r] for d in dep.volumes for r in DATA_ROLES if dates.get(dep.volumes[d][r]) is None
    ]
    assert not lost, f"data volumes were deleted by destroy (they must be retained): {lost}"


def test_retained_mail_volumes_hold_the_delivered_mail(deployment: Deployment) -> None:
    dep = deployment
    dep.require("mail-kept", "destroy")
    image = DEFAULT_IMAGES["mailserver"]
    for domain, user, token in dep.kept_mail:
        volume = dep.volumes[domain]["mail"]
        mailbox = f"{domain}/{user}"
        reader = f"mailstack-{dep.plan.stack}-volume-reader"
        files = support.maildir_files_with(
            volume, image, mailbox, token, dep.run, dep.timeouts.docker_info * 4, reader
        )
        pattern = re.compile(rf"^/m/{re.escape(mailbox)}/(new|cur)/[^/]+$")
        if not any(pattern.match(f) for f in files):
            listing = support.list_maildir(
                volume, image, mailbox, dep.run, dep.timeouts.docker_info * 4, reader
            )
            pytest.fail(
                f"volume {volume} has no message with {token} under /{mailbox}/new or /cur "
                f"(files with the token: {files or 'none'}); the maildir holds:\n{listing}",
                pytrace=False,
            )
        dep.say(f"volume {volume} keeps the message {token}: {', '.join(files)}")
