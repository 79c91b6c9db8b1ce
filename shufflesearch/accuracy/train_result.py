"""What a proxy run reports: its progress and its result, and the one way a cached result is read back.

A result is stored as JSON (`ResultCache`), so what comes back may have been damaged since: a
truncated write, another program, a hand edit. `TrainResult.from_dict` checks every field's type
(and raises `DamagedResult`); `cached_result` turns a damaged entry into a miss with one warning, so
the run trains again and overwrites it instead of ending in a traceback.

>>> TrainResult.from_dict({"top1": "high"})
Traceback (most recent call last):
...
shufflesearch.accuracy.train_result.DamagedResult: not a training result: it lacks test_loss, curve, ...
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .recipe import split_of

if TYPE_CHECKING:
    import torch

__all__ = ["DamagedResult", "TrainProgress", "TrainResult", "cached_result"]


class DamagedResult(ValueError):
    """A stored result that is not one: missing or unknown fields, or a field of the wrong type."""


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: after every optimiser step on the CPU (every `GPU_SYNC_EVERY` steps
    on a GPU, with `train_loss` the mean since the last report) and at each epoch end."""

    epoch: float
    epochs: float
    step: int
    steps: int
    train_loss: float
    images_seen: int
    images_per_s: float
    epoch_end: bool = False
    top1: float | None = None  # at an epoch end: top-1 on the curve subset (what a search prunes on)
    loss: float | None = None  # at an epoch end: the curve subset's loss (what a loss-ranked search prunes on)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one proxy run. `top1`/`top5`/`test_loss` are None when the run diverged.

    They are measured on `scored_on`, the split the recipe names ("validation": images held out
    of the training set; "test": the test split, as every result stored before splits had names),
    over `scored_images` images (None in results stored before it was counted). `test_loss`
    keeps its stored name whatever the split: the split is `scored_on`'s to say.

    `input_mean`/`input_std`: per channel, in 0-255 pixel units, what the network's input was
    normalised with. `weights` (CPU tensors, only with `keep_weights=True` and status "ok") is
    not part of `to_dict()`: results are JSON, weights belong in a checkpoint.
    """

    top1: float | None
    test_loss: float | None
    curve: list[dict[str, Any]]
    seconds: float
    images_seen: int
    status: Literal["ok", "diverged"]
    spec: dict[str, Any]
    dataset: str
    fidelity: dict[str, Any]
    seed: int
    environment: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    cached: bool = False
    top5: float | None = None
    device: str = "cpu"
    input_mean: list[float] = field(default_factory=list)
    input_std: list[float] = field(default_factory=list)
    scored_images: int | None = None
    weights: dict[str, torch.Tensor] | None = field(default=None, compare=False, repr=False)

    @property
    def scored_on(self) -> str:
        return split_of(self.fidelity)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, weights=None))
        del data["weights"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainResult:
        """The result `to_dict` gave (fields added since may be absent); `DamagedResult` if it is not one."""
        _check(data)
        return cls(**data)


def cached_result(cache: Any, key: str) -> TrainResult | None:
    """The result stored under `key` (with `cached=True`), or None: absent, or damaged (one warning;
    training again overwrites it)."""
    hit = cache.get(key)
    if hit is None:
        return None
    try:
        return dataclasses.replace(TrainResult.from_dict(hit), cached=True)
    except DamagedResult as exc:
        cache.damaged(key, str(exc))
        return None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(v: Any) -> bool:
    return v is None or (_number(v) and 0 <= v <= 1)


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _point(p: Any) -> bool:  # one learning-curve point, as `train` renders it
    return (isinstance(p, dict) and _number(p.get("epoch")) and _count(p.get("images_seen"))
            and _number(p.get("train_loss")) and _fraction(p.get("top1")))  # fmt: skip


# Each stored field and what it must be; the fields without a default must be there.
_RULES = {
    "top1": _fraction,
    "test_loss": lambda v: v is None or _number(v),
    "curve": lambda v: isinstance(v, list) and all(_point(p) for p in v),
    "seconds": lambda v: _number(v) and v >= 0,
    "images_seen": _count,
    "status": lambda v: v in ("ok", "diverged"),
    "spec": lambda v: isinstance(v, dict),
    "dataset": lambda v: isinstance(v, str),
    "fidelity": lambda v: isinstance(v, dict),
    "seed": _count,
    "environment": lambda v: isinstance(v, dict),
    "cpu_seconds": lambda v: _number(v) and v >= 0,
    "cached": lambda v: isinstance(v, bool),
    "top5": _fraction,
    "device": lambda v: isinstance(v, str),
    "input_mean": lambda v: isinstance(v, list) and all(_number(x) for x in v),
    "input_std": lambda v: isinstance(v, list) and all(_number(x) and x > 0 for x in v),
    "scored_images": lambda v: v is None or (_count(v) and v > 0),
}
_REQUIRED = [f.name for f in dataclasses.fields(TrainResult) if f.default is dataclasses.MISSING
             and f.default_factory is dataclasses.MISSING]  # fmt: skip


def _check(data: Any) -> None:
    if not isinstance(data, dict):
        raise DamagedResult(f"not a training result: a JSON {type(data).__name__}, not an object")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DamagedResult(f"not a training result: it lacks {', '.join(missing[:2])}"
                            + (", ..." if len(missing) > 2 else ""))  # fmt: skip
    unknown = sorted(str(k)[:40] for k in data if k not in _RULES)
    if unknown:
        raise DamagedResult(f"not a training result: unknown field {unknown[0]!r}")
    wrong = [k for k, rule in _RULES.items() if k in data and not rule(data[k])]
    if wrong:
        raise DamagedResult(f"not a training result: {wrong[0]} is {type(data[wrong[0]]).__name__} "
                            f"{_short(data[wrong[0]])}")  # fmt: skip
    if data["status"] == "ok" and (data["top1"] is None or data["test_loss"] is None):
        raise DamagedResult("not a training result: status ok without a top-1 and test loss")
    from ..spec import ShuffleNetSpec  # the CLI labels the result by its spec: it must be one

    try:
        ShuffleNetSpec.from_dict(data["spec"])
    except (ValueError, TypeError) as exc:
        raise DamagedResult(f"not a training result: its spec is invalid ({_short(str(exc))})") from None


def _short(value: Any) -> str:
    text = " ".join(repr(value).split()) if not isinstance(value, str) else " ".join(value.split())
    return text if len(text) <= 60 else text[:57] + "..."
