"""What ``pulumi refresh`` reads back for every input the program sets, and the diff a later preview shows.

A preview after ``up`` or after ``refresh`` compares the program's inputs (with the provider's schema
defaults filled in) against the state, and a refresh rewrites that state from what the provider reads
back from Docker. Any input the provider reads back in another form than the program wrote it is a
change on every preview, forever. ``RULES`` says, for every input property the program sets on every
resource type it registers, how the provider reads it back, each rule with the provider source it comes
from; it is the one place that knowledge lives (``tools/blast.py`` holds the other half: which changed
inputs replace a resource). ``docs/upstream.md`` explains the rules in prose.

- :func:`refresh` applies the rules to a recorded registration: what a refresh would store.
- :func:`preview_diff` compares that with the declared inputs: what a preview after the refresh would show.
- :func:`missing_rules` names every property the program sets that no rule covers.

The kinds of rule:

``exact``
    Read back from Docker and stored as Docker reports it, which is the value as created.
``normalised``
    Read back in the provider's own spelling (``rule.normalise`` gives it); a declared value in any
    other spelling drifts.
``not read back``
    A refresh never touches it: the state keeps the value stored at create.
``kept as configured``
    Read only in a corner case that does not apply to a managed resource (an import, a stopped
    container); otherwise the stored value stays.
``order-insensitive``
    Read back (or compared) as a set, or in the provider's own order; ``rule.same`` is the provider's
    comparison and ``rule.order`` the order a refresh stores.

A rule may also carry ``default``: the schema default the provider fills in when the program leaves the
property out (pulumi's check step fills it before create, and the refresh reads the same value back).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.durations import normalise as go_duration
from tests.components.harness import Program, Registration, Secret, contains_secret, unwrap

EXACT = "exact"
NORMALISED = "normalised"
NOT_READ = "not read back"
KEPT = "kept as configured"
UNORDERED = "order-insensitive"
KINDS = (EXACT, NORMALISED, NOT_READ, KEPT, UNORDERED)
"""Every kind of read-back rule, in the order the documentation lists them."""

DOCKER_PROVIDER = "kreuzwerker/terraform-provider-docker v4.5.0"
"""The Terraform provider pulumi-docker 5.x bridges, at the tag the rules were read at."""
RANDOM_PROVIDER = "hashicorp/terraform-provider-random v3.9.0"
"""The Terraform provider pulumi-random 4.21 bridges (its ``upstream`` submodule at v4.21.1)."""
TLS_PROVIDER = "hashicorp/terraform-provider-tls v4.2.1"
"""The Terraform provider pulumi-tls 5.x bridges (the private key resource reads the same across v4.0-v4.2)."""
PULUMI_ENGINE = "pulumi/pulumi v3.259.0"
"""The Pulumi engine, whose builtin provider implements ``pulumi:index:Stash``."""


def _docker(path: str, lines: str) -> str:
    return f"{DOCKER_PROVIDER} internal/provider/{path}:{lines}"


def _random(path: str, lines: str) -> str:
    return f"{RANDOM_PROVIDER} internal/provider/{path}:{lines}"


CONTAINER_READ = "resource_docker_container_funcs.go"
CONTAINER_SCHEMA = "resource_docker_container.go"


class _Absent:
    """Marks a property that is not set (``None``, and empty lists and maps, compare equal to it)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()
"""A property that is not set."""
NO_DEFAULT = _Absent()
"""``Rule.default`` of a property without a schema default."""


@dataclass(frozen=True)
class Rule:
    """How the provider reads one input property back on refresh, with the source that says so."""

    kind: str
    """One of :data:`KINDS`."""
    source: str
    """Provider repository, tag, file and line range."""
    note: str
    """What the code does, in a sentence."""
    normalise: Callable[[Any], Any] | None = None
    """``normalised``: the form the provider reads a declared value back in."""
    default: Any = NO_DEFAULT
    """Schema default the provider fills in when the program leaves the property out."""
    fields: Mapping[str, Rule] | None = None
    """Rules of the fields of an object, or of each object of a list."""
    same: Callable[[Any, Any], bool] | None = None
    """``order-insensitive``: ``same(stored, declared)`` compares as the provider does."""
    order: Callable[[list[Any]], list[Any]] | None = None
    """``order-insensitive``: the order a refresh stores the items in."""

    def __post_init__(self) -> None:
        """Refuse a rule that is not complete for its kind."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown read-back kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if not self.source or not self.note:
            raise ValueError("every read-back rule needs its provider source and a note")
        if self.kind == NORMALISED and self.normalise is None:
            raise ValueError("a normalised rule needs the normalising function")
        if self.kind == UNORDERED and self.same is None:
            raise ValueError("an order-insensitive rule needs the provider's comparison (same)")
        if self.fields and self.kind in (NOT_READ, KEPT):
            raise ValueError("a property that is not read back keeps all its fields: give it no field rules")
        for name, sub in (self.fields or {}).items():
            if sub.kind in (NOT_READ, KEPT):
                raise ValueError(f"field {name} of a read-back object is read back with it")

    def read(self, value: Any) -> Any:
        """The value a refresh stores when Docker reports ``value`` for this property."""
        if isinstance(value, Secret):
            return Secret(self.read(value.value))
        if self.fields is not None:
            value = _each_object(value, lambda obj: _read_fields(self.fields, obj))
        if self.normalise is not None and value is not ABSENT:
            value = self.normalise(value)
        if self.order is not None and isinstance(value, list):
            value = self.order(value)
        return value


def _each_object(value: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Apply ``fn`` to an object, or to every object of a list."""
    if isinstance(value, Secret):
        return Secret(_each_object(value.value, fn))
    if isinstance(value, dict):
        return fn(value)
    if isinstance(value, list):
        return [_each_object(item, fn) for item in value]
    return value


def _read_fields(fields: Mapping[str, Rule], obj: dict[str, Any]) -> dict[str, Any]:
    return {key: fields[key].read(value) for key, value in obj.items()}


def _plain(value: Any) -> Any:
    """``value`` without secrets, integral floats as ints (the engine sends numbers as floats)."""
    value = unwrap(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    """A comparable text of ``value``; unset, ``None`` and empty lists or maps are the same (no diff)."""
    plain = _plain(value) if value is not ABSENT else None
    if plain in ([], {}):
        plain = None
    return json.dumps(plain, sort_keys=True, default=str)


def same_set(stored: Any, declared: Any) -> bool:
    """Terraform set semantics: the same elements in any order (a duplicate counts once)."""
    return {_canonical(x) for x in _items(stored)} == {_canonical(x) for x in _items(declared)}


def set_order(items: list[Any]) -> list[Any]:
    """The order a refresh stores a set in: the provider's hash order, modelled as sorted by value."""
    return sorted(items, key=_canonical)


def _items(value: Any) -> list[Any]:
    value = unwrap(value)
    return [] if value is ABSENT or value is None else list(value)


def same_ports(stored: Any, declared: Any) -> bool:
    """The provider's comparison of ``ports`` (a diff suppression, not a set): order does not matter.

    Equal when both lists are as long and every stored port finds a declared port with the same
    internal port, and for that port the same protocol, external port and ip. A declared port with the
    same internal port but another protocol is passed over only when some declared port has that
    internal port with the stored protocol (a port published for both tcp and udp).
    """
    old, new = _plain(_items(stored)), _plain(_items(declared))
    if len(old) != len(new):
        return False
    for port in old:
        same_internal = [p for p in new if p.get("internal") == port.get("internal")]
        for candidate in same_internal:
            if candidate.get("protocol") != port.get("protocol"):
                if any(p.get("protocol") == port.get("protocol") for p in same_internal):
                    continue
                return False
            if candidate.get("external") != port.get("external") or candidate.get("ip") != port.get("ip"):
                return False
            break
        else:
            return False
    return True


def port_order(ports: list[Any]) -> list[Any]:
    """The order a refresh stores ports in: sorted by internal port number."""
    return sorted(ports, key=lambda p: _plain(p).get("internal", 0))


# --- the rules --------------------------------------------------------------------------------------

_HEALTHCHECK_READ = _docker(CONTAINER_READ, "960-971")


def _duration(name: str, schema_lines: str) -> Rule:
    return Rule(
        NORMALISED,
        f"{_HEALTHCHECK_READ}; default {_docker(CONTAINER_SCHEMA, schema_lines)}",
        f"healthcheck.{name}: parsed with time.ParseDuration on create (funcs.go:147-157) and read back "
        "with time.Duration.String(), so 150s comes back as 2m30s; schema default 0s",
        normalise=go_duration,
        default="0s",
    )


_LABELS_NOT_READ = Rule(
    NOT_READ,
    _docker(CONTAINER_READ, "893-898"),
    "the read deliberately sets neither labels nor env (the image adds its own); the stored set stays",
    same=same_set,
)

CONTAINER_RULES: dict[str, Rule] = {
    "name": Rule(EXACT, _docker(CONTAINER_READ, "828"), "read from inspect, the leading / trimmed"),
    "image": Rule(
        EXACT,
        _docker(CONTAINER_READ, "837-845"),
        "a declared sha256: id is read back as the container's image id, anything else as Config.Image; "
        "the program passes RemoteImage.image_id, the sha256: id",
    ),
    "hostname": Rule(EXACT, _docker(CONTAINER_READ, "847"), "read from Config.Hostname"),
    "command": Rule(EXACT, _docker(CONTAINER_READ, "849"), "read from Config.Cmd, in order"),
    "entrypoints": Rule(EXACT, _docker(CONTAINER_READ, "850"), "read from Config.Entrypoint, in order"),
    "restart": Rule(
        EXACT,
        f"{_docker(CONTAINER_READ, '857')}; default {_docker(CONTAINER_SCHEMA, '230-236')}",
        "read from HostConfig.RestartPolicy.Name; schema default no",
        default="no",
    ),
    "capabilities": Rule(
        EXACT,
        f"{_docker(CONTAINER_READ, '870-878')}; schema {_docker(CONTAINER_SCHEMA, '262-290')}",
        "read from HostConfig.CapAdd/CapDrop when either is non-empty; add and drop are string sets",
        fields={
            "adds": Rule(
                UNORDERED,
                f"{_docker(CONTAINER_READ, '874')}; schema {_docker(CONTAINER_SCHEMA, '271-278')}",
                "capabilities.add: a set of strings, Docker keeps the names as given",
                same=same_set,
                order=set_order,
            ),
            "drops": Rule(
                UNORDERED,
                f"{_docker(CONTAINER_READ, '875')}; schema {_docker(CONTAINER_SCHEMA, '280-287')}",
                "capabilities.drop: a set of strings",
                same=same_set,
                order=set_order,
            ),
        },
    ),
    "envs": _LABELS_NOT_READ,
    "labels": _LABELS_NOT_READ,
    "volumes": Rule(
        NOT_READ,
        f"{_docker(CONTAINER_READ, '881-883')}; schema {_docker(CONTAINER_SCHEMA, '434-481')}",
        "the read sets mounts (HostConfig.Mounts, which volumes never fill) but not volumes; "
        "the stored set stays",
        same=same_set,
    ),
    "uploads": Rule(
        NOT_READ,
        f"{_docker(CONTAINER_READ, '959')}; schema {_docker(CONTAINER_SCHEMA, '987-1043')}",
        "uploads are copied in once at create and never read back; the stored set stays",
        same=same_set,
    ),
    "networksAdvanced": Rule(
        KEPT,
        f"{_docker(CONTAINER_READ, '786-796')}; schema {_docker(CONTAINER_SCHEMA, '909-972')}",
        "read from Docker only when the stored set is empty (an import); the configured set stays, so "
        "the alias Docker adds itself causes no drift",
        same=same_set,
    ),
    "networkMode": Rule(
        EXACT,
        f"{_docker(CONTAINER_READ, '954')}; default {_docker(CONTAINER_SCHEMA, '901-907')}",
        "read from HostConfig.NetworkMode; schema default bridge, which a container on networks_advanced "
        "keeps (it is created on bridge, then moved, funcs.go:392-398 and 463-469)",
        default="bridge",
    ),
    "healthcheck": Rule(
        EXACT,
        f"{_HEALTHCHECK_READ}; schema {_docker(CONTAINER_SCHEMA, '1045-1096')}",
        "read from Config.Healthcheck whenever the container has one, every field at once",
        fields={
            "tests": Rule(EXACT, _HEALTHCHECK_READ, "healthcheck.test: read from Healthcheck.Test, in order"),
            "interval": _duration("interval", "1059-1065"),
            "timeout": _duration("timeout", "1066-1072"),
            "startPeriod": _duration("start_period", "1073-1079"),
            "startInterval": _duration("start_interval", "1080-1086"),
            "retries": Rule(
                EXACT,
                f"{_HEALTHCHECK_READ}; default {_docker(CONTAINER_SCHEMA, '1087-1093')}",
                "healthcheck.retries: read from Healthcheck.Retries; schema default 0",
                default=0,
            ),
        },
    ),
    "sysctls": Rule(EXACT, _docker(CONTAINER_READ, "972"), "read from HostConfig.Sysctls, a map"),
    "stopTimeout": Rule(EXACT, _docker(CONTAINER_READ, "978"), "read from Config.StopTimeout"),
    "ports": Rule(
        UNORDERED,
        f"{_docker(CONTAINER_READ, '797-806')}; {_docker('resource_docker_container_structures.go', '17-59')}; "
        f"compared by {_docker(CONTAINER_SCHEMA, '534, 1192-1260')}",
        "re-read while the container runs or must_run is set, sorted by internal port; the diff is "
        "suppressed when every port is found again by internal port and protocol with the same external "
        "port and ip, in any order",
        fields={
            "internal": Rule(
                EXACT, _docker("resource_docker_container_structures.go", "48-51"), "from the key"
            ),
            "external": Rule(EXACT, _docker("resource_docker_container_structures.go", "50-52"), "HostPort"),
            "ip": Rule(
                EXACT,
                f"{_docker('resource_docker_container_structures.go', '53')}; "
                f"default {_docker(CONTAINER_SCHEMA, '509-523')}",
                "ports.ip: HostIP as Docker reports it; schema default 0.0.0.0 (never empty)",
                default="0.0.0.0",
            ),
            "protocol": Rule(
                EXACT,
                f"{_docker('resource_docker_container_structures.go', '54')}; "
                f"default {_docker(CONTAINER_SCHEMA, '525-531')}",
                "ports.protocol: from the port key (25/tcp); schema default tcp",
                default="tcp",
            ),
        },
        same=same_ports,
        order=port_order,
    ),
    "mustRun": Rule(
        KEPT,
        _docker(CONTAINER_READ, "812-824"),
        "stays as configured while the container runs; only a stopped container with must_run true "
        "reads back false, on purpose, so that the next up starts it again",
    ),
    "wait": Rule(NOT_READ, _docker(CONTAINER_READ, "750-981"), "create-time option, never set by the read"),
    "waitTimeout": Rule(
        NOT_READ, _docker(CONTAINER_READ, "750-981"), "create-time option, never set by the read"
    ),
    "attach": Rule(NOT_READ, _docker(CONTAINER_READ, "832"), "create-time option, never set by the read"),
    "logs": Rule(NOT_READ, _docker(CONTAINER_READ, "833"), "create-time option, never set by the read"),
    "destroyGraceSeconds": Rule(
        NOT_READ, _docker(CONTAINER_READ, "931"), "delete-time option, never set by the read"
    ),
}
"""``docker:index/container:Container`` (Terraform ``docker_container``)."""

_LABEL_SET = "labels: read back as a set from the labels map (helpers.go:46-55), compared as a set"

VOLUME_RULES: dict[str, Rule] = {
    "name": Rule(EXACT, _docker("resource_docker_volume.go", "308"), "read from volume inspect"),
    "labels": Rule(
        UNORDERED, _docker("resource_docker_volume.go", "309"), _LABEL_SET, same=same_set, order=set_order
    ),
}
"""``docker:index/volume:Volume`` (Terraform ``docker_volume``)."""

_NETWORK_READ = "resource_docker_network_funcs.go"
NETWORK_RULES: dict[str, Rule] = {
    "name": Rule(EXACT, _docker(_NETWORK_READ, "175"), "read from network inspect"),
    "labels": Rule(UNORDERED, _docker(_NETWORK_READ, "176"), _LABEL_SET, same=same_set, order=set_order),
    "driver": Rule(EXACT, _docker(_NETWORK_READ, "177"), "read from network inspect"),
    "ipamConfigs": Rule(
        UNORDERED,
        f"{_docker(_NETWORK_READ, '196-198')}; {_docker('resource_docker_network_structures.go', '11-39')}",
        "read back as a set; each entry holds subnet, ip_range and gateway exactly as Docker stores them "
        "(only the non-empty ones)",
        fields={
            "subnet": Rule(EXACT, _docker("resource_docker_network_structures.go", "16-18"), "IPAM subnet"),
            "ipRange": Rule(
                EXACT, _docker("resource_docker_network_structures.go", "19-21"), "IPAM ip range"
            ),
            "gateway": Rule(EXACT, _docker("resource_docker_network_structures.go", "22-24"), "IPAM gateway"),
        },
        same=same_set,
        order=set_order,
    ),
    "options": Rule(
        EXACT,
        _docker(_NETWORK_READ, "185-193"),
        "read from network inspect (a bridge network's options as Docker stores them: the egress "
        "network's com.docker.network.host_ipv4)",
    ),
}
"""``docker:index/network:Network`` (Terraform ``docker_network``)."""

REMOTE_IMAGE_RULES: dict[str, Rule] = {
    "name": Rule(
        NOT_READ,
        _docker("resource_docker_image_funcs.go", "103-132"),
        "the read looks the image up by the stored name and sets only the id, image_id and repo_digest",
    ),
    "keepLocally": Rule(
        NOT_READ, _docker("resource_docker_image_funcs.go", "103-132"), "delete-time option, never read"
    ),
}
"""``docker:index/remoteImage:RemoteImage`` (Terraform ``docker_image``)."""

RANDOM_BYTES_RULES: dict[str, Rule] = {
    "length": Rule(
        NOT_READ,
        _random("resource_bytes.go", "82-83"),
        "the resource's Read is empty: state stays as created",
    ),
}
"""``random:index/randomBytes:RandomBytes`` (Terraform ``random_bytes``)."""

_PASSWORD_READ = _random("resource_password.go", "93-94")
RANDOM_PASSWORD_RULES: dict[str, Rule] = {
    "length": Rule(NOT_READ, _PASSWORD_READ, "the resource's Read is empty: state stays as created"),
    "special": Rule(
        NOT_READ,
        f"{_PASSWORD_READ}; default {_random('resource_password.go', '598-606')}",
        "the resource's Read is empty: state stays as created; schema default true",
        default=True,
    ),
}
"""``random:index/randomPassword:RandomPassword`` (Terraform ``random_password``)."""

_KEY_SOURCE = f"{TLS_PROVIDER} internal/provider/resource_private_key.go"
PRIVATE_KEY_RULES: dict[str, Rule] = {
    "algorithm": Rule(
        NOT_READ, f"{_KEY_SOURCE}:265-268", "the resource's Read is a no-op: state stays as created"
    ),
    "rsaBits": Rule(
        NOT_READ,
        f"{_KEY_SOURCE}:265-268; default {_KEY_SOURCE}:70-78",
        "the resource's Read is a no-op; schema default 2048 (mailstack ignores later changes to it)",
        default=2048,
    ),
}
"""``tls:index/privateKey:PrivateKey`` (Terraform ``tls_private_key``): the DKIM keys."""

STASH_RULES: dict[str, Rule] = {
    "input": Rule(
        NOT_READ,
        f"{PULUMI_ENGINE} pkg/resource/deploy/builtins.go:310-322",
        "the builtin provider's Read returns the stored inputs and outputs unchanged",
    ),
}
"""``pulumi:index:Stash``, the engine's builtin: its input is stored as given."""

RULES: dict[str, dict[str, Rule]] = {
    "docker:index/container:Container": CONTAINER_RULES,
    "docker:index/volume:Volume": VOLUME_RULES,
    "docker:index/network:Network": NETWORK_RULES,
    "docker:index/remoteImage:RemoteImage": REMOTE_IMAGE_RULES,
    "random:index/randomBytes:RandomBytes": RANDOM_BYTES_RULES,
    "random:index/randomPassword:RandomPassword": RANDOM_PASSWORD_RULES,
    "pulumi:index:Stash": STASH_RULES,
    "tls:index/privateKey:PrivateKey": PRIVATE_KEY_RULES,
}
"""Read-back rules by resource type, then by input property (Pulumi names)."""


# --- applying them -----------------------------------------------------------------------------------


class MissingRule(KeyError):
    """A registration sets a property (or is of a type) that no read-back rule covers."""

    def __init__(self, reg: Registration, paths: list[str]) -> None:
        """Name the registration and every uncovered property."""
        super().__init__(reg.name)
        self.reg = reg
        self.paths = paths

    def __str__(self) -> str:
        """One line naming the resource and every property without a rule."""
        return (
            f"{self.reg.type} {self.reg.name}: no read-back rule for {', '.join(self.paths)}; add each to "
            "tools/readback.py RULES with the provider source that says how a refresh reads it back"
        )


def missing_rules(reg: Registration) -> list[str]:
    """Every property ``reg`` sets that no rule covers (``*`` when its resource type has no rules)."""
    rules = RULES.get(reg.type)
    if rules is None:
        return ["* (no read-back rules for this resource type)"]
    return _uncovered(rules, unwrap(reg.inputs), "")


def _uncovered(fields: Mapping[str, Rule], obj: dict[str, Any], prefix: str) -> list[str]:
    found = []
    for key in sorted(obj):
        rule = fields.get(key)
        if rule is None:
            found.append(prefix + key)
        elif rule.fields is not None:
            values = obj[key] if isinstance(obj[key], list) else [obj[key]]
            suffix = "[]" if isinstance(obj[key], list) else ""
            for value in values:
                if isinstance(value, dict):
                    found += _uncovered(rule.fields, value, f"{prefix}{key}{suffix}.")
    return sorted(set(found))


def _rules(reg: Registration) -> dict[str, Rule]:
    missing = missing_rules(reg)
    if missing:
        raise MissingRule(reg, missing)
    return RULES[reg.type]


def with_defaults(reg: Registration) -> dict[str, Any]:
    """The inputs of ``reg`` as the provider's check step passes them on: schema defaults filled in."""
    return _fill(_rules(reg), reg.inputs)


def _fill(fields: Mapping[str, Rule], obj: dict[str, Any]) -> dict[str, Any]:
    result = dict(obj)
    for key, rule in fields.items():
        if key not in result and rule.default is not NO_DEFAULT:
            result[key] = rule.default
        elif key in result and rule.fields is not None:
            result[key] = _each_object(result[key], lambda o, f=rule.fields: _fill(f, o))
    return result


def refresh(reg: Registration, observed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input properties a ``pulumi refresh`` stores for ``reg``.

    ``observed`` is what Docker reports for some properties (in the program's shape, before the
    provider's normalising); every other property reports what was created. A property that is not
    read back keeps its created value whatever Docker reports.
    """
    rules = _rules(reg)
    created = _fill(rules, reg.inputs)
    engine = {**created, **(observed or {})}
    stored: dict[str, Any] = {}
    for key, value in created.items():
        rule = rules[key]
        stored[key] = value if rule.kind in (NOT_READ, KEPT) else rule.read(engine[key])
    return stored


@dataclass(frozen=True)
class Drift:
    """One property a preview after refresh would show as changed."""

    resource: str
    """Logical name of the resource."""
    path: str
    """The property (``healthcheck.startPeriod``)."""
    declared: Any
    """What the program declares (schema defaults filled in)."""
    stored: Any
    """What the refresh stored."""

    def __str__(self) -> str:
        """``<resource>: <path>: declared <value>, refresh stores <value>`` (secrets masked)."""
        return f"{self.resource}: {self.path}: declared {_show(self.declared)}, refresh stores {_show(self.stored)}"


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(unset)"
    if contains_secret(value):
        return "[secret]"
    return json.dumps(_plain(value), sort_keys=True)


def preview_diff(reg: Registration, stored: Mapping[str, Any] | None = None) -> list[Drift]:
    """What a preview shows for ``reg`` after a refresh stored ``stored`` (default: :func:`refresh`)."""
    rules = _rules(reg)
    declared = _fill(rules, reg.inputs)
    state = refresh(reg) if stored is None else dict(stored)
    drifts: list[Drift] = []
    for key in sorted(set(declared) | set(state)):
        rule = rules.get(key, _UNKNOWN_STORED)
        _compare(reg.name, rule, key, declared.get(key, ABSENT), state.get(key, ABSENT), drifts)
    return drifts


_UNKNOWN_STORED = Rule(EXACT, "-", "a stored property the program does not declare: compared as is")


def _compare(resource: str, rule: Rule, path: str, declared: Any, stored: Any, out: list[Drift]) -> None:
    if rule.same is not None:
        # A diff suppression is only consulted for a value that differs: equal lists (same order) show no
        # change at all (hashicorp/terraform-plugin-sdk v2 helper/schema/schema.go, schemaMap.diff calls
        # DiffSuppressFunc only for attributes whose old and new values differ).
        if _plain(unwrap(stored)) != _plain(unwrap(declared)) and not rule.same(stored, declared):
            out.append(Drift(resource, path, declared, stored))
        return
    plain_declared, plain_stored = unwrap(declared), unwrap(stored)
    if rule.fields is not None and isinstance(plain_declared, dict) and isinstance(plain_stored, dict):
        for key in sorted(set(plain_declared) | set(plain_stored)):
            sub = rule.fields.get(key, _UNKNOWN_STORED)
            _compare(
                resource,
                sub,
                f"{path}.{key}",
                _field(declared, key),
                _field(stored, key),
                out,
            )
        return
    if _canonical(declared) != _canonical(stored):
        out.append(Drift(resource, path, declared, stored))


def _field(obj: Any, key: str) -> Any:
    """Field ``key`` of an object, keeping the secret marker of the object."""
    if isinstance(obj, Secret):
        inner = _field(obj.value, key)
        return inner if inner is ABSENT else Secret(inner)
    return obj.get(key, ABSENT) if isinstance(obj, dict) else ABSENT


def program_drift(program: Program) -> list[Drift]:
    """Every property of every custom resource of ``program`` that a preview after refresh would change."""
    return [d for reg in program.resources if reg.custom for d in preview_diff(reg)]


def program_missing(program: Program) -> list[str]:
    """``<type> <name>: <property>`` for every property of ``program`` that no rule covers."""
    return [
        f"{reg.type} {reg.name}: {path}"
        for reg in program.resources
        if reg.custom
        for path in missing_rules(reg)
    ]


# --- documentation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One rule as the documentation lists it."""

    type: str
    path: str
    rule: Rule = field(repr=False)


def rows() -> list[Row]:
    """Every rule, by resource type and property, nested fields after their object."""
    found = []

    def walk(typ: str, fields: Mapping[str, Rule], prefix: str) -> None:
        for name, rule in fields.items():
            found.append(Row(typ, prefix + name, rule))
            if rule.fields:
                walk(typ, rule.fields, f"{prefix}{name}.")

    for typ, fields in RULES.items():
        walk(typ, fields, "")
    return found


def markdown_table() -> str:
    """The rules as the Markdown table ``docs/upstream.md`` shows (``python -m tools.readback``).

    Sources are given without their repository: Docker resources are in :data:`DOCKER_PROVIDER`, the
    random ones in :data:`RANDOM_PROVIDER`, ``Stash`` in :data:`PULUMI_ENGINE`.
    """
    lines = ["| resource | property | read back | default | source |", "|---|---|---|---|---|"]
    for row in rows():
        short = row.type.split(":")[-1]
        default = "" if row.rule.default is NO_DEFAULT else f"`{json.dumps(row.rule.default)}`"
        source = row.rule.source
        for prefix in (f"{DOCKER_PROVIDER} internal/provider/", f"{RANDOM_PROVIDER} internal/provider/"):
            source = source.replace(prefix, "")
        source = source.replace(f"{PULUMI_ENGINE} ", "")
        lines.append(f"| {short} | `{row.path}` | {row.rule.kind}: {row.rule.note} | {default} | {source} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
