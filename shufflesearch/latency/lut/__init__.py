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
"""

from __future__ import annotations

from .build import build_lut, fit_sum
from .table import STATISTICS, LatencyTable, LutError
from .validate import LutValidation, validate_lut

__all__ = ["STATISTICS", "LatencyTable", "LutError", "LutValidation", "build_lut", "fit_sum", "validate_lut"]
