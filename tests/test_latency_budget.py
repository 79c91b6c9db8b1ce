"""Latency budgets (issue 16): a study budgeted in milliseconds on a named predictor trains nothing over it.

The predictor is the real shipped table (`snapdragon820`, estimated from arm64 emulation), so
these run on a fresh clone with no device.
"""

from __future__ import annotations

import optuna
import pytest

from shufflesearch.latency.lut import resolve_table
from shufflesearch.search.queue import run_worker
from shufflesearch.search.study_file import StudyFileError, load_study

SPACE = "[space]\ngroups = [1, 3, 8]\nscale = [0.1, 1.0]\nrepeats = [[1, 3], [2, 4], [1, 3]]\n"


def study(tmp_path, budget: str, extra: str = "", name: str = "ms"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f"[study]\nname = '{name}'\ntrials = 6\nenqueue_presets = true\nsampler = 'random'\n{extra}"
                    f"[budget]\n{budget}\n{SPACE}")  # fmt: skip
    return load_study(path)


def trials_of(config, name):
    return optuna.load_study(study_name=name, storage=config.default_storage()).get_trials()


def test_a_latency_budgeted_study_trains_nothing_over_its_predicted_budget(tmp_path):
    table = resolve_table("snapdragon820")
    config = study(tmp_path, "latency_ms = [8, 16]\nmin_fraction = 0.5\nlut = 'snapdragon820'")
    assert config.latency_windows() == {"ms-8ms": (4.0, 8.0), "ms-16ms": (8.0, 16.0)}
    trained = []

    def evaluate(spec, report):
        trained.append(spec)
        return {"top1": 0.5}

    from shufflesearch.search.objective import latency_table, predicted_latency

    real_table = latency_table(config)
    run_worker(config, config.default_storage(), 6, lambda spec, report: {**evaluate(spec, report),
               **predicted_latency(real_table, spec)})  # fmt: skip
    assert len(trained) == 12
    for name, (lo, hi) in config.latency_windows().items():
        complete = [t for t in trials_of(config, name) if t.state.name == "COMPLETE"]
        assert len(complete) == 6
        for t in complete:
            assert lo <= table.predict_ms(load_spec(t)) <= hi
            assert t.user_attrs["latency_budget_ms"] == [lo, hi]
            assert t.user_attrs["latency_kind"] == "lut-estimated"
            assert "estimated" in t.user_attrs["latency_predictor"]
            assert t.user_attrs["latency_error"]["specs"] >= 20  # the predictor's measured error travels with it
            constraints = t.system_attrs.get("constraints") or t.user_attrs.get("constraints")
            assert constraints is None or max(constraints) <= 0
        stored = optuna.load_study(study_name=name, storage=config.default_storage()).user_attrs
        assert stored["window_latency_ms"] == [lo, hi] and "estimated" in stored["latency_predictor"]
    assert all(resolve_table("snapdragon820").predict_ms(s) <= 16 for s in trained)


def load_spec(trial):
    from shufflesearch.spec import ShuffleNetSpec

    return ShuffleNetSpec.from_dict(trial.user_attrs["spec"])


def test_mflops_and_latency_budgets_both_hold(tmp_path):
    table = resolve_table("snapdragon820")
    config = study(tmp_path, "mflops = [40]\nlatency_ms = [12]\nmin_fraction = 0.3\nlut = 'snapdragon820'")
    (name,) = config.budget_windows()
    assert name == "ms-40M-12ms"
    run_worker(config, config.default_storage(), 6, lambda spec, report: {"top1": 0.5})
    for t in trials_of(config, name):
        if t.state.name == "COMPLETE":
            assert t.user_attrs["mflops"] <= 40 and table.predict_ms(load_spec(t)) <= 12


@pytest.mark.parametrize(
    ("budget", "fragment"),
    [
        ("latency_ms = [10]", "latency budgets need a predictor: lut = 'snapdragon820'"),
        ("latency_ms = [10]\nlut = 'nosuchdevice'", "no shipped latency table named 'nosuchdevice'"),
        ("latency_ms = [10]\nlut = 'missing/x.lut.json'", "does not exist"),
        ("mflops = [13, 40]\nlatency_ms = [10]\nlut = 'snapdragon820'", "1 latency budgets for 2 MFLOPs budgets"),
        ("latency_ms = [0.01]\nlut = 'snapdragon820'", "no spec of the space is predicted at"),
        ("latency_ms = [-3]\nlut = 'snapdragon820'", "must be a positive number"),
        ("latency_ms = [10, 10.0000001]\nlut = 'snapdragon820'", "both print as 10"),
        ("min_fraction = 0.5", "per-budget mode needs budgets"),
    ],
)
def test_bad_latency_budgets_are_one_line_naming_the_key(tmp_path, budget, fragment):
    with pytest.raises(StudyFileError, match="budget") as info:
        study(tmp_path, budget)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_one_predictor_per_study(tmp_path):
    extra = "mode = 'pareto'\npruner = 'none'\n"
    path = tmp_path / "p.toml"
    path.write_text(f"[study]\n{extra}[budget]\nlut = 'snapdragon820'\nlatency_ms = [20]\n"
                    "[objective]\nsecond = 'latency'\nlut = 'other'\n")  # fmt: skip
    with pytest.raises(StudyFileError, match="a study has one predictor"):
        load_study(path)
    path.write_text(f"[study]\n{extra}[budget]\nlatency_ms = [20, 30]\nlut = 'snapdragon820'\n")
    with pytest.raises(StudyFileError, match="at most one latency cap"):
        load_study(path)
    path.write_text(f"[study]\n{extra}[budget]\nlatency_ms = [20]\n[objective]\nsecond = 'latency'\n"
                    "lut = 'snapdragon820'\n")  # fmt: skip
    assert load_study(path).latency_windows() == {"p": (0.0, 20.0)}


def test_the_shipped_ladder_study_is_valid():
    config = load_study("studies/paper-ladder-ms.toml")
    assert list(config.latency_windows()) == ["paper-ladder-ms-7.7ms", "paper-ladder-ms-15.2ms",
                                              "paper-ladder-ms-37.8ms"]  # fmt: skip
    assert config.lut == "snapdragon820"


FIDELITY = ("[accuracy]\ndevice = 'cpu'\n[accuracy.fidelity]\ntrain_images = 128\nepochs = 1\nbatch_size = 64\n"
            "eval_images = 100\ncurve_eval_images = 0\nresolution = 28\nstem = 'small'\n")  # fmt: skip


def test_a_winner_is_named_and_finished_by_its_latency_budget(fashion, tmp_path, monkeypatch):
    from shufflesearch.finish import finish_winner
    from shufflesearch.search.objective import latency_table, predicted_latency
    from shufflesearch.search.results import NoSuchTrial, find_trial

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = study(tmp_path, "latency_ms = [8, 16]\nmin_fraction = 0.5\nlut = 'snapdragon820'\n" + FIDELITY)
    table = latency_table(config)
    run_worker(config, config.default_storage(), 3, lambda spec, report: {"top1": spec.scale,
               **predicted_latency(table, spec)})  # fmt: skip
    url = config.default_storage()
    for kwargs, fragment in [({}, "study ms has budgets 8, 16 ms: name one with --budget-ms"),
                             ({"budget": 16}, "--budget 16: study ms has budgets 8, 16 ms"),
                             ({"budget_ms": 10}, "--budget-ms 10: study ms has budgets 8, 16 ms")]:  # fmt: skip
        with pytest.raises(NoSuchTrial, match=fragment):
            find_trial(config, url, **kwargs)
    name, winner = find_trial(config, url, budget_ms=16)
    assert name == "ms-16ms" and 8 <= winner["latency_ms"] <= 16

    result = finish_winner(config, url, budget_ms=16, epochs=1, target=None, out=tmp_path / "done",
                           train_images=128, eval_images=100, device="cpu")  # fmt: skip
    assert (result.budget, result.budget_ms, result.trial) == (None, 16.0, winner["trial"])
    assert result.search_latency == {"ms": winner["latency_ms"], "kind": "lut-estimated"}
    readme = (tmp_path / "done" / "README.md").read_text()
    assert "--budget-ms 16 --trial" in readme and "lut-estimated, the study's predictor" in readme
