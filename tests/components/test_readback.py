"""A preview after refresh shows no changes: the provider's read-back rules applied to what the program declares.

``tools/readback.py`` says, per property, how the provider reads it back on refresh. Applied to the
recorded inputs of the dev, three-domain and production programs, the refreshed state must equal the
declared inputs; each kind of rule is then shown to catch what it is there to catch.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from tests.components.harness import Program, Registration, Secret, unwrap
from tools import readback as rb

PROGRAMS = ["dev_program", "three_program", "prod_program"]
CONTAINER = "docker:index/container:Container"
ROOT = Path(__file__).resolve().parents[2]


def changed(reg: Registration, **inputs) -> Registration:
    """A copy of ``reg`` with some inputs replaced (``None`` removes one)."""
    new = copy.deepcopy(reg.inputs)
    for key, value in inputs.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    return dataclasses.replace(reg, inputs=new)


def paths(drifts: list[rb.Drift]) -> list[str]:
    return [d.path for d in drifts]


@pytest.fixture(scope="module")
def server(dev_program: Program) -> Registration:
    return dev_program.named("example1.local-server")


@pytest.fixture(scope="module")
def vpn(dev_program: Program) -> Registration:
    return dev_program.named("vpn-container")


# --- the programs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", PROGRAMS)
def test_every_property_the_program_sets_has_a_rule(which: str, request: pytest.FixtureRequest) -> None:
    program: Program = request.getfixturevalue(which)
    assert rb.program_missing(program) == []


@pytest.mark.parametrize("which", PROGRAMS)
def test_a_refresh_stores_what_the_program_declares(which: str, request: pytest.FixtureRequest) -> None:
    program: Program = request.getfixturevalue(which)
    custom = [r for r in program.resources if r.custom]
    # the test covers every resource type the program registers, containers first of all
    assert {r.type for r in custom} <= set(rb.RULES)
    assert len(program.of_type(CONTAINER)) >= 4
    # one config gate per mail domain (pulumi:index:Stash of the checked config revision)
    config_gates = [
        r for r in program.of_type("pulumi:index:Stash") if "mailstack:index:MailDomain$" in r.urn
    ]
    assert len(config_gates) == len(program.of_type("mailstack:index:MailDomain"))
    assert [str(d) for d in rb.program_drift(program)] == []


# --- each kind of rule can fail ----------------------------------------------------------------------


def test_a_duration_not_in_go_form_drifts(server: Registration) -> None:
    check = {**unwrap(server.inputs["healthcheck"]), "startPeriod": "150s"}
    drifts = rb.preview_diff(changed(server, healthcheck=check))
    assert paths(drifts) == ["healthcheck.startPeriod"]
    assert (drifts[0].declared, drifts[0].stored) == ("150s", "2m30s")
    assert 'declared "150s", refresh stores "2m30s"' in str(drifts[0])


@pytest.mark.parametrize("value", ["90s", "60m", "0ms", "10000ms"])
def test_every_duration_field_is_normalised(server: Registration, value: str) -> None:
    for name in ("interval", "timeout", "startInterval"):
        check = {**unwrap(server.inputs["healthcheck"]), name: rb.go_duration(value)}
        assert rb.preview_diff(changed(server, healthcheck=check)) == []
        check = {**unwrap(server.inputs["healthcheck"]), name: value}
        assert paths(rb.preview_diff(changed(server, healthcheck=check))) == [f"healthcheck.{name}"]


def test_a_property_without_a_rule_is_reported_by_name(server: Registration) -> None:
    reg = changed(server, memory=512.0, ports=[*unwrap(server.inputs["ports"]), {"internal": 993.0, "x": 1}])
    assert rb.missing_rules(reg) == ["memory", "ports[].x"]
    with pytest.raises(rb.MissingRule) as err:
        rb.refresh(reg)
    assert "example1.local-server: no read-back rule for memory, ports[].x" in str(err.value)
    with pytest.raises(rb.MissingRule):
        rb.preview_diff(reg)


def test_a_resource_type_without_rules_is_reported(server: Registration) -> None:
    reg = dataclasses.replace(server, type="docker:index/service:Service")
    assert rb.missing_rules(reg) == ["* (no read-back rules for this resource type)"]
    program = Program(resources=[reg])
    assert rb.program_missing(program) == [
        "docker:index/service:Service example1.local-server: * (no read-back rules for this resource type)"
    ]


def test_ports_are_read_back_sorted_and_compared_in_any_order(server: Registration) -> None:
    declared = [p["internal"] for p in unwrap(server.inputs["ports"])]
    stored = rb.refresh(server)
    # the provider stores them sorted by internal port, which is not the declared order ...
    assert [p["internal"] for p in stored["ports"]] == sorted(declared) != declared
    # ... and its comparison ignores the order
    assert rb.preview_diff(server, stored) == []
    assert rb.preview_diff(server, {**stored, "ports": list(reversed(stored["ports"]))}) == []


def test_a_moved_port_drifts(server: Registration) -> None:
    stored = rb.refresh(server)
    moved = copy.deepcopy(stored["ports"])
    moved[0]["external"] = 2526.0
    assert paths(rb.preview_diff(server, {**stored, "ports": moved})) == ["ports"]
    assert paths(rb.preview_diff(server, {**stored, "ports": stored["ports"][:-1]})) == ["ports"]


def test_the_provider_port_comparison_pairs_tcp_and_udp_by_protocol() -> None:
    tcp = {"internal": 53, "external": 53, "ip": "0.0.0.0", "protocol": "tcp"}
    udp = {**tcp, "protocol": "udp"}
    assert rb.same_ports([tcp, udp], [udp, tcp])
    assert not rb.same_ports([tcp, tcp], [udp, udp])
    assert not rb.same_ports([tcp], [{**tcp, "ip": "127.0.0.1"}])


def test_sets_are_compared_in_any_order(vpn: Registration, dev_program: Program) -> None:
    stored = rb.refresh(vpn)
    reordered = {
        **stored,
        "labels": list(reversed(stored["labels"])),
        "envs": list(reversed(stored["envs"])),
        "capabilities": {"adds": ["SYS_MODULE", "NET_ADMIN"]},
    }
    # a capability that is not declared is a change; the order of the others is not
    assert paths(rb.preview_diff(vpn, reordered)) == ["capabilities.adds"]
    reordered["capabilities"] = {"adds": ["NET_ADMIN"]}
    assert rb.preview_diff(vpn, reordered) == []
    volume = dev_program.named("example1.local-mail")
    volume_state = rb.refresh(volume)
    assert rb.preview_diff(volume, {**volume_state, "labels": list(reversed(volume_state["labels"]))}) == []
    assert paths(rb.preview_diff(volume, {**volume_state, "labels": volume_state["labels"][1:]})) == [
        "labels"
    ]


def test_what_is_not_read_back_keeps_its_stored_value(server: Registration) -> None:
    # Docker merges the image's environment and labels into the container; the provider never reads them
    observed = {
        "envs": [*unwrap(server.inputs["envs"]), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
        "labels": [
            *unwrap(server.inputs["labels"]),
            {"label": "org.opencontainers.image.version", "value": "15"},
        ],
        "volumes": [],
        "waitTimeout": 1.0,
    }
    stored = rb.refresh(server, observed)
    assert {k: stored[k] for k in observed} == {k: server.inputs[k] for k in observed}
    assert rb.preview_diff(server, stored) == []


def test_networks_are_kept_as_configured(server: Registration) -> None:
    # Docker adds the container's short id as an alias on every network it joins
    network = unwrap(server.inputs["networksAdvanced"])[0]
    observed = {"networksAdvanced": [{**network, "aliases": [*network["aliases"], "3f2a9c1d0b7e"]}]}
    stored = rb.refresh(server, observed)
    assert stored["networksAdvanced"] == server.inputs["networksAdvanced"]
    assert rb.preview_diff(server, stored) == []


def test_what_is_read_back_exactly_drifts_when_docker_reports_something_else(vpn: Registration) -> None:
    # someone ran `docker update --restart always` and changed a sysctl by hand
    sysctls = {**unwrap(vpn.inputs["sysctls"]), "net.ipv4.ip_forward": "0"}
    stored = rb.refresh(vpn, {"restart": "always", "sysctls": sysctls})
    assert paths(rb.preview_diff(vpn, stored)) == ["restart", "sysctls"]


def test_schema_defaults_are_filled_in_on_both_sides(server: Registration) -> None:
    declared_check = unwrap(server.inputs["healthcheck"])
    assert "startInterval" not in declared_check and "networkMode" not in server.inputs
    stored = rb.refresh(server)
    # the provider reads back the defaults the program left out ...
    assert stored["healthcheck"]["startInterval"] == "0s"
    assert stored["networkMode"] == "bridge"
    assert {p["protocol"] for p in stored["ports"]} == {"tcp"}
    # ... and the declared side gets them from the schema, so they are no change
    assert rb.with_defaults(server)["healthcheck"]["startInterval"] == "0s"
    assert rb.preview_diff(server, stored) == []
    # a read-back value other than the default is one
    other = {**stored, "healthcheck": {**stored["healthcheck"], "startInterval": "5s"}}
    assert paths(rb.preview_diff(server, other)) == ["healthcheck.startInterval"]
    # leaving a field out means its default, not "keep what is there"
    no_retries = changed(server, healthcheck={k: v for k, v in declared_check.items() if k != "retries"})
    assert paths(rb.preview_diff(no_retries, stored)) == ["healthcheck.retries"]


def test_secrets_are_masked_in_a_drift(dev_program: Program) -> None:
    webmail = dev_program.named("example1.local-webmail-container")
    key = unwrap(webmail.inputs["uploads"][0]["content"])
    assert isinstance(webmail.inputs["uploads"][0]["content"], Secret)
    stored = {**rb.refresh(webmail), "uploads": []}
    drifts = rb.preview_diff(webmail, stored)
    assert paths(drifts) == ["uploads"]
    assert "[secret]" in str(drifts[0]) and key not in str(drifts[0])


def test_a_stash_input_is_stored_as_given(dev_program: Program) -> None:
    gate = dev_program.named("example1.local-config-gate")
    assert rb.refresh(gate) == gate.inputs
    assert rb.preview_diff(gate) == []
    # Docker has nothing to say about it: a refresh keeps the stored input whatever is "observed"
    assert rb.refresh(gate, {"input": "0000000000000000"}) == gate.inputs
    assert paths(rb.preview_diff(gate, {"input": "0000000000000000"})) == ["input"]


def test_a_rule_needs_its_source_and_what_its_kind_requires() -> None:
    with pytest.raises(ValueError, match="source"):
        rb.Rule(rb.EXACT, "", "a note")
    with pytest.raises(ValueError, match="normalising"):
        rb.Rule(rb.NORMALISED, "src", "a note")
    with pytest.raises(ValueError, match="comparison"):
        rb.Rule(rb.UNORDERED, "src", "a note")
    assert all(row.rule.source.startswith(("kreuzwerker/", "hashicorp/", "pulumi/")) for row in rb.rows())


def test_the_documentation_lists_every_rule() -> None:
    docs = (ROOT / "docs" / "upstream.md").read_text()
    assert rb.markdown_table() in docs, "regenerate the table in docs/upstream.md: python -m tools.readback"
