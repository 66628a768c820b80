"""no-open-relay: no mail server trusts whole networks or lets unauthenticated clients relay."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .mailfiles import MAIN_CF, parse_main_cf, parse_table, split_list
from .resources import container_of

DMS_RESTRICTIONS: Final = {
    "smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
    "smtpd_recipient_restrictions": (
        "permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination, reject_unauth_pipelining, "
        "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, reject_unknown_recipient_domain"
    ),
    "smtpd_client_restrictions": (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, reject_unauth_pipelining"
    ),
}
"""docker-mailserver's ``main.cf`` restriction lists (target/postfix/main.cf); postfix-main.cf overrides them."""

_STOPS_RELAY: Final = frozenset({"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"})


def _permits_relay(restrictions: str) -> bool:
    """Whether a restriction list lets a stranger (no SASL, not in mynetworks) relay to any domain."""
    for token in split_list(restrictions):
        lowered = token.lower()
        if lowered in _STOPS_RELAY:
            return False
        if lowered == "permit":
            return True
    return True  # A list that ends without a decision permits.


def _wide_networks(entries: Iterable[str]) -> list[str]:
    wide = []
    for entry in entries:
        candidate = entry.strip().lstrip("!")
        if candidate.startswith("[") and "]" in candidate:
            candidate = candidate[1:].replace("]", "", 1)
        try:
            net = ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue
        if net.prefixlen < net.max_prefixlen and not net.is_loopback:
            wide.append(entry.strip())
    return wide


def validate_no_open_relay(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report a mail server that trusts whole networks or whose restrictions let anybody relay."""
    c = container_of(args)
    if c is None:
        return
    owner = f"'{c.display}'" + (f" ({c.domain})" if c.domain else "")
    permit = c.env.get("PERMIT_DOCKER")
    if permit is not None and permit.strip().lower() not in ("", "none"):
        report_violation(
            f"Mail server {owner} sets PERMIT_DOCKER={permit}, which puts whole Docker networks into "
            "mynetworks, so every container there (and VPN peers, and the host gateway) may relay mail "
            "without logging in: set PERMIT_DOCKER=none; mailstack trusts only the peer servers, one /32 "
            "each, in postfix-mynetworks.cidr.",
            None,
        )
    files = c.files()
    for name, upload in files.items():
        if name.endswith(".cidr") and upload.content is not None:
            wide = _wide_networks(parse_table(upload.content))
            if wide:
                report_violation(
                    f"Container {owner} uploads {name}, which trusts the networks {', '.join(wide)}: every "
                    "host in them may relay mail without logging in. List single hosts only (/32), i.e. the "
                    "peer mail servers.",
                    None,
                )
    main = files.get(MAIN_CF)
    if main is None or main.content is None:
        return
    settings = parse_main_cf(main.content)
    if "mynetworks" in settings:
        wide = _wide_networks(
            t for t in split_list(settings["mynetworks"]) if ":" not in t or t.startswith("[")
        )
        if wide:
            report_violation(
                f"Container {owner} sets mynetworks = {settings['mynetworks']} in {MAIN_CF}, which trusts the "
                f"networks {', '.join(wide)}: every host in them may relay mail without logging in. Trust "
                "single hosts only (/32): remove the setting and let mailstack generate the peer list.",
                None,
            )
    overrides = {k: settings[k] for k in DMS_RESTRICTIONS if k in settings}
    if overrides:
        effective = {**DMS_RESTRICTIONS, **overrides}
        if all(_permits_relay(v) for v in effective.values()):
            names = ", ".join(sorted(overrides))
            report_violation(
                f"Container {owner} overrides {names} in {MAIN_CF} so that no restriction list rejects mail "
                "to foreign domains from unauthenticated clients: the server is an open relay. Remove the "
                "override (mailstack:postfix) or end the list with reject_unauth_destination.",
                None,
            )


no_open_relay = ResourceValidationPolicy(
    name="no-open-relay",
    description="No mail server trusts a whole network (PERMIT_DOCKER, mynetworks) or lets strangers relay.",
    validate=validate_no_open_relay,
    severity=Severity.CRITICAL,
)
