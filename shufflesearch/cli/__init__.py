"""The `shufflesearch` command line: one module per family of commands, each parse -> one library call -> render.

Heavy imports (torch, onnx, optuna, matplotlib) stay inside the commands that need them,
so `shufflesearch analyze` answers without loading torch.

- `app`: the typer app and the one error policy (`main`); `options`: options declared once;
  `render`: tables, lines and JSON (percent with the unit for a person).
- `complexity` (analyze, models, table, export), `latency` (latency, lut build/validate),
  `accuracy` (train, score, fidelity), `resolution`, `data` (data get), `setup`, `init`, `search` (search, studies list),
  `report`.
"""

import importlib

from .app import app, main

# Importing a family registers its commands on `app`; `--help` lists them in this order.
_FAMILIES = ("complexity", "latency", "accuracy", "resolution", "data", "weights", "setup", "init", "search", "finish",
             "report")  # fmt: skip
for _family in _FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
del _family, _FAMILIES

__all__ = ["app", "main"]
