"""Accuracy estimates: proxy training on real data, and training-free scores.

The recipe (`Fidelity`) is plain data and imports here at once; the names that need torch
(training, devices, datasets, the fidelity study, the result cache) load on first use, so importing
this package or reading a study file stays cheap.

>>> from shufflesearch import ShuffleNetSpec
>>> from shufflesearch.accuracy import Fidelity, load_dataset, train_proxy
>>> result = train_proxy(ShuffleNetSpec(scale=0.25), load_dataset("fashion-mnist"), Fidelity(train_images=2000, epochs=1))
>>> result.status
'ok'
"""

from __future__ import annotations

import importlib
from typing import Any

from .recipe import DEFAULT_FIDELITY, SEED_MAX, Fidelity, FidelityError

__all__ = [
    "DEFAULT_FIDELITY",
    "SEED_MAX",
    "DeviceUnavailable",
    "Fidelity",
    "FidelityError",
    "ResultCache",
    "TrainResult",
    "load_dataset",
    "resolve_device",
    "run_fidelity",
    "train_proxy",
    "worker_devices",
]

# name -> the submodule that defines it; imported when first asked for (PEP 562).
_LAZY = {
    "DeviceUnavailable": "devices",
    "resolve_device": "devices",
    "worker_devices": "devices",
    "ResultCache": "cache",
    "TrainResult": "trainer",
    "train_proxy": "trainer",
    "load_dataset": "datasets",
    "run_fidelity": "fidelity",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
