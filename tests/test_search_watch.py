"""A search you can watch: per-trial lines and the time left in a log file, -q / -v, --version, the ETA formula."""

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shufflesearch.cli import main
from shufflesearch.search.progress import SearchWatch, eta_s, remaining_work_s, search_eta_s

REPO = Path(__file__).resolve().parents[1]
STUDY = """
[study]
name = "watch"
trials = {trials}
sampler = "random"
pruner = "none"
enqueue_presets = false
[budget]
mflops = [13]
[space]
groups = [3]
scale = [0.1, 0.5]
repeats = [[1, 1], [1, 2], [1, 1]]
[accuracy]
device = "cpu"
[accuracy.fidelity]
train_images = 256
epochs = {epochs}
batch_size = 64
eval_images = 200
curve_eval_images = 0
resolution = 28
stem = "small"
"""
LINE = re.compile(
    r"trial (\d+) (finished|pruned): (.+) \(budget 6\.5-13 MFLOPs\), epoch (\S+), top-1 (\S+ %), ([\d.]+) s$"
)
STAND_IN_EPOCH_S = 1.5  # a stand-in trial: 2 epochs of this, so a 2 s poll sees trials start and end


def study_file(folder: Path, trials: int = 2, epochs: int = 1) -> Path:
    path = folder / "watch.toml"
    path.write_text(textwrap.dedent(STUDY.format(trials=trials, epochs=epochs)))
    return path


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return done.value.code, out, err


def stand_in_evaluator(config, threads=None, device=None):
    """Trains nothing: two epochs of STAND_IN_EPOCH_S, each reported as Optuna's intermediate value."""

    def evaluate(spec, report):
        for epoch in (1, 2):
            time.sleep(STAND_IN_EPOCH_S)
            report(epoch, spec.scale / 2)
        return {"top1": spec.scale}

    return evaluate


@pytest.fixture
def stand_in(monkeypatch, tmp_path, fashion):  # the search loads the dataset before its first trial
    monkeypatch.setattr("shufflesearch.search.objective.proxy_accuracy_evaluator", stand_in_evaluator)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return study_file(tmp_path, trials=3, epochs=2)


def test_a_piped_real_search_prints_a_line_per_trial_with_its_spec_budget_epoch_result_and_time(
    fashion, tmp_path, monkeypatch, capsys
):
    from shufflesearch.search import load_study
    from shufflesearch.search.results import load_records

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = study_file(tmp_path, trials=2)
    code, out, err = run(["search", path], capsys)  # capsys: stdout is not a terminal
    assert code == 0, err
    config = load_study(path)
    (records,) = load_records(config.default_storage()).values()
    lines = out.splitlines()
    assert lines[0] == f"study watch (per-budget) in sqlite:///{tmp_path}/watch.db; 1 worker(s)"
    for record in records:
        assert record["state"] == "complete"
        (line,) = [m for m in map(LINE.match, lines) if m and int(m[1]) == record["trial"]]
        assert line[2] == "finished" and line[3] == record["label"] and line[4] == "1/1"
        assert line[5] == f"{100 * record['top1']:.2f} %"
        assert float(line[6]) == pytest.approx(record["duration_s"], abs=0.05)
        # started before it finished (a trial under the 2 s poll may be seen only once it ended)
        started = [i for i, t in enumerate(lines) if t.startswith(f"trial {record['trial']} started: ")]
        assert all(i < lines.index(line[0]) for i in started)
    assert "Search progress" in out and "2/2" in out  # then the final table
    assert "Traceback" not in err


def test_a_piped_search_tells_the_time_left_from_the_trials_done(stand_in, capsys):
    code, out, err = run(["search", stand_in], capsys)
    assert code == 0, err
    lines = out.splitlines()
    for n in range(3):
        assert any(t.startswith(f"trial {n} started: g3 ") and t.endswith("(budget 6.5-13 MFLOPs)") for t in lines)
        (done,) = [m for m in map(LINE.match, lines) if m and int(m[1]) == n]
        assert done[4] == "2/2" and float(done[6]) >= 2 * STAND_IN_EPOCH_S  # the epochs Optuna was told
    (eta,) = [t for t in lines if t.startswith("progress: ")][:1]  # the first estimate, once a trial is done
    match = re.fullmatch(
        r"progress: ([12])/3 trials finished, ([01]) running; (\d+) s elapsed, about (\d+) s left", eta
    )
    assert match, eta
    assert 0 < int(match[4]) <= 3 * 2 * STAND_IN_EPOCH_S + 4  # what is left of 3 trials of ~3 s, on 1 worker
    first_done = next(i for i, t in enumerate(lines) if LINE.match(t))
    assert lines.index(eta) > first_done


def test_quiet_shows_only_the_final_result(stand_in, capsys):
    code, out, err = run(["-q", "search", stand_in], capsys)
    assert code == 0 and err == ""
    assert not [t for t in out.splitlines() if t.startswith(("trial ", "progress: ", "study watch"))], out
    assert out.lstrip().startswith("Search progress") and "3/3" in out


def test_verbose_shows_optunas_log(fashion, tmp_path):
    """Run as a user would (a fresh process): Optuna's own log is shown at -v, and only there."""
    path = study_file(tmp_path, trials=1, epochs=2)
    script = textwrap.dedent("""
        import sys, test_search_watch
        from shufflesearch.search import objective
        objective.proxy_accuracy_evaluator = test_search_watch.stand_in_evaluator
        from shufflesearch.cli import main
        main(sys.argv[1:])
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO / "tests")}
    errs = {}
    for flags in ([], ["-v"]):
        path.with_suffix(".db").unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", script, *flags, "search", str(path)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        errs[bool(flags)] = done.stderr
    assert "Trial 0 finished with value" not in errs[False]  # silenced by default, as before
    assert "Trial 0 finished with value" in errs[True], errs[True]
    assert "info: searching watch: 1 trial(s) per budget window, 1 worker(s) on cpu" in errs[True]


def test_version_prints_the_package_version(capsys):
    import shufflesearch

    assert run(["--version"], capsys) == (0, f"shufflesearch {shufflesearch.__version__}\n", "")


def test_quiet_and_verbose_together_are_a_usage_error(capsys):
    code, _, err = run(["-q", "-v", "models"], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


# -- the ETA, as a pure function of stand-in durations ------------------------------------------------
def test_the_eta_is_the_work_left_at_the_mean_duration_over_the_workers():
    assert eta_s([10.0, 20.0], left=4, workers=1) == 60.0
    assert eta_s([10.0, 20.0], left=4, workers=2) == 30.0
    assert eta_s([10.0, 20.0], left=1, workers=4) == 15.0  # one trial left: more workers do not speed it up
    assert eta_s([10.0, 20.0], left=3, workers=2, running_s=[5.0, 40.0]) == pytest.approx((45 - 5 - 15) / 2)
    assert eta_s([], left=3, workers=2) is None  # no trial done: no estimate
    assert eta_s([], left=0, workers=2) == 0.0
    assert remaining_work_s([12.0], left=2, running_s=[30.0, 30.0]) == 0.0  # overrunning trials: never negative


def record(study, trial, state, duration=None, running=None, label="g3 x0.5"):
    return {"study": study, "trial": trial, "state": state, "duration_s": duration, "running_s": running,
            "label": label, "epoch": None, "top1": None, "status": None}  # fmt: skip


def test_each_budget_window_costs_its_own_mean_and_an_unstarted_one_the_pooled_mean():
    records = {
        "s-13M": [record("s-13M", 0, "complete", 10.0), record("s-13M", 1, "pruned", 2.0),
                  record("s-13M", 2, "running", running=3.0), record("s-13M", 3, "fail", 1.0)],
        "s-40M": [record("s-40M", 0, "complete", 30.0)],
    }  # fmt: skip
    # 13M: 4 - 2 finished = 2 left at 6 s, less 3 s run; 40M: 3 left at 30 s; 140M (not stored yet): 4 at 14 s
    work = (2 * 6 - 3) + 3 * 30 + 4 * (42 / 3)
    assert search_eta_s(records, trials=4, workers=1, studies=["s-13M", "s-40M", "s-140M"]) == pytest.approx(work)
    assert search_eta_s(records, trials=4, workers=3, studies=["s-13M", "s-40M", "s-140M"]) == pytest.approx(work / 3)
    assert search_eta_s(records, trials=2, workers=1) == 30.0  # 13M has its two; 40M one more, at its 30 s
    assert search_eta_s({"a": [record("a", 0, "running", running=1.0)]}, trials=2, workers=1) is None


def test_the_watch_announces_each_change_once_and_not_what_was_stored_before():
    clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
    old = [record("s", 0, "complete", 5.0)]
    watch = SearchWatch(trials=3, workers=1, windows={"s": "6.5-13 MFLOPs"}, baseline={"s": old}, clock=clock)

    def kinds(progress):
        return [(e.kind, e.record["trial"]) for e in progress.events]

    sampling = record("s", 1, "running", running=0.1, label=None)
    first = watch.update([], {"s": [*old, sampling, record("s", 2, "waiting")]})
    assert kinds(first) == [] and first.elapsed_s == 1.0  # the resumed trial is old news; trial 1 has no spec yet
    assert kinds(watch.update([], {"s": [*old, record("s", 1, "running", running=1.0)]})) == [("started", 1)]
    last = watch.update([], {"s": [*old, record("s", 1, "complete", 4.0), record("s", 2, "pruned", 1.0)]})
    assert kinds(last) == [("finished", 1), ("pruned", 2)]  # trial 2 ended between two looks: its end only
    assert last.eta_s == 0.0


def test_a_pruned_trials_line_shows_the_epoch_and_top1_it_was_stopped_at():
    from shufflesearch.cli.search import trial_line
    from shufflesearch.search.progress import TrialEvent

    pruned = {**record("s-13M", 4, "pruned", 2.0), "epoch": 1, "intermediate": {1: 0.3}, "status": "bad\x1b[2J"}
    line = trial_line(TrialEvent("pruned", pruned), {"s-13M": "6.5-13 MFLOPs"}, epochs=2)
    assert line == "trial 4 pruned: g3 x0.5 (budget 6.5-13 MFLOPs), epoch 1/2, top-1 30.00 %, 2.0 s (bad\\x1b[2J)"
