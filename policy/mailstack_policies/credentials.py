"""no-weak-credentials: no mail account's hash verifies against a well-known password."""

from __future__ import annotations

import re
from typing import Final

from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .mailfiles import ACCOUNTS, parse_accounts
from .resources import container_of
from .shared_rules import WEAK_PASSWORDS

_HASHERS: Final = (
    ("$6$", sha512_crypt),
    ("$5$", sha256_crypt),
    ("$1$", md5_crypt),
)


def _candidates(address: str) -> list[str]:
    local = address.split("@", 1)[0]
    words = sorted(WEAK_PASSWORDS)
    return [*words, *(w.capitalize() for w in words if w.capitalize() != w), local, f"{local}123", address]


def weak_account(address: str, hashed: str) -> str | None:
    """Why the account's hash is weak (a well-known password, or stored unhashed), or ``None``.

    The reason never says which password matched: that would print the account's password.
    """
    scheme = ""
    match = re.match(r"^\{([A-Za-z0-9.-]+)\}", hashed)
    if match:
        scheme, hashed = match.group(1).upper(), hashed[match.end() :]
    if scheme in ("PLAIN", "CLEARTEXT", "CLEAR"):
        return "its password is stored unhashed"
    for prefix, hasher in _HASHERS:
        if hashed.startswith(prefix):
            for candidate in _candidates(address):
                try:
                    if hasher.verify(candidate, hashed):
                        return "its password is a well-known default or derived from the user name"
                except ValueError:
                    return None
            return None
    return None


def validate_weak_credentials(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report accounts in an uploaded ``postfix-accounts.cf`` whose hash verifies against a weak password."""
    c = container_of(args)
    if c is None:
        return
    upload = c.files().get(ACCOUNTS)
    if upload is None or upload.content is None:
        return
    for address, hashed in parse_accounts(upload.content):
        reason = weak_account(address, hashed)
        if reason:
            report_violation(
                f"Container '{c.display}' uploads {ACCOUNTS} where account {address}: {reason}. Set a strong "
                f"one with `pulumi config set --secret --path 'mailstack:passwords[\"{address}\"]'`, or remove "
                "that entry to get a generated password.",
                None,
            )


no_weak_credentials = ResourceValidationPolicy(
    name="no-weak-credentials",
    description="No mail account uses a well-known default password such as password123.",
    validate=validate_weak_credentials,
    severity=Severity.CRITICAL,
)
