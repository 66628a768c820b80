"""Pure rules shared by the stack validation (``config.model``) and the policy pack (``policy/``).

Standard library only: the policy pack imports this module from its own virtualenv, so that the
config check at preview and the pack's check at deployment apply one rule, not two copies.
"""

from __future__ import annotations

import re
from typing import Final

WEAK_PASSWORDS: Final = frozenset(
    {
        "password",
        "password1",
        "password123",
        "password1234",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "changeme",
        "changeme123",
        "admin",
        "admin123",
        "secret",
        "letmein",
        "qwerty",
        "qwerty123",
        "welcome",
        "welcome123",
        "mailstack",
        "docker",
    }
)
"""Well-known default passwords: refused in production stacks, flagged by the policy pack."""

MOVING_TAGS: Final = frozenset(
    {
        "latest",
        "edge",
        "stable",
        "nightly",
        "main",
        "master",
        "dev",
        "develop",
        "rolling",
        "testing",
        "unstable",
    }
)


def image_problem(reference: str) -> str | None:
    """Why an image reference is not pinned to one build, or ``None`` when it is.

    Pinned: a digest (``@sha256:...``), an image id (``sha256:...``) or an exact version tag.
    Moving: no tag (Docker pulls ``latest``), ``latest``/``edge``/``stable``..., a wildcard
    version (``1.6.x-apache``) and a major or major.minor tag (``15``, ``1.6-apache``) that
    follows every release of its line.
    """
    ref = reference.strip()
    if not ref:
        return "is empty"
    if "@sha256:" in ref or re.fullmatch(r"sha256:[0-9a-f]{64}", ref):
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag, so Docker pulls whatever ':latest' is today"
    tag = last.rsplit(":", 1)[1]
    lowered = tag.lower()
    if lowered in MOVING_TAGS or lowered.startswith("latest-") or lowered.endswith("-latest"):
        return f"uses the moving tag '{tag}'"
    segments = lowered.split("-")
    version = segments[0].removeprefix("v")
    if any(part in ("x", "*") for part in version.split(".")):
        return f"uses the wildcard tag '{tag}', which follows every matching release"
    if re.fullmatch(r"\d+(\.\d+)?", version) and all(s.isalpha() for s in segments[1:]):
        return f"uses the tag '{tag}', which follows every release of its {segments[0]} line"
    return None
