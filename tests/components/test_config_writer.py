"""The config writer: replaced delete-first, and a server only after a *successful* write.

The provider records a run-once container as created whatever its exit code, and ``depends_on``
alone only waits for a resource to exist. So the writer's exit code is checked in the program,
and the checked revision is the input of a gate (``<domain>-config-gate``) that the server depends
on. A writer that exits non-zero makes that check raise: the gate and the server are never
registered, which on a first deploy means no server is created and on an update means the engine
leaves the running server as it is (a failed program deletes and replaces nothing it did not reach).
"""

from __future__ import annotations

import copy

import pytest
from pulumi import RunError

from tests.components.conftest import run
from tests.components.harness import StackMocks, dev_config, run_program, unwrap
from tools import blast

WRITER = "example1.local-config-writer"
WRITER_OUTPUT = (
    "mailstack: could not stage postfix-accounts.cf; nothing in /tmp/docker-mailserver was changed"
)


def failing_run(config: dict) -> RunError:
    """Run the program with mta1's writer exiting 1; return the error the run ended with."""
    mocks = StackMocks(exits={WRITER: (1, WRITER_OUTPUT + "\n")})
    with pytest.raises(RunError) as caught:
        run_program(copy.deepcopy(config), secret_keys=("mailstack:passwords",), mocks=mocks)
    return caught.value


def test_server_depends_on_the_gate_whose_input_is_the_checked_revision(dev_program):
    for domain in ("example1.local", "example2.local"):
        server = dev_program.named(f"{domain}-server")
        gate = dev_program.named(f"{domain}-config-gate")
        writer = dev_program.named(f"{domain}-config-writer")
        assert gate.type == "pulumi:index:Stash" and gate.parent == server.parent
        assert gate.urn in server.dependencies
        assert writer.urn not in server.dependencies  # no input of the server comes from the writer
        assert writer.urn in gate.dependencies
        revision = unwrap(gate.inputs["input"])
        assert revision in unwrap(writer.inputs["name"])  # the writer's content digest, once it exited 0


def test_a_failing_writer_on_a_first_deploy_leaves_the_server_unregistered():
    err = failing_run(dev_config())
    program = err.program  # type: ignore[attr-defined]
    names = {r.name for r in program.resources}
    assert WRITER in names
    assert "example1.local-config-gate" not in names and "example1.local-server" not in names
    # the other domain is deployed normally
    assert {"example2.local-config-gate", "example2.local-server"} <= names


def test_the_error_names_server_and_domain_quotes_the_output_and_gives_the_retry_command():
    err = failing_run(dev_config())
    program = err.program  # type: ignore[attr-defined]
    writer_urn = program.named(WRITER).urn
    text = str(err)
    assert text.startswith("the config writer of mta1 (example1.local) exited with status 1")
    assert "mailstack-dev-mta1 was not created or changed" in text
    assert "a running server keeps its previous configuration" in text
    assert f"| {WRITER_OUTPUT}" in text
    assert text.splitlines()[-1].strip() == f"pulumi up --stack dev --replace '{writer_urn}'"


def test_a_failing_writer_on_an_update_leaves_the_server_untouched():
    before = run(dev_config())
    changed = dev_config()
    changed["domains"][0]["users"].append({"name": "user9", "quota": "1G"})
    err = failing_run(changed)
    after = err.program  # type: ignore[attr-defined]
    names = {r.name for r in after.resources}
    assert "example1.local-server" not in names  # not reached: the engine keeps the running one as it is
    # what was reached is the same as before, apart from mta1's new writer
    old = {r.urn: r.inputs for r in before.resources}
    touched = {r.name for r in after.resources if r.urn in old and old[r.urn] != r.inputs}
    assert touched == {WRITER}


def test_writer_is_replaced_delete_first_when_only_its_environment_changes():
    none = dev_config()
    self_signed = dev_config()
    self_signed["tls"] = "self-signed"
    before, after = run(none), run(self_signed)
    old, new = before.named(WRITER), after.named(WRITER)
    assert unwrap(old.inputs["name"]) == unwrap(new.inputs["name"])  # same digest: same Docker name
    change = next(c for c in blast.diff(before, after).changes if c.name == WRITER)
    assert change.action == "replace" and change.properties == ("envs",)
    assert old.delete_before_replace and new.delete_before_replace
