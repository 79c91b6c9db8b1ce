"""Runaway loops and duplicate work: every way a trial fails counts toward one cap, and a study's trials are distinct.

Issue 17: a latency table whose fit gives NaN made 783 failed trials in 90 s (Optuna fails a NaN at
`tell`, outside the cap on evaluation errors); a Pareto study named like a stored per-budget study
made 1,118; separate processes seeded their samplers alike and trained the same specs. Each class is
driven here through the real queue (`run_worker`) or the real `main`, with a stand-in evaluator.
"""

import json
import math

import optuna
import pytest

from shufflesearch.cli import main
from shufflesearch.search import objective
from shufflesearch.search.queue import MAX_ERRORS, join_study, load_or_create, run_worker
from shufflesearch.search.storage import open_storage
from shufflesearch.search.study_file import load_study

STUDY = "[study]\nname = '{name}'\ntrials = {trials}\nenqueue_presets = false\nsampler = '{sampler}'\n[budget]\n"
PER_BUDGET = STUDY + "mflops = [{budget}]\n"
PARETO = STUDY.replace("[study]\n", "[study]\nmode = 'pareto'\n") + "range = [10, 40]\n"
FOUR_SPECS = "[space]\ngroups = [3]\nscale = [0.1, 0.5]\nrepeats = [[1, 1], [1, 1], [1, 1]]\n"  # 4 specs in 6.5-13


def study(tmp_path, name="r", trials=2, text=PER_BUDGET, sampler="tpe", budget=40, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(name=name, trials=trials, sampler=sampler, budget=budget) + extra)
    return load_study(path)


def trials_of(config):
    (name,) = config.budget_windows()
    return optuna.load_study(study_name=name, storage=open_storage(config.default_storage())).get_trials()


def states(trials, *names):
    return [t for t in trials if t.state.name in names]


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    _, err = capsys.readouterr()
    return done.value.code or 0, err


# -- one cap for every way a trial fails -------------------------------------------------------
def test_values_optuna_refuses_at_tell_count_toward_the_one_cap(tmp_path, monkeypatch):
    # The objective's own check is gone: Optuna fails the NaN quietly at `tell` (no exception), as it
    # did with a table whose fit gave NaN. The queue counts that failure too, and the run ends.
    monkeypatch.setattr(objective, "_values", lambda config, trial, spec, outcome, mflops: (math.nan,))
    config = study(tmp_path, trials=2)
    run_worker(config, config.default_storage(), 2, lambda spec, report: {"top1": 0.5})
    trials = trials_of(config)
    failed = states(trials, "FAIL")
    assert len(trials) == len(failed) == 2 * MAX_ERRORS  # two parameter sets, MAX_ERRORS attempts each
    by_params = {}
    for t in failed:
        by_params.setdefault(json.dumps(t.params, sort_keys=True), []).append(t.user_attrs.get("errors", 0))
    assert sorted(map(sorted, by_params.values())) == [[0, 1, 2]] * 2  # the count rides along the retries
    assert "Optuna refused its values" in failed[-1].user_attrs["error"]


@pytest.mark.parametrize("top1", [math.nan, math.inf, -math.inf, None, "0.5", True])
def test_a_value_optuna_cannot_record_is_one_counted_error(tmp_path, top1):
    config = study(tmp_path, trials=1)
    for attempt in range(1, MAX_ERRORS + 2):  # each run ends on the error, as a real worker exits on one
        try:
            run_worker(config, config.default_storage(), 1, lambda spec, report: {"top1": top1})
            break
        except objective.ObjectiveValueError as exc:
            assert attempt <= MAX_ERRORS and "top1 is" in str(exc) and "not a finite number" in str(exc)
    trials = trials_of(config)
    assert len(states(trials, "FAIL")) == len(trials) == MAX_ERRORS
    assert trials[-1].user_attrs["errors"] == MAX_ERRORS and "not a finite number" in trials[-1].user_attrs["error"]


def test_an_interruption_is_retried_without_counting(tmp_path):
    config = study(tmp_path, trials=1)
    calls = []

    def evaluate(spec, report):
        calls.append(spec)
        if len(calls) <= MAX_ERRORS + 1:  # more Ctrl-Cs than the cap allows errors
            raise KeyboardInterrupt
        return {"top1": 0.5}

    for _ in range(MAX_ERRORS + 1):
        with pytest.raises(KeyboardInterrupt):
            run_worker(config, config.default_storage(), 1, evaluate)
    run_worker(config, config.default_storage(), 1, evaluate)
    trials = trials_of(config)
    assert [t.state.name for t in trials] == ["FAIL"] * (MAX_ERRORS + 1) + ["COMPLETE"]
    assert {objective.failure_kind(t) for t in trials[:-1]} == {"interrupted"} and "errors" not in trials[-1].user_attrs
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 1


# -- a stored study of another kind is refused up front ----------------------------------------
def _stored(tmp_path, name, directions, attrs):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stored = optuna.create_study(study_name=name, storage=open_storage(url), directions=directions)
    for key, value in attrs.items():
        stored.set_user_attr(key, value)
    return url


@pytest.mark.parametrize(
    ("text", "stored", "directions", "attrs"),
    [
        (PARETO, "r", ["maximize"], {"mode": "per-budget", "objectives": ["top1"]}),  # the case
        (PER_BUDGET, "r-40M", ["maximize", "minimize"], {"mode": "pareto"}),
        (PER_BUDGET, "r-40M", ["minimize"], {}),  # another program's study of that name
        (PARETO, "r", ["maximize", "minimize"], {"mode": "pareto", "objectives": ["top1", "latency_ms"]}),
    ],
)
def test_a_stored_study_of_another_kind_is_refused_before_any_work(tmp_path, capsys, text, stored, directions, attrs):
    config = study(tmp_path, text=text)
    url = _stored(tmp_path, stored, directions, attrs)
    for extra in ([], ["--resume"], ["--workers", "2", "--json"]):
        code, err = run_main(["search", str(config.path), "--storage", url, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"a study named '{stored}' already exists" in err and "give it another [study] name" in err
    (summary,) = optuna.get_all_study_summaries(open_storage(url))
    assert summary.n_trials == 0  # nothing was queued in it
    with pytest.raises(objective.StudyMismatch):
        load_or_create(config, open_storage(url), stored, (10, 40))  # and a worker that skipped the check stops too


def test_a_stored_study_of_the_same_kind_is_opened(tmp_path):
    config = study(tmp_path, text=PARETO)
    url = _stored(tmp_path, "r", ["maximize", "minimize"], {})  # created elsewhere, no attributes
    objective.check_same_kind(config, "r", ["maximize", "minimize"], {})
    opened = load_or_create(config, open_storage(url), "r", (10, 40))
    assert opened.user_attrs["objectives"] == ["top1", "mflops"]


# -- a latency table that predicts NaN or infinity is refused at load --------------------------
def _table(path, a=1.0, b_us=0.0, us=(10.0, 20.0)):
    from shufflesearch.latency.lut import LatencyTable

    LatencyTable(resolution=224, num_classes=1000, in_channels=3, stem="imagenet", target="local", threads=1,
                 clock="wall", statistic="median_ms", blocks={f"block{i}": {"us": u} for i, u in enumerate(us)},
                 fit={"a": a, "b_us": b_us, "points": []}).save(path)  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("a", "b_us", "us"),
    [
        (0.0, 0.0, (1e308, 1e308)),  # the sum overflows, then 0 x inf: NaN
        (1e300, 0.0, (1e10,)),  # the product overflows
        (1.0, 0.0, (1.7e308, 1.7e308)),  # two finite blocks sum to infinity
        (1.0, -1.7e308, (1e307,)),  # a deep network's sum plus the intercept overflows
        (-1e306, 0.0, (1e3,)),
    ],
)
def test_a_latency_table_that_predicts_nan_or_infinity_is_refused_when_loaded(tmp_path, a, b_us, us):
    from shufflesearch.latency.lut import LatencyTable, LutError

    path = _table(tmp_path / "t.lut.json", a, b_us, us)
    with pytest.raises(LutError) as refused:
        LatencyTable.load(path)
    assert "predict infinity or NaN" in str(refused.value) and "\n" not in str(refused.value)


def test_a_sane_table_still_loads(tmp_path):
    from shufflesearch.latency.lut import LatencyTable

    assert LatencyTable.load(_table(tmp_path / "t.lut.json", 1.1, -5.0, (1e6, 3.0))).fit["a"] == 1.1


def test_search_refuses_a_table_that_predicts_nan_in_one_line(tmp_path, capsys, fashion):
    lut = _table(tmp_path / "nan.lut.json", 0.0, 0.0, (1e308, 1e308))
    config = study(tmp_path, text=PARETO, extra=f"[objective]\nsecond = 'latency'\nlut = '{lut}'\n")
    code, err = run_main(["search", str(config.path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "predict infinity or NaN" in err, err
    assert not config.path.with_suffix(".db").exists()


# -- distinct work ------------------------------------------------------------------------------
def test_every_worker_that_joins_takes_its_own_seed_stream(tmp_path):
    config = study(tmp_path)
    ((name, window),) = config.budget_windows().items()
    url = config.default_storage()
    workers = [load_or_create(config, open_storage(url), name, window) for _ in range(3)]  # three machines
    assert [join_study(config, w) for w in workers] == [0, 1, 2]
    seeds = [w.sampler._random_sampler._rng.rng.random() for w in workers]  # TPE's start-up draws
    assert len(set(seeds)) == 3
    assert join_study(config, load_or_create(config, open_storage(url), name, window)) == 3  # a resumed run: a new one


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_spec_the_study_holds_is_sampled_again(tmp_path, sampler):
    config = study(tmp_path, trials=4, sampler=sampler, budget=13, extra=FOUR_SPECS)
    run_worker(config, config.default_storage(), 4, lambda spec, report: {"top1": 0.5})
    trials = trials_of(config)
    done = states(trials, "COMPLETE")
    assert len(done) == 4 and len({json.dumps(t.user_attrs["spec"], sort_keys=True) for t in done}) == 4
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 4
    for t in states(trials, "FAIL"):  # every other attempt was a refused duplicate, and its ticket went on
        assert objective.failure_kind(t) == "duplicate" and "errors" not in t.user_attrs
        assert any(t.number in u.system_attrs.get("retry_history", []) for u in trials)


def test_once_every_spec_is_tried_a_repeat_runs_and_says_so(tmp_path):
    config = study(tmp_path, trials=6, sampler="random", budget=13, extra=FOUR_SPECS)
    run_worker(config, config.default_storage(), 6, lambda spec, report: {"top1": 0.5})
    done = states(trials_of(config), "COMPLETE")
    assert len(done) == 6 and len({json.dumps(t.user_attrs["spec"], sort_keys=True) for t in done}) == 4
    assert len([t for t in done if "repeat_of" in t.user_attrs]) == 2


def test_a_study_that_asks_for_repeats_may_repeat(tmp_path, monkeypatch):
    text = PER_BUDGET.replace("[budget]", "repeat_specs = true\n[budget]")
    config = study(tmp_path, trials=4, sampler="random", budget=13, text=text, extra=FOUR_SPECS)
    assert config.repeat_specs
    monkeypatch.setattr(
        objective, "suggest_spec", lambda trial, space, window, latency=None: space.spec(3, (1, 1, 1), 0.4)
    )
    run_worker(config, config.default_storage(), 4, lambda spec, report: {"top1": 0.5})
    assert [t.state.name for t in trials_of(config)] == ["COMPLETE"] * 4


# -- memory for --workers N ---------------------------------------------------------------------
def test_workers_that_cannot_fit_are_refused_before_starting(tmp_path, capsys, monkeypatch, fashion):
    from shufflesearch import memory
    from shufflesearch.search import workers

    config = study(tmp_path)
    monkeypatch.setattr(memory, "_available_bytes", lambda: 3 * 2**30)
    code, err = run_main(["search", str(config.path), "--workers", "8"], capsys)
    assert code == 1 and err.count("\n") == 1 and "8 workers need at least" in err and "--workers" in err, err
    assert "this machine has 3.0 GiB available" in err and not config.path.with_suffix(".db").exists()
    workers.check_workers_fit(config, 2, ["cpu", "cpu"], fashion)  # two fit in 3 GiB
    workers.check_workers_fit(config, 1, ["cpu"], fashion)
    with pytest.raises(workers.TooManyWorkers, match=r"use --workers [1-4] or fewer"):
        workers.check_workers_fit(config, 8, ["cpu"] * 8, fashion)


def test_the_largest_model_of_the_space_is_counted(tmp_path, monkeypatch, fashion):
    from shufflesearch import memory
    from shufflesearch.search import workers

    big = "[accuracy.fidelity]\nresolution = 512\nbatch_size = 512\ntrain_images = 1024\neval_images = 512\n"
    config = study(tmp_path, budget=140, extra=big)
    monkeypatch.setattr(memory, "_available_bytes", lambda: 4 * 2**30)
    with pytest.raises(workers.TooManyWorkers, match="training on batches of 512"):
        workers.check_workers_fit(config, 2, ["cpu", "cpu"], fashion)
    workers.check_workers_fit(config, 2, ["cuda:0", "cuda:1"], fashion)  # on GPUs the model is not in this memory


# -- the artifact cache folder ------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [(None, "home/.cache"), ("", "home/.cache"), (" ", "home/.cache"),
                                                 ("relative/c", "home/.cache"), ("~/c", "home/.cache"), ("ABS", "abs")])  # fmt: skip
def test_the_weights_cache_follows_xdg(tmp_path, monkeypatch, value, expected):
    # "~/c" is relative to the XDG spec (only a shell expands "~", and it did not): ignored, as cache_dir says
    from shufflesearch.search import artifacts

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "abs") if value == "ABS" else value)
    assert artifacts._cache_folder() == tmp_path / expected / "shufflesearch" / "artifacts"
