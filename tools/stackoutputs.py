"""Reading a stack's outputs, shared by ``make verify`` and ``make qr``.

Either from the Pulumi CLI (``pulumi stack output --json --show-secrets``, run in the project with
the same backend and passphrase defaults as ``make up``), or from a JSON file saved with that
command, so the tools also work where no CLI is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tools.up import ROOT, environment, existing_cli

TIMEOUT_SECONDS = 120


class OutputsError(RuntimeError):
    """The outputs could not be read; the one-line message says what to do."""


def read_stack_outputs(
    stack: str | None,
    project_dir: Path = ROOT,
    which: Callable[[str], str | None] = shutil.which,
) -> dict:
    """Run ``pulumi stack output --json --show-secrets [--stack NAME]`` in ``project_dir``."""
    cli = existing_cli(which, project_dir / ".pulumi-cli")
    if cli is None:
        raise OutputsError(
            "the pulumi CLI was not found (neither pulumi on PATH nor .pulumi-cli/bin/pulumi): "
            "install it, or pass --outputs FILE with the stack's outputs"
        )
    cmd = [str(cli), "stack", "output", "--json", "--show-secrets", "--non-interactive"]
    if stack:
        cmd += ["--stack", stack]
    try:
        proc = subprocess.run(
            cmd,
            cwd=project_dir,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OutputsError(
            f"`pulumi stack output` did not answer within {TIMEOUT_SECONDS} s: check the backend "
            "(PULUMI_BACKEND_URL) or pass --outputs FILE"
        ) from None
    if proc.returncode != 0:
        err = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        name = stack or "(current)"
        if re.search(r"no stack named|stack .* not found|no stack selected", err, re.IGNORECASE):
            raise OutputsError(
                f"no such stack {name}: deploy it first (make up / pulumi up --stack {name}) "
                "or name an existing stack with --stack"
            )
        raise OutputsError(f"`pulumi stack output` failed for stack {name}: {err[:300]}")
    return _as_outputs(proc.stdout or "{}", "`pulumi stack output --json`")


def read_outputs_file(path: str | Path) -> dict:
    """Read stack outputs saved with ``pulumi stack output --json --show-secrets > FILE``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputsError(
            f"cannot read outputs file {path}: it does not exist; pass the file written by "
            "`pulumi stack output --json --show-secrets`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputsError(f"cannot read outputs file {path}: {exc}") from None
    return _as_outputs(text, f"outputs file {path}")


def _as_outputs(text: str, where: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(
            f"{where} is not JSON ({exc.msg} at line {exc.lineno}): write it with "
            "`pulumi stack output --json --show-secrets > FILE`"
        ) from None
    if not isinstance(data, dict):
        raise OutputsError(f"{where} is not a JSON object of stack outputs")
    return data
