"""The Docker CLI against the stack's ``docker:host``, behind a runner the unit tests replace.

Every command is an argument list (never a shell string). Secrets never appear in one: the restore
container gets the job's files (``/mailstack``, with its ``secrets/``) as a tar stream on its stdin,
piped straight from ``docker cp <job>:/mailstack -``, and the drill's IMAP check gets the marker
account's password on stdin.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

QUICK_TIMEOUT = 60.0
"""inspect, ls, create, rm and similar."""
STOP_TIMEOUT_SECONDS = 60
"""``docker stop -t``: the mail server's own grace period (components/maildomain.py)."""
LONG_TIMEOUT = 6 * 3600.0
"""A restore or a backup of a large mailbox over a slow link."""


@dataclass(frozen=True)
class Result:
    """What one command did."""

    argv: tuple[str, ...]
    code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Exit status 0."""
        return self.code == 0

    def reason(self) -> str:
        """A one-line reason for a failure (stderr, else stdout, else the exit status)."""
        text = " ".join((self.stderr or self.stdout).split())
        return text[:400] or f"exit status {self.code}"


class Runner(Protocol):
    """Runs commands; the real one uses subprocess, the tests record and answer."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None, timeout: float) -> Result:
        """Run ``argv`` to completion, output captured, ``stdin`` fed to it."""
        ...

    def stream(self, argv: Sequence[str], *, timeout: float) -> Result:
        """Run ``argv`` with the terminal's stdout and stderr (restic's progress shows live)."""
        ...

    def pipe(self, producer: Sequence[str], consumer: Sequence[str], *, timeout: float) -> Result:
        """Run ``producer | consumer``; the consumer's output goes to the terminal; its result is returned."""
        ...


class SubprocessRunner:
    """The real runner."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None, timeout: float) -> Result:
        """Run and capture."""
        try:
            proc = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            return Result(tuple(argv), 127, "", f"{argv[0]} not found: install the Docker CLI")
        except subprocess.TimeoutExpired:
            return Result(tuple(argv), 124, "", f"no answer within {timeout:.0f} s")
        return Result(
            tuple(argv),
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def stream(self, argv: Sequence[str], *, timeout: float) -> Result:
        """Run with inherited stdout/stderr."""
        try:
            proc = subprocess.run(list(argv), timeout=timeout, check=False)
        except FileNotFoundError:
            return Result(tuple(argv), 127, "", f"{argv[0]} not found: install the Docker CLI")
        except subprocess.TimeoutExpired:
            return Result(tuple(argv), 124, "", f"did not finish within {timeout:.0f} s")
        return Result(tuple(argv), proc.returncode)

    def pipe(self, producer: Sequence[str], consumer: Sequence[str], *, timeout: float) -> Result:
        """``producer | consumer`` through an OS pipe (the data never passes through Python)."""
        try:
            first = subprocess.Popen(list(producer), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            return Result(tuple(producer), 127, "", f"{producer[0]} not found: install the Docker CLI")
        assert first.stdout is not None
        try:
            second = subprocess.run(list(consumer), stdin=first.stdout, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            first.kill()
            return Result(tuple(consumer), 124, "", f"did not finish within {timeout:.0f} s")
        finally:
            first.stdout.close()
        _, err = first.communicate(timeout=QUICK_TIMEOUT)
        if first.returncode != 0:
            return Result(tuple(producer), first.returncode, "", err.decode(errors="replace"))
        return Result(tuple(consumer), second.returncode)


class Docker:
    """``docker [-H <docker:host>] ...``."""

    def __init__(self, host: str | None, runner: Runner | None = None) -> None:
        """Talk to ``host`` (``docker:host`` of the stack; ``None``: the CLI's own default)."""
        self.host = host
        self.runner: Runner = runner or SubprocessRunner()

    def argv(self, *args: str) -> list[str]:
        """The full command line."""
        return ["docker", *(["-H", self.host] if self.host else []), *args]

    def run(self, *args: str, stdin: bytes | None = None, timeout: float = QUICK_TIMEOUT) -> Result:
        """Run a docker command, output captured."""
        return self.runner.run(self.argv(*args), stdin=stdin, timeout=timeout)

    def stream(self, *args: str, timeout: float = LONG_TIMEOUT) -> Result:
        """Run a docker command with its output on the terminal."""
        return self.runner.stream(self.argv(*args), timeout=timeout)

    def pipe(self, producer: Sequence[str], consumer: Sequence[str], timeout: float = LONG_TIMEOUT) -> Result:
        """``docker <producer> | docker <consumer>``."""
        return self.runner.pipe(self.argv(*producer), self.argv(*consumer), timeout=timeout)
