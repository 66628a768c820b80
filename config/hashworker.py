"""The worker of the account-hash process pool: hashes a chunk of accounts.

It is a module of its own so that a spawned worker process imports only this and ``config.passwords``,
never the Pulumi program.
"""

from __future__ import annotations

from config.passwords import hash_password


def hash_chunk(items: list[tuple[str, str]]) -> list[str]:
    """``hash_password(password, salt)`` of each ``(password, salt)``, in order."""
    return [hash_password(password, salt) for password, salt in items]
