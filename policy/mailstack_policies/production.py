"""The pack's production switch: the config property the prod-only policies read, and its schema.

``policy/config/prod.json`` sets ``production: true``, ``policy/config/dev.json`` ``false``;
without a config file a policy assumes production.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema

from .resources import as_bool

DEFAULT_PRODUCTION = True
"""What prod-only policies assume without configuration (``policy/config/dev.json`` says ``false``)."""


def is_production(config: Mapping[str, Any]) -> bool:
    """The policy's ``production`` property; :data:`DEFAULT_PRODUCTION` when unset or not a boolean."""
    value = config.get("production") if isinstance(config, Mapping) else None
    flag = as_bool(value)
    return DEFAULT_PRODUCTION if flag is None else flag


PRODUCTION_SCHEMA = PolicyConfigSchema(
    properties={
        "production": {
            "type": "boolean",
            "default": DEFAULT_PRODUCTION,
            "description": "True in a production stack (policy/config/prod.json); false in the lab (dev.json).",
        }
    }
)
"""Config schema of the prod-only policies."""
