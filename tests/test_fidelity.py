"""Fidelity study: Spearman on known inputs, the Table 2 ground truth, and report assembly."""

from __future__ import annotations

import math
import os
import random

import pytest
from scipy import stats

from shufflesearch.accuracy.cache import ResultCache, result_key
from shufflesearch.accuracy.fidelity import (
    rankers_vs_paper,
    run_fidelity,
    table2_specs,
    table2_zero_cost_scores,
    zero_cost_ranking,
)
from shufflesearch.accuracy.ranking import spearman
from shufflesearch.accuracy.recipe import Fidelity, adapt_spec
from shufflesearch.accuracy.trainer import TRAINER_VERSION, TrainResult
from shufflesearch.complexity import count_macs
from shufflesearch.paper import TABLE2_TOP1_ERROR_PCT

IN_CI = os.environ.get("CI") == "true"


def test_spearman_on_known_inputs():
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [9, 7, 5, 3, 1]) == pytest.approx(-1.0)
    # 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (0, 0, 1, -1, 0) -> 1 - 12/120
    assert spearman([1, 2, 3, 4, 5], [1, 2, 4, 3, 5]) == pytest.approx(0.9)
    # Ties take the mean rank: ranks (1.5, 1.5, 3) vs (1, 2, 3) -> rho = sqrt(3)/2
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal-length"):
        spearman([1, 2], [1])


def test_spearman_matches_scipy_with_ties():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(3, 20)
        x = [rng.randint(0, 5) for _ in range(n)]
        y = [rng.random() for _ in range(n)]
        expected = stats.spearmanr(x, y).statistic
        if math.isnan(expected):
            assert math.isnan(spearman(x, y))
        else:
            assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_table2_is_the_paper_grid():
    assert len(TABLE2_TOP1_ERROR_PCT) == 15
    assert set(TABLE2_TOP1_ERROR_PCT) == {(g, s) for g in (1, 2, 3, 4, 8) for s in (0.25, 0.5, 1.0)}
    errors = TABLE2_TOP1_ERROR_PCT
    assert errors[1, 1.0] == 33.6 and errors[8, 1.0] == 32.4 and errors[4, 0.5] == 41.6 and errors[8, 0.25] == 52.7
    # The paper's own finding, which the study checks the proxy against: g > 1 beats g = 1 at every scale.
    assert all(errors[g, s] < errors[1, s] for g in (2, 3, 4, 8) for s in (0.25, 0.5, 1.0))


def test_table2_specs_follow_the_width_rule_and_budgets():
    specs = table2_specs()
    assert [(s.groups, s.scale) for s in specs] == list(TABLE2_TOP1_ERROR_PCT)
    assert specs[2].stage_channels == (240, 480, 960)  # g3 1x, paper Table 1
    # Each scale is one complexity class (paper: 140 / 38 / 13 MFLOPs): within 25% of the paper's figure.
    for spec in specs:
        paper = {1.0: 140e6, 0.5: 38e6, 0.25: 13e6}[spec.scale]
        assert abs(count_macs(spec) / paper - 1) < 0.25, (spec.label, count_macs(spec))


def _stored(fashion, fid, seed, top1_of, diverged_groups=()):
    """Results stored in a cache as a finished study would leave them (no training)."""
    out = []
    for spec, ((g, s), err) in zip(table2_specs(), TABLE2_TOP1_ERROR_PCT.items()):
        trained = adapt_spec(spec, fashion, fid)
        top1, bad = top1_of(g, s, err), g in diverged_groups
        result = TrainResult(
            top1=None if bad else top1,
            test_loss=None if bad else 1 - top1,
            curve=[],
            seconds=2.0,
            images_seen=100,
            status="diverged" if bad else "ok",
            spec=trained.to_dict(),
            dataset=f"fashion-mnist:{fashion.fingerprint}",
            fidelity=fid.to_dict(),
            seed=seed,
        )
        out.append((result_key(trained, fashion.fingerprint, fid, seed, TRAINER_VERSION), result))
    return out


def test_report_from_a_perfect_proxy(fashion, tmp_path):
    fid = Fidelity(train_images=100, epochs=1)
    cache = ResultCache(tmp_path / "c.sqlite")
    for seed, jitter in ((0, 0.0), (1, 0.002)):
        for key, result in _stored(fashion, fid, seed, lambda g, s, e, j=jitter: 1 - e / 100 + j):
            cache.put(key, result.to_dict())
    report = run_fidelity(fashion, fid, seeds=(0, 1), cache=cache)
    assert report.cached_runs == 30
    assert report.spearman_overall == pytest.approx(1.0)
    assert report.spearman_test_loss == pytest.approx(1.0)
    assert report.spearman_by_scale == {"0.25": pytest.approx(1.0), "0.5": pytest.approx(1.0), "1": pytest.approx(1.0)}
    assert report.direction_ok_by_scale == {"0.25": True, "0.5": True, "1": True}
    assert report.wins_over_g1_by_scale == report.test_loss_wins_over_g1_by_scale == {"0.25": 4, "0.5": 4, "1": 4}
    assert all(v == pytest.approx(1.0) for v in report.spearman_test_loss_by_scale.values())
    assert report.seed_spread == pytest.approx(0.002 / math.sqrt(2))
    assert report.minutes == pytest.approx(30 * 2.0 / 60)
    assert report.rows[0]["top1_by_seed"] == [pytest.approx(1 - 0.336), pytest.approx(1 - 0.336 + 0.002)]


def test_report_from_a_reversed_proxy_and_a_diverged_model(fashion, tmp_path):
    fid = Fidelity(train_images=100, epochs=2)
    cache = ResultCache(tmp_path / "c.sqlite")
    for key, result in _stored(fashion, fid, 0, lambda g, s, e: e / 100, diverged_groups=(8,)):
        cache.put(key, result.to_dict())
    report = run_fidelity(fashion, fid, seeds=(0,), cache=cache)
    g8 = [r for r in report.rows if r["groups"] == 8]
    assert all(r["top1"] == 0.1 and r["top1_by_seed"] == [None] for r in g8)  # diverged counts as chance
    proxy = [0.1 if g == 8 else e / 100 for (g, s), e in TABLE2_TOP1_ERROR_PCT.items()]
    assert report.spearman_overall == pytest.approx(
        stats.spearmanr(proxy, [-e for e in TABLE2_TOP1_ERROR_PCT.values()]).statistic
    )
    assert report.spearman_overall < -0.5
    assert report.direction_ok_by_scale == {"0.25": False, "0.5": False, "1": False}


def test_zero_cost_ranking_scores_each_table2_model_against_its_proxy_top1(fashion, tmp_path, monkeypatch):
    from shufflesearch.accuracy import zero_cost

    fid = Fidelity(train_images=100, epochs=1)
    cache = ResultCache(tmp_path / "c.sqlite")
    for key, result in _stored(fashion, fid, 0, lambda g, s, e: 1 - e / 100):
        cache.put(key, result.to_dict())
    report = run_fidelity(fashion, fid, seeds=(0,), cache=cache)

    def fake_scores(spec, data, fidelity):  # a score that is the paper's error: ranks exactly backwards
        result = zero_cost.ZeroCostResult({"fake": TABLE2_TOP1_ERROR_PCT[spec.groups, spec.scale]}, {}, 1, 0)
        return adapt_spec(spec, data, fidelity), result

    monkeypatch.setattr(zero_cost, "score_on_dataset", fake_scores)
    scores = table2_zero_cost_scores(fashion, fid)
    ranking = zero_cost_ranking(report, scores)
    assert set(ranking) == {"fake", "params", "mflops"}
    assert ranking["fake"] == pytest.approx(-1.0)
    # Against the paper too, beside the proxy and the free counts: the paper's error ranks exactly backwards.
    rankers = rankers_vs_paper(report.rows, scores)
    assert list(rankers) == ["proxy top-1", "proxy test loss", "params", "mflops", "fake"]
    assert rankers["fake"]["spearman"] == pytest.approx(-1.0) and rankers["fake"]["kendall"] == pytest.approx(-1.0)


def test_the_free_rankers_are_the_counts_analyze_prints_ranked_against_the_paper(fashion, tmp_path):
    import json

    from typer.testing import CliRunner

    from shufflesearch.cli import app

    fid = Fidelity(train_images=100, epochs=1)
    cache = ResultCache(tmp_path / "c.sqlite")
    for key, result in _stored(fashion, fid, 0, lambda g, s, e: 0.5 + g / 100):  # a proxy that only sees groups
        cache.put(key, result.to_dict())
    report = run_fidelity(fashion, fid, seeds=(0,), cache=cache)
    for row in report.rows:
        shown = CliRunner().invoke(
            app, ["analyze", "--groups", str(row["groups"]), "--scale", str(row["scale"]), "--json"]
        )
        analyzed = json.loads(shown.stdout)
        assert (row["params"], row["mflops"]) == (analyzed["params"], pytest.approx(analyzed["mflops"])), row["label"]
    truth = [-r["paper_top1_error"] for r in report.rows]
    for name, key in (("params", "params"), ("mflops", "mflops"), ("proxy top-1", "top1")):
        figures, values = report.rankers[name], [r[key] for r in report.rows]
        assert figures["spearman"] == pytest.approx(stats.spearmanr(values, truth).statistic)
        assert figures["kendall"] == pytest.approx(stats.kendalltau(values, truth).statistic)
        assert figures["spearman_95"][0] <= figures["spearman"] <= figures["spearman_95"][1]
        for scale, within in figures["by_group"].items():
            rows = [r for r in report.rows if f"{r['scale']:g}" == scale]
            assert within["n"] == 5
            assert within["spearman"] == pytest.approx(
                stats.spearmanr([r[key] for r in rows], [-r["paper_top1_error"] for r in rows]).statistic
            )
    assert report.rankers["proxy top-1"]["spearman"] == pytest.approx(report.spearman_overall)


@pytest.mark.slow
def test_tiny_real_study_runs_end_to_end(fashion, tmp_path):
    fid = Fidelity(train_images=128, epochs=1, batch_size=64, eval_images=100, curve_eval_images=0)
    seen = []
    cache = ResultCache(tmp_path / "c.sqlite")
    report = run_fidelity(fashion, fid, seeds=(0,), cache=cache, progress=seen.append, threads=1)
    assert len(report.rows) == 15 and report.cached_runs == 0
    assert {p.run for p in seen} == set(range(1, 16)) and seen[-1].runs == 15
    assert -1 <= report.spearman_overall <= 1 and report.minutes > 0
    assert all(0 <= r["top1"] <= 1 for r in report.rows)


def test_worker_processes_give_the_same_report(fashion, tmp_path):
    fid = Fidelity(train_images=100, epochs=3)
    cache = ResultCache(tmp_path / "c.sqlite")
    for key, result in _stored(fashion, fid, 0, lambda g, s, e: 1 - e / 100 + g / 1000):
        cache.put(key, result.to_dict())
    seen = []
    pooled = run_fidelity(fashion, fid, seeds=(0,), cache=cache, workers=2, progress=seen.append)
    assert pooled.to_dict() == run_fidelity(fashion, fid, seeds=(0,), cache=cache).to_dict()
    assert sorted(p.run for p in seen) == list(range(1, 16))
    with pytest.raises(ValueError, match="workers=0 must be a positive integer"):
        run_fidelity(fashion, fid, workers=0)


def test_the_fidelity_command_shows_each_ranker_beside_the_proxy(fashion, tmp_path, monkeypatch, capsys):
    import json

    from shufflesearch import cli
    from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fid = DEFAULT_FIDELITY.replace(train_images=100, epochs=1)  # what --subset 100 --epochs 1 asks for
    cache = ResultCache()
    for key, result in _stored(fashion, fid, 0, lambda g, s, e: 1 - e / 100):
        cache.put(key, result.to_dict())
    argv = ["fidelity", "--seeds", "0", "--subset", "100", "--epochs", "1", "--device", "cpu", "--workers", "1"]
    shown = {}
    for as_json in (False, True):
        with pytest.raises(SystemExit) as done:
            cli.main([*argv, *(["--json"] if as_json else [])])
        assert done.value.code == 0
        shown[as_json] = capsys.readouterr().out
    assert "Each ranker against the paper's ImageNet top-1" in shown[False]
    rankers = json.loads(shown[True])["rankers"]
    assert list(rankers) == ["proxy top-1", "proxy test loss", "params", "mflops"]
    assert rankers["proxy top-1"]["spearman"] == pytest.approx(1.0)
    assert rankers["params"]["spearman"] < 1.0  # the free count is not the perfect stand-in proxy
    rows = [line.split("│") for line in shown[False].splitlines() if line.startswith("│")]
    names = " ".join(cells[1].strip() for cells in rows).split()
    assert names == ["proxy", "top-1", "proxy", "test", "loss", "params", "mflops"], names
    for name in ("params", "mflops"):  # a count's row shows its own figures
        (cells,) = [cells for cells in rows if cells[1].strip() == name]
        assert [c.strip() for c in cells[2:5:2]] == [f"{rankers[name][k]:.3f}" for k in ("spearman", "kendall")]
