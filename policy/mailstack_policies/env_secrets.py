"""no-secrets-in-env: no password, key or token sits in a container's plain environment."""

from __future__ import annotations

import itertools
import re
from typing import Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .resources import container_of

_SECRET_WORDS: Final = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "PRIVKEY",
        "PSK",
        "PRESHAREDKEY",
        "PRIVATEKEY",
        "DESKEY",
    }
)
_SECRET_PAIRS: Final = frozenset({("DES", "KEY"), ("PRIVATE", "KEY"), ("API", "KEY"), ("PRESHARED", "KEY")})
_REFERENCE_SUFFIXES: Final = frozenset({"FILE", "PATH", "DIR", "FILES"})
_SECRET_VALUE_RES: Final = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"(?im)^\s*PrivateKey\s*="), "a WireGuard private key"),
    (re.compile(r"\{[A-Z0-9-]+-CRYPT\}|\$(1|5|6|2[aby]|y)\$"), "a password hash"),
)


def secret_kind(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a secret in an environment, or ``None``."""
    if not value.strip():
        return None
    for pattern, what in _SECRET_VALUE_RES:
        if pattern.search(value):
            return what
    tokens = [t for t in re.split(r"[^A-Z0-9]+", name.upper()) if t]
    if not tokens or tokens[-1] in _REFERENCE_SUFFIXES or {"PUBLIC", "PUBKEY"} & set(tokens):
        return None
    if _SECRET_WORDS & set(tokens) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(tokens)):
        return "a password, key or token"
    return None


def validate_secrets_in_env(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a container environment variable that carries a password, DES key or private key."""
    c = container_of(args)
    if c is None:
        return
    for name, value in sorted(c.env.items()):
        kind = secret_kind(name, value)
        if kind:
            report_violation(
                f"Container '{c.display}' gets {name} in its plain environment, and its value looks like {kind}: "
                "the environment shows in `docker inspect`, in process listings and in the state. Deliver it "
                "as a file from a Pulumi secret instead (an upload such as /run/secrets/..., or the image's "
                f"{name}__FILE / _FILE variant).",
                None,
            )


no_secrets_in_env = ResourceValidationPolicy(
    name="no-secrets-in-env",
    description="No password, DES key or private key is passed in a container's plain environment.",
    validate=validate_secrets_in_env,
    severity=Severity.HIGH,
)
