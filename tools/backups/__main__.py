"""The backup tools: ``python -m tools.backups {backup,snapshots,restore,drill}`` (``make backup`` ...).

Usage::

    python -m tools.backups backup    [--domain D]                       # make backup
    python -m tools.backups snapshots                                    # make snapshots
    python -m tools.backups restore   --domain D [--snapshot ID] [--force]  # make restore DOMAIN=D
    python -m tools.backups drill     [--domain D ...]                   # make restore-drill

Each reads the stack output ``backup`` (``--stack NAME``, or ``--outputs FILE`` saved with
``pulumi stack output --json --show-secrets``) and runs the Docker CLI against the stack's ``docker:host``
(override with ``--docker-host``). Exit codes: 0 done, 1 a backup, restore or drill failed, 2 the tool
could not run as asked. No secret is printed, passed as an argument or put into an environment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from config.backup import JOB_SCRIPT_PATH
from tools.backups import drill, restore, snapshots
from tools.backups.docker import Docker
from tools.backups.target import BackupError, BackupTarget, Refused, load_target
from tools.stackoutputs import OutputsError, read_outputs_file, read_stack_outputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.backups", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="stack whose outputs to read (default: the selected stack)")
    parser.add_argument("--outputs", help="JSON file of `pulumi stack output --json --show-secrets`")
    parser.add_argument("--docker-host", help="Docker endpoint (default: the stack's docker:host)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("backup", help="run the scheduled backup now, with progress")
    run.add_argument("--domain", default="", help="only this domain")
    sub.add_parser("snapshots", help="list the snapshots per domain with sizes and dates")
    rst = sub.add_parser("restore", help="restore a domain's volumes from a snapshot")
    rst.add_argument("--domain", required=True)
    rst.add_argument("--snapshot", default="latest", help="snapshot id (or a prefix), default latest")
    rst.add_argument("--force", action="store_true", help="overwrite volumes that are not empty")
    drl = sub.add_parser("drill", help="restore the newest snapshots into scratch stacks and check them")
    drl.add_argument("--domain", action="append", default=[], help="only these domains (repeatable)")
    return parser


def _outputs(args: argparse.Namespace) -> dict:
    if args.outputs:
        return read_outputs_file(args.outputs)
    return read_stack_outputs(args.stack)


def cmd_backup(docker: Docker, target: BackupTarget, args: argparse.Namespace, tty: bool) -> int:
    """``make backup``: the job's own run, now, in the job container (same marker, tags and retention)."""
    if args.domain:
        target.domain(args.domain)
    flags = ["-t"] if tty else []
    result = docker.stream("exec", *flags, target.job, "/bin/sh", JOB_SCRIPT_PATH, "once", args.domain)
    if result.code in (126, 127) or "No such container" in result.stderr:
        raise BackupError(
            f"the backup job {target.job} is not running: `make up` or `docker start {target.job}`"
        )
    return 0 if result.ok else 1


def cmd_snapshots(docker: Docker, target: BackupTarget, out: Callable[[str], None]) -> int:
    """``make snapshots``."""
    found = snapshots.with_sizes(docker, target, snapshots.list_snapshots(docker, target))
    status = docker.run("exec", target.job, "/bin/sh", JOB_SCRIPT_PATH, "status")
    out(snapshots.render_snapshots(target, found, snapshots.utcnow(), status.stdout if status.ok else None))
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    docker_factory: Callable[[str | None], Docker] = Docker,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    tty: bool | None = None,
) -> int:
    """The command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        outputs = _outputs(args)
        target = load_target(outputs)
        docker = docker_factory(args.docker_host or target.docker_host)
        if args.command == "backup":
            return cmd_backup(docker, target, args, sys.stdout.isatty() if tty is None else tty)
        if args.command == "snapshots":
            return cmd_snapshots(docker, target, out)
        if args.command == "restore":
            report = restore.restore_domain(
                docker,
                target,
                args.domain,
                args.snapshot,
                force=args.force,
                say=lambda m: out(f"restore: {m}"),
            )
            out(restore.render_report(report, snapshots.utcnow()))
            return 0
        passwords = outputs.get("generatedPasswords") or {}
        if not isinstance(passwords, dict):
            raise BackupError("the generatedPasswords output is hidden: read the outputs with --show-secrets")
        results = drill.run_drill(
            docker, target, passwords, args.domain or None, say=lambda m: out(f"drill: {m}")
        )
        out(drill.render_drill(results, snapshots.utcnow()))
        return 0 if results and all(r.passed for r in results) else 1
    except Refused as exc:
        err(f"mailstack {args.command}: {exc}")
        return 2
    except BackupError as exc:
        err(f"mailstack {args.command}: {exc}")
        return 1
    except OutputsError as exc:
        err(f"mailstack {args.command}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
