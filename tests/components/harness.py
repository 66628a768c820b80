"""Runs the real ``__main__.py`` under Pulumi mocks and records every registration.

Mocks do not pass resource options to ``Mocks.new_resource`` (pulumi/pulumi sdk/python
lib/pulumi/runtime/mocks.py: ``MockResourceArgs`` has no options), so a
``MockMonitor`` subclass records the register requests themselves: type, name, parent,
``protect``, ``retainOnDelete``, ``deleteBeforeReplace``, dependencies, and the inputs
with secret values kept visible as ``Secret``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import settings as psettings

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


@dataclass(frozen=True)
class Secret:
    """A value that was marked secret in a register request."""

    value: Any


@dataclass
class Registration:
    """One resource registration as the engine would receive it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    dependencies: list[str]
    inputs: dict[str, Any]
    ignore_changes: list[str] = field(default_factory=list)

    def plain(self) -> dict[str, Any]:
        """Inputs with every secret unwrapped."""
        return unwrap(self.inputs)


@dataclass
class Program:
    """Everything one run of the program registered."""

    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Registration]:
        """Registrations of one resource type."""
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Registration:
        """The registration with this logical name."""
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"{name}: {len(matches)} registrations"
        return matches[0]

    def containers(self) -> dict[str, Registration]:
        """Containers by their Docker name."""
        return {unwrap(r.inputs["name"]): r for r in self.of_type("docker:index/container:Container")}


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return Secret(_decode(value.get("value")))
        if SIG_KEY in value:
            return value
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """Replace every ``Secret`` by its value."""
    if isinstance(value, Secret):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def contains_secret(value: Any) -> bool:
    """True when ``value`` is or contains a ``Secret``."""
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


_RSA_KEYS: dict[str, tuple[str, str, str]] = {}
"""One real RSA key per resource URN (and size), made once per test session: repeatable and fast."""


def mock_rsa_key(urn: str, bits: int) -> tuple[str, str, str]:
    """``(PKCS#1 PEM, PKCS#8 PEM, public PEM)`` of the key cached for ``urn``, generated on first use."""
    cache_key = f"{urn}#{bits}"
    if cache_key not in _RSA_KEYS:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = serialization.Encoding.PEM
        none = serialization.NoEncryption()
        _RSA_KEYS[cache_key] = (
            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none).decode(),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none).decode(),
            key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        )
    return _RSA_KEYS[cache_key]


def mock_bytes(name: str, n: int) -> bytes:
    """Deterministic stand-in for random bytes, derived from the resource name."""
    return hashlib.sha256(f"mock:{name}".encode()).digest()[:n]


def _urn(args: pulumi.runtime.MockResourceArgs) -> str:
    # MockResourceArgs carries no URN; the type and logical name identify a resource within one program.
    return f"{args.typ}::{args.name}"


class StackMocks(pulumi.runtime.Mocks):
    """Returns inputs as outputs, plus deterministic computed outputs per resource type.

    ``exits`` maps a run-once container's logical name (``example1.local-config-writer``) to the
    ``(exit code, output)`` the provider would record for it; every other one exits 0.
    """

    def __init__(
        self, exits: dict[str, tuple[int, str]] | None = None, stack_outputs: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.exits = dict(exits or {})
        self.stack_outputs = dict(stack_outputs or {})
        """What the stack's last completed update exported (its ``memory`` above all)."""
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomBytes:RandomBytes":
            raw = mock_bytes(args.name, int(args.inputs.get("length", 32)))
            outputs["base64"] = base64.b64encode(raw).decode()
            outputs["hex"] = raw.hex()
        elif args.typ == "random:index/randomPassword:RandomPassword":
            raw = base64.urlsafe_b64encode(mock_bytes(args.name, 48)).decode()
            outputs["result"] = raw[: int(args.inputs.get("length", 24))]
        elif args.typ == "tls:index/privateKey:PrivateKey":
            # Like pulumi-tls: the private forms are secret outputs (additional_secret_outputs).
            pkcs1, pkcs8, public = mock_rsa_key(_urn(args), int(args.inputs.get("rsaBits", 2048)))
            outputs.update(privateKeyPem=pkcs1, privateKeyPemPkcs8=pkcs8, publicKeyPem=public)
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = "sha256:" + hashlib.sha256(args.inputs["name"].encode()).hexdigest()
        elif args.typ == "docker:index/container:Container":
            code, logs = self.exits.get(args.name, (0, ""))
            outputs.setdefault("exitCode", code if args.inputs.get("attach") else None)
            outputs.setdefault("containerLogs", logs)
        elif args.typ == "pulumi:index:Stash":
            outputs["output"] = args.inputs.get("input")
        return f"{args.name}_id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "pulumi:pulumi:readStackOutputs":
            # the engine answers with the outputs of the stack's last completed update
            return {
                "name": args.args["name"],
                "outputs": self.stack_outputs,
                "secretOutputNames": sorted(self.stack_outputs),
            }, []
        raise NotImplementedError(f"no mock for the function {args.token}")


class RecordingMonitor(pmocks.MockMonitor):
    """A MockMonitor that also records each request's options and secret markers."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.program = Program()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _decode(json_format.MessageToDict(request.object))
            self.program.resources.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=request.custom,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    dependencies=list(request.dependencies),
                    inputs=inputs,
                    ignore_changes=list(request.ignoreChanges),
                )
            )
        return response


def config_map(config: dict[str, Any]) -> dict[str, str]:
    """Stack config as the engine passes it: ``project:key`` to a string (objects as JSON)."""
    result = {}
    for key, value in config.items():
        full = key if ":" in key else f"mailstack:{key}"
        result[full] = value if isinstance(value, str) else json.dumps(value)
    return result


def run_program(
    config: dict[str, Any],
    stack: str = "dev",
    secret_keys: tuple[str, ...] = (),
    *,
    mocks: StackMocks | None = None,
    preview: bool = False,
) -> Program:
    """Run ``__main__.py`` once under mocks with ``config`` as the stack configuration."""
    mocks = mocks or StackMocks()
    monitor = RecordingMonitor(mocks)
    # A fresh root stack per run: set_mocks keeps an existing root, whose outputs would pile up across runs.
    psettings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project="mailstack", stack=stack, preview=preview, monitor=monitor, organization="organization"
    )
    pulumi.runtime.set_all_config(config_map(copy.deepcopy(config)), secret_keys=list(secret_keys))

    program = monitor.program

    @pulumi.runtime.test
    def _run() -> pulumi.Output[Any]:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        exported = getattr(psettings.get_root_resource(), "outputs", {}) or {}
        names = sorted(exported)
        # an exported Output is awaited as it is (from_input would rebuild its value entry by entry)
        outputs = [
            v if isinstance(v, pulumi.Output) else pulumi.Output.from_input(v)
            for v in (exported[n] for n in names)
        ]

        async def _collect() -> None:
            # The engine records the stack's outputs only when the whole program succeeded: all or none.
            collected = {}
            for n, out in zip(names, outputs, strict=True):
                value = await out.future(with_unknowns=True)
                collected[n] = Secret(value) if await out.is_secret() else value
            program.outputs.update(collected)

        return pulumi.Output.from_input(_collect())

    try:
        _run()
    except Exception as err:
        err.program = program  # type: ignore[attr-defined] - what was registered before the failure
        raise
    return program


def load_stack_file(name: str) -> dict[str, Any]:
    """The ``config:`` of ``Pulumi.<name>.yaml`` without the namespace, for ``run_program``."""
    import yaml

    data = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
    return {k.split(":", 1)[1] if k.startswith("mailstack:") else k: v for k, v in data.items()}


DEV_PASSWORDS = {f"user{i}@example{1 if i <= 2 else 2}.local": "password123" for i in range(1, 5)}


def dev_config() -> dict[str, Any]:
    """The dev stack as ``make up`` configures it (password123 set as secrets)."""
    config = load_stack_file("dev")
    config["passwords"] = dict(DEV_PASSWORDS)
    return config


def three_domain_config() -> dict[str, Any]:
    """The dev stack plus a third domain with an alias and a user without a password."""
    config = dev_config()
    config["domains"].append(
        {
            "domain": "example3.local",
            "server": "mta3",
            "ports": {"smtp": 4525, "submission": 4587, "imap": 4143, "pop3": 4110},
            "users": [{"name": "user5", "quota": "500M"}, {"name": "user6"}],
            "aliases": {"info": ["user5@example3.local", "user1@example1.local"]},
        }
    )
    config["passwords"]["user5@example3.local"] = "s3cret-user5-pass"
    return config


PROD_PASSWORD = "Correct-Horse-Battery-7"
"""A strong password for the one account ``prod_config`` sets (a test value, not a real secret)."""


def prod_config() -> dict[str, Any]:
    """``Pulumi.prod.yaml`` with the one password a person would set as a secret."""
    config = load_stack_file("prod")
    config["passwords"] = {"admin@example.org": PROD_PASSWORD}
    return config
