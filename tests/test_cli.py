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
