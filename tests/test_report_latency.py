"""Reports of latency budgets (issue 16): a budget in ms reads as one, paper models are placed by the
study's predictor, and latency is shown beside MFLOPs per group count with how it was obtained."""

from __future__ import annotations

import csv
import itertools
import random

import pandas as pd
import pytest

from shufflesearch.complexity import count_complexity
from shufflesearch.latency.lut import resolve_table
from shufflesearch.presets import paper_models
from shufflesearch.report.budgets import budget_label, budgets_frame
from shufflesearch.report.frames import PAPER, SEARCHED, build_frames
from shufflesearch.report.latency_view import discordant_pairs, latency_groups_frame
from shufflesearch.report.study import report_study
from shufflesearch.search.objective import latency_table, predicted_latency
from shufflesearch.search.queue import run_worker
from shufflesearch.search.study_file import load_study
from shufflesearch.spec import ShuffleNetSpec

SPACE = "[space]\ngroups = [1, 3, 8]\nscale = [0.1, 1.0]\nrepeats = [[1, 3], [2, 4], [1, 3]]\n"


def searched(tmp_path, budget: str, trials: int = 5):
    """A real study on the shipped table, searched with a stand-in score (this tests the report, not training)."""
    path = tmp_path / "ms.toml"
    path.write_text(f"[study]\nname = 'ms'\ntrials = {trials}\nsampler = 'random'\n[budget]\n{budget}\n{SPACE}")
    config = load_study(path)
    table = latency_table(config)
    run_worker(config, config.default_storage(), trials, lambda spec, report: {
        "top1": 0.5 + spec.scale / 10 - spec.groups / 100, **predicted_latency(table, spec)})  # fmt: skip
    return config


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_latency_budget_reads_in_ms_and_places_paper_models_by_the_predictor(tmp_path):
    config = searched(tmp_path, "latency_ms = [8, 16]\nmin_fraction = 0.5\nlut = 'snapdragon820'")
    result = report_study(config, config.default_storage(), out=tmp_path / "r")
    assert "ms-8ms (per-budget, 4-8 ms): finished" in result.summary[0]
    assert not any("419" in line or "0-" in line for line in result.summary)  # no MFLOPs window it never had
    assert any(line.startswith("ms-16ms ≤ 16 ms: best") and "ms, lut-estimated)" in line for line in result.summary)

    table = resolve_table("snapdragon820")
    best = rows(tmp_path / "r" / "tables" / "best_per_budget.csv")
    top = config.space.mflops_range[1]
    for name, (lo, hi) in config.latency_windows().items():
        here = [r for r in best if r["study"] == name]
        assert {r["budget"] for r in here} == {f"≤ {hi:g} ms"} and {r["budget_mflops"] for r in here} == {""}
        expected = {n for n, s in paper_models().items()
                    if lo < table.predict_ms(s) <= hi and count_complexity(s).mflops <= top}  # fmt: skip
        assert {r["name"] for r in here if r["kind"] == PAPER} == expected
        for r in here:
            assert r["latency_kind"] == "lut-estimated" and lo < float(r["latency_ms"]) <= hi + 1e-3
    assert any(r["kind"] == SEARCHED for r in best)

    groups = rows(tmp_path / "r" / "tables" / "latency_by_groups.csv")
    assert {r["latency_kind"] for r in groups} == {"lut-estimated"} and len(groups) >= 2
    assert any(line.startswith("Latency vs MFLOPs (lut-estimated") for line in result.summary)
    assert (tmp_path / "r" / "plots" / "latency_vs_mflops.png").stat().st_size > 10_000


def test_paired_budgets_name_both_bounds(tmp_path):
    config = searched(tmp_path, "mflops = [40]\nlatency_ms = [12]\nmin_fraction = 0.3\nlut = 'snapdragon820'")
    result = report_study(config, config.default_storage(), out=tmp_path / "r")
    assert result.summary[0].startswith("ms-40M-12ms (per-budget, 12-40 MFLOPs, 3.6-12 ms)")
    assert {r["budget"] for r in result.tables["best_per_budget"]} == {"≤ 40 MFLOPs and ≤ 12 ms"}


def test_budget_labels_and_bins():
    assert budget_label(40.0, None) == "≤ 40 MFLOPs" and budget_label(None, 7.7) == "≤ 7.7 ms"
    assert budget_label(40.0, 7.7, short=True) == "≤40M ≤7.7ms"
    attrs = {"a-7.7ms": {"window_mflops": [0, 419], "window_latency_ms": [4.6, 7.7], "budgeted": ["latency_ms"]},
             "a-15.2ms": {"window_mflops": [0, 419], "window_latency_ms": [9.1, 15.2], "budgeted": ["latency_ms"]},
             "b-13M": {"window_mflops": [6.5, 13]}}  # fmt: skip
    frame = budgets_frame(attrs, attrs)
    assert frame.budget.tolist() == ["≤ 7.7 ms", "≤ 15.2 ms", "≤ 13 MFLOPs"]  # ms by ms, not "15.2" < "7.7"
    assert frame["rank"].tolist() == [0, 1, 2]


def test_discordant_pairs_agree_with_counting_every_pair():
    rng = random.Random(3)
    m = [rng.choice([10.0, 20.0, 30.0, rng.uniform(0, 40)]) for _ in range(40)]
    lat = [x * rng.uniform(0.8, 1.3) for x in m]
    pairs = [(i, j) for i, j in itertools.combinations(range(40), 2) if m[i] != m[j]]
    bad = sum((m[i] - m[j]) * (lat[i] - lat[j]) < 0 for i, j in pairs)
    assert discordant_pairs(m, lat) == (bad, len(pairs))


def test_group_counts_are_compared_at_equal_mflops_within_one_kind():
    # measured: latency = c_g * mflops**0.8 with g8 1.3x g1; the estimate: g8 twice g1, proportional
    m = [10.0, 20.0, 40.0, 15.0, 30.0]
    rows = [(1, x, 0.5 * x**0.8, "measured") for x in m[:3]] + [(8, x, 1.3 * 0.5 * x**0.8, "measured") for x in m[3:]]
    rows += [(1, x, x / 10, "lut-estimated") for x in m[:2]] + [(8, x, x / 5, "lut-estimated") for x in m[2:]]
    lat = pd.DataFrame(rows, columns=["groups", "mflops", "latency_ms", "latency_kind"])
    frame = latency_groups_frame(lat).set_index(["latency_kind", "groups"])
    assert frame.loc[("measured", 8), "vs_fewest_groups"] == pytest.approx(1.3, abs=1e-3)
    assert frame.loc[("measured", 1), "mflops_exponent"] == pytest.approx(0.8, abs=1e-3)
    assert frame.loc[("lut-estimated", 8), "vs_fewest_groups"] == pytest.approx(2.0, abs=1e-3)
    # a plain median of time per MFLOP would charge the smaller g8 trials less: the fit does not
    assert frame.loc[("measured", 1), "common_mflops"] == 20.0


def test_a_trial_without_a_latency_kind_is_shown_as_unknown_not_dropped():
    spec = ShuffleNetSpec(groups=3, scale=0.5)
    rec = {"study": "s", "trial": 0, "state": "complete", "mflops": count_complexity(spec).mflops, "top1": 0.7,
           "latency_ms": 12.0, "spec": spec.to_dict()}  # fmt: skip
    frames = build_frames({"s": [rec]}, {"s": {"window_mflops": [20, 40]}})
    assert frames.latency.latency_kind.tolist() == ["unknown"]


def test_one_mflops_value_per_kind_still_compares_at_that_value():
    lat = pd.DataFrame({"groups": [3, 8], "mflops": [40.47, 40.47], "latency_ms": [7.0, 9.0],
                        "latency_kind": ["measured", "measured"]})  # fmt: skip
    frame = latency_groups_frame(lat).set_index("groups")
    assert frame.loc[3, "ms_at_common_mflops"] == pytest.approx(7.0) and frame.loc[
        8, "vs_fewest_groups"
    ] == pytest.approx(9 / 7, abs=1e-3)
    single = latency_groups_frame(lat.iloc[:1].assign(latency_kind="lut-predicted"))
    assert single.ms_at_common_mflops.tolist() == [7.0]
