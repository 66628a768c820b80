"""dkim-signing: in production every mail server signs the mail of its own domain.

A stack policy over the mail servers and their configuration files (the server's own uploads and its config
writer's): the server runs Rspamd (``ENABLE_RSPAMD=1``), its writer installs an Rspamd
``dkim_signing.conf`` with a key and selector for the server's domain, and installs that key too.
Receivers such as Gmail and Outlook reject or junk unsigned mail.
"""

from __future__ import annotations

import re
from typing import Final

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from .production import PRODUCTION_SCHEMA, is_production
from .resources import parse_containers
from .routing import _servers

SIGNING_CONF: Final = "dkim_signing.conf"
"""Rspamd's signing configuration among a server's config files (``rspamd/override.d/``)."""
DMS_CONFIG_DIR: Final = "/tmp/docker-mailserver/"
_SIGNING_DOMAIN_RE: Final = re.compile(r"(?m)^\s*([A-Za-z0-9.-]+)\s*\{([^{}]*)\}")
_SIGNING_VALUE_RE: Final = re.compile(r'(?m)^\s*(path|selector)\s*=\s*"([^"]*)"\s*;')


def parse_signing_conf(text: str) -> tuple[bool, dict[str, dict[str, str]]]:
    """``(enabled, {domain: {path, selector}})`` of an Rspamd ``dkim_signing.conf``."""
    enabled = not re.search(r"(?m)^\s*enabled\s*=\s*false\s*;", text)
    body = text.split("domain", 1)[1] if re.search(r"(?m)^\s*domain\s*\{", text) else ""
    domains = {
        m.group(1).lower(): dict(_SIGNING_VALUE_RE.findall(m.group(2)))
        for m in _SIGNING_DOMAIN_RE.finditer(body)
    }
    return enabled, domains


def validate_dkim_signing(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """In production, report mail servers that do not DKIM-sign mail from their own domain."""
    if not is_production(args.get_config()):
        return
    containers = parse_containers(args.resources)
    for server in _servers(containers):
        c = server.container
        rspamd = c.env.get("ENABLE_RSPAMD")
        if rspamd is None and not c.env_complete:
            continue
        problems = []
        if rspamd != "1":
            problems.append("ENABLE_RSPAMD is not 1, so Rspamd (the signer) does not run")
        found = server.files.get(SIGNING_CONF)
        if found is None:
            problems.append(f"none of its config files is rspamd/override.d/{SIGNING_CONF}")
        elif found[0].unknown or found[0].content is None:
            if not problems:
                continue
        else:
            enabled, domains = parse_signing_conf(found[0].content)
            entry = domains.get(server.domain)
            if not enabled:
                problems.append(f"{SIGNING_CONF} switches signing off")
            elif entry is None or not entry.get("path") or not entry.get("selector"):
                problems.append(f"{SIGNING_CONF} names no key and selector for {server.domain}")
            else:
                relative = entry["path"].removeprefix(DMS_CONFIG_DIR)
                writer = found[1]
                if not any(u.path.endswith("/" + relative) for u in writer.uploads):
                    problems.append(
                        f"the key {entry['path']} it names is not among the files its config writer installs"
                    )
        if problems:
            report_violation(
                f"Mail server '{c.display}' does not DKIM-sign mail from {server.domain}: "
                + "; ".join(problems)
                + ". Receivers such as Gmail and Outlook reject or junk unsigned mail: keep mailstack:dkim "
                "on (it is on by default in production) and deploy with the generated signing files.",
                c.urn,
            )


dkim_signing = StackValidationPolicy(
    name="dkim-signing",
    description="In production every mail server DKIM-signs the mail of its own domain.",
    validate=validate_dkim_signing,
    config_schema=PRODUCTION_SCHEMA,
    severity=Severity.HIGH,
)
