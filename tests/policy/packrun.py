"""Evaluate the mailstack policy pack against the real program, the way ``pulumi preview --policy-pack`` does.

How this mirrors the CLI, step by step:

1. The engine runs ``__main__.py``; every ``RegisterResource`` request reaches the engine. Here the
   program runs under Pulumi mocks and ``tests.components.harness.RecordingMonitor`` records the
   same requests: type, name, URN, parent, ``protect``, ``deleteBeforeReplace``, dependencies, and
   the inputs in the engine's wire form (camelCase keys, numbers as protobuf doubles, secrets as
   ``{sig: secret, value: ...}`` objects, unknowns as the engine's unknown sentinel).
2. For every resource the engine calls the analyzer's ``Analyze(AnalyzeRequest{type, properties,
   urn, name, options})`` with the resource's inputs. :func:`evaluate` builds that very protobuf
   request from the recorded registration (secrets re-encoded as secret objects, which the SDK
   unwraps for the validators; ``options.protect``/``deleteBeforeReplace``/``parent`` from the
   recording monitor).
3. After the resources, the engine calls ``AnalyzeStack(AnalyzeStackRequest{resources})`` with each
   resource's planned state, parent and dependencies. For a resource being created, the preview's
   planned state is its inputs plus unknown computed outputs, so the recorded inputs are sent.
4. The CLI reads ``--policy-pack-config file.json``, starts from each policy's level and its
   config-schema defaults, applies ``"all"`` and then the per-policy entries
   (``ReconcilePolicyPackConfig`` in pulumi/pkg), and sends ``Configure``. :func:`reconcile` does
   the same; without a file the policies keep the pack's defaults, as with the CLI.
5. The analyzer is the SDK's own servicer (``_PolicyAnalyzerServicer``, the object that
   ``PolicyPack(...)`` in ``policy/__main__.py`` serves over gRPC): deserialisation, the
   unknown-checking proxies, enforcement levels and the "can't run policy during preview"
   diagnostics are the real code. Only the gRPC transport and the provider's ``Check`` (which
   fills provider defaults such as ``restart: no``; the validators treat a missing property as
   that default) are left out.

:func:`run_preview` runs the program as a first ``pulumi preview`` sees it: random bytes, image
ids and container exit codes are unknown, so every input computed from them (account hashes,
the writer's name, WireGuard configs, container images) reaches the policies as unknown.
"""

from __future__ import annotations

import copy
import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi.runtime import rpc as prpc
from pulumi_policy import EnforcementLevel, Policy
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policy.mailstack_policies import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES
from tests.components.harness import (
    ROOT,
    SECRET_SIG,
    SIG_KEY,
    Program,
    RecordingMonitor,
    Registration,
    Secret,
    StackMocks,
    config_map,
)

POLICY_DIR = ROOT / "policy"
CONFIG_DIR = POLICY_DIR / "config"
PACK_VERSION = "0.1.0"

_LEVELS = {
    EnforcementLevel.ADVISORY: proto.ADVISORY,
    EnforcementLevel.MANDATORY: proto.MANDATORY,
    EnforcementLevel.REMEDIATE: proto.REMEDIATE,
    EnforcementLevel.DISABLED: proto.DISABLED,
}
_NAMES = {v: k.value for k, v in _LEVELS.items()}


@dataclass(frozen=True)
class Violation:
    """One diagnostic of the pack, as the CLI prints it."""

    policy: str
    level: str
    urn: str
    message: str

    @property
    def resource(self) -> str:
        """The logical name of the resource (last URN segment), or ``""`` for the stack."""
        return self.urn.rsplit("::", 1)[-1] if self.urn else ""

    @property
    def skipped(self) -> bool:
        """True for the SDK's "can't run policy ... during preview" diagnostic (an unknown crashed a check)."""
        return "can't run policy" in self.message


class PreviewMocks(StackMocks):
    """Like the harness mocks, but computed outputs are unknown, as in a first preview."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        """Return the inputs as outputs; random bytes, image ids and exit codes stay unknown."""
        resource_id, outputs = super().new_resource(args)
        unknown = {
            "random:index/randomBytes:RandomBytes": ("base64", "hex"),
            "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
            "docker:index/remoteImage:RemoteImage": ("imageId", "repoDigest"),
            "docker:index/container:Container": ("exitCode", "containerLogs"),
        }.get(args.typ, ())
        for key in unknown:
            outputs[key] = prpc.UNKNOWN
        return resource_id, outputs


def run_preview(config: dict[str, Any], stack: str = "dev", secret_keys: tuple[str, ...] = ()) -> Program:
    """Run ``__main__.py`` once under mocks in preview mode, with unknown computed outputs."""
    mocks = PreviewMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mailstack", stack=stack, preview=True, monitor=monitor)
    pulumi.runtime.set_all_config(config_map(copy.deepcopy(config)), secret_keys=list(secret_keys))

    @pulumi.runtime.test
    def _run() -> pulumi.Output[Any]:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        return pulumi.Output.from_input(None)

    _run()
    return monitor.program


def _wire(value: Any) -> Any:
    """Registration inputs back in the engine's wire form (secrets as signature objects)."""
    if isinstance(value, Secret):
        return {SIG_KEY: SECRET_SIG, "value": _wire(value.value)}
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(_wire(inputs))
    return struct


def _options(reg: Registration) -> Any:
    return proto.AnalyzerResourceOptions(
        protect=reg.protect,
        deleteBeforeReplace=reg.delete_before_replace,
        deleteBeforeReplaceDefined=reg.delete_before_replace,
        parent=reg.parent,
    )


def _level(value: Any, where: str) -> EnforcementLevel:
    try:
        return EnforcementLevel(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an enforcement level") from None


def reconcile(
    config: dict[str, Any] | None, policies: list[Policy] = POLICIES
) -> dict[str, tuple[EnforcementLevel, dict[str, Any]]]:
    """Per-policy enforcement level and properties, as the CLI computes them from a config file."""
    result: dict[str, tuple[EnforcementLevel, dict[str, Any]]] = {}
    for p in policies:
        defaults = {}
        if p.config_schema is not None:
            defaults = {k: v["default"] for k, v in p.config_schema.properties.items() if "default" in v}
        result[p.name] = (p.enforcement_level or DEFAULT_ENFORCEMENT, defaults)
    if not config:
        return result
    if "all" in config:
        everything = config["all"]
        level = everything if isinstance(everything, str) else everything.get("enforcementLevel")
        if level is not None:
            result = {k: (_level(level, "all"), props) for k, (_, props) in result.items()}
    for name, given in config.items():
        if name == "all" or name not in result:
            continue
        level, props = result[name]
        if isinstance(given, str):
            level = _level(given, name)
        else:
            given = dict(given)
            if "enforcementLevel" in given:
                level = _level(given.pop("enforcementLevel"), name)
            props = {**props, **given}
        result[name] = (level, props)
    schemas = {p.name: p.config_schema for p in policies}
    for name, (_, props) in result.items():
        schema = schemas[name]
        for key, value in props.items():
            spec = schema.properties.get(key) if schema is not None else None
            if spec is None:
                raise ValueError(f"{name}: unknown policy config property {key!r}")
            if spec.get("type") == "boolean" and not isinstance(value, bool):
                raise ValueError(f"{name}.{key}: expected a boolean, got {value!r}")
    return result


def load_config(name: str | None) -> dict[str, Any] | None:
    """The policy config file ``policy/config/<name>.json`` (``None`` for no file)."""
    if name is None:
        return None
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def servicer(config: dict[str, Any] | None) -> Any:
    """The SDK's analyzer for the pack, configured like the CLI configures it."""
    analyzer = _PolicyAnalyzerServicer(PACK_NAME, PACK_VERSION, list(POLICIES), DEFAULT_ENFORCEMENT)
    request = proto.ConfigureAnalyzerRequest()
    for name, (level, props) in reconcile(config).items():
        entry = proto.PolicyConfig(enforcementLevel=_LEVELS[level])
        entry.properties.update(props)
        request.policyConfig[name].CopyFrom(entry)
    analyzer.Configure(request, None)
    return analyzer


def evaluate(program: Program, config: dict[str, Any] | None) -> list[Violation]:
    """Run every policy of the pack over the program's resources; return all diagnostics."""
    analyzer = servicer(config)
    diagnostics: list[Violation] = []

    def collect(response: Any, default_urn: str) -> None:
        for d in response.diagnostics:
            diagnostics.append(
                Violation(d.policyName, _NAMES[d.enforcementLevel], d.urn or default_urn, d.message)
            )

    for reg in program.resources:
        request = proto.AnalyzeRequest(
            type=reg.type, properties=_struct(reg.inputs), urn=reg.urn, name=reg.name, options=_options(reg)
        )
        collect(analyzer.Analyze(request, None), reg.urn)
    stack = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                type=reg.type,
                properties=_struct(reg.inputs),
                urn=reg.urn,
                name=reg.name,
                options=_options(reg),
                parent=reg.parent,
                dependencies=reg.dependencies,
            )
            for reg in program.resources
        ]
    )
    collect(analyzer.AnalyzeStack(stack, None), "")
    return diagnostics


def config_path(name: str) -> Path:
    """Path of a policy config file (for messages)."""
    return CONFIG_DIR / f"{name}.json"
