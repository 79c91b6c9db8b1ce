"""Hostile storage and leaked secrets (issue 17), through the real `main`.

Devices, pipes, sockets and links as storage; passwords in every output path (a real PostgreSQL);
a damaged SQLite page among good files; bad heartbeats; study-file lines in sub-tables and
quoted keys; budgets that print alike; ssh options ssh itself refuses.
"""

import io
import json
import os
import shutil
import socket
import sqlite3
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import optuna
import pytest
from servers import require

from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_DIR
from shufflesearch.cli import main
from shufflesearch.search import storage as storage_module
from shufflesearch.search.storage import StorageError, check_storage_url, open_storage, redact
from shufflesearch.search.study_file import load_study

STUDY = """[study]
name = "h"
trials = 1
pruner = "none"
{extra}
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


def run(args):
    # Each command is a process of its own: it has read no database header yet (storage._SQLITE_FILES).
    storage_module._SQLITE_FILES.clear()
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info, redirect_stdout(out), redirect_stderr(err):
        main([str(a) for a in args])
    return exit_info.value.code, out.getvalue(), err.getvalue()


def refused(args, code=2, fragment=""):
    got, out, err = run(args)
    assert got == code and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, (args, out, err)
    return err


def study_file(folder: Path, extra: str = "", name: str = "h.toml") -> Path:
    path = folder / name
    path.write_text(STUDY.format(extra=extra))
    return path


def stored_study(url: str, name: str = "h-13M", trials: int = 3) -> None:
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("mode", "per-budget")
    for _ in range(trials):
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"label": "x" * 300, "top1": 0.5}))
    storage.engine.dispose()


# --- 1. anything but a regular file (or a new name in an existing folder) is refused before SQLite opens it


def not_regular_files(tmp_path: Path) -> dict[str, Path]:
    os.mkfifo(tmp_path / "fifo.db")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.db"))  # the node stays after close
    sock.close()
    (tmp_path / "null-link.db").symlink_to("/dev/null")
    (tmp_path / "dangling.db").symlink_to(tmp_path / "elsewhere" / "target.db")
    (tmp_path / "journal-link.db-journal").symlink_to("/dev/null")
    os.mkfifo(tmp_path / "wal-fifo.db-wal")
    return {"null": Path("/dev/null"), "zero": Path("/dev/zero"), "full": Path("/dev/full"),
            "fifo": tmp_path / "fifo.db", "socket": tmp_path / "socket.db", "link to /dev/null": tmp_path / "null-link.db",
            "link to nothing": tmp_path / "dangling.db", "-journal is a link": tmp_path / "journal-link.db",
            "-wal is a fifo": tmp_path / "wal-fifo.db", "inside /dev/null": Path("/dev/null/x.db"),
            "in-memory": Path(":memory:")}  # fmt: skip


def test_no_command_opens_a_device_pipe_socket_or_link_as_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    targets = not_regular_files(tmp_path)
    study = study_file(tmp_path)
    dev_before, tmp_before = sorted(os.listdir("/dev")), sorted(os.listdir(tmp_path))
    cases = 0
    for path in targets.values():
        url = f"sqlite:///{path}"
        with_storage = study_file(tmp_path, f'storage = "{url}"', "in-file.toml")
        for args in (["studies", "list", "--storage", url], ["studies", "list", "--storage", url, "--json"],
                     ["report", study, "--storage", url, "--out", tmp_path / "r"],
                     ["search", study, "--resume", "--storage", url], ["search", study, "--storage", url],
                     ["search", with_storage], ["report", with_storage, "--out", tmp_path / "r"]):  # fmt: skip
            refused(args, 2)
            cases += 1
        with pytest.raises(StorageError):  # and the library's writer, called directly
            open_storage(url)
        with_storage.unlink()
    assert cases == 77
    assert sorted(os.listdir("/dev")) == dev_before  # no /dev/null-journal
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == tmp_before


def test_a_block_device_is_refused_without_being_opened():
    block = next((Path("/dev", n) for n in sorted(os.listdir("/dev")) if stat.S_ISBLK(os.stat(f"/dev/{n}").st_mode)),
                 None)  # fmt: skip
    if block is None:
        pytest.skip("no block device in /dev")
    with pytest.raises(StorageError, match="block device"):
        check_storage_url(f"sqlite:///{block}")  # offline: nothing is opened
    refused(["studies", "list", "--storage", f"sqlite:///{block}"], 2, "block device")


def test_a_writer_creates_no_missing_folders(tmp_path, monkeypatch):
    require(FASHION_MNIST_DIR.exists(), "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    study = study_file(tmp_path)
    refused(["search", study, "--storage", f"sqlite:///{tmp_path}/no/such/x.db"], 2, "does not exist")
    refused(["search", study_file(tmp_path, 'storage = "sqlite:///typo/x.db"', "s.toml")], 2, "does not exist")
    assert not (tmp_path / "no").exists() and not (tmp_path / "typo").exists()


def test_a_study_files_relative_storage_is_read_from_its_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    study = study_file(tmp_path / "sub", 'storage = "sqlite:///runs.db"')
    monkeypatch.chdir("/")
    assert load_study(study).storage == f"sqlite:///{tmp_path / 'sub' / 'runs.db'}"
    assert load_study(study_file(tmp_path, 'storage = "sqlite:////abs/x.db"')).storage == "sqlite:////abs/x.db"
    monkeypatch.chdir(tmp_path)
    assert load_study(Path("sub/h.toml")).storage == "sqlite:///sub/runs.db"  # as the default .db beside it


# --- 2. secrets: parsed, not patterned; every output path

SECRET_URLS = [
    "postgresql://u:my s3cr3t@127.0.0.1:1/db",
    "postgresql://u:a/s3cr3t?b#c@127.0.0.1:1/db",
    "postgresql://:s3cr3t@127.0.0.1:1/db",
    "postgresql://u@127.0.0.1:1/db?sslmode=disable&sslpassword=s3cr3t phrase",
    "postgresql://u@127.0.0.1:1/db?password=s3cr3t%20x",
    "postgresql://u@127.0.0.1:1/db?pass%77ord=s3cr3t",
    "postgresql+psycopg://u@127.0.0.1:1/db?application_name=a&passwd=s3cr3t",
    "postgresql://u@127.0.0.1:1/db?pwd=s3cr3t#frag",
    "postgresql://u@127.0.0.1:1/db?client_secret=s3cr3t&token=s3cr3t",
    "postgresql://u:s3cr3t@l@127.0.0.1:1/db",
]
SECRET_TEXTS = [
    "connection failed: password='my s3cr3t' host=db",
    "dsn: user=u password=s3cr3t dbname=x",
    'dsn: sslpassword = "s3 cr3t" sslmode=require',
    "dsn: password='it\\'s s3cr3t'",
    "params {'password': 'my s3cr3t', 'host': 'db'}",
    "could not open postgresql://u:my s3cr3t@db/x: refused",
]


@pytest.mark.parametrize("text", SECRET_URLS + SECRET_TEXTS)
def test_redaction_hides_every_password_like_value(text):
    shown = redact(text)
    assert "cr3t" not in shown and "s3" not in shown and "***" in shown, shown


@pytest.mark.parametrize("text", ["sqlite:///studies/a:b@c.db", "postgresql://u@db:5432/nas?sslmode=require",
                                  "FATAL:  password authentication failed for user \"u\"", "no password supplied",
                                  "Key (id)=(1) already exists"])  # fmt: skip
def test_redaction_leaves_text_without_secrets_alone(text):
    assert redact(text) == text


@pytest.mark.parametrize("url", SECRET_URLS)
def test_a_password_never_reaches_a_refused_connection_message(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    study = study_file(tmp_path)
    for args in (["studies", "list", "--storage", url], ["search", study, "--storage", url],
                 ["report", study, "--storage", url, "--out", tmp_path / "r"]):  # fmt: skip
        got, out, err = run(args)
        assert "cr3t" not in out + err and "***" in err and err.count("\n") == 1, (args, out, err)
        assert got == (2 if "@l@" in url else 1), (args, err)


@pytest.mark.slow
def test_no_output_path_shows_a_password_against_a_real_server(tmp_path, monkeypatch, postgres_url):
    """The search header, "is complete", --json, studies list (table and JSON), report, the server's own errors."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = postgres_url.replace("postgres@", "postgres:my s3cr3t/p?w#d@") + "?sslmode=disable&sslpassword=ssl s3cr3t"
    study = study_file(tmp_path, f'storage = "{url}"')
    server = url.split("/nas")[0]
    outputs = []
    for args, code in [(["search", study], 0), (["search", study], 0), (["search", study, "--json"], 0),
                       (["studies", "list", "--storage", url], 0), (["studies", "list", "--storage", url, "--json"], 0),
                       (["report", study, "--out", tmp_path / "report"], 0),
                       (["studies", "list", "--storage", url.replace("/nas?", "/nosuchdb?")], 1),
                       (["studies", "list", "--storage", url.replace("postgres:", "nosuchrole:")], 1),
                       (["search", study, "--storage", f"{server}/nas?sslpassword=s3cr3t&sslmode=bogus"], 1)]:  # fmt: skip
        got, out, err = run(args)
        assert got == code, (args, out, err)
        assert "cr3t" not in out + err, (args, out, err)
        outputs.append(out + err)
    assert "postgres:***@" in outputs[0] and "is complete" in outputs[1] and "***" in outputs[1]
    assert json.loads(outputs[2])["storage"].startswith("postgresql://postgres:***@")
    assert {row["storage"] for row in json.loads(outputs[4])} == {redact(url)} and "sslpassword=***" in redact(url)
    assert "does not exist" in outputs[6] and "does not exist" in outputs[7]  # the server's words, redacted
    for path in (p for p in (tmp_path / "report").rglob("*") if p.is_file()):
        assert b"cr3t" not in path.read_bytes(), path


# --- 3. one damaged database among many


def damage(path: Path, how: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'trial_user_attributes'").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    if how == "data page":  # a real study's data page, its cell contents overwritten
        data[(root - 1) * size + 8 : root * size] = b"\xff" * (size - 8)
    elif how == "header":
        data[:16] = b"garbage garbage!"
    else:  # truncated mid-file
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["data page", "header", "truncated"])
def test_a_damaged_database_is_named_and_the_others_are_listed(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    for name in ("a", "b", "c"):
        stored_study(f"sqlite:///studies/{name}.db", f"{name}-13M", trials=40)
    damage(tmp_path / "studies" / "b.db", how)
    for args in (["studies", "list"], ["studies", "list", "--json"]):
        got, out, err = run(args)
        assert got == 0 and err.count("\n") == 1 and err.startswith("warning: skipped") and "b.db" in err, (out, err)
        assert "a-13M" in out and "c-13M" in out and "b-13M" not in out
    err = refused(["studies", "list", "--storage", "sqlite:///studies/b.db"], 2 if how == "header" else 1)
    assert "b.db" in err


def test_resuming_from_a_damaged_database_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stored_study("sqlite:///h.db", trials=40)
    damage(tmp_path / "h.db", "data page")
    refused(["search", study_file(tmp_path), "--resume", "--storage", "sqlite:///h.db"], 1, "h.db")


# --- 4. the heartbeat setting


@pytest.mark.parametrize("value", ["abc", "0", "-1", "99999999999", "1e3", "5.5", "nan", " "])
def test_a_bad_heartbeat_setting_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    stored_study("sqlite:///h.db")
    monkeypatch.setenv("SHUFFLESEARCH_HEARTBEAT_S", value)
    refused(["studies", "list", "--storage", "sqlite:///h.db"], 2, "SHUFFLESEARCH_HEARTBEAT_S")
    refused(["search", study_file(tmp_path), "--resume", "--storage", "sqlite:///h.db"], 2, "SHUFFLESEARCH_HEARTBEAT_S")


def test_a_plausible_heartbeat_setting_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stored_study("sqlite:///h.db")
    for value in ("7", "", "3600"):
        monkeypatch.setenv("SHUFFLESEARCH_HEARTBEAT_S", value)
        assert run(["studies", "list", "--storage", "sqlite:///h.db", "--json"])[0] == 0


# --- 5 and 6. study-file errors name the right line; budgets that print alike are refused

LINES = [
    (
        "# [study]\n[study]\nname = 'x'\n\n[accuracy.fidelity]\n\nepochs = 'x'\n[budget]\nmflops = [40]\n",
        7,
        "accuracy.fidelity.epochs",
    ),
    ("[budget]\nmflops = [40]\n[accuracy.fidelity]\nbogus = 1\n", 4, "accuracy.fidelity.bogus"),
    ("[budget]\nmflops = [40]\n[accuracy]\n\nfidelity = { epochs = -1 }\n", 5, "accuracy.fidelity.epochs"),
    ("[budget]\nmflops = [40]\n[ \"accuracy\" . 'fidelity' ]\n\nepochs = 'x'\n", 5, "accuracy.fidelity.epochs"),
    ('["study"]\n\n"name" = "bad name!"\n[budget]\nmflops = [40]\n', 3, "study.name"),
    ("[budget]\nmflops = [40]\n['study']\n\n'trials' = 0\n", 5, "study.trials"),
    ("\n\nstudy.trials = 0\n[budget]\nmflops = [40]\n", 3, "study.trials"),
    ("[budget]\nmflops = [40]\n[study]\nartifacts = '''\n[accuracy]\n'''\ntrials = 0\n", 7, "study.trials"),
    (
        "[budget]\nmflops = [40]\n[space]\nrepeats = [\n  [1, 2],\n  [1, 2],\n  [1, 2],\n]\nresolution = 5\n",
        9,
        "space.resolution",
    ),
    ("[budget]\nmflops = [40]\n[space]\ngroups = [3] # [study]\nscale = [2.0, 1.0]\n", 5, "space.scale"),
    ('[budget]\nmflops = [40]\n[study]\n"weird.key" = 1\n', 4, "study.weird.key"),
]


@pytest.mark.parametrize("text, line, key", LINES)
def test_a_study_file_error_names_the_line_at_fault(tmp_path, text, line, key):
    path = tmp_path / "s.toml"
    path.write_text(text)
    refused(["search", path], 2, f"s.toml:{line}: {key}:")


@pytest.mark.parametrize("budgets", ["13, 13.0000001", "13, 13", "40, 40.0", "13, 38, 13.000000001", "1e2, 100"])
def test_budgets_that_name_one_study_are_refused(tmp_path, budgets):
    path = study_file(tmp_path)
    path.write_text(path.read_text().replace("mflops = [13]", f"mflops = [{budgets}]"))
    refused(["search", path], 2, "budget.mflops")
    refused(["report", path, "--out", tmp_path / "r"], 2, "budget.mflops")


def test_budgets_that_differ_in_print_still_load(tmp_path):
    path = study_file(tmp_path)
    path.write_text(path.read_text().replace("mflops = [13]", "mflops = [13, 13.1, 38]"))
    assert list(load_study(path).budget_windows()) == ["h-13M", "h-13.1M", "h-38M"]


# --- 8. ssh options that ssh itself refuses: usage errors, exit 2


@pytest.mark.parametrize("options", ["-p 0", "-p 99999", "-p abc", "-p ''", "-o Port=0", "-oPort=99999",
                                     "-o 'Port abc'", "-o ConnectTimeout=abc", "-o NoSuchOption=1", "-c nocipher",
                                     "-L bad", "-F /nonexistent/config"])  # fmt: skip
def test_ssh_options_that_ssh_refuses_exit_2(options):
    require(shutil.which("ssh") is not None, "no ssh client (Debian package openssh-client)")
    refused(["latency", "--groups", "3", "--scale", "0.25", "--resolution", "64", "--target", "ssh://pi@127.0.0.1:1",
             "--ssh-options", options], 2, "ssh refuses")  # fmt: skip
