"""``make bench``: how long the program takes under mocks, its floor and peak memory, and the blast radius.

Prints numbers; it asserts nothing. Each program row runs the real ``__main__.py`` under Pulumi mocks
in a fresh Python process (interpreter start, imports, reading the configuration and the stack's memory,
registering every resource), as ``pulumi preview`` would run it, and prints its wall time next to its
*floor*: what the same process could not do faster, which is

    the interpreter and SDK import (measured: an empty program under the same mocks)
    + the registered resources x the per-resource cost (measured: a program of trivial resources)
    + the hashes it had to compute x the cost of one hash / the cores.

Rows: a first deployment (every hash computed, in a process pool on every core), a preview of the
unchanged stack (its memory from that deployment: no hash computed) and a preview after one user was
added, for the dev stack and for 50 x 20, 100 x 50 and 200 x 50 domains x users. Targets (this 2-core
machine): unchanged previews of 50 x 20 under 2 s, 100 x 50 under 5 s, 200 x 50 under 10 s, a one-user
edit within 10% of that, and the 200 x 50 runs under 500 MB peak resident memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

TARGETS: dict[tuple[int, int], float] = {(50, 20): 2.0, (100, 50): 5.0, (200, 50): 10.0}
"""Unchanged-preview targets in seconds, by (domains, users)."""
EDIT_MARGIN = 1.10
"""A one-user edit may take at most 10% longer than the unchanged preview."""
RSS_TARGET_MB = 500


def scale_config(domains: int, users: int) -> dict:
    """A stack of ``domains`` x ``users`` (first user of each domain with an explicit password)."""
    from tests.components.harness import dev_config

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


def add_one_user(config: dict) -> dict:
    """``config`` with one more user in its first domain (a generated password)."""
    changed = copy.deepcopy(config)
    changed["domains"][0]["users"].append({"name": "added", "quota": "1G"})
    return changed


# --- the child process: one run of the program --------------------------------------------------------


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured thing in this fresh process; what the parent prints."""
    import resource

    started = float(spec["started"])
    from config import hashing
    from tests.components import harness

    computed: list[hashing.Hasher] = []
    original = hashing.Hasher.__init__

    def counting(self: hashing.Hasher, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        computed.append(self)

    hashing.Hasher.__init__ = counting  # type: ignore[method-assign]
    kind = spec["kind"]
    resources = 0
    if kind == "program":
        memory = Path(spec["memory_in"]).read_text() if spec.get("memory_in") else None
        mocks = harness.StackMocks(stack_outputs={"memory": memory} if memory is not None else {})
        program = harness.run_program(
            spec["config"], secret_keys=("mailstack:passwords",), mocks=mocks, preview=bool(memory)
        )
        resources = len([r for r in program.resources if r.custom])
        if spec.get("memory_out"):
            out = Path(spec["memory_out"])
            out.write_text(harness.unwrap(program.outputs["memory"]))
            out.chmod(0o600)
    elif kind == "trivial":
        resources = _register_trivial(int(spec["count"]))
    elif kind == "empty":  # the SDK imported and the mocks set up, nothing registered
        _register_trivial(0)
    else:
        raise ValueError(kind)
    return {
        "seconds": time.time() - started,
        "resources": resources,
        "hashed": sum(h.computed for h in computed),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _register_trivial(count: int) -> int:
    """Register ``count`` volumes (a custom resource with a name and a label) under the same mocks."""
    import pulumi
    import pulumi_docker as docker
    from pulumi.runtime import settings

    from tests.components import harness

    mocks = harness.StackMocks()
    monitor = harness.RecordingMonitor(mocks)
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="mailstack", stack="bench", preview=True, monitor=monitor)

    @pulumi.runtime.test
    def _run() -> pulumi.Output[Any]:
        volumes = [
            docker.Volume(
                f"v{i}",
                name=f"bench-{i}",
                labels=[docker.VolumeLabelArgs(label="mailstack.stack", value="b")],
            )
            for i in range(count)
        ]
        return pulumi.Output.all(*(v.name for v in volumes))

    _run()
    return len(monitor.program.resources)


@dataclass(frozen=True)
class Result:
    """What one child run measured."""

    seconds: float
    resources: int
    hashed: int
    rss_mb: float


def measure(kind: str, repeat: int = 1, **spec: Any) -> Result:
    """Run ``kind`` in a fresh process ``repeat`` times; the best time, with the peak memory of all."""
    runs = []
    for _ in range(repeat):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({**spec, "kind": kind, "started": time.time()}, f)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tools.bench", "--child", f.name],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            os.unlink(f.name)
        if done.returncode != 0:
            raise RuntimeError(f"bench child ({kind}) failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return Result(best["seconds"], best["resources"], best["hashed"], max(r["rss_mb"] for r in runs))


def hash_seconds() -> float:
    """Seconds one SHA512-CRYPT hash takes here (median of a few batches)."""
    from config import passwords as pw

    batches = []
    for b in range(5):
        start = time.perf_counter()
        for i in range(100):
            pw.hash_password(f"password-{b}-{i}", pw.derive_salt(b"k" * 32, f"u{i}@bench.example"))
        batches.append((time.perf_counter() - start) / 100)
    return statistics.median(batches)


@dataclass(frozen=True)
class Floor:
    """The measured parts of the floor."""

    startup: float
    per_resource: float
    per_hash: float
    cores: int

    def of(self, result: Result) -> float:
        """The floor of a run with ``result``'s resources and hashes."""
        return (
            self.startup + result.resources * self.per_resource + result.hashed * self.per_hash / self.cores
        )


def measure_floor(repeat: int) -> Floor:
    """Measure the interpreter and SDK start, the per-resource cost and the per-hash cost."""
    from config.hashing import worker_count

    startup = measure("empty", repeat).seconds
    small, large = measure("trivial", repeat, count=200), measure("trivial", repeat, count=1200)
    per_resource = (large.seconds - small.seconds) / (large.resources - small.resources)
    return Floor(startup, max(per_resource, 0.0), hash_seconds(), worker_count())


def row(label: str, result: Result, floor: Floor, target: float | None = None) -> str:
    """One printed line: time, floor, ratio, counts, memory and the target verdict."""
    base = floor.of(result)
    verdict = ""
    if target is not None:
        verdict = f"; target < {target:.1f} s: {'meets' if result.seconds < target else 'MISSES'}"
    return (
        f"{label}: {result.seconds:.2f} s, floor {base:.2f} s, ratio {result.seconds / base:.2f} "
        f"({result.resources} resources, {result.hashed} hashed, peak {result.rss_mb:.0f} MB{verdict})"
    )


def program_rows(floor: Floor, sizes: Sequence[tuple[int, int]], repeat: int) -> list[str]:
    """The first-deployment, unchanged and one-user-added rows of each size."""
    from tests.components.harness import dev_config

    lines: list[str] = []
    printed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for domains, users in [(0, 0), *sizes]:
            config = dev_config() if domains == 0 else scale_config(domains, users)
            name = "dev stack (2 domains x 2 users)" if domains == 0 else f"{domains} x {users}"
            memory = str(Path(tmp) / f"memory-{domains}-{users}.json")
            first = measure("program", 1, config=config, memory_out=memory)
            lines.append(row(f"{name}, first deployment", first, floor))
            target = TARGETS.get((domains, users), 1.0 if domains == 0 else None)
            unchanged = measure("program", repeat, config=config, memory_in=memory)
            lines.append(row(f"{name}, preview of the unchanged stack", unchanged, floor, target))
            edited = measure("program", repeat, config=add_one_user(config), memory_in=memory)
            within = edited.seconds <= unchanged.seconds * EDIT_MARGIN
            lines.append(
                row(f"{name}, preview after one user was added", edited, floor)
                + f"; {edited.seconds / unchanged.seconds:.2f} x the unchanged preview "
                f"(target <= {EDIT_MARGIN:.2f}: {'meets' if within else 'MISSES'})"
            )
            if (domains, users) == (200, 50):
                peak = max(first.rss_mb, unchanged.rss_mb, edited.rss_mb)
                lines.append(
                    f"peak resident memory of the 200 x 50 runs: {peak:.0f} MB (target < {RSS_TARGET_MB} MB: "
                    f"{'meets' if peak < RSS_TARGET_MB else 'MISSES'})"
                )
            print("\n".join(lines[printed:]), flush=True)
            printed = len(lines)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the timings and the blast-radius table."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per preview row (the best is shown)")
    parser.add_argument("--skip-blast", action="store_true")
    parser.add_argument("--sizes", default="50x20,100x50,200x50", help="domains x users of the scaled rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(Path(args.child).read_text()))))
        return 0

    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",") if size]
    print("## Program under Pulumi mocks (wall time of a fresh process, best of the runs)", flush=True)
    floor = measure_floor(args.repeat)
    print(
        f"floor parts: start-up {floor.startup:.2f} s, {floor.per_resource * 1000:.2f} ms per resource, "
        f"{floor.per_hash * 1000:.2f} ms per hash on {floor.cores} core(s)",
        flush=True,
    )
    program_rows(floor, sizes, args.repeat)  # type: ignore[arg-type]
    if not args.skip_blast:
        from tools import blast

        print("\n## Blast radius of each kind of change (dev stack, inputs compared under mocks)")
        print(blast.table({kind: blast.blast_radius(kind) for kind in blast.CHANGES}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
