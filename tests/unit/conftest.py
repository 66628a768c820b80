"""Shared fixtures for the unit tests of ``config/``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

DEV_RAW: dict[str, Any] = {
    "bindAddress": "127.0.0.1",
    "network": {"name": "mailstack-dev", "subnet": "172.28.0.0/16"},
    "postfix": {"queue_run_delay": "300s"},
    "domains": [
        {
            "domain": "example1.local",
            "server": "mta1",
            "ports": {"smtp": 2525, "submission": 2587, "imap": 2143},
            "users": [{"name": "user1", "quota": "1G"}, {"name": "user2", "quota": "2G"}],
        },
        {
            "domain": "example2.local",
            "server": "mta2",
            "ports": {"smtp": 3525, "submission": 3587, "imap": 3143},
            "users": [{"name": "user3", "quota": "1G"}, {"name": "user4", "quota": "2G"}],
        },
    ],
}


def make_domains(n: int, users: int = 2) -> list[dict[str, Any]]:
    """``n`` distinct domains with distinct ports."""
    return [
        {
            "domain": f"d{i}.example",
            "server": f"mx{i}",
            "ports": {"smtp": 20000 + 10 * i, "submission": 20001 + 10 * i, "imap": 20002 + 10 * i},
            "users": [{"name": f"user{j}", "quota": "1G"} for j in range(1, users + 1)],
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def dev_raw() -> dict[str, Any]:
    """A fresh copy of the dev stack's raw configuration."""
    return copy.deepcopy(DEV_RAW)


def make_production(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn ``raw`` (the dev stack) into a valid production stack: public addresses and an egress."""
    raw["production"] = True
    raw["egress"] = {"address": "203.0.113.10", "name": "mail.example1.local"}
    for i, d in enumerate(raw["domains"]):
        d["publicAddress"] = f"203.0.113.{10 + i}"
    return raw
