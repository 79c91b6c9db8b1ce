"""Complexity over a grid of (groups, scale): the rows of a paper-Table-1-style table."""

from __future__ import annotations

from collections.abc import Iterable

from ..presets import list_presets
from ..spec import ShuffleNetSpec
from .closed_form import count_complexity


def complexity_rows(groups: Iterable[int], scales: Iterable[float], base: ShuffleNetSpec | None = None) -> list[dict]:
    """One row per (groups, scale) with widths, MFLOPs (multiply-adds) and params.

    `base` carries everything else (repeats, resolution, classes, ...). A row whose spec
    equals a named preset carries its name.
    """
    base = base or ShuffleNetSpec()
    preset_by_spec = {spec: name for name, spec in list_presets().items()}
    rows = []
    for g in groups:
        for s in scales:
            spec = base.replace(groups=g, scale=s)
            cost = count_complexity(spec)
            rows.append(
                {
                    "groups": g,
                    "scale": s,
                    "stem_channels": spec.stem_channels,
                    "stage2_channels": spec.stage_channels[0],
                    "stage3_channels": spec.stage_channels[1],
                    "stage4_channels": spec.stage_channels[2],
                    "mflops": round(cost.mflops, 3),
                    "params_m": round(cost.params / 1e6, 4),
                    "model_mb": round(cost.model_mb, 3),
                    "preset": preset_by_spec.get(spec, ""),
                }
            )
    return rows
