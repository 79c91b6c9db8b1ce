"""Latency lookup tables: time each distinct block on a target once, predict any spec as a fitted sum.

A network is the stem (conv+BN+ReLU+max pool), its ShuffleNet units and the head (global pool
+ FC). Stride-1 units of a stage are identical, so a table holds one entry per distinct
(stem | unit | head) configuration of a search space at one resolution (1,300 for the default
space at 224 px), each timed as a tiny ONNX model with ONNX Runtime, less the runner's
per-call overhead. A spec's prediction is `a * sum(block us) + b`, with a and b fitted at
build time on whole networks of the space timed among the blocks (the fit points, their
residuals and the leave-one-out error are stored). Blocks ship without weights: the device
fills them with seeded values of the recorded mean and spread (see device_runner), so a remote
build sends a few MB instead of ~1 GB.

>>> from shufflesearch.presets import get_preset
>>> from shufflesearch.search.space import SearchSpace
>>> table = build_lut(SearchSpace(), target="local")  # 3-4 min on 2 cores  # doctest: +SKIP
>>> table.save("studies/laptop.lut.json")  # doctest: +SKIP
>>> table = LatencyTable.load("studies/laptop.lut.json")  # doctest: +SKIP
>>> round(table.predict_ms(get_preset("shufflenet_v1_x1_0_g3")), 1)  # doctest: +SKIP
4.8

Without a device, `build_lut(space, target="arm64-emulated", profile="snapdragon820")` builds an
ESTIMATED table from instruction counts under emulation (estimated.py); the default space's
ships with the package and `resolve_table("snapdragon820")` loads it (shipped.py).
"""

from __future__ import annotations

from .build import build_lut
from .estimated import EMULATED_TARGET, build_estimated_lut
from .fitting import fit_sum
from .shipped import resolve_table, shipped_tables
from .table import KINDS, STATISTICS, LatencyTable, LutError
from .validate import LutValidation, record_validation, validate_lut

__all__ = [
    "EMULATED_TARGET",
    "KINDS",
    "STATISTICS",
    "LatencyTable",
    "LutError",
    "LutValidation",
    "build_estimated_lut",
    "build_lut",
    "fit_sum",
    "record_validation",
    "resolve_table",
    "shipped_tables",
    "validate_lut",
]
