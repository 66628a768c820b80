"""Account hashes: reused from the stack's memory when provably current, computed in parallel otherwise.

Hashing (SHA512-CRYPT, 5,000 rounds, ``config.passwords``) dominates a large stack's preview, yet the
hash of an unchanged account is the same on every run (its salt comes from the domain's seed). The
stack's memory (``config.memory``) therefore keeps each deployed hash with a *keyed fingerprint* of
everything it was made from: an HMAC, keyed with the domain's secret seed, of the address, the salt,
the password and the hash itself. A remembered hash is reused only when the fingerprint of the
current password and salt with that hash matches (never by address alone), so a changed password or
salt, or a memory edited by anyone without the seed, only costs a fresh hash. Nothing plaintext is
stored: the memory is a secret output, and the fingerprint reveals nothing without the seed.

Fresh hashes of a first deployment use every core: CPython's ``crypt`` holds the GIL, so threads do
not help and a process pool does. Its workers are started with ``spawn`` (forking a process whose
gRPC threads run is unsafe) and import only ``config.hashworker``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import multiprocessing
import os
import sys
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from config.hashworker import hash_chunk

FINGERPRINT_HEX = 32
"""Length of a stored fingerprint: 128 bits of HMAC-SHA256, in hex."""
PARALLEL_THRESHOLD = 400
"""Fresh hashes below which a process pool does not pay for its start (about 0.3 s for two workers)."""
_PREFIX = "{SHA512-CRYPT}$6$"


@dataclass(frozen=True)
class RememberedHash:
    """A hash from the stack's memory and the fingerprint it was stored with."""

    hash: str
    fingerprint: str


def fingerprint(seed: bytes, address: str, salt: str, password: str, hashed: str) -> str:
    """The keyed fingerprint binding an account's address, salt, password and hash (the seed is the key)."""
    message = "\0".join(("mailstack:hash-memory:v1", address.lower(), salt, password, hashed)).encode()
    return hmac.new(seed, message, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


def reuse(
    seed: bytes, address: str, salt: str, password: str, remembered: RememberedHash | None
) -> str | None:
    """The remembered hash when it provably belongs to this password and salt, else ``None``."""
    if remembered is None or not remembered.hash.startswith(f"{_PREFIX}{salt}$"):
        return None
    expected = fingerprint(seed, address, salt, password, remembered.hash)
    return remembered.hash if hmac.compare_digest(expected, remembered.fingerprint) else None


def worker_count() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def _no_main_module() -> Iterator[None]:
    """Hide the running program's ``__main__`` while workers start, so that ``spawn`` does not re-run it."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class Hasher:
    """Computes fresh account hashes, inline or in a process pool shared by every domain of the run.

    ``users`` is how many callers (domains) will call :meth:`hash_all` once each: when the last one is
    done the pool's workers are stopped, so that nothing outlives the hashing.
    """

    def __init__(self, parallel: bool, users: int = 1, workers: int | None = None) -> None:
        """``parallel``: use a process pool (worth it for many fresh hashes); ``workers``: its size."""
        self.parallel = parallel
        self.workers = workers or worker_count()
        self.computed = 0
        """How many hashes this hasher computed (the rest were reused)."""
        self._users = users
        self._pool: ProcessPoolExecutor | None = None

    async def hash_all(self, items: Sequence[tuple[str, str]]) -> list[str]:
        """The hash of each ``(password, salt)``, in order; each user calls this once."""
        try:
            items = list(items)
            self.computed += len(items)
            if not self.parallel or self.workers < 2 or len(items) < 2:
                return hash_chunk(items)
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            loop = asyncio.get_running_loop()
            size = -(-len(items) // self.workers)
            with _no_main_module():  # workers start on submit: never with the program as their main
                futures = [
                    loop.run_in_executor(self._pool, hash_chunk, items[i : i + size])
                    for i in range(0, len(items), size)
                ]
            return [h for chunk in await asyncio.gather(*futures) for h in chunk]
        finally:
            self._users -= 1
            if self._users <= 0:
                self.close()

    def close(self) -> None:
        """Stop the pool's workers (if any were started)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
