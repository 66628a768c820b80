"""The mailstack policy pack (Pulumi CrossGuard): its policies, name and default enforcement.

Every policy stops a mistake that breaks or endangers a mail system before ``pulumi up`` applies
it: moving image tags, unprotected mailboxes, open relays, broken routing between the servers,
colliding ports or subnets, plaintext logins on public addresses, webmail not behind the HTTPS edge,
secrets in plain environment variables, well-known passwords, containers nobody restarts, a WireGuard
server that prints its keys, and (in production) a mail server that does not DKIM-sign. The same policies
run again on ``pulumi up`` with the resolved values: resource
policies before each resource is created, stack policies once the update is done (``pulumi up``
runs a preview first, so a mandatory stack violation still stops it before anything is applied).

Layout:

- :mod:`.resources`: the typed view of the resources the policies read (a container's
  properties as a :class:`~.resources.Container`, unknown values during a preview, labels).
- :mod:`.mailfiles`: parsers of the generated docker-mailserver files (``postfix-main.cf``,
  tables, accounts, transport next hops, ``wg0.conf`` networks).
- one module per concern, each defining its policy (or two): :mod:`.images`,
  :mod:`.data_protection`, :mod:`.relay`, :mod:`.routing` (hostnames and routes),
  :mod:`.ports_and_subnets`, :mod:`.plaintext`, :mod:`.edge` (webmail behind the HTTPS edge),
  :mod:`.env_secrets`, :mod:`.credentials`, :mod:`.health`, :mod:`.wireguard`, :mod:`.signing`.
- :mod:`.production`: the ``production`` config property of the prod-only policies;
  :mod:`.shared_rules`: the rule set shared with ``config/`` (``config/rules.py``).

The package is importable without starting the policy server (``policy/__main__.py`` does that),
so the tests call the validators directly.
"""

from __future__ import annotations

from typing import Final

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from .credentials import no_weak_credentials
from .data_protection import mail_data_protected
from .edge import webmail_behind_edge
from .env_secrets import no_secrets_in_env
from .health import health_and_restart
from .images import images_pinned
from .plaintext import no_plaintext_exposure
from .ports_and_subnets import unique_ports_and_subnets
from .production import PRODUCTION_SCHEMA
from .relay import no_open_relay
from .routing import mail_routing, mailserver_hostnames
from .signing import dkim_signing
from .wireguard import wireguard_hardening

PACK_NAME = "mailstack"
"""Name of the policy pack (``pulumi preview --policy-pack policy`` reports it)."""

DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
"""Pack-wide level when no ``--policy-pack-config`` is given: strict, so forgetting the file never
weakens a production deployment. ``policy/config/dev.json`` lowers everything to advisory."""

POLICIES: Final[list[ResourceValidationPolicy | StackValidationPolicy]] = [
    images_pinned,
    mail_data_protected,
    no_open_relay,
    mailserver_hostnames,
    mail_routing,
    unique_ports_and_subnets,
    no_plaintext_exposure,
    webmail_behind_edge,
    no_secrets_in_env,
    no_weak_credentials,
    health_and_restart,
    wireguard_hardening,
    dkim_signing,
]
"""Every policy of the pack, in the order the pack reports them."""

PROD_ONLY: Final = frozenset(p.name for p in POLICIES if p.config_schema is PRODUCTION_SCHEMA)
"""Policies that check only in production (their config property ``production``)."""
