"""Fitting and comparing a table's sums with whole networks: shared by measured and estimated builds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ...complexity import count_macs
from ...spec import ShuffleNetSpec


def pick_fit_specs(widths: list[ShuffleNetSpec], fit_points: int) -> list[ShuffleNetSpec]:
    """`fit_points` of the space's widths, evenly spaced in MACs: the whole networks the sum is fitted to."""
    ranked = sorted(widths, key=count_macs)
    picks = sorted({round(i * (len(ranked) - 1) / max(1, fit_points - 1)) for i in range(fit_points)})
    return [ranked[i] for i in picks] if fit_points > 0 else []


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)  # a process-wide setting: leave it as found


def fit_sum(points: Sequence[tuple[ShuffleNetSpec, float, float]], truth: str = "measured_us") -> dict[str, Any]:
    """Fit measured = a * block sum + b minimising relative error; points are (spec, sum_us, measured_us).

    Stores each point's residual and the leave-one-out MAPE: the honest estimate of the fit's error.
    `truth` names the whole-network value in each row ("emulated_us" for an estimated table).
    """
    import numpy as np

    def solve(s: Any, m: Any) -> tuple[float, float]:
        a_only = float(np.sum(s / m) / np.sum((s / m) ** 2)) if len(s) else 1.0  # b = 0
        if len(s) < 2:
            return a_only, 0.0
        (a, b), *_ = np.linalg.lstsq(np.stack([s / m, 1 / m], 1), np.ones(len(m)), rcond=None)
        return (float(a), float(b)) if a > 0 else (a_only, 0.0)

    s, m = (np.array([p[i] for p in points], dtype=float) for i in (1, 2))
    a, b = solve(s, m)
    rows = [{"label": spec.label, "spec": spec.to_dict(), "sum_us": si, truth: mi, "predicted_us": a * si + b,
             "error_pct": 100 * (a * si + b - mi) / mi} for spec, si, mi in points]  # fmt: skip
    keep = np.ones(len(s), dtype=bool)
    loo = []
    for i in range(len(s) if len(s) > 2 else 0):
        keep[i] = False
        a_i, b_i = solve(s[keep], m[keep])
        loo.append(abs(a_i * s[i] + b_i - m[i]) / m[i])
        keep[i] = True
    return {"a": a, "b_us": b, "points": rows, "mape_pct": float(np.mean([abs(r["error_pct"]) for r in rows])) if rows
            else None, "loo_mape_pct": 100 * float(np.mean(loo)) if loo else None}  # fmt: skip


def compare(
    specs: list[ShuffleNetSpec], predicted: list[float], measured: list[float], truth: str = "measured_us"
) -> dict[str, Any]:
    """MAPE, Kendall tau and share within +-10% of predictions against whole networks; `truth` names their rows' value."""
    from scipy.stats import kendalltau

    rows = [{"label": s.label, "spec": s.to_dict(), "predicted_us": p, truth: m, "error_pct": 100 * (p - m) / m}
            for s, p, m in zip(specs, predicted, measured)]  # fmt: skip
    errors = [abs(r["error_pct"]) for r in rows]
    tau = float(kendalltau(predicted, measured).statistic) if len(rows) > 1 else float("nan")
    return {"mape_pct": sum(errors) / len(errors), "kendall_tau": tau,
            "within_10pct": sum(e <= 10 for e in errors) / len(errors), "rows": rows}  # fmt: skip
