"""``make dns``: the DNS records each mail domain needs, from the stack's ``dns`` output.

Usage::

    python -m tools.dns [--stack NAME] [--outputs FILE] [--json]

Prints one zone-file fragment per zone (``$ORIGIN`` and absolute names, TXT values split into strings of
at most 255 octets; paste it into your zone or enter the records one by one in your DNS host's panel).
The PTR of the egress address is printed as a comment: it is set by whoever hosts the address. ``--json``
prints the output itself. Exit 2 when the outputs cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from config.dns import Record, render_zone
from tools.stackoutputs import OutputsError, read_outputs_file, read_stack_outputs


def load_records(outputs: dict) -> dict[str, list[Record]]:
    """The ``dns`` output as ``Record`` lists by zone; raises ``OutputsError`` naming what is wrong."""
    if "dns" not in outputs:
        raise OutputsError(
            "the stack has no `dns` output: it is not deployed yet, or was deployed by an older mailstack "
            "(run pulumi up with this version)"
        )
    raw = outputs["dns"]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OutputsError(f"the `dns` output is not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise OutputsError("the `dns` output is not an object of zones")
    zones: dict[str, list[Record]] = {}
    for zone, items in raw.items():
        if not isinstance(items, list):
            raise OutputsError(f"dns.{zone} is not a list of records")
        zones[zone] = [_record(zone, i, item) for i, item in enumerate(items)]
    return zones


def _record(zone: str, index: int, item: Any) -> Record:
    where = f"dns.{zone}[{index}]"
    if not isinstance(item, dict) or not all(k in item for k in ("name", "type", "value", "ttl")):
        raise OutputsError(f"{where} is not a record {{name, type, value, ttl}}")
    value = item["value"]
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise OutputsError(f"{where}.value is not a list of strings")
        value = tuple(value)
    elif not isinstance(value, str):
        raise OutputsError(f"{where}.value is neither a string nor a list of strings")
    return Record(str(item["name"]), str(item["type"]), value, int(item["ttl"]), str(item.get("advice", "")))


def render(zones: dict[str, list[Record]]) -> str:
    """Every zone as a zone-file fragment, separated by blank lines."""
    return "\n".join(render_zone(zone, records) for zone, records in zones.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.dns", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help="Pulumi stack to read the outputs of (default: the selected stack)")
    parser.add_argument("--outputs", metavar="FILE", help="JSON file of `pulumi stack output --json`")
    parser.add_argument("--json", action="store_true", help="print the `dns` output as JSON")
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs_file(args.outputs) if args.outputs else read_stack_outputs(args.stack)
        zones = load_records(outputs)
    except OutputsError as exc:
        print(f"dns: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({z: [r.as_output() for r in recs] for z, recs in zones.items()}, indent=2))
    else:
        print(render(zones), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
