"""Safe by default: no code runs from data files, no secret reaches a log or report, host keys stay checked.

The first tests read the package's own source (with `ast`, not grep: a comment or a
docstring mentioning pickle is fine), so a new `torch.load` or `shell=True` fails here
before review. The last ones run the real CLI against a real PostgreSQL with a password.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shufflesearch.latency.ssh import SshTargetError, _check_options

PACKAGE = Path(__file__).parents[1] / "shufflesearch"
CLI = str(Path(sys.executable).with_name("shufflesearch"))
SOURCES = sorted(PACKAGE.rglob("*.py"))


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(node, name):
    return next((k.value for k in node.keywords if k.arg == name), None)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_is_run_from_data(path):
    tree = ast.parse(path.read_text(), str(path))
    for node, name in calls(tree):
        where = f"{path.name}:{node.lineno}: {name}"
        assert name not in ("eval", "exec", "os.system", "os.popen", "marshal.loads", "yaml.load"), where
        assert name not in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"), where
        if name.endswith("torch.load"):
            flag = keyword(node, "weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, f"{where} without weights_only=True"
        shell = keyword(node, "shell")
        assert not (isinstance(shell, ast.Constant) and shell.value), f"{where} with shell=True"


def test_the_only_unpickler_is_the_allowlisted_cifar_one():
    unpicklers = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                assert "find_class" in methods, f"{path.name}: {node.name} must restrict find_class"
                unpicklers.append(node.name)
    assert unpicklers == ["_CifarUnpickler"]


def test_study_files_are_read_with_the_standard_safe_toml_reader():
    imported = {
        alias.name
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "tomllib" in imported
    assert not imported & {"toml", "yaml", "pickle5", "dill", "jsonpickle"}


@pytest.mark.parametrize(
    "options",
    [["-o", "StrictHostKeyChecking=no"], ["-oStrictHostKeyChecking=accept-new"], "-o 'StrictHostKeyChecking off'"],
)
def test_ssh_options_cannot_turn_host_key_checking_off(options):
    with pytest.raises(SshTargetError, match="known_hosts"):
        _check_options(options)


def test_ssh_options_may_name_another_known_hosts_file():
    assert _check_options(["-o", "UserKnownHostsFile=/etc/devices/known_hosts"])


@pytest.mark.slow
def test_a_database_password_never_reaches_output_or_reports(tmp_path, postgres_url):
    password = "s3cret-Pa55"
    url = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust auth: any password is accepted
    study = tmp_path / "secret.toml"
    study.write_text(
        textwrap.dedent(f"""
        [study]
        name = "secret"
        trials = 1
        storage = "{url}"
        [budget]
        mflops = [13]
        [space]
        groups = [3]
        scale = [0.1, 1.0]
        repeats = [[1, 2], [1, 2], [1, 2]]
        [accuracy.fidelity]
        train_images = 128
        epochs = 1
        eval_images = 200
        curve_eval_images = 0
        """)
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out_dir = tmp_path / "report"
    runs = [
        ["search", str(study)],
        ["search", str(study), "--json"],
        ["studies", "list", "--storage", url],
        ["report", str(study), "--out", str(out_dir)],
        ["search", str(study), "--storage", url.replace(url.rsplit(":", 1)[1].split("/")[0], "1")],  # refused
    ]
    for args in runs:
        done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert password not in done.stdout + done.stderr, args
        if args[0] == "search":  # it names the storage it uses: redacted
            assert "postgres:***@" in done.stdout + done.stderr, (args, done.stdout, done.stderr)
    assert done.returncode == 1 and done.stderr.count("\n") == 1  # the refused connection: one redacted line
    written = [p for p in out_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in written)
    for path in written:
        assert password.encode() not in path.read_bytes(), path
