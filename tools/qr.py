"""Show a VPN peer's WireGuard config as a QR code (terminal or PNG), for the WireGuard mobile apps.

Usage: ``python -m tools.qr PEER [--png FILE] [--stack NAME | --outputs FILE] [--show]``

The configs come from the secret stack output ``vpnPeerConfigs`` (a JSON object, peer name to config
text), read with ``pulumi stack output --json --show-secrets`` or from a file of those outputs
(``--outputs``). The config holds the peer's private key: it is printed as text only with ``--show``,
and a PNG is written readable by its owner only (0600). QR codes are made with segno.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import segno

from tools.stackoutputs import OutputsError, read_outputs_file, read_stack_outputs

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_NAME = "vpnPeerConfigs"
"""Name of the stack output holding the peer configs."""


class QrError(OutputsError):
    """A user-facing problem; the message says what to do (and never contains a config)."""


def peer_config(outputs: dict[str, object], peer: str) -> str:
    """Return the config text of ``peer`` from the stack outputs, or raise a clear ``QrError``."""
    configs = outputs.get(OUTPUT_NAME)
    if configs is None:
        raise QrError(
            f"the stack has no `{OUTPUT_NAME}` output: enable the VPN (mailstack:vpn.enabled) and run `make up`"
        )
    if configs == "[secret]":
        raise QrError(f"`{OUTPUT_NAME}` is hidden as [secret]: read the outputs with --show-secrets")
    if isinstance(configs, str):  # some tools save nested outputs as JSON strings
        try:
            configs = json.loads(configs)
        except json.JSONDecodeError:
            raise QrError(f"`{OUTPUT_NAME}` is not a JSON object of peer configs") from None
    if not isinstance(configs, dict):
        raise QrError(f"`{OUTPUT_NAME}` is not a JSON object of peer configs")
    if peer not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise QrError(f"unknown VPN peer {peer!r}; known peers: {known}")
    text = configs[peer]
    if not isinstance(text, str) or "[Interface]" not in text:
        raise QrError(f"the config of peer {peer!r} in `{OUTPUT_NAME}` is not a WireGuard config")
    return text


def make_qr(config: str) -> segno.QRCode:
    """Encode a config as a QR code (error correction M, as the WireGuard apps read it comfortably)."""
    return segno.make(config, error="m", micro=False, boost_error=False)


def print_terminal(config: str, out: TextIO) -> None:
    """Print the QR code with Unicode half blocks (readable by a phone camera on most terminals)."""
    make_qr(config).terminal(out=out, compact=True)


def write_png(config: str, path: Path, scale: int = 8) -> None:
    """Write the QR code as a PNG readable only by its owner (it encodes a private key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode on open: tighten it too
    with os.fdopen(fd, "wb") as handle:
        make_qr(config).save(handle, kind="png", scale=scale, border=4)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.qr", description=__doc__.splitlines()[0])
    parser.add_argument("peer", help="peer name from mailstack:vpn.peers, e.g. peer1")
    parser.add_argument(
        "--png", type=Path, metavar="FILE", help="write a PNG instead of printing to the terminal"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--stack", metavar="NAME", help="stack to read the outputs from (default: selected stack)"
    )
    source.add_argument(
        "--outputs", type=Path, metavar="FILE", help="JSON of `pulumi stack output --json --show-secrets`"
    )
    parser.add_argument(
        "--show", action="store_true", help="also print the config text (contains the private key)"
    )
    args = parser.parse_args(argv)

    try:
        outputs = read_outputs_file(args.outputs) if args.outputs else read_stack_outputs(args.stack)
        config = peer_config(outputs, args.peer)
        if args.png:
            write_png(config, args.png)
            print(
                f"wrote the QR code of VPN peer {args.peer} to {args.png} (mode 0600: it holds the private key)"
            )
        else:
            print_terminal(config, sys.stdout)
        if args.show:
            sys.stdout.write(config)
    except OutputsError as exc:  # QrError included
        print(f"qr: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
