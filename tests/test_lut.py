"""Latency lookup tables: built for real (a small space at 32 px) locally and over a real loopback sshd."""

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys

import pytest
from sshd import leftovers, start_sshd

from shufflesearch.latency import device_runner
from shufflesearch.latency.lut import LatencyTable, LutError, build_lut, fit_sum, validate_lut
from shufflesearch.latency.lut import table as table_file
from shufflesearch.latency.ssh import SshTargetError, time_models_remote
from shufflesearch.search.space import SearchSpace
from shufflesearch.spec import ShuffleNetSpec

SPACE = SearchSpace(groups=(2, 3), scale=(0.25, 0.5), scale_step=0.25, repeats=((1, 2), (1, 3), (1, 2)), resolution=32)
SPEC = ShuffleNetSpec(groups=2, scale=0.25, repeats=(2, 3, 1), resolution=32)
# SPEC's blocks, spelled out by hand: stem 3->6 on 32 px; 32 -> 16 (conv) -> 8 (max pool) -> 4 -> 2 -> 1.
SPEC_BLOCKS = {
    "stem:3>6:imagenet@32": 1,
    "unit:6>48:m12:s2:g2:gf0:sh1@8": 1,
    "unit:48>48:m12:s1:g2:gf1:sh1@4": 1,
    "unit:48>104:m26:s2:g2:gf1:sh1@4": 1,
    "unit:104>104:m26:s1:g2:gf1:sh1@2": 2,
    "unit:104>200:m50:s2:g2:gf1:sh1@2": 1,
    "head:200>1000@1": 1,
}


HOLDOUT = [SPEC, SPEC.replace(groups=3, repeats=(1, 1, 2)), SPEC.replace(scale=0.5, repeats=(2, 1, 2))]


@pytest.fixture(scope="module")
def table():
    return build_lut(SPACE, runs=5, warmup=1, fit_points=3, holdout=HOLDOUT)


@pytest.fixture()
def saved(table, tmp_path):
    path = tmp_path / "small.lut.json"
    table.save(path)
    return path


def one_line_lut_error(call, *fragments):
    with pytest.raises(LutError) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_table_holds_every_distinct_block_of_the_space_once(table):
    assert SPEC.stem_channels == 6 and SPEC.stage_channels == (48, 104, 200)
    assert set(SPEC_BLOCKS) <= set(table.blocks)
    # 2 groups x 2 scales, 8 blocks each (stem, 2 units per stage, head), minus the stems they share.
    widths = {(g, s) for g in (2, 3) for s in (0.25, 0.5)}
    stems = {ShuffleNetSpec(groups=g, scale=s).stem_channels for g, s in widths}
    assert len(table.blocks) == 7 * len(widths) + len(stems)
    for entry in table.blocks.values():
        assert entry["min_us"] <= entry["median_us"] and entry["us"] >= 0
        assert math.isclose(entry["us"], max(0.0, entry["median_us"] - table.overhead_us), abs_tol=1e-6)
    assert 0 < table.overhead_us < 1000 and table.machine["arch"] == platform.machine()
    assert (table.resolution, table.num_classes, table.target, table.threads) == (32, 1000, "local", 1)


def test_prediction_is_the_fitted_sum_of_block_latencies(table):
    by_hand = sum(n * table.blocks[key]["us"] for key, n in SPEC_BLOCKS.items())
    assert table.predict_us(SPEC) == pytest.approx(table.fit["a"] * by_hand + table.fit["b_us"], rel=1e-12)
    assert table.predict_ms(SPEC) == pytest.approx(table.predict_us(SPEC) / 1e3)
    # Depth only multiplies counts: one more stride-1 unit in Stage3 adds exactly a * its latency.
    deeper = SPEC.replace(repeats=(2, 4, 1))
    step = table.fit["a"] * table.blocks["unit:104>104:m26:s1:g2:gf1:sh1@2"]["us"]
    assert table.predict_us(deeper) - table.predict_us(SPEC) == pytest.approx(step)


def test_fit_points_are_whole_networks_measured_at_build(table):
    points = table.fit["points"]
    assert len(points) == 3 and table.fit["a"] > 0
    for p in points:
        spec = ShuffleNetSpec.from_dict(p["spec"])
        assert p["measured_us"] > 0
        assert p["predicted_us"] == pytest.approx(table.predict_us(spec))
        assert p["error_pct"] == pytest.approx(100 * (p["predicted_us"] - p["measured_us"]) / p["measured_us"])
    assert table.fit["mape_pct"] == pytest.approx(sum(abs(p["error_pct"]) for p in points) / 3)


def test_a_block_keeps_its_median_round(table):
    from shufflesearch.latency.lut.timing import robust_us

    burst = [[1.0, 1.1, 1.2], [9.0, 9.5, 9.9], [1.2, 1.3, 1.4]]  # one round hit by a burst of load
    assert robust_us(burst, "median_ms") == pytest.approx(1300.0) and robust_us(burst, "min_ms") == 1200.0
    assert robust_us(burst[:2], "min_ms") == pytest.approx(5000.0)  # even count: the mean of the middle two
    assert table.rounds == 3 and all(e["spread_pct"] >= 0 for e in table.blocks.values())


def test_holdout_networks_are_measured_beside_the_blocks_but_not_fitted(table):
    held = table.fit["holdout"]
    assert [r["label"] for r in held["rows"]] == [s.label for s in HOLDOUT]
    assert {r["label"] for r in held["rows"]}.isdisjoint(p["label"] for p in table.fit["points"])
    for row, spec in zip(held["rows"], HOLDOUT):
        assert row["predicted_us"] == pytest.approx(table.predict_us(spec)) and row["measured_us"] > 0
    assert held["mape_pct"] == pytest.approx(sum(abs(r["error_pct"]) for r in held["rows"]) / 3)
    assert -1 <= held["kendall_tau"] <= 1


def test_fit_recovers_a_known_line_and_reports_leave_one_out_error():
    points = [(SPEC, s, 1.7 * s + 40.0) for s in (100.0, 250.0, 900.0, 4000.0)]
    fit = fit_sum(points)
    assert fit["a"] == pytest.approx(1.7) and fit["b_us"] == pytest.approx(40.0)
    assert fit["mape_pct"] == pytest.approx(0, abs=1e-9) and fit["loo_mape_pct"] == pytest.approx(0, abs=1e-9)
    noisy = fit_sum([(SPEC, s, m * f) for (_, s, m), f in zip(points, (1.1, 0.9, 1.05, 0.97))])
    assert noisy["loo_mape_pct"] > noisy["mape_pct"] > 0  # held-out error is the honest, larger one


def test_file_round_trip(table, saved):
    loaded = LatencyTable.load(saved)
    assert loaded.to_dict() == json.loads(json.dumps(table.to_dict()))
    assert loaded.predict_us(SPEC) == table.predict_us(SPEC)
    data = json.loads(saved.read_text())
    assert (data["format_version"], data["family"], data["backend"]) == (1, "shufflenet_v1", "onnxruntime")
    assert data["onnxruntime_version"] == table.machine["versions"]["onnxruntime"]
    assert data["build_seconds"] > 0 and data["space"]["groups"] == [2, 3]
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # atomic: no temp file left


@pytest.mark.parametrize(
    ("change", "option"),
    [({"resolution": 64}, "--resolution 64"), ({"num_classes": 10}, "--classes 10"),
     ({"in_channels": 1}, "--in-channels 1"), ({"stem": "small"}, "--stem small")],
)  # fmt: skip
def test_spec_for_another_input_names_the_command_that_fixes_it(saved, change, option):
    table = LatencyTable.load(saved)
    message = one_line_lut_error(
        lambda: table.predict_us(SPEC.replace(**change)), str(saved), "shufflesearch lut build"
    )
    assert option in message and "--target local" in message


def test_a_search_space_is_checked_before_the_search(table):
    table.check_covers(SPACE)
    table.check_covers([SPEC, *HOLDOUT])
    one_line_lut_error(lambda: table.check_covers(dataclasses.replace(SPACE, scale=(0.25, 1.0))), "no entry")
    one_line_lut_error(lambda: table.check_covers(dataclasses.replace(SPACE, resolution=64)), "--resolution 64")
    deeper = dataclasses.replace(SPACE, repeats=((1, 2), (1, 3), (1, 16)))  # depth never needs new blocks
    table.check_covers(deeper)


def test_spec_outside_the_space_names_the_missing_block(table):
    one_line_lut_error(lambda: table.predict_us(SPEC.replace(scale=1.0)), "no entry 'stem:3>24:imagenet@32'", "--space")
    one_line_lut_error(
        lambda: table.predict_us(SPEC.replace(groups=8)), "'stem:3>8:imagenet@32'", "g8 x0.25", "--space"
    )
    wide = SPEC.replace(stage_channels=(48, 104, 208))  # same stem and Stage2-3 as SPEC, another Stage4
    one_line_lut_error(lambda: table.predict_us(wide), "no entry 'unit:104>208:m52:s2:g2:gf1:sh1@2'")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(family="mobilenet_v2"), "model family 'mobilenet_v2'"),
        (lambda d: d.update(format_version=99), "format_version 99"),
        (lambda d: d.pop("format"), "not a shufflesearch latency table"),
        (lambda d: d["blocks"].update({"stem:3>6:imagenet@32": {"us": -1}}), "damaged"),
        (lambda d: d["blocks"].update({"head:200>1000@1": {"us": "fast"}}), "damaged"),
        (lambda d: d.update(fit={"a": None, "b_us": 0}), "damaged"),
        (lambda d: d.update(resolution="224"), "damaged"),
        (lambda d: d.update(statistic="mean_ms"), "damaged"),
    ],
)
def test_foreign_or_damaged_file_is_one_line_with_the_fix(saved, edit, fragment):
    data = json.loads(saved.read_text())
    edit(data)
    saved.write_text(json.dumps(data))
    one_line_lut_error(lambda: LatencyTable.load(saved), str(saved), fragment, "shufflesearch lut build")


@pytest.mark.parametrize("content", ["", '{"blocks": ', "[1, 2]", '{"a": 1}', "\xff\xfe"])
def test_corrupt_file_is_one_line(tmp_path, content):
    path = tmp_path / "x.lut.json"
    path.write_bytes(content.encode("latin-1"))
    one_line_lut_error(lambda: LatencyTable.load(path), str(path), "shufflesearch lut build")
    one_line_lut_error(lambda: LatencyTable.load(tmp_path / "none.json"), "does not exist")


@pytest.mark.parametrize("content", ["[" * 200_000, '{"format": ' * 200_000])
def test_deeply_nested_file_is_one_line(tmp_path, content):
    path = tmp_path / "x.lut.json"
    path.write_text(content)
    one_line_lut_error(lambda: LatencyTable.load(path), str(path), "nested too deeply", "shufflesearch lut build")


def test_pipe_device_folder_or_huge_file_is_refused_unread(tmp_path):
    """A FIFO would block the read forever and /dev/zero fill memory; a table is a regular file of bounded size."""
    os.mkfifo(tmp_path / "pipe.json")
    one_line_lut_error(lambda: LatencyTable.load(tmp_path / "pipe.json"), "pipe.json is a FIFO")
    one_line_lut_error(lambda: LatencyTable.load("/dev/zero"), "/dev/zero is a character device")
    one_line_lut_error(lambda: LatencyTable.load(tmp_path), "is a folder")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(table_file.MAX_BYTES + 1)  # sparse: no disk space used
    one_line_lut_error(lambda: LatencyTable.load(huge), "huge.json is larger than 16 MB")


def test_cached_predictions_equal_fresh_ones(table):
    specs = [SPACE.spec(g, (r2, r3, r4), s) for g in (2, 3) for s in (0.25, 0.5)
             for r2 in (1, 2) for r3 in (1, 2, 3) for r4 in (1, 2)]  # fmt: skip
    warm = [table.predict_us(s) for s in specs]
    table._cache.clear()
    cold = [table.predict_us(s) for s in specs]
    assert warm == cold and len(table._cache) == 4  # one entry per width layout, not per spec
    assert all(p > 0 for p in warm)


def test_validation_compares_with_end_to_end_measurement(table):
    specs = [SPEC, SPEC.replace(scale=0.5, repeats=(1, 1, 1)), SPEC.replace(groups=3, repeats=(2, 3, 2))]
    report = validate_lut(table, specs, runs=5, warmup=1)
    assert len(report.rows) == 3 and -1 <= report.kendall_tau <= 1
    for row, spec in zip(report.rows, specs):
        assert row["predicted_us"] == table.predict_us(spec) and row["measured_us"] > 0
    assert report.mape_pct == pytest.approx(sum(abs(r["error_pct"]) for r in report.rows) / 3)
    one_line_lut_error(lambda: validate_lut(table, [SPEC.replace(resolution=64)] * 2, runs=3), "--resolution 64")


def test_bad_build_settings_are_rejected_before_timing():
    with pytest.raises(ValueError, match="threads"):
        build_lut(SPACE, threads=0)
    one_line_lut_error(lambda: build_lut(SPACE, clock="cpu", threads=2), "clock")
    one_line_lut_error(lambda: build_lut(SPACE, statistic="mean_ms"), "statistic")
    one_line_lut_error(lambda: build_lut(SPACE, rounds=0), "rounds=0")
    one_line_lut_error(lambda: build_lut(SPACE, holdout=[SPEC.replace(groups=8)]), "holdout spec 'g8")
    one_line_lut_error(lambda: build_lut([SPEC, SPEC.replace(resolution=64)]), "one (resolution")


# -- the runner's manifest mode and the remote build -------------------------------------------


def test_runner_times_a_manifest_of_weightless_models(table, tmp_path):
    from shufflesearch.latency.lut.blocks import block_modules, export_block, strip_weights

    key = "unit:104>200:m50:s2:g2:gf1:sh1@2"
    full = export_block(*block_modules(SPEC, 0)[key])
    skeleton, fill = strip_weights(full, "w.bin")
    assert len(skeleton) < len(full) / 5 and fill  # the weights stay home
    (tmp_path / "a.onnx").write_bytes(skeleton)
    manifest = {"models": [{"name": key, "file": "a.onnx", "weights": {"file": "w.bin", "fill": fill}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, device_runner.__file__, "--manifest", str(tmp_path / "manifest.json"),
                           "--runs", "3", "--warmup", "0", "--clock", "cpu"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    payload = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0 and payload["ok"] and payload["clock"] == "cpu", payload
    assert payload["results"][key]["input_shape"] == [1, 104, 2, 2] and len(payload["results"][key]["times_ms"]) == 3
    assert payload["results"][key]["output_shape"] == [1, 200, 1, 1]
    assert not (tmp_path / "w.bin").exists()  # weights exist only while their model is timed


@pytest.mark.parametrize("name", ["../a.onnx", "/etc/passwd", "sub/a.onnx", ""])
def test_runner_manifest_never_leaves_its_directory(tmp_path, name):
    with pytest.raises(device_runner.RunnerError, match="plain name"):
        device_runner.time_manifest(str(tmp_path), {"models": [{"name": "x", "file": name}]})


def test_remote_file_names_are_checked_before_any_process(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a process was started"))
    for name in ("../x.onnx", "device_runner.py", "-rf"):
        with pytest.raises(SshTargetError):
            time_models_remote({name: b""}, {"models": []}, "ssh://pi@board")
    with pytest.raises(SshTargetError, match="clock"):
        time_models_remote({}, {"models": []}, "ssh://pi@board", clock="cpu", threads=2)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def test_remote_build_over_ssh(sshd):
    before = leftovers()
    small = SearchSpace(groups=(2,), scale=(0.25, 0.25), repeats=((1, 2), (1, 3), (1, 2)), resolution=32)
    seen = []
    remote = build_lut(small, target=sshd.url, runs=3, warmup=1, rounds=1, fit_points=2, python=sys.executable,
                       ssh_options=sshd.options(), progress=lambda *a: seen.append(a))  # fmt: skip
    assert remote.target == sshd.url and remote.machine["arch"] == platform.machine()
    assert set(remote.blocks) == {*SPEC_BLOCKS, "unit:200>200:m50:s1:g2:gf1:sh1@1"} and remote.predict_us(SPEC) > 0
    n = len(remote.blocks) + len(remote.fit["points"])  # blocks and fit networks, in one ssh call
    assert [a for a in seen if a[0] == "time"] == [("time", n, n)] and remote.fit["points"][0]["measured_us"] > 0
    assert leftovers() <= before
    report = validate_lut(remote, [SPEC, SPEC.replace(repeats=(1, 1, 1))], runs=3, warmup=0, python=sys.executable,
                          ssh_options=sshd.options())  # fmt: skip
    assert len(report.rows) == 2 and all(r["measured_us"] > 0 for r in report.rows)


def test_lut_validate_command_measures_random_specs_of_the_study_space(saved, tmp_path, monkeypatch):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from shufflesearch.cli import main

    def run(args):
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(SystemExit) as code, redirect_stdout(out), redirect_stderr(err):
            main(args)
        return code.value.code, out.getvalue(), err.getvalue()

    monkeypatch.chdir(tmp_path)
    study = tmp_path / "small.toml"
    study.write_text('[study]\nname = "small"\n[budget]\nmflops = [0.8]\n[space]\ngroups = [2, 3]\n'
                     'scale = [0.25, 0.5]\nscale_step = 0.25\nrepeats = [[1, 2], [1, 3], [1, 2]]\nresolution = 32\n')  # fmt: skip
    code, out, err = run(["lut", "validate", str(saved), "--space", str(study), "--specs", "4", "--runs", "3",
                          "--rounds", "1", "--json"])  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert len(result["rows"]) == 4 and result["target"] == "local" and math.isfinite(result["mape_pct"])
    assert all(r["measured_us"] > 0 and r["predicted_us"] > 0 for r in result["rows"])
    assert [r["label"] for r in result["rows"]] == [s.label for s in SPACE.sample(4, seed=1)]  # the seeded draw
    # The default space reaches widths this table never timed: one line naming the fix, nothing measured.
    code, _, err = run(["lut", "validate", str(saved), "--specs", "4"])
    assert code == 2 and err.count("\n") == 1 and "build a table whose space covers" in err
    code, _, err = run(["lut", "validate", str(tmp_path / "none.lut.json")])
    assert code == 2 and "does not exist" in err and "lut build" in err
