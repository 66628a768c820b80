"""The rules the pack shares with the program's config validation (``config/rules.py``).

The pack lives inside the project but runs from ``policy/`` with its own virtualenv, where the
project root is not on ``sys.path``: this module (the only one that imports ``config``) puts it
there, so that the pack and ``config.model`` apply one rule set instead of two copies.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)

from config.rules import WEAK_PASSWORDS, image_problem  # noqa: E402

__all__ = ["WEAK_PASSWORDS", "image_problem"]
