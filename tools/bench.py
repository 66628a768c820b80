"""``make bench``: how long the program takes under mocks, and the blast radius of each kind of change.

Prints numbers; it asserts nothing (targets: dev stack under 1 s, 50 domains x 20 users under
5 s on a 2-core machine; 0 mail server containers and 0 volumes touched for account, password,
quota and alias changes). Each timing is the best of a few runs in this process.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Sequence

from tests.components.harness import dev_config, run_program
from tools import blast


def scale_config(domains: int, users: int) -> dict:
    """A stack of ``domains`` x ``users`` (first user of each domain with an explicit password)."""
    config = dev_config()
    config["network"] = {"name": "mailstack-bench", "subnet": "10.80.0.0/16"}
    config["domains"] = []
    config["passwords"] = {}
    for i in range(domains):
        name = f"d{i:03d}.example"
        config["domains"].append(
            {
                "domain": name,
                "server": f"mx{i:03d}",
                "ports": {"smtp": 20000 + 3 * i, "submission": 20001 + 3 * i, "imap": 20002 + 3 * i},
                "users": [{"name": f"user{j:02d}", "quota": "1G"} for j in range(users)],
            }
        )
        config["passwords"][f"user00@{name}"] = "bench-password-0001"
    return config


def time_program(config: dict, repeat: int) -> tuple[float, float, int]:
    """Best and median wall time of ``repeat`` runs, and the number of resources registered."""
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        program = run_program(copy.deepcopy(config), secret_keys=("mailstack:passwords",))
        times.append(time.perf_counter() - start)
        count = len(program.resources)
    return min(times), statistics.median(times), count


def main(argv: Sequence[str] | None = None) -> int:
    """Print the timings and the blast-radius table."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-blast", action="store_true")
    args = parser.parse_args(argv)

    print("## Program under Pulumi mocks (wall time)")
    for label, config, target in (
        ("dev stack (2 domains x 2 users)", dev_config(), 1.0),
        ("50 domains x 20 users", scale_config(50, 20), 5.0),
    ):
        best, median, count = time_program(config, args.repeat)
        verdict = "meets" if best < target else "MISSES"
        print(
            f"{label}: best {best:.2f} s, median {median:.2f} s, {count} resources "
            f"(target < {target:.0f} s: {verdict})",
            flush=True,
        )
    if not args.skip_blast:
        print("\n## Blast radius of each kind of change (dev stack, inputs compared under mocks)")
        rows = {kind: blast.blast_radius(kind) for kind in blast.CHANGES}
        print(blast.table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
