"""Which parameters a person can read (groups, scale, each stage's depth, share of the budget used, shuffle)
matter for reaching a budget's best trials: Optuna's PED-ANOVA over the complete trials, per budget.

The search samples a width index (a position in the ladder of widths that fit the budget), which
means nothing to a reader; Optuna's own importance over the study is computed on it. Here each
complete trial is re-described by what its spec says and added to an in-memory Optuna study, and
`PedAnovaImportanceEvaluator` says how much each parameter's distribution among the top trials
differs from its distribution among all of them (evaluated locally: the sampler's own bias is the
baseline). Two steps, as in Optuna's plots: `importance_frame` (pure) and `plot_parameter_importance`.

>>> importance_frame(pd.DataFrame(columns=["study", "budget_rank"]), pd.DataFrame(columns=["study"])).empty
True
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from .canvas import axes_or_new, drawn_literally, no_data
from .text import figure_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MIN_TRIALS = 8  # complete trials a budget needs before its importance is computed at all
MIN_TOP_TRIALS = 4  # trials counted as "top": PED-ANOVA compares their distribution with all trials'
TOP_SHARE = 0.1  # ... or the best 10 %, when that is more (Optuna's default target quantile)
METHOD = "PED-ANOVA (Optuna), top {top} of {n} trials"
IMPORTANCE_COLUMNS = ["study", "budget", "budget_mflops", "budget_ms", "parameter", "importance",
                      "pearson_divergence", "trials", "top_trials", "method"]  # fmt: skip
BUDGET_SHARE = {"mflops": "share of budget used (MFLOPs / budget)", "ms": "share of budget used (ms / budget)"}


class ImportanceFrames(Protocol):
    """What the plot reads of a report's frames (`frames.ReportFrames`, which imports this module)."""

    importance: pd.DataFrame


def readable_params(trial, budget_mflops: float, budget_ms: float) -> dict[str, object]:
    """A trial (a row of the trials frame) as a reader would describe it. A budget share is there only
    where the trial has the number and the budget bounds it (MFLOPs first)."""
    spec = trial.spec_obj
    params: dict[str, object] = {"groups": int(spec.groups), "scale": float(spec.scale)}
    params.update({f"stage {i + 2} depth": int(n) for i, n in enumerate(spec.repeats)})
    params["bottleneck ratio"] = float(spec.bottleneck_ratio)
    params["channel shuffle"] = "on" if spec.shuffle else "off"
    if pd.notna(budget_mflops) and budget_mflops > 0 and pd.notna(trial.mflops):
        params[BUDGET_SHARE["mflops"]] = float(trial.mflops) / float(budget_mflops)
    elif pd.notna(budget_ms) and budget_ms > 0 and pd.notna(trial.latency_ms):
        params[BUDGET_SHARE["ms"]] = float(trial.latency_ms) / float(budget_ms)
    return params


def _distributions(described: list[dict[str, object]]) -> dict[str, object]:
    """One Optuna distribution per parameter that varies and that every trial has; constants say nothing."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    names = set.intersection(*(set(d) for d in described))
    out = {}
    for name in sorted(names):
        values = [d[name] for d in described]
        distinct = sorted(set(values))  # one type per parameter
        if len(distinct) < 2:
            continue
        if name in ("groups", "channel shuffle", "bottleneck ratio"):  # choices, not a range
            out[name] = CategoricalDistribution(distinct)
        elif all(isinstance(v, int) for v in values):
            out[name] = IntDistribution(min(values), max(values))
        else:
            out[name] = FloatDistribution(min(values), max(values))
    return out


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """An in-memory study is a calculation here: no "A new study created" line, no PED-ANOVA warnings
    (a few trials make the top and the whole nearly the same set; the frame's `trials` says how many)."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def budget_importance(described: list[dict[str, object]], top1_pct: list[float]) -> tuple[dict[str, float], int]:
    """PED-ANOVA's Pearson divergence per parameter for maximising top-1, and how many trials were "top"."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    dists = _distributions(described)
    n = len(described)
    top = min(n - 1, max(MIN_TOP_TRIALS, math.ceil(TOP_SHARE * n)))
    if not dists or top < 1:
        return {}, top
    with _quiet_optuna():
        study = optuna.create_study(direction="maximize")
        study.add_trials([optuna.trial.create_trial(params={k: d[k] for k in dists}, distributions=dists, value=v)
                          for d, v in zip(described, top1_pct)])  # fmt: skip
        # The quantile's cut is ceil(q n) trials (ties with the last one kept): half a trial below `top`
        # keeps float rounding from adding one.
        evaluator = PedAnovaImportanceEvaluator(target_quantile=(top - 0.5) / n)
        raw = get_param_importances(study, evaluator=evaluator, normalize=False)
    return {k: float(v) for k, v in raw.items()}, top


def importance_frame(trials: pd.DataFrame, budgets: pd.DataFrame) -> pd.DataFrame:
    """Per budget with at least MIN_TRIALS complete trials: each readable parameter's share of the importance
    (shares sum to 1; all 0 when no parameter separates the top trials) and PED-ANOVA's raw divergence."""
    rows = []
    for b in budgets.itertuples():
        here = trials[(trials.study == b.study) & (trials.budget_rank == b.rank) & (trials.state == "complete")
                      & trials.top1_pct.notna() & trials.spec_obj.notna()]  # fmt: skip
        if len(here) < MIN_TRIALS:
            continue
        described = [readable_params(t, b.budget_mflops, b.budget_ms) for t in here.itertuples()]
        raw, top = budget_importance(described, [float(v) for v in here.top1_pct])
        total = sum(raw.values())
        for name, value in sorted(raw.items(), key=lambda kv: -kv[1]):
            rows.append({"study": b.study, "budget": b.budget, "budget_mflops": b.budget_mflops,
                         "budget_ms": b.budget_ms, "parameter": name,
                         "importance": round(value / total, 4) if total > 0 else 0.0,
                         "pearson_divergence": round(value, 4), "trials": len(here), "top_trials": top,
                         "method": METHOD.format(top=top, n=len(here))})  # fmt: skip
    return pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)


@drawn_literally
def plot_parameter_importance(frames: ImportanceFrames, ax: Axes | None = None) -> Axes:
    """Horizontal bars: each readable parameter's share of the importance, one colour per budget."""
    table = frames.importance
    params = list(dict.fromkeys(table.sort_values("importance", ascending=False, kind="stable").parameter))
    ax = axes_or_new(ax, height=max(3.5, 1.5 + 0.45 * len(params) * max(1, table.budget.nunique()) ** 0.5))
    ax.set_title("Parameter importance per budget (PED-ANOVA): what sets the best trials apart")
    if table.empty:
        return no_data(ax, f"Too few complete trials: importance needs at least {MIN_TRIALS} in a budget.")
    budgets = table[["study", "budget"]].drop_duplicates()
    shared = budgets.budget.duplicated(keep=False)
    height = 0.8 / len(budgets)
    for i, ((study, budget), same) in enumerate(zip(budgets.itertuples(index=False), shared)):
        rows = table[(table.study == study) & (table.budget == budget)].set_index("parameter")
        shares = [rows.importance.get(p, 0.0) for p in params]
        where = [j - 0.4 + height * (i + 0.5) for j in range(len(params))]
        n, top = int(rows.trials.iloc[0]), int(rows.top_trials.iloc[0])
        name = f"{budget}" + (f" ({figure_text(study)})" if same else "") + f": top {top} of {n} trials"
        ax.barh(where, shares, height=height * 0.92, color=f"C{i % 10}", label=name)
    ax.set_yticks(range(len(params)), params)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the importance (PED-ANOVA; the shares of a budget sum to 1)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


__all__ = ["budget_importance", "importance_frame", "plot_parameter_importance", "readable_params"]
