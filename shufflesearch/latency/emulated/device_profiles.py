"""Device profiles: published latencies + emulated instruction counts -> a fitted ms estimator.

A profile (profiles/<name>.json) holds the published points, the guest instruction counts measured
for exactly those networks and input sizes (deterministic, so stored), and the fit chosen by
leave-one-out error among the models of FIT_KINDS. Regenerate with:

    python -m shufflesearch.latency.emulated.calibrate      # about 8 min of emulation on 2 cores

>>> fit = load_profile("snapdragon820")
>>> fit.kind in FIT_KINDS and fit.loo_error_pct > 0
True
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...atomic import write_atomically
from ...errors import UsageError
from ...paper import TABLE8_DEVICE

# Candidate models, each fitted with non-negative coefficients minimising relative error; the profile keeps
# the one with the lowest leave-one-out error. "mix" regresses on SIMD data-processing, SIMD load/store
# and other instructions separately (SIMD loads/stores stand in for the memory traffic a count ignores).
FIT_KINDS = ("proportional", "linear", "loglog", "mix")
REGENERATE_COMMAND = "python -m shufflesearch.latency.emulated.calibrate"
BASIS = "estimated from guest instruction count under QEMU, calibrated on paper Table 8 (Snapdragon 820)"


class ProfileError(UsageError):
    """Unknown or malformed device profile."""


@dataclass(frozen=True)
class CalibrationFit:
    kind: str  # one of FIT_KINDS
    coefficients: tuple[float, ...]  # applied to _features(kind, ...)
    loo_error_pct: float  # mean |predicted - published| / published, each point predicted by a fit without it
    loo_max_error_pct: float
    basis: str = ""

    def predict_ms(self, instructions: float, mix: dict[str, int] | None = None) -> float:
        if self.kind == "mix" and mix is None:
            raise ProfileError("this profile's fit needs the instruction mix: pass an InstructionCount, not a number")
        value = sum(c * x for c, x in zip(self.coefficients, _features(self.kind, instructions, mix), strict=True))
        return math.exp(value) if self.kind == "loglog" else value

    def additive_ms(self, instructions: float, mix: dict[str, int] | None = None) -> float:
        """The part of the estimate that adds up over the pieces of a network (a latency table's blocks).

        The proportional and mix fits are sums already; a linear fit's constant belongs to a whole
        network, once (a table's fitted offset takes it). A log-log fit does not add up.
        """
        if self.kind == "loglog":
            raise ProfileError(
                "this profile's log-log fit does not add up over blocks; refit it with an additive model"
            )
        if self.kind == "linear":
            return self.coefficients[0] * instructions
        return self.predict_ms(instructions, mix)

    @property
    def formula(self) -> str:
        c = self.coefficients
        if self.kind == "proportional":
            return f"ms = {c[0] * 1e6:.4g} * Minstructions"
        if self.kind == "linear":
            return f"ms = {c[0] * 1e6:.4g} * Minstructions + {c[1]:.4g}"
        if self.kind == "loglog":
            return f"ms = {math.exp(c[1]):.4g} * instructions^{c[0]:.4f}"
        return f"ms = {c[0] * 1e6:.4g} * M simd_dp + {c[1] * 1e6:.4g} * M simd_ldst + {c[2] * 1e6:.4g} * M other"


def load_profile(name: str = "snapdragon820") -> CalibrationFit:
    """The fitted estimator stored in profiles/<name>.json."""
    data = read_profile(name)
    try:
        fit = data["fit"]
        coefficients = tuple(float(c) for c in fit["coefficients"])
        return CalibrationFit(
            fit["kind"], coefficients, fit["loo_error_pct"], fit["loo_max_error_pct"], data.get("basis", "")
        )
    except (KeyError, TypeError) as exc:
        raise ProfileError(
            f"profile {name!r} has no valid 'fit' ({exc}); regenerate with: {REGENERATE_COMMAND}"
        ) from exc


def read_profile(name: str) -> dict:
    available = list_profiles()
    if name not in available:
        raise ProfileError(f"unknown device profile {name!r}; available: {', '.join(available) or 'none'}")
    return json.loads(_profiles_dir().joinpath(f"{name}.json").read_text())


def list_profiles() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in _profiles_dir().iterdir() if p.name.endswith(".json"))


def fit_points(
    instructions: Sequence[float], published_ms: Sequence[float], mixes: Sequence[dict] | None = None
) -> tuple[CalibrationFit, dict[str, list[float]]]:
    """Best of FIT_KINDS by leave-one-out error, and every candidate's LOO errors (percent).

    Without `mixes` the "mix" model is not a candidate.
    """
    n = len(instructions)
    if len(published_ms) != n or n < 4 or (mixes is not None and len(mixes) != n):
        raise ValueError(f"need at least 4 matching points to fit, got {n} counts and {len(published_ms)} latencies")
    kinds = [k for k in FIT_KINDS if k != "mix" or mixes is not None]
    candidates = {k: held_out_errors(k, instructions, published_ms, mixes, groups=range(n)) for k in kinds}
    best = min(kinds, key=lambda k: sum(candidates[k]))
    errors = candidates[best]
    rows = [_features(best, instructions[i], mixes[i] if mixes else None) for i in range(n)]
    return CalibrationFit(best, _fit(best, rows, published_ms), sum(errors) / n, max(errors)), candidates


def held_out_errors(
    kind: str,
    instructions: Sequence[float],
    published_ms: Sequence[float],
    mixes: Sequence[dict] | None,
    groups: Sequence,
) -> list[float]:
    """Relative errors (%) of each point predicted by a fit made without its whole group.

    groups=range(n) is leave-one-out; grouping by network asks how well an unseen width extrapolates.
    """
    n, groups = len(instructions), list(groups)
    mix = [mixes[i] if mixes else None for i in range(n)]
    rows = [_features(kind, instructions[i], mix[i]) for i in range(n)]
    errors = []
    for i in range(n):
        keep = [j for j in range(n) if groups[j] != groups[i]]
        fit = CalibrationFit(kind, _fit(kind, [rows[j] for j in keep], [published_ms[j] for j in keep]), 0, 0)
        errors.append(abs(fit.predict_ms(instructions[i], mix[i]) - published_ms[i]) / published_ms[i] * 100)
    return errors


def _features(kind: str, instructions: float, mix: dict[str, int] | None) -> list[float]:
    if kind == "proportional":
        return [instructions]
    if kind == "linear":
        return [instructions, 1.0]
    if kind == "loglog":
        return [math.log(instructions), 1.0]
    simd_dp, simd_ldst = mix["simd_dp"], mix["simd_ldst"]  # type: ignore[index]
    return [simd_dp, simd_ldst, instructions - simd_dp - simd_ldst]


def _fit(kind: str, rows: Sequence[Sequence[float]], ms: Sequence[float]) -> tuple[float, ...]:
    import numpy as np
    from scipy.optimize import nnls

    x, y = np.asarray(rows, dtype=float), np.asarray(ms, dtype=float)
    if kind == "loglog":  # least squares in log space, slope and intercept unconstrained
        return tuple(float(c) for c in np.linalg.lstsq(x, np.log(y), rcond=None)[0])
    # min sum(((x @ c) - y) / y)^2 with c >= 0; columns scaled to 1 for conditioning.
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    coefficients, _ = nnls(x / y[:, None] / scale, np.ones(len(y)))
    return tuple(float(c) for c in coefficients / scale)


def write_profile(
    name: str, points: list[dict], measured_with: dict, path: str | os.PathLike | None = None
) -> CalibrationFit:
    """Fit `points` (published_ms, instructions, mix each) and write the profile JSON atomically."""
    fit, candidates = fit_points(
        [p["instructions"] for p in points], [p["published_ms"] for p in points], [p["mix"] for p in points]
    )
    for point in points:
        point["fitted_ms"] = round(fit.predict_ms(point["instructions"], point["mix"]), 2)
    # Harder than LOO: predict every input size of a network from the other networks only.
    by_network = held_out_errors(
        fit.kind, [p["instructions"] for p in points], [p["published_ms"] for p in points],
        [p["mix"] for p in points], groups=[p["model"] for p in points],
    )  # fmt: skip
    data = {
        "name": name,
        "device": f"{TABLE8_DEVICE}, single thread, batch 1",
        "source": "Zhang et al., ShuffleNet (CVPR 2018), Table 8",
        "basis": BASIS,
        "regenerate": REGENERATE_COMMAND,
        "measured_with": measured_with,
        "points": points,
        "fit": {
            "kind": fit.kind, "coefficients": list(fit.coefficients), "formula": fit.formula,
            "loo_error_pct": round(fit.loo_error_pct, 2), "loo_max_error_pct": round(fit.loo_max_error_pct, 2),
            "candidates_loo_error_pct": {k: round(sum(v) / len(v), 2) for k, v in candidates.items()},
            "candidates_loo_max_error_pct": {k: round(max(v), 2) for k, v in candidates.items()},
            "leave_one_network_out_error_pct": round(sum(by_network) / len(by_network), 2),
            "leave_one_network_out_max_error_pct": round(max(by_network), 2),
        },
    }  # fmt: skip
    target = Path(path) if path else Path(__file__).with_name("profiles") / f"{name}.json"
    write_atomically(target, json.dumps(data, indent=2) + "\n")
    return fit


def _profiles_dir():
    return importlib.resources.files(__package__).joinpath("profiles")
