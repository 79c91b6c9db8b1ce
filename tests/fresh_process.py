"""What a fresh interpreter imports: the one way tests check that a path stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def heavy_imports(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` are imported after `code` runs in a new Python process (repo root as cwd)."""
    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])
