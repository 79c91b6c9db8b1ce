"""What a recipe can tell apart: the shuffle ablation, resolving power by budget, budget-scaled recipes, and
the warning a search and its report give when a budget lies beyond what its recipe resolves.

Scores are stand-ins stored in a result cache as finished runs would leave them (no training)."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from shufflesearch.accuracy import measured_fidelity
from shufflesearch.accuracy.cache import ResultCache, result_key
from shufflesearch.accuracy.measured_fidelity import MeasuredStep, resolving_verdict
from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, Fidelity, adapt_spec
from shufflesearch.accuracy.resolution import (
    _chance_ordered,
    measure_resolution,
    resolving_power,
    shuffle_ablation,
    trusted_up_to,
)
from shufflesearch.accuracy.trainer import TRAINER_VERSION, TrainResult
from shufflesearch.complexity import count_complexity
from shufflesearch.search import load_study
from shufflesearch.search.study_file import StudyFileError
from shufflesearch.spec import ShuffleNetSpec

FID = Fidelity(train_images=100, epochs=1)


def _store(cache, fashion, spec, fid, seed, top1, loss=None):
    trained = adapt_spec(spec, fashion, fid)
    result = TrainResult(top1=top1, test_loss=1 - top1 if loss is None else loss, curve=[], seconds=1.0,
                         images_seen=100, status="ok", spec=trained.to_dict(),
                         dataset=f"fashion-mnist:{fashion.fingerprint}", fidelity=fid.to_dict(), seed=seed,
                         cpu_seconds=6.0)  # fmt: skip
    cache.put(result_key(trained, fashion.fingerprint, fid, seed, TRAINER_VERSION), result.to_dict())


def test_one_runs_chance_to_order_two_networks():
    assert _chance_ordered(0.01, 0.005) == 0.921  # a gap of twice one run's noise: Phi(2 / sqrt 2)
    assert _chance_ordered(0.0, 0.3) == 0.5 and _chance_ordered(-0.01, 0.005) == round(1 - 0.921, 3)
    assert (_chance_ordered(1.0, 0.0), _chance_ordered(-1.0, 0.0)) == (1.0, 0.0)
    rows = [{"to_mflops": 13, "chance_ordered": 0.99}, {"to_mflops": 38, "chance_ordered": 0.9},
            {"to_mflops": 80, "chance_ordered": 0.6}, {"to_mflops": 140, "chance_ordered": 0.95}]  # fmt: skip
    assert trusted_up_to(rows) == 38  # the first unresolved step ends the trust, whatever follows
    assert trusted_up_to(rows[2:]) is None


def test_the_ablation_pairs_each_twin_by_seed_and_fails_where_one_seed_disagrees(fashion, tmp_path):
    cache, seeds = ResultCache(tmp_path / "c.sqlite"), (0, 1, 2)
    for g in (3, 8):
        for seed in seeds:
            _store(cache, fashion, ShuffleNetSpec(groups=g, scale=0.25), FID, seed, 0.80 + 0.01 * seed)
            # g8: the twin wins seed 2 by a point; g3: the twin is 1.5 points below on every seed
            twin = 0.80 + 0.01 * seed + (0.01 if (g, seed) == (8, 2) else -0.015)
            _store(cache, fashion, ShuffleNetSpec(groups=g, scale=0.25, shuffle=False), FID, seed, twin)
    ablation = shuffle_ablation(fashion, FID, seeds, scales=(0.25,), cache=cache)
    g3, g8 = ablation["rows"]
    assert g3["margin_pts_by_seed"] == pytest.approx([1.5, 1.5, 1.5]) and g3["below_on_every_seed"]
    assert g8["margin_pts_by_seed"] == pytest.approx([1.5, 1.5, -1.0]) and not g8["below_on_every_seed"]
    assert g3["seed_spread_pts"] == pytest.approx(1.0)  # both twins move 1 point per seed: sd 1
    assert g3["params"] == count_complexity(ShuffleNetSpec(groups=3, scale=0.25)).params
    assert not ablation["passes"] and ablation["cached_runs"] == 12
    assert ablation["cpu_minutes"] == pytest.approx(12 * 6.0 / 60)


def test_resolving_power_sets_each_width_step_against_one_runs_noise(fashion, tmp_path):
    cache, seeds, scales = ResultCache(tmp_path / "c.sqlite"), (0, 1), (0.25, 0.5, 1.0)
    means = {0.25: 0.80, 0.5: 0.83, 1.0: 0.832}  # a clear step, then a step inside the noise
    for s in scales:
        for seed in seeds:
            _store(cache, fashion, ShuffleNetSpec(groups=3, scale=s), FID, seed, means[s] + (0.005 if seed else -0.005))
    ladder = resolving_power(fashion, FID, seeds, scales=scales, cache=cache)
    clear, blurred = ladder["rows"]
    sd = math.sqrt(2) * 0.5  # two seeds at +-0.5 points
    assert (clear["gap_pts"], clear["seed_spread_pts"]) == (pytest.approx(3.0), pytest.approx(sd))
    assert clear["chance_ordered"] == _chance_ordered(3.0, sd) > 0.99
    assert blurred["gap_pts"] == pytest.approx(0.2) and blurred["chance_ordered"] < 0.9
    assert ladder["trusted_up_to_mflops"] == clear["to_mflops"] == count_complexity(ShuffleNetSpec(scale=0.5)).mflops
    assert clear["recipe_changes"] == {} and ladder["cached_runs"] == 6


def test_a_budget_scaled_ladder_trains_both_networks_of_a_step_on_the_wider_ones_budget(fashion, tmp_path):
    cache, seeds, scales = ResultCache(tmp_path / "c.sqlite"), (0, 1), (0.25, 0.5, 1.0)
    longer = FID.replace(epochs=3)
    recipe = lambda mflops: longer if mflops > 60 else FID  # noqa: E731  (only the 1x network costs more)
    for seed in seeds:  # the 0.5x network is needed twice: at the base recipe (its own step) and the 1x step's
        for s, fid in ((0.25, FID), (0.5, FID), (0.5, longer), (1.0, longer)):
            _store(cache, fashion, ShuffleNetSpec(groups=3, scale=s), fid, seed, 0.8 + s / 10 + seed / 100)
    ladder = resolving_power(fashion, recipe, seeds, scales=scales, cache=cache)
    assert ladder["cached_runs"] == 8  # nothing trained: every step found its own recipe's results
    assert [r["recipe_changes"] for r in ladder["rows"]] == [{}, {"epochs": 3.0}]
    with pytest.raises(ValueError, match="at least two seeds"):
        measure_resolution(fashion, FID, (0,))


def _steps(monkeypatch, recipe=DEFAULT_FIDELITY):
    steps = (MeasuredStep("fashion-mnist", recipe, 12.0, 38.0, 2.0, 0.4, 0.9997, 1.0, (0, 1, 2), "2026-12-02"),
             MeasuredStep("fashion-mnist", recipe, 38.0, 138.0, 0.3, 0.5, 0.66, 0.95, (0, 1, 2), "2026-12-02"))  # fmt: skip
    monkeypatch.setattr(measured_fidelity, "MEASURED_STEPS", steps)


def test_the_verdict_reads_the_measured_step_spanning_the_budget(monkeypatch):
    _steps(monkeypatch)
    recipe = DEFAULT_FIDELITY.to_dict()
    ok, said = resolving_verdict("fashion-mnist", recipe, 38)
    assert ok is True and "within this recipe's resolving power" in said and "12 -> 38 MFLOPs" in said
    for outside in (200, 10):
        ok, said = resolving_verdict("fashion-mnist", recipe, outside)
        assert ok is None and "outside the width steps measured for this recipe (12-138 MFLOPs)" in said
    assert resolving_verdict("fashion-mnist", recipe, 11)[0] is True  # within reach of the 12 MFLOPs network
    ok, said = resolving_verdict("fashion-mnist", recipe, 140)  # 1x g3 costs 138: its step speaks for 140
    assert ok is False and "beyond this recipe's resolving power" in said and "66%" in said
    assert "[accuracy.fidelity_by_budget]" in said and "resolution --study" in said
    ok, said = resolving_verdict("fashion-mnist", recipe, 140, "loss")  # a loss-ranked study reads its own chance
    assert ok is True and "by its loss 95%" in said
    assert resolving_verdict("fashion-mnist", DEFAULT_FIDELITY.replace(epochs=4).to_dict(), 38)[0] is None
    assert resolving_verdict("cifar10", recipe, 38)[0] is None


def _scaled_study(tmp_path, tiers="60 = { epochs = 4 }\n120 = { epochs = 6, train_images = 40000 }", mode=""):
    text = f"""\
        [study]
        name = 's'
        trials = 2
        enqueue_presets = false
        {mode}
        [budget]
        mflops = [13, 100, 140]
        [accuracy.fidelity]
        train_images = 20000
        [accuracy.fidelity_by_budget]
        {tiers}
        """
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(text))
    return load_study(path)


def test_a_study_scales_its_recipe_with_the_budget(tmp_path):
    config = _scaled_study(tmp_path)
    assert config.window_fidelity("s-13M") == config.fidelity == DEFAULT_FIDELITY.replace(train_images=20000)
    assert config.window_fidelity("s-100M") == config.fidelity.replace(epochs=4)  # on top of [accuracy.fidelity]
    assert config.window_fidelity("s-140M") == config.fidelity.replace(epochs=6, train_images=40000)
    assert config.fidelity_for(60) == config.fidelity  # "above": a budget of exactly 60 keeps the base recipe


@pytest.mark.parametrize(("tiers", "mode", "message"), [
    ("60 = { epochs = 0 }", "", r"s.toml:11: accuracy.fidelity_by_budget.60.epochs: epochs=0.0 must be"),
    ("fast = { epochs = 2 }", "", r"accuracy.fidelity_by_budget.fast: 'fast' must be a budget in MFLOPs"),
    ("60 = 3", "", r"60: must be a table of recipe overrides"),
    ('60 = { epochs = 2 }\n"60.0" = { epochs = 3 }', "", r"names a budget another key names too"),
    ("60 = { epochs = 2 }", "mode = 'pareto'", r"accuracy.fidelity_by_budget: scales the recipe by MFLOPs budget"),
])  # fmt: skip
def test_a_bad_budget_scaled_recipe_is_refused_at_its_line(tmp_path, tiers, mode, message):
    with pytest.raises(StudyFileError, match=message):
        _scaled_study(tmp_path, tiers, mode)


def test_each_window_searches_and_races_with_its_own_recipe(tmp_path, monkeypatch):
    from shufflesearch.search import racing
    from shufflesearch.search.queue import run_worker

    config = _scaled_study(tmp_path, "60 = { epochs = 4 }")
    seen = []

    def evaluate(spec, report, fidelity=config.fidelity):
        seen.append((count_complexity(spec).mflops, fidelity.epochs))
        return {"top1": 0.5 + spec.scale / 10, "test_loss": 0.5}

    run_worker(config, config.default_storage(), 2, evaluate, max_epochs=2)
    assert {epochs for mflops, epochs in seen if mflops <= 13} == {2.0}
    assert {epochs for mflops, epochs in seen if mflops > 13} == {4.0}
    raced = []
    monkeypatch.setattr(racing, "proxy_race_trainer", lambda own, device: raced.append(own.fidelity.epochs) or
                        (lambda spec, seed: {"top1": 0.5 + seed / 100, "test_loss": 0.5}))  # fmt: skip
    racing.race_windows(config, config.default_storage(), "cpu")
    assert raced == [2.0, 4.0]  # one trainer per recipe: the 100M and 140M windows share theirs


def test_a_search_and_its_report_say_when_a_budget_lies_beyond_the_recipe(tmp_path, monkeypatch):
    from shufflesearch.cli.search import _resolution_lines
    from shufflesearch.report.frames import build_frames
    from shufflesearch.search.queue import run_worker
    from shufflesearch.search.results import load_records, study_attrs

    _steps(monkeypatch, DEFAULT_FIDELITY.replace(train_images=20000))
    config = _scaled_study(tmp_path, "120 = { epochs = 4 }")  # 13M and 100M keep the measured base recipe
    lines = _resolution_lines(config)
    assert lines[0].startswith("warning: s-100M: 100 MFLOPs lies beyond this recipe's resolving power")
    assert len(lines) == 2 and lines[1].startswith("resolving power: its resolving power was never measured")
    url = config.default_storage()
    # a scaled study hands each window its recipe; the evaluator records it, as the trainer's results do
    run_worker(config, url, 1, lambda spec, report, fidelity: {"top1": 0.6, "recipe": fidelity.to_dict()})
    stored = study_attrs(url)
    attrs = {
        n: {"budgeted": config.budgeted(), "dataset": config.dataset, **stored[n]} for n in stored
    }  # as report_study
    frames = build_frames(load_records(url), attrs)
    resolves = dict(zip(frames.provenance.study, frames.provenance.resolves, strict=True))
    assert resolves["s-13M"] is True and resolves["s-100M"] is False
    assert any(n.startswith("s-100M: 100 MFLOPs lies beyond") for n in frames.notes)


def test_the_resolution_command_prints_both_tables_and_refuses_one_seed(fashion, tmp_path, monkeypatch, capsys):
    from shufflesearch import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fid = DEFAULT_FIDELITY.replace(train_images=100, epochs=1)
    cache = ResultCache()
    for seed in (0, 1):
        for g in (3, 8):
            for s in (0.25, 0.5, 1.0):
                _store(cache, fashion, ShuffleNetSpec(groups=g, scale=s), fid, seed, 0.8 + s / 10 + seed / 200)
                _store(cache, fashion, ShuffleNetSpec(groups=g, scale=s, shuffle=False), fid, seed, 0.79 + s / 10)
        for s in (0.75, 1.25):
            _store(cache, fashion, ShuffleNetSpec(groups=3, scale=s), fid, seed, 0.8 + s / 10 + seed / 200)
    argv = ["resolution", "--seeds", "0,1", "--subset", "100", "--epochs", "1", "--device", "cpu", "--workers", "1"]
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    shown = capsys.readouterr().out
    assert done.value.code == 0 and "Channel shuffle on minus off" in shown and "Resolving power by budget" in shown
    assert "The recipe passes the paper's claim on top-1" in shown
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--json", "--part", "ladder"])
    assert done.value.code == 0 and list(json.loads(capsys.readouterr().out)) == ["ladder"]
    with pytest.raises(SystemExit) as done:
        cli.main(["resolution", "--seeds", "0"])
    assert done.value.code == 2 and "at least two seeds" in capsys.readouterr().err


def test_the_shipped_ladders_are_consistent_with_their_own_gaps_and_spreads():
    for step in measured_fidelity.MEASURED_STEPS:  # the figures of docs/fidelity.md, rounded to two places
        assert _chance_ordered(step.gap_pts, step.spread_pts) == pytest.approx(step.chance, abs=0.02), step
        assert step.from_mflops < step.to_mflops and step.recipe.scored_on == "validation"
    default = [s for s in measured_fidelity.MEASURED_STEPS if s.recipe == DEFAULT_FIDELITY]
    widths = [count_complexity(ShuffleNetSpec(scale=x)).mflops for x in (0.5, 0.75, 1.0, 1.25)]
    assert [s.to_mflops for s in default] == pytest.approx(widths, abs=0.06)  # the g3 ladder analyze counts
