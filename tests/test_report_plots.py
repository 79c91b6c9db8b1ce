"""The report's plots a practitioner expects: learning curves, parameter importance over readable parameters,
and the accuracy plot's front, budgets and paper models. Data functions are checked against independent
computations from the records; drawings are read back from their artists."""

import io
import math
import random

import pytest
from test_report import per_budget, rec

from shufflesearch.complexity import count_complexity
from shufflesearch.report import plots
from shufflesearch.report.frames import SEARCHED, build_frames
from shufflesearch.report.importance import BUDGET_SHARE, MIN_TRIALS, importance_frame
from shufflesearch.report.learning_curves import PRUNED_COLOR, WINNER_COLOR, curves_frame
from shufflesearch.spec import ShuffleNetSpec


def stand_in_curve(final: float, epochs: int) -> list[dict]:
    """A curve shaped like the trainer's (epoch, images_seen, train_loss, top1), rising to `final`."""
    return [{"epoch": float(e), "images_seen": 2000 * e, "train_loss": 2.3 / e, "top1": round(final - 0.2 / e, 4),
             "seconds": 1.5 * e} for e in range(1, epochs + 1)]  # fmt: skip


def winners(frames):
    return frames.best[frames.best.kind == SEARCHED]


def search(seed=0, n=20, budget=40.0, signal=None):
    """A per-budget study of random specs inside (budget/2, budget]: complete trials carry a stored curve,
    pruned ones only what they reported to Optuna. `signal(spec)` sets top-1 where given."""
    rng = random.Random(seed)
    name, attrs = per_budget(budget=budget, lo=budget / 2)
    records = []
    while len(records) < n:
        spec = ShuffleNetSpec(groups=rng.choice((1, 2, 3, 4, 8)), scale=round(rng.uniform(0.1, 0.8), 2),
                              repeats=(rng.randint(2, 5), rng.randint(4, 9), rng.randint(2, 5)))  # fmt: skip
        if not budget / 2 < count_complexity(spec).mflops <= budget:
            continue
        state = "pruned" if len(records) % 5 == 4 else "complete"
        top1 = signal(spec, rng) if signal else round(rng.uniform(0.5, 0.9), 4)
        r = rec(name, len(records), state, spec.groups, spec.scale, spec.repeats, top1=top1, classes=10)
        if state == "complete":
            r["curve"] = stand_in_curve(top1, 3)
        else:
            r["curve"] = None
            r["intermediate"] = {e: top1 - 0.3 / e for e in range(1, 1 + len(records) % 3)}
        records.append(r)
    return {name: records}, {name: attrs}


# -- learning curves ------------------------------------------------------------------------------------------
def test_curves_frame_holds_every_stored_point_and_flags_each_budgets_winner():
    records, attrs = search(seed=1)
    (name,) = records
    records[name].append(rec(name, 90, "running"))  # no curve yet: no rows
    records[name].append({**rec(name, 91, "complete", top1=0.1), "curve": "garbage"})  # damaged: no rows
    records[name].append({**rec(name, 92, "complete", top1=0.1), "curve": [
        {"epoch": 1, "top1": float("nan"), "train_loss": 1.0}, "x", {"epoch": None, "top1": 0.5},
        {"epoch": 2, "top1": 0.2, "train_loss": float("inf")}]})  # fmt: skip
    frames = build_frames(records, attrs)
    curves = curves_frame(records, frames.trials, winners(frames))

    expected = {}
    for r in records[name][:-3]:
        if r["state"] == "complete":
            expected[r["trial"]] = [(p["epoch"], round(100 * p["top1"], 2)) for p in r["curve"]]
        elif r["state"] == "pruned" and r["intermediate"]:  # pruned before its first report: no line
            expected[r["trial"]] = [(float(e), round(100 * v, 2)) for e, v in sorted(r["intermediate"].items())]
    expected[92] = [(1.0, None), (2.0, 20.0)]  # the finite numbers kept, one per field
    got = {t: [(e, None if math.isnan(v) else v) for e, v in zip(g.epoch, g.top1_pct)] for t, g in
           curves.groupby("trial")}  # fmt: skip
    assert got == expected
    assert set(curves[curves.state == "pruned"].source) == {"reported"} and set(curves[curves.state == "complete"]
                                                                                .source) == {"curve"}  # fmt: skip
    assert curves[curves.trial == 92].train_loss.isna().tolist() == [False, True]

    top = max((r for r in records[name] if r["state"] == "complete"), key=lambda r: r["top1"])
    assert set(curves[curves.winner].trial) == {top["trial"]}
    assert set(curves.budget) == {"≤ 40 MFLOPs"}


def test_learning_curves_draw_the_winner_thick_and_stop_pruned_trials_at_their_last_report():
    records, attrs = search(seed=2)
    (name,) = records
    frames = build_frames(records, attrs)
    frames.curves = curves_frame(records, frames.trials, winners(frames))
    fig = plots.plot_learning_curves(frames)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    lines = ax.get_lines()
    winner = [ln for ln in lines if ln.get_color() == WINNER_COLOR]
    top = max((r for r in records[name] if r["state"] == "complete"), key=lambda r: r["top1"])
    assert len(winner) == 1 and winner[0].get_linewidth() > 2
    assert list(winner[0].get_ydata()) == [round(100 * p["top1"], 2) for p in top["curve"]]
    stops = [ln for ln in lines if ln.get_color() == PRUNED_COLOR and ln.get_marker() == "x"]
    pruned = [r for r in records[name] if r["state"] == "pruned" and r["intermediate"]]
    assert sorted((float(s.get_xdata()[0]), float(s.get_ydata()[0])) for s in stops) == sorted(
        (float(max(r["intermediate"])), round(100 * r["intermediate"][max(r["intermediate"])], 2)) for r in pruned
    )
    complete = [r for r in records[name] if r["state"] == "complete"]
    assert sum(ln.get_color() == "grey" for ln in lines) == len(complete) - 1  # all but the winner
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "complete trial",
        "pruned (x: stopped here)",
        f"winner: {top['label']} (trial {top['trial']})",
        "chance (10 %)",
    }
    (chance,) = [ln for ln in lines if ln.get_label() == "chance (10 %)"]
    assert list(chance.get_ydata()) == [10.0, 10.0] and set(frames.curves.chance_pct) == {10.0}
    assert ax.get_xlim()[0] == 0


def test_learning_curves_get_a_panel_per_budget_in_budget_order():
    a, attrs_a = search(seed=3, budget=40.0)
    b, attrs_b = search(seed=4, budget=13.0)
    records, attrs = {**a, **b}, {**attrs_a, **attrs_b}
    frames = build_frames(records, attrs)
    frames.curves = curves_frame(records, frames.trials, winners(frames))
    fig = plots.plot_learning_curves(frames)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["≤ 13 MFLOPs", "≤ 40 MFLOPs"]


# -- parameter importance -------------------------------------------------------------------------------------
def test_importance_names_readable_parameters_and_finds_a_planted_one():
    """Top-1 set by the group count alone: groups is the most important parameter, shares sum to 1, the search's
    width index appears nowhere, and a parameter no trial varies (shuffle, bottleneck) is not listed."""
    records, attrs = search(
        seed=5, n=40, signal=lambda spec, rng: 0.85 if spec.groups == 8 else 0.6 + rng.uniform(0, 0.01)
    )
    frames = build_frames(records, attrs)
    table = importance_frame(frames.trials, frames.budgets)
    complete = [r for r in next(iter(records.values())) if r["state"] == "complete"]
    assert table.importance.sum() == pytest.approx(1.0, abs=1e-3)
    assert table.iloc[0].parameter == "groups" and table.iloc[0].importance > 0.5
    assert set(table.parameter) <= {"groups", "scale", "stage 2 depth", "stage 3 depth", "stage 4 depth",
                                    BUDGET_SHARE["mflops"]}  # fmt: skip
    assert "groups" in set(table.parameter) and not any("width" in p for p in table.parameter)
    assert set(table.trials) == {len(complete)} and set(table.top_trials) == {max(4, math.ceil(0.1 * len(complete)))}


def test_importance_matches_ped_anova_on_a_study_built_from_the_records():
    """The same numbers from an Optuna study made here from the raw records (their specs, MFLOPs and budget)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    records, attrs = search(seed=6, n=30)
    (name,) = records
    frames = build_frames(records, attrs)
    table = importance_frame(frames.trials, frames.budgets).set_index("parameter")

    complete = [r for r in records[name] if r["state"] == "complete"]
    specs = [ShuffleNetSpec.from_dict(r["spec"]) for r in complete]
    params = [{"groups": s.groups, "scale": s.scale, "stage 2 depth": s.repeats[0], "stage 3 depth": s.repeats[1],
               "stage 4 depth": s.repeats[2], "share": r["mflops"] / 40.0} for s, r in zip(specs, complete)]  # fmt: skip

    def span(key, kind):
        values = [p[key] for p in params]
        return kind(min(values), max(values))

    dists = {"groups": CategoricalDistribution(sorted({p["groups"] for p in params})),
             "scale": span("scale", FloatDistribution), "share": span("share", FloatDistribution),
             **{f"stage {i} depth": span(f"stage {i} depth", IntDistribution) for i in (2, 3, 4)}}  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=100 * r["top1"])
                      for p, r in zip(params, complete)])  # fmt: skip
    top = max(4, math.ceil(0.1 * len(complete)))
    evaluator = PedAnovaImportanceEvaluator(target_quantile=top / len(complete))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # normalize=False is "experimental"
        raw = get_param_importances(study, evaluator=evaluator, normalize=False)
    total = sum(raw.values())
    raw[BUDGET_SHARE["mflops"]] = raw.pop("share")
    assert set(table.index) == set(raw)
    for param, value in raw.items():
        assert table.loc[param, "importance"] == pytest.approx(value / total, abs=1e-4)


def test_importance_needs_enough_trials_and_uses_the_ms_budget_where_only_latency_bounds():
    records, attrs = search(seed=7, n=MIN_TRIALS)  # one of them pruned: one complete trial too few
    frames = build_frames(records, attrs)
    assert importance_frame(frames.trials, frames.budgets).empty
    frames.importance = importance_frame(frames.trials, frames.budgets)
    ax = plots.plot_parameter_importance(frames)
    assert "at least 8" in ax.texts[0].get_text()

    records, attrs = search(seed=8, n=20)
    (name,) = records
    for r in records[name]:
        r["latency_ms"] = r["mflops"] / 6
    attrs[name] = {"mode": "per-budget", "window_mflops": [0, 400], "window_latency_ms": [3.0, 7.0],
                   "budgeted": ["latency_ms"]}  # fmt: skip
    frames = build_frames(records, attrs)
    table = importance_frame(frames.trials, frames.budgets)
    assert BUDGET_SHARE["ms"] in set(table.parameter) and BUDGET_SHARE["mflops"] not in set(table.parameter)
    assert set(table.budget) == {"≤ 7 ms"}


def test_importance_plot_has_one_bar_per_budget_and_parameter():
    a, attrs_a = search(seed=9, n=20, budget=40.0)
    b, attrs_b = search(seed=10, n=20, budget=13.0)
    frames = build_frames({**a, **b}, {**attrs_a, **attrs_b})
    frames.importance = importance_frame(frames.trials, frames.budgets)
    ax = plots.plot_parameter_importance(frames)
    bars = [p for c in ax.containers for p in c]
    assert len(ax.containers) == 2 and len(bars) == 2 * len(set(frames.importance.parameter))
    for container, (_, rows) in zip(ax.containers, frames.importance.groupby("budget", sort=False)):
        widths = {round(p.get_width(), 6) for p in container}
        assert {round(v, 6) for v in rows.importance} <= widths
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels and not any("width" in t for t in labels)


# -- accuracy vs MFLOPs ---------------------------------------------------------------------------------------
def _one_point_front():
    name, attrs = per_budget()
    best = rec(name, 0, groups=3, scale=0.45, top1=0.8)
    worse = rec(name, 1, groups=8, scale=0.5, top1=0.6)
    assert best["mflops"] < worse["mflops"]
    return build_frames({name: [best, worse]}, {name: attrs})


def test_a_one_point_front_is_drawn_and_untrained_paper_models_are_not():
    frames = _one_point_front()
    assert len(frames.front) == 1
    ax = plots.plot_accuracy_vs_mflops(frames)
    (front,) = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == list(frames.front.mflops) and front.get_marker() == "o"
    assert front.get_markersize() > 0
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert not any("not trained" in t for t in legend)
    untrained = frames.best[(frames.best.kind == "paper model") & frames.best.top1_pct.isna()]
    assert len(untrained) >= 3  # the window holds paper models this study never trained
    drawn = sum(len(c.get_offsets()) for c in ax.collections)
    assert drawn == 2  # the two trials: nothing at a made-up accuracy


def test_budget_labels_sit_where_no_point_label_is():
    """A trained paper model at the budget line: the budget is named outside the plot area, over no point or name."""
    name, attrs = per_budget(budget=38.0, lo=19.0)
    trained = rec(name, 0, groups=3, scale=0.5, top1=0.7)  # the paper's g3 x0.5: 37.6 MFLOPs, next to 38
    other = rec(name, 1, groups=3, scale=0.3, top1=0.5)
    frames = build_frames({name: [trained, other]}, {name: attrs})
    ax = plots.plot_accuracy_vs_mflops(frames)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.figure
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    point_labels = [t for t in ax.texts if t.get_text()]
    assert any("g3" in t.get_text() for t in point_labels)
    budget_labels = [t for a in ax.child_axes for t in a.get_xticklabels() if t.get_text().startswith("budget")]
    assert [t.get_text() for t in budget_labels] == ["budget 38M"]
    renderer = canvas.get_renderer()
    area = ax.get_window_extent(renderer)  # where points, the front and point labels are drawn
    for p in point_labels:  # inside the plot: not under the legend beside it
        box = p.get_window_extent(renderer)
        assert area.x0 <= box.x0 and box.x1 <= area.x1
    for b in budget_labels:
        assert not b.get_window_extent(renderer).overlaps(area)
        assert not any(p.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)) for p in point_labels)
    assert not any(t.get_text().startswith("budget") for t in ax.texts)  # none inside the plot area


# -- empty and one-trial inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["no studies", "one trial", "one pruned trial"])
def test_new_plots_never_raise_on_tiny_inputs(shape):
    name, attrs = per_budget()
    records = {
        "no studies": {},
        "one trial": {name: [{**rec(name, 0), "curve": stand_in_curve(0.8, 1)}]},
        "one pruned trial": {name: [{**rec(name, 0, "pruned"), "curve": None, "intermediate": {"1": 0.4}}]},
    }[shape]
    frames = build_frames(records, {name: attrs} if records else {})
    frames.curves = curves_frame(records, frames.trials, winners(frames))
    frames.importance = importance_frame(frames.trials, frames.budgets)
    assert frames.importance.empty and list(frames.importance.columns)
    assert len(frames.curves) == (0 if shape == "no studies" else 1)
    with plots.literal_text():
        for plot in (plots.plot_learning_curves, plots.plot_parameter_importance, plots.plot_accuracy_vs_mflops):
            figure = plot(frames)
            getattr(figure, "figure", figure).savefig(io.BytesIO(), format="png", dpi=20)


def test_build_frames_carries_the_curves_and_the_importance():
    """The report's frames hold what the two plots draw (wired in frames.build_frames)."""
    records, attrs = search(seed=11, n=20)
    (name,) = records
    paper = rec(name, 20, groups=3, scale=0.5, top1=0.3)  # the paper's g3 x0.5, trained here: not a winner
    records[name].append({**paper, "curve": stand_in_curve(0.3, 3)})
    frames = build_frames(records, attrs)
    papers = frames.best[frames.best.kind == "paper model"]
    assert papers.trial.eq(20).fillna(False).sum() == 1
    assert set(frames.curves[frames.curves.winner].trial) == set(winners(frames).trial)
    assert frames.curves.equals(curves_frame(records, frames.trials, winners(frames)))
    assert frames.importance.equals(importance_frame(frames.trials, frames.budgets))
