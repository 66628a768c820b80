"""config.hashing: remembered hashes are reused only when their keyed fingerprint proves them current."""

from __future__ import annotations

import asyncio

import pytest

from config import hashing
from config import memory as mem
from config import passwords as pw
from config.hashing import Hasher, RememberedHash, fingerprint, reuse


def run_async(coro):
    """Run ``coro`` on a loop of its own (``asyncio.run`` would unset the thread's loop the mocks use)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
ADDRESS = "user1@example1.local"
SALT = pw.derive_salt(SEED, ADDRESS)
PASSWORD = "correct horse battery"


def remembered_for(
    hashed: str, seed: bytes = SEED, password: str = PASSWORD, salt: str = SALT
) -> RememberedHash:
    return RememberedHash(hashed, fingerprint(seed, ADDRESS, salt, password, hashed))


def test_a_hit_reuses_the_remembered_hash_without_computing_it():
    # a well-formed stand-in that no hash function would produce: returned as is, so it was not recomputed
    stand_in = f"{{SHA512-CRYPT}}$6${SALT}$remembered-not-recomputed"
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, remembered_for(stand_in)) == stand_in


def test_a_changed_password_misses():
    real = pw.hash_password(PASSWORD, SALT)
    assert reuse(SEED, ADDRESS, SALT, "another password", remembered_for(real)) is None


def test_a_changed_salt_misses():
    real = pw.hash_password(PASSWORD, SALT)
    other_salt = pw.derive_salt(OTHER_SEED, ADDRESS)  # a new seed gives every account a new salt
    assert reuse(SEED, ADDRESS, other_salt, PASSWORD, remembered_for(real)) is None
    assert (
        reuse(OTHER_SEED, ADDRESS, other_salt, PASSWORD, remembered_for(real, OTHER_SEED, salt=other_salt))
        is None
    )


def test_a_tampered_entry_is_ignored():
    real = pw.hash_password(PASSWORD, SALT)
    forged = pw.hash_password("the attacker's password", SALT)
    good = remembered_for(real)
    # a swapped hash with the old fingerprint, a fingerprint made without the seed, a truncated one
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, RememberedHash(forged, good.fingerprint)) is None
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, remembered_for(forged, OTHER_SEED)) is None
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, RememberedHash(real, good.fingerprint[:-1] + "0")) in (
        None,
        real,
    )
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, RememberedHash(real, "0" * 32)) is None
    # and the entry of another account never fits this one
    assert reuse(SEED, "user2@example1.local", SALT, PASSWORD, good) is None


def test_no_memory_at_all_works():
    assert reuse(SEED, ADDRESS, SALT, PASSWORD, None) is None
    assert run_async(Hasher(parallel=False).hash_all([(PASSWORD, SALT)])) == [
        pw.hash_password(PASSWORD, SALT)
    ]


def test_the_fingerprint_binds_every_part():
    base = fingerprint(SEED, ADDRESS, SALT, PASSWORD, "h")
    assert len(base) == hashing.FINGERPRINT_HEX
    variants = [
        fingerprint(OTHER_SEED, ADDRESS, SALT, PASSWORD, "h"),
        fingerprint(SEED, "user2@example1.local", SALT, PASSWORD, "h"),
        fingerprint(SEED, ADDRESS, SALT[:-1] + "x", PASSWORD, "h"),
        fingerprint(SEED, ADDRESS, SALT, PASSWORD + "!", "h"),
        fingerprint(SEED, ADDRESS, SALT, PASSWORD, "h2"),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert PASSWORD not in base  # it is a digest, nothing plaintext


@pytest.mark.parametrize("parallel", [False, True])
def test_the_hasher_gives_the_same_hashes_inline_and_in_the_pool(parallel: bool):
    items = [(f"password-{i}", pw.derive_salt(SEED, f"u{i}@example.org")) for i in range(12)]
    hasher = Hasher(parallel=parallel, users=2, workers=2)
    first, second = run_async(_two_users(hasher, items))
    assert first + second == [pw.hash_password(p, s) for p, s in items]
    assert hasher.computed == 12
    assert hasher._pool is None  # stopped once both users were done


async def _two_users(hasher: Hasher, items: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return tuple(await asyncio.gather(hasher.hash_all(items[:5]), hasher.hash_all(items[5:])))  # type: ignore[return-value]


def test_memory_keeps_account_entries_and_drops_malformed_ones():
    entry = remembered_for(pw.hash_password(PASSWORD, SALT))
    value = mem.render({}, {ADDRESS: (entry.hash, entry.fingerprint)})
    raw = {
        **value,
        "accounts": {**value["accounts"], "x@y.z": ["only-one"], "q@y.z": "text", "r@y.z": ["a", "short"]},
    }
    parsed = mem.parse(raw)
    assert parsed.accounts == {ADDRESS: entry}
