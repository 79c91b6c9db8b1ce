"""A study's winner, finished: trained long on the whole training set, exported, measured, in one folder.

`finish_winner` takes a budget's best trial (or a named one) from a study, trains it with a
long recipe (resumable: a killed run continues from its last epoch to the same weights), and
writes `model.safetensors`, `model.onnx` (normalisation baked in), `metrics.json` and a short
README.md into one folder a user can hand on. Layer: above `search`, beside `report`.

>>> from shufflesearch.finish import finish_winner  # doctest: +SKIP
>>> finish_winner(load_study("studies/demo.toml"), "sqlite:///studies/demo.db", budget=40).top1  # doctest: +SKIP
0.912
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .onnx_check import OnnxMismatch, check_onnx_predictions
    from .recipe import FINISH_EPOCHS, finish_fidelity
    from .winner import FinishError, FinishResult, default_out, finish_winner

__all__ = [
    "FINISH_EPOCHS",
    "FinishError",
    "FinishResult",
    "OnnxMismatch",
    "check_onnx_predictions",
    "default_out",
    "finish_fidelity",
    "finish_winner",
]

# `import shufflesearch.finish` stays light (no torch or optuna): each name loads its module on first use.
_HOMES = {"FINISH_EPOCHS": "recipe", "finish_fidelity": "recipe", "OnnxMismatch": "onnx_check",
          "check_onnx_predictions": "onnx_check", "FinishError": "winner", "FinishResult": "winner",
          "default_out": "winner", "finish_winner": "winner"}  # fmt: skip


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
