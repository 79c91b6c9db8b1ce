"""Estimated latency tables: every block counted in one emulated aarch64 process, and the table that ships.

The shipped table's tests need nothing but the package. The build tests need the arm64 set-up
(`shufflesearch setup arm64`: qemu-user, gcc, libglib2.0-dev and network for the first, cached
set-up): with CI=true they must run; elsewhere they skip when emulation is unavailable.
"""

import io
import json
import os
import time
from contextlib import redirect_stdout

import pytest

from shufflesearch.cli import main
from shufflesearch.export import onnx_bytes
from shufflesearch.latency.emulated import (
    EmulationError,
    EmulationInputError,
    count_instructions,
    ensure_sysroot,
    estimate_ms,
)
from shufflesearch.latency.emulated.batch import count_many, split_models
from shufflesearch.latency.emulated.guest import qemu_binary
from shufflesearch.latency.lut import (
    LatencyTable,
    LutError,
    build_lut,
    record_validation,
    resolve_table,
    shipped_tables,
    validate_lut,
)
from shufflesearch.latency.lut.shipped import REGENERATE, is_table_name
from shufflesearch.latency.targets import latency_on
from shufflesearch.presets import get_preset
from shufflesearch.search.space import SearchSpace
from shufflesearch.spec import ShuffleNetSpec

IN_CI = os.environ.get("CI") == "true"
# Tiny networks at 64 px: 32 distinct blocks, counted in seconds under emulation.
SPACE = SearchSpace(groups=(3, 8), scale=(0.25, 0.5), scale_step=0.25, resolution=64, num_classes=10)
FRESH = [  # specs of SPACE none of whose values the build saw whole (validation draws seed 1)
    ShuffleNetSpec(groups=3, scale=0.5, repeats=(6, 4, 2), resolution=64, num_classes=10),
    ShuffleNetSpec(groups=8, scale=0.25, repeats=(2, 10, 6), resolution=64, num_classes=10),
    ShuffleNetSpec(groups=8, scale=0.5, repeats=(4, 7, 3), resolution=64, num_classes=10),
]


# -- the shipped table: no QEMU needed -----------------------------------------------------------
def test_shipped_table_loads_by_name_and_predicts_the_default_space():
    assert "snapdragon820" in shipped_tables()
    table = resolve_table("snapdragon820")
    assert (table.kind, table.profile, table.target) == ("estimated", "snapdragon820", "arm64-emulated")
    table.check_covers(SearchSpace())  # every spec of the default space has its blocks
    for spec in SearchSpace().sample(50, seed=3):
        assert 1 < table.predict_ms(spec) < 5000
    small, large = (table.predict_ms(get_preset(f"shufflenet_v1_x{s}_g3")) for s in ("0_5", "2_0"))
    assert small < large
    assert resolve_table("snapdragon820-estimated").blocks == table.blocks  # the file's own stem works too


def test_shipped_table_says_estimated_everywhere_and_carries_its_measured_error():
    table = resolve_table("snapdragon820")
    data = json.loads(shipped_tables()["snapdragon820"].read_text())
    assert data["kind"] == "estimated" and data["profile"] == "snapdragon820"
    assert data["basis"].startswith("estimated, not measured") and "snapdragon820" in data["basis"]
    assert "created" not in data and "build_seconds" not in data  # nothing that varies between two builds
    error = table.measured_error
    assert error["specs"] >= 20 and "whole-network emulation" in error["against"]
    assert 0 <= error["mape_pct"] < 10 and error["kendall_tau"] > 0.9
    assert all("emulated_us" in row and "measured_us" not in row for row in table.validation["rows"])
    assert "estimated on snapdragon820" in table.predictor
    assert table.rebuild_command().startswith("shufflesearch lut build --target arm64-emulated --profile snapdragon820")
    assert REGENERATE["snapdragon820"].endswith("shufflesearch/latency/tables/snapdragon820-estimated.lut.json")


def run_cli(args):
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, redirect_stdout(out):
        main(args)
    assert done.value.code == 0, out.getvalue()
    return out.getvalue()


def test_latency_command_reads_a_shipped_table_by_name(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    args = ["latency", "--groups", "3", "--scale", "1.0", "--lut", "snapdragon820"]
    text = " ".join(run_cli(args).split())
    assert "ms estimated on snapdragon820" in text and "Not a latency measurement" in text
    assert "measured on" not in text and "predicted" not in text
    data = json.loads(run_cli([*args, "--json"]))
    assert data["kind"] == "lut-estimated" and data["estimated"] is True and data["profile"] == "snapdragon820"
    assert data["error"]["specs"] >= 20 and data["basis"].startswith("estimated")
    prediction = latency_on(get_preset("shufflenet_v1_x1_0_g3"), lut="snapdragon820")
    assert prediction.predicted_ms == pytest.approx(data["predicted_ms"])


def test_a_name_is_a_shipped_table_and_a_path_is_a_file(tmp_path, monkeypatch):
    assert is_table_name("snapdragon820") and not is_table_name("studies/x.lut.json")
    assert not is_table_name("x.json") and not is_table_name("")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snapdragon820").write_text("not a table")  # a stray file never stands in for the shipped one
    assert resolve_table("snapdragon820").kind == "estimated"
    with pytest.raises(LutError, match=r"no shipped latency table named 'pixel9' \(shipped: snapdragon820\)"):
        resolve_table("pixel9")
    with pytest.raises(LutError, match="does not exist"):
        resolve_table("./pixel9.lut.json")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        ({"kind": "guessed"}, "kind 'guessed'"),
        ({"profile": ""}, "must name its device profile"),
        ({"validation": {"mape_pct": "low"}}, "validation needs numbers"),
    ],
)
def test_an_estimate_cannot_pass_for_a_measurement(tmp_path, edit, fragment):
    data = json.loads(shipped_tables()["snapdragon820"].read_text()) | edit
    path = tmp_path / "edited.lut.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LutError, match="damaged latency table") as info:
        LatencyTable.load(path)
    assert fragment in str(info.value)


def test_a_shipped_table_is_never_rewritten_by_validate():
    with pytest.raises(LutError, match="ships with the package"):
        record_validation(resolve_table("snapdragon820"), None)


def test_emulated_build_refuses_settings_that_do_not_apply():
    for settings in ({"threads": 2}, {"clock": "cpu"}, {"statistic": "min_ms"}, {"runs": 5}):
        with pytest.raises(LutError, match="arm64-emulated"):
            build_lut(SPACE, target="arm64-emulated", **settings)
    with pytest.raises(Exception, match="unknown device profile 'pixel9'"):
        build_lut(SPACE, target="arm64-emulated", profile="pixel9")


def test_batch_plugin_output_is_split_per_model():
    text = "classes 7\nmodel 0\nrun 3 0 1 1 0 0 0 1\nrun 10 1 2 3 0 1 1 2\nmodel 1\nrun 4 0 1 1 0 0 1 1\nexit\n"
    assert split_models(text) == {
        0: [[3, 0, 1, 1, 0, 0, 0, 1], [10, 1, 2, 3, 0, 1, 1, 2]],
        1: [[4, 0, 1, 1, 0, 0, 1, 1]],
    }
    with pytest.raises(EmulationError, match="before any model"):
        split_models("run 3 0 1 1 0 0 0 1\n")
    with pytest.raises(EmulationError, match="twice"):
        split_models("model 0\nmodel 0\n")


# -- building under emulation ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_root():
    try:
        qemu_binary()
        return ensure_sysroot()
    except EmulationError as exc:
        if IN_CI:
            pytest.fail(f"arm64 emulation must run in CI: {exc}")
        pytest.skip(f"arm64 emulation unavailable on this machine: {exc}")


@pytest.fixture(scope="module")
def built(cache_root):
    started = time.monotonic()
    table = build_lut(SPACE, target="arm64-emulated", fit_points=4, holdout=SPACE.sample(8, seed=1))
    return table, time.monotonic() - started


@pytest.mark.slow
def test_small_emulated_build_runs_in_ci_time_and_says_estimated(built):
    table, seconds = built
    assert seconds < 240, f"the emulated build of {len(table.blocks)} blocks took {seconds:.0f} s"
    assert len(table.blocks) == 32 and table.estimated and table.target == "arm64-emulated"
    for entry in table.blocks.values():
        assert entry["us"] > 0 and entry["instructions"] == sum(entry["mix"].values())
    assert table.measured_error["specs"] == 8 and table.fit["loo_mape_pct"] < 5
    assert "emulated_us" in table.fit["points"][0] and "measured_us" not in table.fit["points"][0]


@pytest.mark.slow
def test_small_build_agrees_with_whole_network_emulation_within_its_reported_error(built):
    table, _ = built
    reported = table.measured_error
    worst = max(abs(row["error_pct"]) for row in table.validation["rows"])
    assert reported["mape_pct"] < 3 and reported["kendall_tau"] > 0.9
    fresh = validate_lut(table, FRESH)  # whole networks never seen by the build, in their own guest process
    assert fresh.against.startswith("whole-network emulation")
    for row in fresh.rows:
        assert abs(row["error_pct"]) <= worst + 0.5, (row["label"], row["error_pct"], worst)
    # ... and that ground truth is what `latency --target arm64-emulated` estimates, one process per network.
    alone = estimate_ms(count_instructions(onnx_bytes(FRESH[0])[0], (1, 3, 64, 64), runs=3))
    assert alone.estimated_ms * 1e3 == pytest.approx(fresh.rows[0]["emulated_us"], rel=0.005, abs=10)


@pytest.mark.slow
def test_emulated_build_is_deterministic_to_the_byte(built, tmp_path):
    table, _ = built
    again = build_lut(SPACE, target="arm64-emulated", fit_points=4, holdout=SPACE.sample(8, seed=1))
    first, second = table.save(tmp_path / "a.lut.json"), again.save(tmp_path / "b.lut.json")
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.slow
def test_one_process_counts_many_models_as_separate_processes_count_each(cache_root):
    nets = [(f"net{i}", onnx_bytes(spec)[0], (1, 3, 64, 64)) for i, spec in enumerate(FRESH[:2])]
    together = count_many(nets, runs=3)
    for name, data, shape in nets:
        alone = count_instructions(data, shape, runs=3)
        assert together[name].instructions == pytest.approx(alone.instructions, rel=0.005)
        assert together[name].guest["input_shape"] == list(shape)
    with pytest.raises(EmulationInputError, match="rejected model 'bad'"):
        count_many([nets[0], ("bad", nets[1][1], (1, 3, 7))])
