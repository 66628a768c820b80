"""The stack's memory: what the last completed update decided, read back so that nothing moves.

Some choices cannot be a pure function of the configuration alone without either moving things
or refusing configurations: a server's fixed address is one (a hash of the domain into the
static pool keeps every address stable, but two domains can collide, and filling a small pool
needs to know who was there first). The program therefore exports a versioned, secret stack
output (:data:`OUTPUT`) and reads it back at the start of the next run, through a reference to
its own stack, which answers with the outputs of the last *completed* update (a failed ``up``
leaves them as they were). Every decision is then a deterministic function of (memory,
configuration).

The second use is speed: the deployed hash of every account, with a keyed fingerprint, so that a
preview hashes only what changed (``config.hashing``).

The memory is an optimisation of stability and speed, never a source of truth for correctness: a
missing, unreadable, newer or tampered memory only costs what the plain rules give (see
``config.addresses``) and fresh hashes, and the next update writes a fresh one. It is secret
because the account hashes are; nothing in it is needed to rebuild the stack.

Plain data only (no Pulumi import): ``components/stackstate.py`` reads it, ``components/outputs.py``
exports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from config.hashing import FINGERPRINT_HEX, RememberedHash

OUTPUT = "memory"
"""Name of the stack output that carries the memory."""

SCHEMA = 1
"""Version of the memory's layout; a memory of another version is ignored (and rewritten)."""


@dataclass(frozen=True)
class Memory:
    """What the stack remembers from its last completed update."""

    found: bool = False
    """Whether a usable memory was read (``False``: none yet, or one this version cannot read)."""
    addresses: Mapping[str, IPv4Address] = field(default_factory=dict)
    """Fixed addresses on the stack network by key (``server:<domain>``)."""
    accounts: Mapping[str, RememberedHash] = field(default_factory=dict)
    """The deployed hash of each account and its keyed fingerprint (``config.hashing``), by address."""
    notes: tuple[str, ...] = ()
    """Why (part of) a memory that was found was not used; shown as warnings."""


def server_key(domain: str) -> str:
    """Memory key of a domain's mail server address."""
    return f"server:{domain}"


def parse(raw: Any) -> Memory:
    """Read a memory as exported by :func:`dump` (or its object); anything unusable is dropped, with a note.

    ``raw`` is the output's value (``None`` when the stack has none yet: a first deployment, or
    a stack deployed before mailstack had a memory).
    """
    if raw is None:
        return Memory()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return Memory(notes=("the stack's memory output is not JSON; ignored (it is rewritten on up)",))
    if not isinstance(raw, Mapping):
        return Memory(notes=("the stack's memory output is not an object; ignored (it is rewritten on up)",))
    schema = raw.get("schema")
    if schema != SCHEMA:
        return Memory(
            notes=(
                f"the stack's memory has layout version {schema!r}, this mailstack reads {SCHEMA}; "
                "ignored (it is rewritten on up)",
            )
        )
    notes: list[str] = []
    addresses: dict[str, IPv4Address] = {}
    entries = raw.get("addresses", {})
    if not isinstance(entries, Mapping):
        notes.append("the stack's memory has no usable addresses; ignored")
        entries = {}
    for key, value in entries.items():
        try:
            addresses[str(key)] = IPv4Address(str(value))
        except ValueError:
            notes.append(f"the stack's memory holds an invalid address for {key!r}; ignored")
    accounts: dict[str, RememberedHash] = {}
    hashes = raw.get("accounts", {})
    for address, entry in hashes.items() if isinstance(hashes, Mapping) else ():
        # [hash, fingerprint]; anything else is dropped here, a wrong pair later by its fingerprint
        if (
            isinstance(entry, list | tuple)
            and len(entry) == 2
            and all(isinstance(x, str) for x in entry)
            and len(entry[1]) == FINGERPRINT_HEX
        ):
            accounts[str(address)] = RememberedHash(hash=entry[0], fingerprint=entry[1])
    return Memory(found=True, addresses=addresses, accounts=accounts, notes=tuple(notes))


def render(
    addresses: Mapping[str, IPv4Address], accounts: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The memory output's value for this run's decisions (sorted keys: byte-identical when unchanged).

    ``accounts`` maps each address to its deployed ``(hash, fingerprint)``.
    """
    accounts = accounts or {}
    return {
        "schema": SCHEMA,
        "addresses": {k: str(addresses[k]) for k in sorted(addresses)},
        "accounts": {a: list(accounts[a]) for a in sorted(accounts)},
    }


def dump(value: Mapping[str, Any]) -> str:
    """The memory output's text: compact JSON with sorted keys (byte-identical when nothing changed).

    Text rather than an object, because the SDK turns every entry of an object output into an Output
    of its own on the way, and a memory of ten thousand accounts would cost seconds.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
