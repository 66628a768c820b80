"""Fixtures of the end-to-end suite: prerequisite gate, live progress, and the deployed e2e stack.

Every test marked ``e2e`` first asks for ``e2e_ready``: it checks once per session that ``docker info``
works against a local engine, that a Pulumi CLI and the project's venv exist, and that the pinned images
are present (pulling them, bounded). When something is missing every e2e test is skipped with the
reason, or fails when ``MAILSTACK_REQUIRE_E2E=1``.

``deployment`` (module scope) deploys a fresh, uniquely named stack with the Automation API on a
temporary ``file://`` backend and yields a ``Deployment``; its teardown always destroys the stack,
removes it, removes the stack's containers, network and retained volumes, the stack settings file and
the backend directory, and fails loudly if anything is left.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pulumi import automation as auto

from tests.e2e import support
from tests.e2e.support import (
    DOMAINS,
    PROJECT_DIR,
    ContainerIdentity,
    Plan,
    Prerequisites,
    Say,
    Timeouts,
)

T = TypeVar("T")


@pytest.fixture(scope="session")
def say(request: pytest.FixtureRequest) -> Say:
    """Print a progress line at once, even while pytest captures output (the waits are long)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def _say(message: str) -> None:
        if not message.strip():
            return
        line = f"[e2e {time.strftime('%H:%M:%S')}] {message.rstrip()}"
        if capman is None:
            print(line, flush=True)
            return
        with capman.global_and_fixture_disabled():
            print(line, flush=True)

    return _say


@pytest.fixture(scope="session")
def e2e_timeouts() -> Timeouts:
    """The suite's bounds, with the ``MAILSTACK_E2E_*_TIMEOUT`` overrides."""
    try:
        return Timeouts.from_env(os.environ)
    except ValueError as exc:
        pytest.fail(f"e2e: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def e2e_ready(say: Say, e2e_timeouts: Timeouts) -> Prerequisites:
    """Skip (or, with ``MAILSTACK_REQUIRE_E2E=1``, fail) unless Docker, Pulumi, the venv and the images
    are all there. Runs once per session; the outcome is cached for every test."""
    say("checking e2e prerequisites: docker engine, pulumi CLI, project venv, pinned images")
    found = support.check_prerequisites(PROJECT_DIR, support.e2e_images(), timeouts=e2e_timeouts, say=say)
    if not found.ok:
        if os.environ.get(support.REQUIRE_ENV) == "1":
            pytest.fail(f"{found.reason()} ({support.REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(found.reason())
    return found


@pytest.fixture(autouse=True)
def _e2e_gate(request: pytest.FixtureRequest) -> None:
    """Apply the prerequisite gate to every test marked ``e2e`` (and to no other test)."""
    if request.node.get_closest_marker("e2e") is not None:
        request.getfixturevalue("e2e_ready")


class StackOutputs:
    """The stack outputs; the secret ones stay out of ``repr`` (assertion messages, ``--showlocals``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        """Keep ``values`` (the whole ``stack output --json --show-secrets`` object)."""
        self._values = values

    @property
    def raw(self) -> dict[str, Any]:
        """Every output, secrets included: pass it on, never print it."""
        return self._values

    @property
    def domains(self) -> dict[str, Any]:
        """The ``domains`` output (no secrets in it)."""
        return dict(self._values.get("domains") or {})

    def __repr__(self) -> str:
        """Output names only."""
        return f"StackOutputs({sorted(self._values)})"


class Steps:
    """Steps of an e2e suite that later tests build on: ``self.steps`` maps a step name to success."""

    steps: dict[str, bool]

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Record whether the step ``name`` completed (later tests ``require`` it)."""
        self.steps[name] = False
        yield
        self.steps[name] = True

    def require(self, *names: str) -> None:
        """Skip unless the earlier steps ``names`` completed (their own tests report why not)."""
        for name in names:
            if name not in self.steps:
                pytest.skip(
                    f"needs the step '{name}' of an earlier test, which did not run: run the whole file"
                )
            if not self.steps[name]:
                pytest.skip(f"needs the step '{name}' of an earlier test, which failed (see that test)")


@dataclass(repr=False)
class Deployment(Steps):
    """The deployed e2e stack and what the tests learn along the way."""

    plan: Plan
    stack: auto.Stack
    timeouts: Timeouts
    say: Say
    run: support.Runner = support.run_command
    steps: dict[str, bool] = field(default_factory=dict)
    """Step name to success, for tests that build on an earlier one."""
    servers_before: dict[str, ContainerIdentity] = field(default_factory=dict)
    """Mail server containers after the first up, by server alias."""
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    """Volume names by domain and role (from the first up's outputs)."""
    volumes_before: dict[str, str | None] = field(default_factory=dict)
    """``CreatedAt`` of every volume after the first up."""
    changed_at: float | None = None
    """``time.monotonic()`` when the change step's up returned."""
    kept_mail: list[tuple[str, str, str]] = field(default_factory=list)
    """``(domain, user, token)`` of delivered messages left in place for the volume check."""
    destroyed: bool = False

    def __repr__(self) -> str:
        """Short, and without the workspace (whose environment holds the backend passphrase)."""
        return f"Deployment({self.plan.stack}, steps={self.steps})"

    def pulumi(self, what: str, operation: Callable[..., T], **kwargs: Any) -> T:
        """Run one Automation API operation, bounded by the pulumi timeout, printing its output live.

        A failure becomes a test failure naming the operation (the CLI's output is already on screen).
        """
        self.say(f"{what} ...")
        if "show_secrets" in inspect.signature(operation).parameters:
            # Keep plaintext secrets out of the result's summary (it is the stack's config).
            kwargs.setdefault("show_secrets", False)
        start = time.monotonic()
        try:
            with support.deadline(self.timeouts.pulumi, what, self.say):
                result = operation(on_output=self.say, color="never", **kwargs)
        except support.DeadlineExceeded as exc:
            pytest.fail(f"{exc} (raise {Timeouts.ENV['pulumi']} on a slow machine)", pytrace=False)
        except auto.errors.CommandError as exc:
            pytest.fail(f"{what} failed: {_tail(str(exc))}", pytrace=False)
        self.say(f"{what} finished in {time.monotonic() - start:.0f} s")
        return result

    def outputs(self) -> StackOutputs:
        """The current stack outputs (``pulumi stack output --json --show-secrets``)."""
        with support.deadline(self.timeouts.docker_info * 4, "pulumi stack output", self.say):
            values = self.stack.outputs()
        return StackOutputs({name: out.value for name, out in values.items()})

    def set_config(self, entries: list[support.ConfigEntry]) -> None:
        """Set ``--path`` config entries in one ``pulumi config set-all --path`` (secrets encrypted)."""
        shown = ", ".join(f"{e.key}={'[secret]' if e.secret else e.value}" for e in entries)
        self.say(f"pulumi config set-all --path {shown}")
        with support.deadline(self.timeouts.docker_info * 4, "pulumi config set-all", self.say):
            self.stack.set_all_config(
                {e.key: auto.ConfigValue(e.plain_value(), secret=e.secret) for e in entries}, path=True
            )

    def server_identities(self) -> dict[str, ContainerIdentity | None]:
        """The mail server containers now, by server alias."""
        return {
            spec.server: support.container_identity(
                self.plan.container(spec.server), self.run, self.timeouts.docker_info
            )
            for spec in DOMAINS
        }

    def volume_dates(self) -> dict[str, str | None]:
        """``CreatedAt`` of every volume of the stack, by volume name."""
        return {
            name: support.volume_created_at(name, self.run, self.timeouts.docker_info)
            for roles in self.volumes.values()
            for name in roles.values()
        }


class _MaskedEnv(dict):
    """Environment for the workspace; its ``repr`` (part of ``repr(stack)``) hides the passphrase."""

    def __repr__(self) -> str:
        """Variable names only."""
        return f"<env {sorted(self)}>"


def _tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a long CLI error (the beginning is already printed live)."""
    parts = text.strip().splitlines()
    return "\n".join(parts[-lines:])


def _pulumi_command(cli: str | None) -> auto.PulumiCommand:
    """The Automation API handle of the CLI the prerequisite check found."""
    if cli:
        path = Path(cli)
        if path.parent.name == "bin":
            return auto.PulumiCommand(root=str(path.parent.parent))
    return auto.PulumiCommand()


def _make_plan(run: support.Runner, timeouts: Timeouts, say: Say) -> Plan:
    """A fresh stack name, free loopback ports and a subnet no Docker network or host route uses."""
    rng = random.SystemRandom()
    used = support.docker_subnets(run, timeouts.docker_info) + support.host_routes()
    subnet = support.choose_subnet(used, rng)
    plan = support.make_plan(support.new_stack_name(), support.free_ports(support.PORTS_NEEDED), subnet)
    ports = ", ".join(f"{spec.domain} {p}" for spec, p in zip(DOMAINS, plan.ports, strict=True))
    say(
        f"stack {plan.stack}: network {plan.network_name} {subnet}; ports {ports}; webmail {plan.webmail_port}"
    )
    return plan


@contextlib.contextmanager
def new_deployment(e2e_ready: Prerequisites, timeouts: Timeouts, say: Say) -> Iterator[Deployment]:
    """A new uniquely named stack on a fresh local backend; everything is cleaned up afterwards."""
    run = support.run_command
    plan = _make_plan(run, timeouts, say)
    backend = Path(tempfile.mkdtemp(prefix="mailstack-e2e-state-"))
    env = _MaskedEnv(
        PULUMI_BACKEND_URL=backend.as_uri(),
        PULUMI_CONFIG_PASSPHRASE=secrets.token_urlsafe(24),
        PULUMI_SKIP_UPDATE_CHECK="true",
    )
    stack: auto.Stack | None = None
    dep: Deployment | None = None
    try:
        stack = auto.create_stack(
            plan.stack,
            work_dir=str(PROJECT_DIR),
            opts=auto.LocalWorkspaceOptions(
                env_vars=env,
                secrets_provider="passphrase",
                pulumi_command=_pulumi_command(e2e_ready.pulumi_cli),
            ),
        )
        dep = Deployment(plan=plan, stack=stack, timeouts=timeouts, say=say, run=run)
        yield dep
    finally:
        _teardown(plan, stack, dep, backend, timeouts, say, run)


@pytest.fixture(scope="module")
def deployment(e2e_ready: Prerequisites, e2e_timeouts: Timeouts, say: Say) -> Iterator[Deployment]:
    """Deploy the e2e stack once for the module; always clean everything up afterwards."""
    with new_deployment(e2e_ready, e2e_timeouts, say) as dep:
        plan, stack = dep.plan, dep.stack
        dep.set_config(support.initial_entries(plan))
        with dep.step("up"):
            say(
                "first pulumi up: pulls nothing (images are present), creates the network, volumes, config "
                "writers, the two mail servers and the webmail, and waits for their health checks "
                "(docker-mailserver takes about 60-120 s to start; the first run also downloads the docker "
                "and random resource plugins)"
            )
            dep.pulumi(f"pulumi up of {plan.stack}", stack.up)
            dep.volumes = {
                domain: dict(entry.get("volumes") or {}) for domain, entry in dep.outputs().domains.items()
            }
            found = dep.server_identities()
            missing = [server for server, ident in found.items() if ident is None]
            if missing:
                pytest.fail(f"pulumi up finished but these mail server containers do not exist: {missing}")
            dep.servers_before = {k: v for k, v in found.items() if v is not None}
            dep.volumes_before = dep.volume_dates()
        yield dep


def _teardown(
    plan: Plan,
    stack: auto.Stack | None,
    dep: Deployment | None,
    backend: Path,
    timeouts: Timeouts,
    say: Say,
    run: support.Runner,
) -> None:
    """Destroy and forget the stack, remove every Docker object and file it left; raise if any remain."""
    problems: list[str] = []
    if stack is not None and not (dep is not None and dep.destroyed):
        try:
            say(f"cleanup: pulumi destroy of {plan.stack}")
            with support.deadline(timeouts.pulumi, "cleanup destroy", say):
                stack.destroy(on_output=say, color="never", show_secrets=False)
        except Exception as exc:
            say(f"cleanup: destroy failed ({_tail(str(exc), 5)}); removing the Docker objects directly")
    if stack is not None:
        try:
            with support.deadline(timeouts.docker_info * 4, "pulumi stack rm", say):
                stack.workspace.remove_stack(plan.stack, force=True)
        except Exception as exc:
            problems.append(f"pulumi stack rm {plan.stack} failed: {_tail(str(exc), 5)}")
    try:
        left = support.remove_stack_docker_objects(plan.stack, run, timeouts.docker_info, say)
        if left:
            problems.append(f"Docker objects left behind: {', '.join(left)}")
    except RuntimeError as exc:
        problems.append(f"could not list or remove the stack's Docker objects: {exc}")
    settings = PROJECT_DIR / f"Pulumi.{plan.stack}.yaml"
    with contextlib.suppress(FileNotFoundError):
        settings.unlink()
        say(f"cleanup: removed {settings.name}")
    shutil.rmtree(backend, ignore_errors=True)
    if backend.exists():
        problems.append(f"could not remove the temporary backend {backend}")
    if problems:
        raise RuntimeError(f"e2e cleanup of {plan.stack} incomplete: " + "; ".join(problems))
    say(f"cleanup of {plan.stack} complete")
