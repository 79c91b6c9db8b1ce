import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shufflesearch.cli import main


def run(args, capsys=None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info, redirect_stdout(out), redirect_stderr(err):
        main(args)
    return exit_info.value.code, out.getvalue(), err.getvalue()


def test_analyze_json_has_the_documented_fields(capsys):
    code, out, _ = run(["analyze", "--groups", "3", "--scale", "1.0", "--repeats", "4,6,4",
                        "--resolution", "160", "--json"], capsys)  # fmt: skip
    data = json.loads(out)
    assert code == 0
    assert isinstance(data["macs"], int) and isinstance(data["params"], int)
    assert data["mflops"] == pytest.approx(data["macs"] / 1e6)
    assert [s["name"] for s in data["stages"]] == ["stem", "stage2", "stage3", "stage4", "head"]
    assert sum(s["macs"] for s in data["stages"]) == data["macs"]
    assert all({"name", "macs", "params"} <= s.keys() for s in data["stages"])
    assert data["spec"]["repeats"] == [4, 6, 4] and data["spec"]["resolution"] == 160


def test_analyze_preset_with_override_and_fvcore(capsys):
    code, out, _ = run(["analyze", "--preset", "shufflenet_v1_x1_5_g3", "--resolution", "160", "--fvcore", "--json"],
                       capsys)  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["spec"]["stem_channels"] == 24 and data["fvcore"]["agrees"] is True


def test_analyze_human_output_names_the_convention(capsys):
    code, out, _ = run(["analyze", "--groups", "8", "--scale", "0.5"], capsys)
    assert code == 0
    assert "as in the paper" in out and "40.47" in out and "stage4" in out


def test_models_lists_every_preset(capsys):
    code, out, _ = run(["models", "--json"], capsys)
    names = {row["name"] for row in json.loads(out)}
    assert code == 0 and "shufflenet_v1_x0_5_g8" in names and len(names) == 11


@pytest.mark.parametrize("suffix", [".csv", ".md"])
def test_table_writes_the_grid(tmp_path, capsys, suffix):
    out_file = tmp_path / "reports" / f"complexity{suffix}"
    code, out, _ = run(["table", "--groups", "1,2,3,4,8", "--scales", "0.25,0.5,1.0", "--out", str(out_file)], capsys)
    text = out_file.read_text()
    assert code == 0 and "wrote" in out
    assert len(text.strip().splitlines()) == 15 + (1 if suffix == ".csv" else 2)
    assert "shufflenet_v1_x1_0_g3" in text


def test_table_refuses_unknown_format_and_keeps_existing_file(tmp_path, capsys):
    existing = tmp_path / "t.txt"
    existing.write_text("keep me")
    code, _, err = run(["table", "--out", str(existing)], capsys)
    assert code == 2 and err.count("\n") == 1 and ".csv or .md" in err
    assert existing.read_text() == "keep me"


def test_export_writes_checked_onnx(tmp_path, capsys):
    code, out, _ = run(["export", "--groups", "3", "--scale", "0.25", "--resolution", "64", "--out",
                        str(tmp_path / "m.onnx"), "--json"], capsys)  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["max_abs_diff"] <= 1e-4 and (tmp_path / "m.onnx").stat().st_size == data["bytes"]


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--groups", "5"],
        ["analyze", "--scale", "0"],
        ["analyze", "--repeats", "4,0,4"],
        ["analyze", "--repeats", "4,x"],
        ["analyze", "--stage-channels", "240,480,961"],
        ["analyze", "--groups", "abc"],
        ["analyze", "--preset", "nope"],
        ["analyze", "--stem", "huge"],
        ["analyze", "--resolution", "8"],
        ["analyze", "--bogus"],
        ["nosuchcommand"],
        ["table", "--scales", "a,b"],
        ["export", "--groups", "3"],
        ["analyze", "--preset", ""],  # once read as "no preset"
        ["latency", "--runs", "0"],  # once read as "the default 50"
        ["studies", "list", "--storage", ""],  # once read as "every studies/*.db"
        ["search", "studies/demo.toml", "--trials", "100001"],  # queueing that many took minutes
        ["lut", "validate", "x.lut.json", "--specs", "100000"],
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args):
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-m", "shufflesearch.cli", "analyze", "--groups", "7"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nearest valid: 8" in done.stderr
    done = subprocess.run([sys.executable, "-m", "shufflesearch.cli"], capture_output=True, text=True)
    assert done.returncode == 0 and "analyze" in done.stdout


def test_analyze_does_not_import_torch():
    code = "import sys; from shufflesearch.cli import main\ntry: main(['analyze', '--json'])\nexcept SystemExit: pass\n"
    code += "assert 'torch' not in sys.modules and 'optuna' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


OPTIONS = ["--groups", "--scale", "--repeats", "--resolution", "--classes", "--preset", "--stem", "--bottleneck",
           "--stage-channels", "--stem-channels", "--in-channels", "--shuffle", "--no-shuffle", "--json", "--layers",
           "--scales", "--bogus"]  # fmt: skip
VALUES = st.one_of(st.integers(-10, 3000).map(str), st.floats(allow_nan=True).map(str),
                   st.sampled_from(["4,8,4", "1,2", "a,b", "", "shufflenet_v1_x1_0_g3", "small", "imagenet", "0.25",
                                    "240,480,960", "-1", "1e9", "nan", "--json"]),
                   st.text(max_size=6))  # fmt: skip


@settings(max_examples=150)
@given(
    st.sampled_from(["analyze", "models", "table"]), st.lists(st.tuples(st.sampled_from(OPTIONS), VALUES), max_size=4)
)
def test_fuzzed_cli_input_never_tracebacks(command, pairs):
    args = [command] + [token for pair in pairs for token in pair]
    code, out, err = run(args)
    assert code in (0, 2), (args, err)
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
    else:
        assert out


def test_readers_of_a_missing_database_create_nothing(tmp_path, monkeypatch):
    """`studies list`, `report` and `search --resume` read: a mistyped path must not leave a database behind."""
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\ntrials = 2\n[budget]\nmflops = [40]\n')
    missing = tmp_path / "new" / "s.db"
    for args, fragment in [
        (["studies", "list", "--storage", f"sqlite:///{missing}"], "no study database at"),
        (["report", str(study)], "has no trials yet"),
        (["report", str(study), "--storage", f"sqlite:///{missing}"], "has no trials yet"),
        (["search", str(study), "--resume", "--storage", f"sqlite:///{missing}"], "nothing to resume"),
    ]:
        code, _, err = run(args)
        assert code == 2 and fragment in err and err.count("\n") == 1, (args, err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["s.toml"]


def test_readers_leave_another_programs_sqlite_file_alone(tmp_path):
    """Optuna would add its 14 tables (and WAL mode) to any SQLite file it opens; a reader refuses instead."""
    import hashlib
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('precious')")
    db.close()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    code, _, err = run(["studies", "list", "--storage", f"sqlite:///{other}"])
    assert code == 2 and "another program's SQLite file" in err and err.count("\n") == 1, err
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\ntrials = 1\n[budget]\nmflops = [40]\n')
    code, _, err = run(["search", str(study), "--storage", f"sqlite:///{other}"])  # a writer refuses it too
    assert code == 2 and "another program's SQLite file" in err and err.count("\n") == 1, err
    study.unlink()
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_command_group_alone_shows_its_help(capsys):
    code, out, err = run(["studies"])
    assert code == 0 and out.startswith("Usage: shufflesearch studies") and "Example:" in out and not err


def test_an_error_quoting_a_huge_value_stays_a_readable_line(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\nmode = "' + "x" * 100_000 + '"\n[budget]\nmflops = [40]\n')
    code, _, err = run(["report", str(study)])
    assert code == 2 and err.count("\n") == 1 and len(err) < 1200 and "more characters)" in err, err[:300]


def test_score_with_a_batch_larger_than_the_dataset_names_the_option(tmp_path):
    from PIL import Image

    for c, name in enumerate(["ant", "cat"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 20), (40 * c + i, 0, 0)).save(tmp_path / name / f"{i}.png")
    code, _, err = run(["score", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--image-size", "28"])
    assert code == 2 and "--batch" in err and "the 8 training images" in err and err.count("\n") == 1, err


def test_studies_list_of_every_study_skips_a_database_being_created(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    sqlite3.connect(tmp_path / "studies" / "starting.db").close()  # a first search between WAL and schema
    with sqlite3.connect(tmp_path / "studies" / "other.db") as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    code, out, err = run(["studies", "list"])
    assert code == 0 and "no studies stored yet" in out, (out, err)
    assert err.count("\n") == 1 and err.startswith("warning: skipped") and "other.db" in err


def test_spec_options_are_declared_once():
    import typer

    from shufflesearch.cli import app

    root = typer.main.get_command(app)
    helps = {}
    for name in ["analyze", "export", "latency", "train", "score"]:
        for param in root.commands[name].params:
            if param.opts[0] in ("--groups", "--scale", "--preset", "--shuffle"):
                helps.setdefault(param.opts[0], set()).add(param.help)
    assert set(helps) == {"--groups", "--scale", "--preset", "--shuffle"}
    assert all(len(texts) == 1 for texts in helps.values()), helps


def test_accuracy_reads_as_percent_and_json_keeps_the_fraction(monkeypatch):
    from shufflesearch.search import results

    row = {"storage": "sqlite:///studies/x.db", "name": "x-13M", "mode": "per-budget", "window_mflops": [0, 13],
           "complete": 3, "pruned": 1, "running": 0, "waiting": 0, "failed": 0, "best_top1": 0.81234,
           "best_label": "g3 x0.25"}  # fmt: skip
    monkeypatch.setattr(results, "stored_studies", lambda storage=None: ([row], []))
    code, out, _ = run(["studies", "list"])
    assert code == 0 and "81.23 %" in out and "0.8123" not in out
    code, out, _ = run(["studies", "list", "--json"])
    assert code == 0 and json.loads(out)[0]["best_top1"] == 0.81234


def test_the_training_bar_says_what_happens_before_the_first_step_and_the_time_left(monkeypatch):
    import io
    import time

    from rich.console import Console

    from shufflesearch.accuracy.train_result import TrainProgress
    from shufflesearch.cli import render
    from shufflesearch.logs import show, verbosity_level

    out = io.StringIO()
    monkeypatch.setattr(render, "console", lambda: Console(file=out, force_terminal=True, width=140))
    with render.training_bar("train", 2) as progress:
        time.sleep(0.3)  # a refresh before any step: data loading
        first = out.getvalue()
        progress(TrainProgress(0.5, 2, 5, 20, 0.5, 640, 321.0))
        time.sleep(0.3)
    assert "preparing the data" in first and "nan" not in first and "0 img/s" not in first
    assert "loss 0.500  321 img/s" in out.getvalue() and "left" in out.getvalue()
    show(*verbosity_level(-1))  # -q: no bar at all
    try:
        quiet = io.StringIO()
        monkeypatch.setattr(render, "console", lambda: Console(file=quiet, force_terminal=True, width=140))
        with render.training_bar("train", 2) as progress:
            progress(TrainProgress(0.5, 2, 5, 20, 0.5, 640, 321.0))
        assert quiet.getvalue() == ""
    finally:
        show(*verbosity_level(0))
