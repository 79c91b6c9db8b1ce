"""A report says how its numbers were made (recipe, split, seeds, data, the recipe's measured
fidelity) and warns where a reader must not trust them (issue 15)."""

from __future__ import annotations

import pandas as pd
from test_report import rec

from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY
from shufflesearch.paper import TABLE2_TOP1_ERROR_PCT
from shufflesearch.report.frames import build_frames

WINDOW = {"mode": "per-budget", "window_mflops": [6.5, 13]}
DEMO = DEFAULT_FIDELITY.replace(train_images=2000, eval_images=2000).to_dict()


def table2(study: str, top1_by_groups: dict[int, float], **extra) -> list[dict]:
    """The paper's 0.25x models as the search queues them, with these proxy top-1s."""
    return [rec(study, i, groups=g, scale=0.25, top1=t, preset=f"paper_x0_25_g{g}", **extra)
            for i, (g, t) in enumerate(top1_by_groups.items())]  # fmt: skip


def notes(records: list[dict], attrs: dict | None = None) -> list[str]:
    return build_frames({"s-13M": records}, {"s-13M": attrs or WINDOW}).notes


def test_a_ranking_against_the_papers_direction_is_called_out_with_both_orders():
    reversed_ = notes([*table2("s-13M", {1: 0.82, 3: 0.81, 8: 0.8}), rec("s-13M", 9, scale=0.27, top1=0.5)])
    (line,) = [n for n in reversed_ if "against the paper's ImageNet order" in n]
    paper = sorted((1, 3, 8), key=lambda g: TABLE2_TOP1_ERROR_PCT[(g, 0.25)])
    assert "g1 x0.25 (82.00%) > g3 x0.25 (81.00%) > g8 x0.25 (80.00%)" in line
    assert " > ".join(f"g{g} x0.25" for g in paper) in line and "span 2.00 points" in line
    agreeing = notes([*table2("s-13M", {1: 0.8, 3: 0.81, 8: 0.82}), rec("s-13M", 9, scale=0.27, top1=0.5)])
    assert not any("against the paper" in n for n in agreeing)


def test_near_chance_is_flagged_from_the_recorded_class_count():
    low = [rec("s-13M", i, scale=0.25 + i / 100, top1=t, classes=10) for i, t in enumerate([0.12, 0.14, 0.6])]
    (line,) = [n for n in notes(low) if "chance" in n]
    assert line.startswith("s-13M: 2 of 3 complete trials score within 5 points of chance (10%)")
    assert not any("chance" in n for n in notes([rec("s-13M", 0, top1=0.6, classes=10)]))
    assert not any("chance" in n for n in notes([rec("s-13M", 0, top1=0.12)]))  # no class count: no claim


def test_a_study_of_only_queued_paper_models_is_not_called_a_search():
    only = notes(table2("s-13M", {1: 0.80, 3: 0.81}))
    assert any("every complete trial is one of the 2 paper models queued first" in n for n in only)
    searched = [*table2("s-13M", {1: 0.8, 3: 0.81}), rec("s-13M", 5, scale=0.27, top1=0.7)]
    assert not any("queued first" in n for n in notes(searched))


def test_provenance_names_the_recipe_seeds_data_and_what_the_recipe_is_worth():
    default = DEFAULT_FIDELITY.replace(scored_on="test").to_dict()  # the recipe docs/fidelity.md measured first
    common = {"seed": 0, "device": "cpu", "dataset": "fashion-mnist:abc123"}
    frames = build_frames({"a": [rec("a", 0, recipe=default, **common)], "b": [rec("b", 0, recipe=DEMO, **common),
                           rec("b", 1, recipe=default, **common)], "c": [rec("c", 0)]},
                          {"a": WINDOW, "b": WINDOW, "c": {**WINDOW, "recipe": DEMO, "seed": 3}})  # fmt: skip
    rows = frames.provenance.set_index("study")
    assert rows.loc["a", "recipe"].startswith("30000 images x 2 epochs at 48 px (imagenet stem), batch 128")
    assert rows.loc["a", "recipe"].endswith("scored on the whole test split")
    assert rows.loc["a", "split"].startswith("test (the same split chooses and reports")
    assert "Spearman 0.971" in rows.loc["a", "fidelity"] and "0.36 points" in rows.loc["a", "fidelity"]
    assert rows.loc["a", "seeds"].startswith("0 (one per trial") and rows.loc["a", "dataset"] == "fashion-mnist:abc123"
    assert "and 1 other recipe(s)" in rows.loc["b", "recipe"]
    assert rows.loc["c", "recipe"].endswith("(from the study file: the trials did not record theirs)")
    assert rows.loc["c", "fidelity"].startswith("never measured") and rows.loc["c", "seeds"].startswith("3")
    assert frames.trained_at == "48 px" and frames.dataset == "fashion-mnist"
    assert set(frames.trials.trained_px.dropna()) == {48}


def test_damaged_provenance_fields_read_as_missing_not_a_crash():
    damaged = [rec("s-13M", 0, classes=0.5, recipe={**DEMO, "resolution": "abc"}, seed=float("nan")),
               rec("s-13M", 1, scale=0.3, classes=float("inf"), recipe={**DEMO, "resolution": {"x": 1}})]  # fmt: skip
    frames = build_frames({"s-13M": damaged}, {"s-13M": {**WINDOW, "seed": float("nan")}})
    assert frames.trained_at == "?" and not any("chance" in n for n in frames.notes)
    assert frames.provenance.seeds.tolist() == [""]


def test_the_latency_summary_names_the_group_count_furthest_from_the_fewest_groups():
    from shufflesearch.report.latency_view import disagreement_lines, latency_groups_frame

    faster = pd.DataFrame({"groups": [1, 1, 3, 3], "mflops": [10.0, 20.0, 10.0, 20.0],
                           "latency_ms": [4.0, 8.0, 3.0, 6.0], "latency_kind": ["measured"] * 4})  # fmt: skip
    (line,) = disagreement_lines(faster, latency_groups_frame(faster))
    assert "g3 takes 0.75x the time of g1" in line
