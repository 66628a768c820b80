"""Parsers of the generated docker-mailserver files the config writer uploads.

``postfix-main.cf`` (Postfix ``name = value`` settings), the ``key value`` tables
(``postfix-transport.cf``, ``postfix-mynetworks.cidr``, ``postfix-virtual.cf``),
``postfix-accounts.cf`` (``address|hash``), the transport map's next hops
(``smtp:[mta2]:25``) and the tunnel networks of a WireGuard ``wg0.conf``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

MAIN_CF: Final = "postfix-main.cf"
TRANSPORT: Final = "postfix-transport.cf"
ACCOUNTS: Final = "postfix-accounts.cf"
VIRTUAL: Final = "postfix-virtual.cf"


def _lines(text: str) -> list[str]:
    """Non-empty, non-comment lines of a Postfix table or docker-mailserver file."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def parse_main_cf(text: str) -> dict[str, str]:
    """Parse ``name = value`` lines (with Postfix's indented continuation lines); the last one wins."""
    settings: dict[str, str] = {}
    current: str | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and current is not None:
            settings[current] = f"{settings[current]} {raw.strip()}".strip()
            continue
        name, sep, value = raw.partition("=")
        if not sep:
            current = None
            continue
        current = name.strip()
        settings[current] = value.strip()
    return settings


def split_list(value: str) -> list[str]:
    """The items of a Postfix list value (separated by whitespace or commas)."""
    return [t for t in re.split(r"[\s,]+", value) if t]


def parse_table(text: str) -> dict[str, str]:
    """Parse a ``key value`` table (transport map, cidr table); keys are lowercased."""
    table: dict[str, str] = {}
    for line in _lines(text):
        key, _, value = line.partition(" ") if " " in line else line.partition("\t")
        table[key.strip().lower()] = value.strip()
    return table


def parse_accounts(text: str) -> list[tuple[str, str]]:
    """``(address, hash)`` of each ``address|hash[|extra]`` line of ``postfix-accounts.cf``."""
    accounts: list[tuple[str, str]] = []
    for line in _lines(text):
        parts = line.split("|")
        if len(parts) >= 2 and "@" in parts[0]:
            accounts.append((parts[0].strip().lower(), parts[1].strip()))
    return accounts


def domain_of(address: str) -> str | None:
    """The lowercased domain of ``local@domain``; ``None`` for anything else."""
    local, at, domain = address.rpartition("@")
    return domain.lower() if at and local and domain else None


@dataclass(frozen=True)
class NextHop:
    """A parsed transport-map next hop such as ``smtp:[mta2]:25``."""

    transport: str
    host: str
    bracketed: bool
    port: int | None


def parse_next_hop(value: str) -> NextHop | None:
    """Parse ``transport:[host]:port`` (brackets and port optional); ``None`` if there is no host."""
    transport, sep, rest = value.strip().partition(":")
    if not sep:
        return None
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest.strip())
    if not match:
        return None
    if match.group(1):
        return NextHop(
            transport.lower(), match.group(1), True, int(match.group(2)) if match.group(2) else None
        )
    return NextHop(transport.lower(), match.group(3), False, int(match.group(4)) if match.group(4) else None)


def wireguard_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The tunnel networks of a ``wg0.conf``: each ``Address`` of its ``[Interface]`` section."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    section = ""
    for line in _lines(text):
        if line.startswith("["):
            section = line.strip("[] ").lower()
            continue
        key, sep, value = line.partition("=")
        if section == "interface" and sep and key.strip().lower() == "address":
            for item in split_list(value):
                try:
                    networks.append(ipaddress.ip_interface(item).network)
                except ValueError:
                    continue
    return networks
