"""``make up``: bring a stack up on the local ``file://`` backend, with no Pulumi Cloud account.

Steps: find a Pulumi CLI (on PATH, or the project's own ``.pulumi-cli``; otherwise install the
pinned version there with the Automation API's ``PulumiCommand.install``), point it at the
backend under the project (``.pulumi-state``), select or create the stack with the passphrase
secrets provider, set the lab passwords on first creation of the ``dev`` stack, and run
``pulumi up``. Where no CLI can be had it stops with what to install.

Usage: ``python -m tools.up [--stack dev] [--yes] [--preview] [-- extra pulumi args]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI_DIR = ROOT / ".pulumi-cli"
STATE_DIR = ROOT / ".pulumi-state"
PULUMI_VERSION = "3.272.0"
"""The CLI version installed when none is found (the version of the pinned Python SDK)."""
DEV_PASSPHRASE = "mailstack-dev"
"""Passphrase of the local dev stack's secrets (documented in the README; local lab only)."""
LAB_PASSWORD = "password123"  # the original lab's documented dev credential, dev stack only

INSTALL_HELP = (
    "No Pulumi CLI found and it could not be installed automatically ({reason}).\n"
    "Install it from https://www.pulumi.com/docs/install/ (e.g. `curl -fsSL https://get.pulumi.com | sh`), "
    f"version {PULUMI_VERSION} or newer, put it on PATH, and run `make up` again."
)


class UpError(RuntimeError):
    """A step of ``make up`` failed; the message says what to do."""


def _default_installer(root: Path) -> Path:
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

    command = PulumiCommand.install(root=str(root), version=VersionInfo.parse(PULUMI_VERSION))
    return Path(command.command)


def existing_cli(which: Callable[[str], str | None] = shutil.which, cli_dir: Path = CLI_DIR) -> Path | None:
    """The Pulumi CLI already here: ``pulumi`` on PATH, else the project's executable copy; or ``None``."""
    on_path = which("pulumi")
    if on_path:
        return Path(on_path)
    local = cli_dir / "bin" / "pulumi"
    return local if local.is_file() and os.access(local, os.X_OK) else None


def find_cli(
    which: Callable[[str], str | None] = shutil.which,
    installer: Callable[[Path], Path] = _default_installer,
    cli_dir: Path = CLI_DIR,
) -> Path:
    """Return a usable ``pulumi`` binary: PATH first, then the project's copy, else install one."""
    found = existing_cli(which, cli_dir)
    if found is not None:
        return found
    print(
        f"mailstack: no pulumi CLI on PATH; installing Pulumi {PULUMI_VERSION} into {cli_dir} ...", flush=True
    )
    try:
        return installer(cli_dir)
    except Exception as err:  # any failure means: tell the user what to install
        raise UpError(INSTALL_HELP.format(reason=f"{type(err).__name__}: {err}".strip())) from None


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the CLI: local file backend under the project, passphrase secrets."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PULUMI_BACKEND_URL", f"file://{STATE_DIR}")
    if "PULUMI_CONFIG_PASSPHRASE" not in env and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env:
        env["PULUMI_CONFIG_PASSPHRASE"] = DEV_PASSPHRASE
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def lab_password_commands(stack: str, stack_file: Path) -> list[list[str]]:
    """``pulumi config set --secret --path`` commands giving every dev-stack user the lab password."""
    if stack != "dev":
        return []
    config = yaml.safe_load(stack_file.read_text())["config"]
    commands = []
    for domain in config.get("mailstack:domains", []):
        for user in domain.get("users", []):
            name = user["name"] if isinstance(user, dict) else user
            address = f"{name}@{domain['domain']}"
            key = f'mailstack:passwords["{address}"]'
            commands.append(["config", "set", "--secret", "--path", key, LAB_PASSWORD, "--stack", stack])
    return commands


def run_cli(cli: Path, args: Sequence[str], env: dict[str, str], check: bool = True) -> int:
    """Run the CLI in the project directory; raise ``UpError`` on failure when ``check``."""
    shown = [a if a != LAB_PASSWORD else "****" for a in args]
    print("$ pulumi " + " ".join(shown), flush=True)
    code = subprocess.run([str(cli), *args], cwd=ROOT, env=env, check=False).returncode
    if check and code != 0:
        raise UpError(f"`pulumi {' '.join(shown)}` failed with exit code {code}")
    return code


def stack_exists(cli: Path, stack: str, env: dict[str, str]) -> bool:
    """True if ``stack`` exists in the backend."""
    result = subprocess.run(
        [str(cli), "stack", "select", stack], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make up``."""
    parser = argparse.ArgumentParser(prog="python -m tools.up", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--preview", action="store_true", help="only preview")
    parser.add_argument("extra", nargs="*", help="extra arguments for pulumi up/preview")
    args = parser.parse_args(argv)
    try:
        cli = find_cli()
        env = environment()
        if env["PULUMI_BACKEND_URL"].startswith("file://"):
            Path(env["PULUMI_BACKEND_URL"][len("file://") :]).mkdir(parents=True, exist_ok=True)
        if not stack_exists(cli, args.stack, env):
            run_cli(cli, ["stack", "init", args.stack, "--secrets-provider", "passphrase"], env)
            for command in lab_password_commands(args.stack, ROOT / f"Pulumi.{args.stack}.yaml"):
                run_cli(cli, command, env)
        verb = ["preview"] if args.preview else ["up", *(["--yes"] if args.yes else [])]
        return run_cli(cli, [*verb, "--stack", args.stack, *args.extra], env, check=False)
    except UpError as err:
        print(f"mailstack: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
