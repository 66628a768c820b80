"""The HTTPS edge under mocks: the edge, its writer and gate, the certificate waits, webmail behind it."""

from __future__ import annotations

import json

import pytest
from pulumi import RunError

from config import caddy
from config.model import load_stack
from tests.components.harness import StackMocks, prod_config, run_program, unwrap
from tests.edge_support import prod_raw

SECRET_KEYS = ("mailstack:passwords",)


@pytest.fixture(scope="module", name="prod")
def prod_fixture():
    return run_program(prod_config(), stack="prod", secret_keys=SECRET_KEYS)


def _volumes(reg) -> list[dict]:
    return unwrap(reg.inputs.get("volumes", []))


def test_one_edge_publishes_80_and_443_on_every_public_address(prod):
    edge = prod.named("edge-container")
    ports = {(p["ip"], p["external"], p["internal"]) for p in unwrap(edge.inputs["ports"])}
    assert ports == {(ip, port, port) for ip in ("203.0.113.10", "203.0.113.11") for port in (80, 443)}
    assert unwrap(edge.inputs["image"]).startswith("sha256:")
    assert prod.named("edge-image").inputs["name"] == "docker.io/library/caddy:2.11.2-alpine"
    assert edge.delete_before_replace


def test_edge_data_is_protected_and_retained_config_volume_is_not(prod):
    data, config = prod.named("edge-data"), prod.named("edge-config")
    assert data.protect and data.retain_on_delete
    assert not config.protect
    edge = prod.named("edge-container")
    mounts = {(v["volumeName"], v["containerPath"], bool(v.get("readOnly"))) for v in _volumes(edge)}
    assert mounts == {
        ("mailstack-prod-edge-data", "/data", False),
        ("mailstack-prod-edge-config", "/etc/caddy", True),
    }


def test_the_caddyfile_reaches_the_edge_only_through_the_writer(prod):
    stack = load_stack("prod", prod_raw())
    writer, edge, gate = (
        prod.named("edge-config-writer"),
        prod.named("edge-container"),
        prod.named("edge-config-gate"),
    )
    uploads = unwrap(writer.inputs["uploads"])
    assert [u["file"] for u in uploads] == ["/mailstack/staging/Caddyfile"]
    assert uploads[0]["content"] == caddy.render_caddyfile(stack, stack.edge)
    assert "caddy validate" in unwrap(writer.inputs["entrypoints"])[2]
    assert writer.inputs["networkMode"] == "none" and writer.inputs["attach"] is True
    assert writer.delete_before_replace
    assert "uploads" not in edge.inputs and unwrap(edge.inputs["command"]) == caddy.RUN_COMMAND
    assert "--watch" in caddy.RUN_COMMAND
    assert gate.urn in edge.dependencies and writer.urn not in edge.dependencies
    assert writer.urn in gate.dependencies


def test_each_server_waits_for_its_certificate_and_mounts_the_edge_data_as_a_directory(prod):
    for domain, server in (("example.org", "mx1"), ("example.net", "mx2")):
        srv = prod.named(f"{domain}-server")
        wait = prod.named(f"{domain}-certificate-wait")
        gate = prod.named(f"{domain}-certificate-gate")
        env = dict(e.split("=", 1) for e in unwrap(srv.inputs["envs"]))
        cert = env["SSL_CERT_PATH"]
        assert env["SSL_TYPE"] == "manual"
        assert (
            cert
            == f"/etc/mailstack-edge/{caddy.certificate_files(load_stack('prod', prod_raw()).edge, f'mail.{domain}')[0]}"
        )
        mount = [v for v in _volumes(srv) if v["volumeName"] == "mailstack-prod-edge-data"]
        assert mount == [
            {
                "volumeName": "mailstack-prod-edge-data",
                "containerPath": "/etc/mailstack-edge",
                "readOnly": True,
            }
        ]
        assert not [v for v in _volumes(srv) if v.get("hostPath")]  # never single-file bind mounts
        assert gate.urn in srv.dependencies and wait.urn not in srv.dependencies
        assert wait.urn in gate.dependencies
        wait_env = dict(e.split("=", 1) for e in unwrap(wait.inputs["envs"]))
        assert wait_env["MAILSTACK_CERT"] == cert and wait_env["MAILSTACK_HOST"] == f"mail.{domain}"
        assert _volumes(wait) == mount
        assert wait.inputs["networkMode"] == "none" and wait.inputs["attach"] is True
        assert wait.inputs["mustRun"] is False and wait.delete_before_replace
        assert prod.named("edge-container").urn in wait.dependencies
        assert prod.named("edge-config-gate").urn in wait.dependencies
        assert unwrap(wait.inputs["name"]) == f"mailstack-prod-{server}-certificate-wait"


def test_webmail_behind_the_edge_has_no_host_port_a_fixed_address_and_the_plugin(prod):
    stack = load_stack("prod", prod_raw())
    for d in stack.domains:
        wm = prod.named(f"{d.domain}-webmail-container")
        assert not unwrap(wm.inputs.get("ports"))
        net = unwrap(wm.inputs["networksAdvanced"])[0]
        assert net["ipv4Address"] == str(stack.edge.webmail_addresses[d.domain])
        files = {u["file"] for u in unwrap(wm.inputs["uploads"])}
        assert "/usr/src/roundcubemail/plugins/mailstack_client_ip/mailstack_client_ip.php" in files
        writer = prod.named(f"{d.domain}-config-writer")
        dovecot = [u for u in unwrap(writer.inputs["uploads"]) if u["file"].endswith("/dovecot.cf")]
        assert dovecot and f"login_trusted_networks = {net['ipv4Address']}/32\n" in dovecot[0]["content"]
    edge_net = unwrap(prod.named("edge-container").inputs["networksAdvanced"])[0]
    assert edge_net["ipv4Address"] == str(stack.edge.address)


def test_outputs_name_the_edge_urls_records_and_remember_its_addresses(prod):
    out = unwrap(prod.outputs["edge"])
    assert out["container"] == "mailstack-prod-edge"
    assert out["domains"]["example.org"]["urls"]["webmail"] == "https://webmail.example.org/"
    dns = unwrap(prod.outputs["dns"])["example.org"]
    mta_sts = [r for r in dns if r["name"] == "_mta-sts.example.org"]
    assert (
        len(mta_sts) == 1
        and mta_sts[0]["type"] == "TXT"
        and mta_sts[0]["value"][0].startswith("v=STSv1; id=")
    )
    web = {r["name"]: r["value"] for r in dns if r["type"] == "A"}
    assert (
        web["webmail.example.org"] == web["mta-sts.example.org"] == web["mail.example.org"] == "203.0.113.10"
    )
    assert unwrap(prod.outputs["webmails"]) == {
        "example.org": "https://webmail.example.org/",
        "example.net": "https://webmail.example.net/",
    }
    memory = json.loads(unwrap(prod.outputs["memory"]))["addresses"]
    stack = load_stack("prod", prod_raw())
    assert memory["edge"] == str(stack.edge.address)
    assert memory["webmail:example.org"] == str(stack.edge.webmail_addresses["example.org"])


def test_remembered_edge_addresses_do_not_move():
    first = run_program(prod_config(), stack="prod", secret_keys=SECRET_KEYS)
    moved = json.loads(unwrap(first.outputs["memory"]))
    moved["addresses"]["edge"] = "172.30.0.250"
    again = run_program(
        prod_config(),
        stack="prod",
        secret_keys=SECRET_KEYS,
        mocks=StackMocks(stack_outputs={"memory": json.dumps(moved)}),
    )
    net = unwrap(again.named("edge-container").inputs["networksAdvanced"])[0]
    assert net["ipv4Address"] == "172.30.0.250"


def _failing(name: str, output: str) -> RunError:
    mocks = StackMocks(exits={name: (1, output)})
    with pytest.raises(RunError) as caught:
        run_program(prod_config(), stack="prod", secret_keys=SECRET_KEYS, mocks=mocks)
    return caught.value


def test_a_missing_certificate_stops_that_server_with_the_likely_cause():
    err = _failing(
        "example.net-certificate-wait", "mailstack: no certificate for mail.example.net after 300s"
    )
    program = err.program  # type: ignore[attr-defined]
    names = {r.name for r in program.resources}
    assert "example.net-certificate-gate" not in names and "example.net-server" not in names
    text = str(err)
    assert text.startswith(
        "the certificate wait of mx2 (example.net) found no certificate for mail.example.net"
    )
    assert "the A record of mail.example.net does not point at 203.0.113.11" in text
    assert "ports 80 and 443 of 203.0.113.11 are closed" in text
    assert "docker logs mailstack-prod-edge" in text
    urn = program.named("example.net-certificate-wait").urn
    assert text.splitlines()[-1].strip() == f"pulumi up --stack prod --replace '{urn}'"


def test_a_caddyfile_that_does_not_validate_stops_before_the_edge():
    err = _failing("edge-config-writer", "mailstack: the generated Caddyfile does not validate")
    names = {r.name for r in err.program.resources}  # type: ignore[attr-defined]
    assert "edge-config-gate" not in names and "edge-container" not in names
    assert "| mailstack: the generated Caddyfile does not validate" in str(err)


def test_the_edge_program_is_deterministic(prod):
    again = run_program(prod_config(), stack="prod", secret_keys=SECRET_KEYS)

    def inputs(program) -> dict:
        return {r.urn: repr(r.inputs) for r in program.resources}

    assert inputs(again) == inputs(prod)
