"""Fixed addresses on the stack network: stable for every container that has one, and the pool fills up.

A container whose address others name (a mail server, listed in its peers' ``mynetworks`` table)
gets a fixed address from the static pool of the stack network (the part Docker never assigns
dynamically). Moving it would replace the container, so allocation is a deterministic function
of the configuration and the stack's memory (``config.memory``):

1. a pinned address (``address:`` in the configuration) is used as given;
2. otherwise the address remembered from the last completed update is kept;
3. otherwise the container takes its hash slot (a hash of its name into the pool, the rule
   mailstack used before it had a memory), or, when that is taken, the next free address
   after it (wrapping around); new containers are placed in configuration order, so a domain added
   at the end never takes the place of one that was there before.

Without a memory this is exactly the plain hash for every container whose slot is free, so a
stack deployed before the memory existed moves nothing. With it, no container ever moves
while it stays in the configuration, and any number of containers up to the pool's size fits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address


@dataclass(frozen=True)
class Request:
    """One container that needs a fixed address."""

    key: str
    """Its key in the memory (``server:example1.local``)."""
    name: str
    """What its hash slot is computed from (the mail domain, for a server)."""
    where: str
    """The configuration item it comes from, for messages (``mailstack:domains[0] (example1.local)``)."""
    pinned: IPv4Address | None = None
    """The address the configuration pins, if any (already checked to lie in the pool)."""


def hash_slot(name: str, first: int, last: int) -> int:
    """The integer address ``name`` hashes to in the pool ``first``..``last`` (inclusive)."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return first + digest % (last - first + 1)


def allocate(
    requests: Iterable[Request], pool: tuple[int, int], remembered: Mapping[str, IPv4Address] | None
) -> tuple[dict[str, IPv4Address], list[tuple[str, str]]]:
    """Give every request an address; return ``(address by key, problems)``.

    ``remembered`` is the memory's addresses, or ``None`` when the stack has no (usable) memory: then
    each unpinned container is assumed to sit at its hash slot, as mailstack placed it before it had
    a memory, so that a pin never takes such an address either. ``requests`` come in configuration
    order, which decides who gets a contested slot first.

    A problem is ``(config item, message)``: two pins on one address, a pin on the address another
    container keeps (it would have to move), or more requests than the pool holds.
    """
    first, last = pool
    size = last - first + 1
    requests = list(requests)
    if remembered is None:
        remembered = {}
        for req in (r for r in requests if r.pinned is None):
            slot = IPv4Address(hash_slot(req.name, first, last))
            if slot not in remembered.values():
                remembered[req.key] = slot
    problems: list[tuple[str, str]] = []
    if len(requests) > size:
        problems.append(
            (
                "mailstack:network.subnet",
                f"{len(requests)} containers need a fixed address but the static pool "
                f"{IPv4Address(first)}-{IPv4Address(last)} holds only {size}: use a larger subnet",
            )
        )
        return {}, problems

    taken: dict[int, Request] = {}
    result: dict[str, IPv4Address] = {}
    for req in requests:
        if req.pinned is None:
            continue
        other = taken.get(int(req.pinned))
        if other is not None:
            problems.append(
                (
                    f"{req.where}.address",
                    f"fixed address {req.pinned} is also pinned by {other.where}: pin a free address on one of them",
                )
            )
            continue
        taken[int(req.pinned)] = req
        result[req.key] = req.pinned

    for req in (r for r in requests if r.pinned is None):
        address = remembered.get(req.key)
        if address is None or not first <= int(address) <= last:
            continue
        holder = taken.get(int(address))
        if holder is not None:
            if holder.pinned is not None:
                problems.append(
                    (
                        f"{holder.where}.address",
                        f"{address} is where {req.where} sits on the stack network (moving it would replace "
                        "that container): pin another, free address",
                    )
                )
            continue  # a tampered memory naming one address twice: the first in the configuration keeps it
        taken[int(address)] = req
        result[req.key] = address

    for req in (r for r in requests if r.key not in result and r.pinned is None):
        slot = hash_slot(req.name, first, last)
        for step in range(size):
            candidate = first + (slot - first + step) % size
            if candidate not in taken:
                taken[candidate] = req
                result[req.key] = IPv4Address(candidate)
                break
    return result, problems
