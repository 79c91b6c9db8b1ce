"""Installing as people do: the wheel carries the study templates and the shipped latency table, and
`shufflesearch init` writes a template to start from, from the repo or from an installed wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from shufflesearch import cli
from shufflesearch.search.study_file import load_study
from shufflesearch.templates import template_names, template_text

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "shufflesearch" / "templates"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_the_repos_study_files_are_links_to_the_templates():
    studies = sorted((REPO / "studies").glob("*.toml"))
    assert sorted(p.stem for p in studies) == list(template_names())
    for path in studies:  # one text: the README's studies/x.toml is the package's template
        assert path.is_symlink() and path.resolve() == (TEMPLATES / path.name).resolve(), path
        assert load_study(path).name == path.stem


def test_nothing_in_the_dependencies_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # A range keeps a user's own torch build (CUDA, ROCm); only optuna is capped, below its next major.
    assert [d for d in project["dependencies"] if "==" in d or "~=" in d] == []
    assert "torch>=2.5" in project["dependencies"] and [d for d in project["dependencies"] if "<" in d] == [
        "optuna>=5,<6"
    ]


@pytest.mark.parametrize("template", template_names())
def test_init_writes_the_template_renamed_and_it_parses(template, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["init", "mine", "--template", template], capsys)
    assert code == 0, err
    written = tmp_path / "studies" / "mine.toml"
    assert (
        out.strip()
        == f"wrote studies/mine.toml (from template {template}); run it with: shufflesearch search studies/mine.toml"
    )
    expected = template_text(template).replace(f'name = "{template}"', 'name = "mine"', 1)
    assert written.read_text() == expected != template_text(template)  # init itself parsed it as a study
    umask = os.umask(0o022)
    os.umask(umask)
    assert written.stat().st_mode & 0o777 == 0o666 & ~umask  # as `open` makes a file, not mkstemp's 0600


def test_init_never_overwrites_and_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(["init"], capsys)
    assert code == 0 and load_study("studies/demo.toml").name == "demo"
    before = Path("studies/demo.toml").read_bytes()
    Path("studies/demo.toml").write_bytes(before + b"# my edits\n")
    code, out, err = run_cli(["init", "--template", "frontier", "--out", "studies/demo.toml"], capsys)
    assert (
        code == 2
        and out == ""
        and err
        == ("error: studies/demo.toml already exists; init never overwrites a study file: pick another NAME or --out\n")
    )
    assert Path("studies/demo.toml").read_bytes() == before + b"# my edits\n"
    assert sorted(p.name for p in Path("studies").iterdir()) == ["demo.toml"]  # no temporary file left


def test_init_names_a_study_after_its_file_and_refuses_a_bad_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["init", "--template", "paper-ladder", "--out", "new/folder/ladder.toml", "--json"], capsys)
    assert code == 0 and '"study_file": "new/folder/ladder.toml"' in out
    assert load_study("new/folder/ladder.toml").name == "ladder"
    for bad in ["../escape", 'x"\nstorage = "sqlite:////tmp/elsewhere.db', "-"]:
        code, _, err = run_cli(["init", "--", bad], capsys)
        assert code == 2 and err.count("\n") == 1 and "study.name" in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == [
        str(tmp_path / p) for p in ["new", "new/folder", "new/folder/ladder.toml"]
    ]


@pytest.mark.slow
def test_the_wheel_installs_and_init_runs_from_it(tmp_path):
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ and egg-info where it builds
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "shufflesearch", source / "shufflesearch", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the venv's setuptools builds it, so the test needs no network.
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("shufflesearch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in template_names():
        assert f"shufflesearch/templates/{template}.toml" in names
    assert "shufflesearch/latency/tables/snapdragon820-estimated.lut.json" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: torch>=2.5" in metadata

    # A fresh venv that sees this venv's libraries (torch, optuna...) but not its editable shufflesearch:
    # a path in a .pth file is added, while the .pth files inside it (the editable finder) are not run.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (Path(site) / "dev-libraries.pth").write_text(ours + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip

    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run([str(venv / "bin" / "shufflesearch"), "init", "ms", "--template", "paper-ladder-ms"],
                          cwd=work, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (work / "studies" / "ms.toml").read_text() == template_text("paper-ladder-ms").replace(
        'name = "paper-ladder-ms"', 'name = "ms"', 1
    )
    probe = (
        "import shufflesearch; from shufflesearch.latency.lut.shipped import resolve_table; "
        "from shufflesearch.search.study_file import load_study; "
        "print(shufflesearch.__file__); print(resolve_table('snapdragon820').name); print(load_study('studies/ms.toml').lut)"
    )
    done = subprocess.run([str(python), "-c", probe], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    installed, table, lut = done.stdout.split("\n")[:3]
    assert installed.startswith(site), installed  # the wheel's copy, not the repo's
    assert table and lut == "snapdragon820"
