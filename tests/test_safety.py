"""Safe by default: no code runs from data files, no secret reaches a log or report, host keys stay checked.

The first tests read the package's own source (with `ast`, not grep: a comment or a
docstring mentioning pickle is fine), so a new `torch.load` or `shell=True` fails here
before review. The CLI is then run with database passwords in every URL form: against an
unreachable server (cheap) and against a real PostgreSQL (slow).
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shufflesearch.latency.ssh import SshTarget, SshTargetError
from shufflesearch.latency.ssh.options import check_ssh_options

PACKAGE = Path(__file__).parents[1] / "shufflesearch"
CLI = str(Path(sys.executable).with_name("shufflesearch"))
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Calls that run code from data, or a command line through a shell, whatever their arguments.
FORBIDDEN = {
    "eval", "exec", "builtins.eval", "builtins.exec", "os.system", "os.popen", "subprocess.getoutput",
    "subprocess.getstatusoutput", "marshal.load", "marshal.loads", "yaml.load", "yaml.unsafe_load", "pickle.load",
    "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
    "joblib.load", "pandas.read_pickle", "shelve.open", "jsonpickle.decode",
}  # fmt: skip


def imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it stands for: np -> numpy, and load -> pickle.load after `from pickle import load`."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]  # `import os.path` binds os
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return names


def calls(tree):
    """(call, the called name with import aliases resolved: np.load -> numpy.load)."""
    names = imported_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            head, dot, rest = ast.unparse(node.func).partition(".")
            yield node, names.get(head, head) + dot + rest


def keyword(node, name):
    return next((k.value for k in node.keywords if k.arg == name), None)


def is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    found = []
    for node, name in calls(ast.parse(source, filename)):
        where = f"{Path(filename).name}:{node.lineno}: {name}"
        if name in FORBIDDEN:
            found.append(where)
        if name in ("torch.load", "torch.serialization.load") and not is_constant(keyword(node, "weights_only"), True):
            found.append(f"{where} without weights_only=True")
        allow_pickle = keyword(node, "allow_pickle")
        if name == "numpy.load" and allow_pickle is not None and not is_constant(allow_pickle, False):
            found.append(f"{where} with allow_pickle not False")
        shell = keyword(node, "shell")
        if shell is not None and not is_constant(shell, False):  # shell=flag is as bad as shell=True
            found.append(f"{where} with shell={ast.unparse(shell)}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_is_run_from_data(path):
    assert violations(path.read_text(), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import pickle\npickle.load(f)",
        "from pickle import load\nload(f)",
        "from pickle import loads as undump\nundump(b)",
        "import pickle as p\np.Unpickler(f).load()",
        "import numpy as np\nnp.load(path, allow_pickle=True)",
        "from numpy import load\nload(path, allow_pickle=trusted)",
        "import torch\ntorch.load(path)",
        "from torch import load\nload(path, weights_only=False)",
        "import subprocess\nsubprocess.run(cmd, shell=True)",
        "import subprocess as sp\nsp.Popen(cmd, shell=use_shell)",
        "subprocess.run(cmd, shell=1)",
        "import os\nos.system(cmd)",
        "import pandas as pd\npd.read_pickle(path)",
    ],
)
def test_the_audit_sees_through_aliases_and_non_literal_flags(source):
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nnp.load(path)",
        "import numpy as np\nnp.load(path, allow_pickle=False)",
        "import torch\ntorch.load(path, weights_only=True)",
        "import subprocess\nsubprocess.run(['ssh', host], shell=False)",
        "import json\njson.load(f)",
        "# pickle.load(f) in a comment\n'pickle.load(f) in a string'",
    ],
)
def test_the_audit_passes_safe_calls(source):
    assert violations(source) == []


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
    [
        ["-o", "StrictHostKeyChecking=no"],
        ["-oStrictHostKeyChecking=accept-new"],
        "-o 'StrictHostKeyChecking off'",
        """-o 'StrictHostKeyChecking="no"'""",  # ssh drops the quotes
        """-o "StrictHostKeyChecking 'accept-new'" """,
        "-o ' stricthostkeychecking  =  FALSE'",
        ["-o", '"StrictHostKeyChecking"=no'],
        ["-To", "StrictHostKeyChecking=no"],  # -o inside a group of flags
        ["-4", "-o", "StrictHostKeyChecking"],  # no value: not yes
        ["-o", "UserKnownHostsFile=/dev/null"],
        ["-o", "UserKnownHostsFile '/dev/null'"],
    ],
)
def test_ssh_options_cannot_turn_host_key_checking_off(options):
    with pytest.raises(SshTargetError, match="known_hosts") as info:
        check_ssh_options(options, SshTarget("board"))
    assert "\n" not in str(info.value)


def test_ssh_options_may_name_another_known_hosts_file():
    assert check_ssh_options(["-o", "UserKnownHostsFile=/etc/devices/known_hosts"], SshTarget("board"))


# Halves of one password: a raw "@" in it splits the URL, and a driver may echo either side.
LEFT, RIGHT = "pwleft7f3a", "pwright9c1b"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{LEFT}{RIGHT}@127.0.0.1:1/x",
        f"postgresql://:{LEFT}{RIGHT}@127.0.0.1:1/x",
        f"postgresql://u@127.0.0.1:1/x?password={LEFT}{RIGHT}",
        f"postgresql://u@127.0.0.1:1/x?sslmode=disable&password={LEFT}{RIGHT}",
        f"postgresql://u:{LEFT}%40{RIGHT}@127.0.0.1:1/x",
        f"postgresql://u:{LEFT}@{RIGHT}@127.0.0.1:1/x",
        f"postgresql+psycopg://u:{LEFT}{RIGHT}@127.0.0.1:1/x",
    ],
)
def test_a_password_never_reaches_the_error_for_an_unreachable_database(tmp_path, url):
    study = tmp_path / "secret.toml"
    study.write_text(STUDY.format(storage="sqlite:///studies/secret.db"))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for args in (["studies", "list", "--storage", url], ["search", str(study), "--storage", url]):
        done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        output = done.stdout + done.stderr
        assert LEFT not in output and RIGHT not in output, (args, output)
        # Unreachable: exit 1; a raw "@" in the password is refused before any connection: exit 2.
        assert done.returncode == (2 if url.count("@") > 1 else 1), (args, output)
        assert done.stderr.count("\n") == 1 and "***" in done.stderr, (args, output)


STUDY = """
[study]
name = "secret"
trials = 1
storage = "{storage}"
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
"""


@pytest.mark.slow
def test_a_database_password_never_reaches_output_or_reports(tmp_path, postgres_url):
    password = "s3cret-Pa55"
    url = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust auth: any password is accepted
    study = tmp_path / "secret.toml"
    study.write_text(STUDY.format(storage=url))
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
