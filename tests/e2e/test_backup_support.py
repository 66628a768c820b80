"""The e2e backup stack's configuration, checked without Docker or Pulumi (not marked e2e: `make test` runs it).

The ``--path`` entries ``test_backup_e2e.py`` sets are rebuilt the way Pulumi stores them and validated by
the real model, and the program under mocks declares the job from them, so a broken e2e configuration shows
here, not after a long deployment.
"""

from __future__ import annotations

from pathlib import Path

from config import backup as bk
from config.model import load_stack
from tests.components.harness import run_program, unwrap
from tests.e2e import support
from tests.e2e.test_backup_e2e import backup_entries
from tests.e2e.test_support import _config_from_entries, plan


def test_the_backup_entries_are_what_the_program_accepts(tmp_path: Path) -> None:
    p = plan()
    password = support.new_password()
    entries = backup_entries(tmp_path / "repo", password)
    assert [e.key for e in entries if e.secret] == ["mailstack:backupSecrets.password"]
    raw, passwords = _config_from_entries(support.initial_entries(p), entries)
    secrets = raw.pop("backupSecrets")
    assert secrets == {"password": password.reveal()}
    cfg = load_stack(p.stack, raw, passwords, backup_secrets=secrets)
    assert cfg.backup is not None and cfg.backup.repository.local_path == str(tmp_path / "repo")
    assert [u.address for u in cfg.domain("example1.local").users][-1] == bk.drill_address("example1.local")

    program = run_program(
        {**raw, "passwords": passwords, "backupSecrets": secrets},
        stack=p.stack,
        secret_keys=("mailstack:passwords", "mailstack:backupSecrets"),
    )
    names = {unwrap(r.inputs["name"]) for r in program.of_type("docker:index/container:Container")}
    assert f"mailstack-{p.stack}-backup" in names
    assert f"mailstack-{p.stack}-webmail-export-mta1" in names  # the e2e webmail domain's sidecar
    output = unwrap(program.outputs["backup"])
    assert output["localRepository"] == str(tmp_path / "repo")
    assert set(output["domains"]["example1.local"]["volumes"]) >= {"mail", "state", "webmail-db"}
