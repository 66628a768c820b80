"""Blast radius of a configuration change, measured by running the real program under mocks.

``blast_radius(before, after)`` runs ``__main__.py`` under Pulumi mocks for two stack
configurations and compares every resource's inputs, as ``pulumi preview`` would: which
resources are created, deleted, updated in place or replaced. Whether a changed input forces
a replacement is decided by the provider, so the table of replace-on-change properties below
is the single place that knowledge lives (``tools/readback.py`` holds the other half: how a refresh
reads each input back).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.components.harness import (
    Program,
    Registration,
    StackMocks,
    dev_config,
    prod_config,
    run_program,
    unwrap,
)

# Which input properties a provider updates in place; every other input change replaces the resource.
# Docker: kreuzwerker/terraform-provider-docker v4.5.0 (what pulumi-docker 5.x bridges), every schema
# attribute without `ForceNew: true` that holds no `ForceNew` field either, under internal/provider/:
# resource_docker_container.go (rm 57-62, start 72-77, wait 79-84, wait_timeout 86-91, attach 93-98,
# logs 100-105, must_run 122-127, restart 230-236, max_retry_count 238-242, remove_volumes 256-261,
# tmpfs 482-486, device_read_bps/_iops and device_write_bps/_iops 693-772, destroy_grace_seconds
# 827-831, memory 842-847, memory_reservation 848-854, memory_swap 856-861, cpu_shares 872-877,
# cpu_set 879-884, healthcheck 1045-1096, container_read_refresh_timeout_milliseconds 1098-1103,
# init 1126-1131, cpu_period 1164-1169, cpu_quota 1170-1175); resource_docker_volume.go (only
# cluster.availability, 142-148, for swarm cluster volumes: not counted, every other cluster field is
# ForceNew); resource_docker_network.go (no update function: everything replaces);
# resource_docker_image.go (keep_locally 55-59, force_remove 70-74; `build` 76-83 is not ForceNew but
# its defaulted `dockerfile` is, 103-109, so any build change replaces).
# Random: hashicorp/terraform-provider-random v3.9.0 (pulumi-random 4.21), every input attribute has a
# requires-replace plan modifier (internal/provider/resource_bytes.go 141-160,
# resource_password.go 557-751). Stash: the engine's builtin provider diffs a changed `input` without a
# replace key and updates it in place (pulumi/pulumi v3.259.0 pkg/resource/deploy/builtins.go 184-194,
# 249-261). docs/upstream.md ("What a change replaces") explains it.
UPDATABLE_IN_PLACE: dict[str, frozenset[str]] = {
    "docker:index/container:Container": frozenset(
        {
            "rm",
            "start",
            "wait",
            "waitTimeout",
            "attach",
            "logs",
            "mustRun",
            "restart",
            "maxRetryCount",
            "removeVolumes",
            "tmpfs",
            "destroyGraceSeconds",
            "memory",
            "memoryReservation",
            "memorySwap",
            "cpuShares",
            "cpuSet",
            "cpuPeriod",
            "cpuQuota",
            "deviceReadBps",
            "deviceReadIops",
            "deviceWriteBps",
            "deviceWriteIops",
            "healthcheck",
            "init",
            "containerReadRefreshTimeoutMilliseconds",
        }
    ),
    "docker:index/volume:Volume": frozenset(),
    "docker:index/network:Network": frozenset(),
    "docker:index/remoteImage:RemoteImage": frozenset({"keepLocally", "forceRemove"}),
    "random:index/randomBytes:RandomBytes": frozenset(),
    "random:index/randomPassword:RandomPassword": frozenset(),
    # the engine's builtin: a changed input is an in-place update (builtins.go, cited above)
    "pulumi:index:Stash": frozenset({"input"}),
    # hashicorp/terraform-provider-tls (bridged by pulumi-tls) internal/provider/resource_private_key.go:
    # algorithm, rsa_bits and ecdsa_curve all force a new key. mailstack ignores rsaBits changes, so only
    # a new selector ever gets a new key.
    "tls:index/privateKey:PrivateKey": frozenset(),
}
COMPONENT_PREFIX = "mailstack:index:"


@dataclass(frozen=True)
class Change:
    """What would happen to one resource."""

    urn: str
    type: str
    name: str
    action: str
    """``create``, ``delete``, ``update`` or ``replace``."""
    properties: tuple[str, ...] = ()
    """The top-level inputs that changed."""
    role: str = ""
    """``mailstack.role`` label of a container, or ``volume``."""


@dataclass
class BlastRadius:
    """All changes between two runs, with the counts the README table shows."""

    changes: list[Change] = field(default_factory=list)

    def count(self, role: str, *actions: str) -> int:
        """Number of changes of resources with ``role`` whose action is one of ``actions``."""
        return sum(1 for c in self.changes if c.role == role and c.action in actions)

    def row(self) -> dict[str, int]:
        """The numbers of one table row."""
        return {
            "servers replaced": self.count("mailserver", "replace"),
            "servers created": self.count("mailserver", "create"),
            "servers deleted": self.count("mailserver", "delete"),
            "volumes created": self.count("volume", "create"),
            "volumes replaced or updated": self.count("volume", "replace", "update"),
            "volumes released (retained on host)": self.count("volume", "delete"),
            "config writers run": self.count("config-writer", "replace", "create")
            + self.count("edge-config-writer", "replace", "create"),
            "edge containers replaced": self.count("edge", "replace"),
            # a config writer's gate is updated with every successful write: counted with the writers
            "other changes": sum(
                1
                for c in self.changes
                if c.role
                not in ("mailserver", "volume", "config-writer", "edge-config-writer", "config-gate")
                and not (c.role == "edge" and c.action == "replace")
            ),
        }


def _role(reg: Registration) -> str:
    if reg.type == "docker:index/volume:Volume":
        return "volume"
    if reg.type == "pulumi:index:Stash" and reg.name.endswith("-config-gate"):
        return "config-gate"
    labels = {item["label"]: item["value"] for item in unwrap(reg.inputs.get("labels", []) or [])}
    return labels.get("mailstack.role", "")


def _changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    keys = set(before) | set(after)
    return tuple(sorted(k for k in keys if repr(before.get(k)) != repr(after.get(k))))


def diff(before: Program, after: Program) -> BlastRadius:
    """Compare two runs resource by resource (custom resources only; components hold no state)."""
    old = {r.urn: r for r in before.resources if not r.type.startswith(COMPONENT_PREFIX)}
    new = {r.urn: r for r in after.resources if not r.type.startswith(COMPONENT_PREFIX)}
    result = BlastRadius()
    for urn in sorted(old.keys() | new.keys()):
        a, b = old.get(urn), new.get(urn)
        if a is None:
            result.changes.append(Change(urn, b.type, b.name, "create", role=_role(b)))
            continue
        if b is None:
            result.changes.append(Change(urn, a.type, a.name, "delete", role=_role(a)))
            continue
        props = _changed(a.inputs, b.inputs)
        if not props:
            continue
        in_place = UPDATABLE_IN_PLACE.get(a.type)
        if in_place is None:
            raise KeyError(f"no replace-on-change knowledge for {a.type}: add it to UPDATABLE_IN_PLACE")
        action = "update" if set(props) <= in_place else "replace"
        result.changes.append(Change(urn, a.type, a.name, action, props, _role(b)))
    return result


def _add_user(c: dict) -> None:
    c["domains"][0]["users"].append({"name": "user9", "quota": "1G"})
    c["passwords"]["user9@example1.local"] = "password123"


def _change_password(c: dict) -> None:
    c["passwords"]["user1@example1.local"] = "another-password-456"


def _change_quota(c: dict) -> None:
    c["domains"][0]["users"][0]["quota"] = "3G"


def _add_alias(c: dict) -> None:
    c["domains"][0]["aliases"] = {"info": ["user1@example1.local"]}


def _add_domain(c: dict) -> None:
    c["domains"].append(
        {
            "domain": "example3.local",
            "server": "mta3",
            "ports": {"smtp": 4525, "submission": 4587, "imap": 4143},
            "users": [{"name": "user5", "quota": "1G"}],
        }
    )


def _remove_domain(c: dict) -> None:
    removed = c["domains"].pop()
    for user in removed["users"]:
        c["passwords"].pop(f"{user['name']}@{removed['domain']}", None)


def _change_main_cf(c: dict) -> None:
    c["postfix"] = {**c.get("postfix", {}), "queue_run_delay": "120s"}


def _bump_image(c: dict) -> None:
    c["images"] = {**c.get("images", {}), "mailserver": "docker.io/mailserver/docker-mailserver:15.1.1"}


def _dkim_on(c: dict) -> None:
    c["dkim"] = {"enabled": True, "selectors": ["mail"], "sign": "mail"}


def _add_selector(c: dict) -> None:
    c["dkim"] = {**c["dkim"], "selectors": [*c["dkim"]["selectors"], "mail2026"]}


def _switch_sign(c: dict) -> None:
    c["dkim"] = {**c["dkim"], "sign": "mail2026"}


def _dkim_rotation_base(c: dict) -> None:
    _dkim_on(c)
    _add_selector(c)


def _turn_backups_on(c: dict) -> None:
    c["backup"] = {"enabled": True, "repository": "/srv/restic/mailstack-dev"}
    c["backupSecrets"] = {"password": "lab-only-restic-password"}


EDGE_SPARE_ADDRESS = "203.0.113.12"
"""A public address the edge base lists ahead (``mailstack:edge.addresses``) for a domain added later."""


def edge_base() -> dict:
    """The production example (HTTPS edge, ``tls: acme``) with a spare public address listed ahead."""
    config = prod_config()
    config["edge"] = {**config["edge"], "addresses": [*config["edge"]["addresses"], EDGE_SPARE_ADDRESS]}
    return config


def _new_prod_domain(c: dict, address: str) -> None:
    c["domains"].append(
        {
            "domain": "example.com",
            "server": "mx3",
            "bindAddress": address,
            "ports": {"smtp": 25, "submission": 587, "imap": 143},
            "webmail": {},
            "users": [{"name": "carol", "quota": "1G"}],
        }
    )


def _add_edge_domain(c: dict) -> None:
    _new_prod_domain(c, EDGE_SPARE_ADDRESS)


def _add_edge_domain_new_address(c: dict) -> None:
    _new_prod_domain(c, "203.0.113.13")
    c["edge"] = {**c["edge"], "addresses": [*c["edge"]["addresses"], "203.0.113.13"]}


def _certificate_renewed(c: dict) -> None:
    """Nothing in the configuration: Caddy renewed certificates in its data volume (see ``AFTER_EXITS``)."""


def _renewed_certificates() -> dict[str, tuple[int, str]]:
    """What the run-once containers report when every output that could carry a certificate is a renewed one.

    Only the certificate waits' output names a certificate (its expiry and fingerprint); the program
    must feed it into nothing but the gate check, so a renewal replaces no server and no edge.
    """
    renewed = "mailstack: the certificate of {host} is there: notAfter=Mar  1 00:00:00 2027 GMT sha256 Fingerprint=RENEWED"
    return {
        f"{domain}-certificate-wait": (0, renewed.format(host=f"mail.{domain}"))
        for domain in ("example.org", "example.net")
    }


CHANGES: dict[str, Callable[[dict], None]] = {
    "add user": _add_user,
    "change password": _change_password,
    "change quota": _change_quota,
    "add alias": _add_alias,
    "add domain": _add_domain,
    "remove domain": _remove_domain,
    "change a main.cf setting": _change_main_cf,
    "bump the mail server image": _bump_image,
    "turn DKIM on": _dkim_on,
    "add a selector": _add_selector,
    "switch the signing selector": _switch_sign,
    "add a user with DKIM on": _add_user,
    "turn backups on": _turn_backups_on,
    "add a domain with the edge": _add_edge_domain,
    "add a domain on a new public address (edge)": _add_edge_domain_new_address,
    "certificate renewed": _certificate_renewed,
}
"""The kinds of change the README's blast-radius table measures, applied to the dev stack (or ``BASES``)."""

STARTS: dict[str, tuple[Callable[[], dict], str]] = {
    "add a domain with the edge": (edge_base, "prod"),
    "add a domain on a new public address (edge)": (edge_base, "prod"),
    "certificate renewed": (edge_base, "prod"),
}
"""The stack configuration and name a kind of change starts from, when it is not the dev stack."""

AFTER_EXITS: dict[str, Callable[[], dict[str, tuple[int, str]]]] = {
    "certificate renewed": _renewed_certificates
}
"""What the provider reports differently after a change that happens outside the configuration."""

BASES: dict[str, Callable[[dict], None]] = {
    "add a selector": _dkim_on,
    "switch the signing selector": _dkim_rotation_base,
    "add a user with DKIM on": _dkim_on,
}
"""Changes measured on the dev stack with DKIM already on (and, for the switch, two selectors)."""


def run(
    config: dict,
    memory: Any = None,
    *,
    stack: str = "dev",
    exits: dict[str, tuple[int, str]] | None = None,
) -> Program:
    """Run the program with ``config`` as ``pulumi up`` would see it (passwords and backup secrets secret).

    ``memory`` is the ``memory`` output of the update before, as the program reads it back; ``exits``
    what run-once containers report (``StackMocks``), by logical name.
    """
    outputs = {} if memory is None else {"memory": unwrap(memory)}
    return run_program(
        copy.deepcopy(config),
        stack,
        secret_keys=("mailstack:passwords", "mailstack:backupSecrets"),
        mocks=StackMocks(exits=exits, stack_outputs=outputs),
    )


def blast_radius(kind: str, base: dict | None = None) -> BlastRadius:
    """Measure one kind of change against ``base`` (default: its ``STARTS`` entry, else the dev stack)."""
    make_base, stack = STARTS.get(kind, (dev_config, "dev"))
    before_config = copy.deepcopy(base if base is not None else make_base())
    if kind in BASES:
        BASES[kind](before_config)
    after_config = copy.deepcopy(before_config)
    CHANGES[kind](after_config)
    before = run(before_config, stack=stack)
    exits = AFTER_EXITS[kind]() if kind in AFTER_EXITS else None
    return diff(before, run(after_config, memory=before.outputs["memory"], stack=stack, exits=exits))


def table(rows: dict[str, BlastRadius]) -> str:
    """Render the blast-radius table as Markdown."""
    columns = list(next(iter(rows.values())).row())
    lines = ["| change | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for kind, radius in rows.items():
        lines.append(f"| {kind} | " + " | ".join(str(v) for v in radius.row().values()) + " |")
    return "\n".join(lines)
