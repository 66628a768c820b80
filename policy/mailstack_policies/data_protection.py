"""mail-data-protected: the volumes holding the mailboxes and the mail queue cannot be deleted by accident."""

from __future__ import annotations

from typing import Final

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from .resources import VOLUME, VOLUME_LABEL, as_text, get, parse_containers, parse_labels

MAIL_DATA_PATHS: Final = {"/var/mail": "the mailboxes", "/var/mail-state": "the mail queue and state"}
"""Container paths of docker-mailserver that hold data a deletion would lose.

Source: docker-mailserver v15.1.0, ``docs/content/config/advanced/optional-config.md``, "Volumes"
(https://docker-mailserver.github.io/docker-mailserver/v15.1/config/advanced/optional-config/):
mail is delivered under ``/var/mail``, and ``/var/mail-state`` holds the Postfix queue and the
services' run-time state (``docs/upstream.md``, "docker-mailserver 15.1.0", "Volumes").
"""
MAIL_DATA_VOLUME_ROLES: Final = {"mail": "/var/mail", "state": "/var/mail-state"}


def validate_mail_data_protected(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Report every volume holding ``/var/mail`` or ``/var/mail-state`` that is not ``protect``ed."""
    mounted: dict[str, str] = {}
    for c in parse_containers(args.resources):
        for volume, path in c.mounts:
            if volume and path and path.rstrip("/") in MAIL_DATA_PATHS:
                mounted.setdefault(volume, f"{path.rstrip('/')} of '{c.display}'")
    for r in args.resources:
        if r.resource_type != VOLUME:
            continue
        name = as_text(get(r.props, "name"))
        role = parse_labels(get(r.props, "labels")).get(VOLUME_LABEL)
        if name is not None and name in mounted:
            holds = mounted[name]
        elif role in MAIL_DATA_VOLUME_ROLES:
            holds = MAIL_DATA_VOLUME_ROLES[role]
        else:
            continue
        if r.opts is not None and r.opts.protect:
            continue
        path = holds.split(" ", 1)[0]
        report_violation(
            f"Volume '{name or r.name}' holds {MAIL_DATA_PATHS.get(path, 'mail data')} ({holds}) but is not "
            "protected, so a `pulumi destroy` or a replacement would delete it: set mailstack:protectData "
            f"to true (the volume gets protect=True), or run `pulumi state protect '{r.urn}'`.",
            r.urn,
        )


mail_data_protected = StackValidationPolicy(
    name="mail-data-protected",
    description="Every volume holding /var/mail or /var/mail-state is protected against deletion.",
    validate=validate_mail_data_protected,
    severity=Severity.CRITICAL,
)
