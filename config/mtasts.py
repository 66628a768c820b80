"""MTA-STS (RFC 8461): the policy file the edge serves and the ``_mta-sts`` TXT record that announces it.

The policy lists exactly the domain's MX host. Its TXT record's ``id`` is a digest of the policy's
text, so it changes exactly when the policy does (RFC 8461 §3.1: senders refetch the policy only when
the id changes). This module imports nothing from Pulumi.
"""

from __future__ import annotations

import hashlib

from config.edge import MAX_MTA_STS_MAX_AGE, MTA_STS_MODES, MtaSts

POLICY_PATH = "/.well-known/mta-sts.txt"
"""Where senders fetch the policy, on ``https://mta-sts.<domain>`` (RFC 8461 §3.3)."""
ID_LENGTH = 20
"""Characters of the hex digest used as the id (RFC 8461 §3.1 allows 1 to 32 letters and digits)."""


def render_policy(mx_host: str, settings: MtaSts) -> str:
    """The policy text: ``version``, ``mode``, one ``mx`` line and ``max_age``, each line ending in LF."""
    if settings.mode not in MTA_STS_MODES:
        raise ValueError(f"MTA-STS mode must be one of {', '.join(MTA_STS_MODES)}, got {settings.mode!r}")
    if not 0 < settings.max_age <= MAX_MTA_STS_MAX_AGE:
        raise ValueError(
            f"MTA-STS max_age must be between 1 and {MAX_MTA_STS_MAX_AGE}, got {settings.max_age}"
        )
    if not mx_host or any(c.isspace() for c in mx_host):
        raise ValueError(f"invalid MX host {mx_host!r}")
    lines = ["version: STSv1", f"mode: {settings.mode}", f"mx: {mx_host}", f"max_age: {settings.max_age}"]
    return "\n".join(lines) + "\n"


def policy_id(policy: str) -> str:
    """The ``id`` of the TXT record: a digest of the policy text (changes exactly when the policy does)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:ID_LENGTH]


def record_value(policy: str) -> str:
    """The ``_mta-sts.<domain>`` TXT value announcing ``policy``."""
    return f"v=STSv1; id={policy_id(policy)}"
