"""The README's Python example runs as printed (spec -> count -> model -> train), in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_examples(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    text = "intro\n```python\nprint(1)\n```\n```\nshell\n```\n```python\nx = 2\n```\n"
    assert python_examples(text) == ["print(1)\n", "x = 2\n"]


@pytest.mark.slow
def test_readme_python_example_runs(fashion, tmp_path, monkeypatch):
    [example] = python_examples(README.read_text())
    assert "count_complexity" in example and "build_model" in example and "train_proxy" in example
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never the user's cache
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[0].endswith(" MFLOPs") and lines[1].endswith(" parameters"), done.stdout
    assert re.fullmatch(r"proxy top-1 \d+\.\d\d % \(\d+\.\d s\)", lines[2]), done.stdout
