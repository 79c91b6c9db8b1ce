"""Trained weights on disk: our safetensors checkpoints and the official ShuffleNet-Series ones.

Ours is a safetensors file (tensors only, nothing unpickled) whose header carries, as JSON,
the spec, the training recipe, the dataset fingerprint, the metrics and the preprocessing the
network expects, so the file alone rebuilds and evaluates the network:

>>> path = save_result("m.safetensors", train_proxy(spec, data, keep_weights=True))  # doctest: +SKIP
>>> model = trained_model(load_checkpoint(path))  # doctest: +SKIP

An official megvii-model/ShuffleNet-Series ShuffleNetV1 checkpoint (``torch.save`` of
``{'state_dict': ...}`` from ``nn.DataParallel``: keys prefixed ``module.``, the classifier as
``classifier.0.weight``) carries no spec: name its preset, e.g. ``shufflenet_v1_x1_0_g3``.
It is read with ``torch.load(weights_only=True)``. Both kinds pass the same strict check: every
key of the preset's network, no other key, every shape equal.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .atomic import write_atomically
from .errors import UsageError
from .input_file import read_input_file
from .presets import get_preset, list_presets
from .spec import ShuffleNetSpec

__all__ = [
    "FORMAT",
    "OFFICIAL_PREPROCESSING",
    "Checkpoint",
    "CheckpointError",
    "Preprocessing",
    "check_weights",
    "load_checkpoint",
    "official_state_dict",
    "save_checkpoint",
    "save_result",
    "trained_model",
]

FORMAT = "shufflesearch-checkpoint/1"
MAX_CHECKPOINT_BYTES = 8 * 2**30  # 2x the largest network that still exports to one ONNX file
Channels = Literal["RGB", "BGR", "L"]
# What a checkpoint's `metrics` holds of a training run (TrainResult's fields of the same names).
# `scored_on` says which split top1/top5/test_loss are on (validation or test).
RESULT_METRICS = ("top1", "top5", "test_loss", "scored_on", "images_seen", "seconds", "device", "seed")
_PLAIN = ("format", "shufflesearch_version")  # header values stored as text; the others are JSON


class CheckpointError(UsageError):
    """A checkpoint that is unreadable, of an unknown kind, or does not fit the network it names."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input.

    Resize the shorter side to `resize` px, centre-crop `resolution` px, order the channels as
    `channels`, keep float pixels in 0-255 and normalise with `mean`/`std` (0-255 units, per
    channel). `antialias` False is OpenCV's INTER_LINEAR (what the official evaluation used);
    True is PIL's bilinear, what our image-folder loader and our trainer's resize use.
    """

    resolution: int
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: Channels = "RGB"
    antialias: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


# ShuffleNet-Series ShuffleNetV1/train.py, validation: OpencvResize(256) (shorter side, INTER_LINEAR),
# CenterCrop(224), ToBGRTensor() (BGR, float 0-255, no mean/std).
OFFICIAL_PREPROCESSING = Preprocessing(224, 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "BGR", antialias=False)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Weights that fit `spec` (strictly checked), what produced them, and how to feed the network."""

    spec: ShuffleNetSpec
    weights: dict[str, Any] = field(repr=False)  # name -> CPU torch.Tensor, our model's names
    meta: dict[str, Any]  # kind ("shufflesearch" | "official"), recipe, dataset, metrics, version
    preprocessing: Preprocessing
    path: Path

    @property
    def kind(self) -> str:
        return self.meta["kind"]


def save_checkpoint(
    path: str | os.PathLike,
    weights: dict[str, Any],
    spec: ShuffleNetSpec,
    *,
    recipe: dict[str, Any],
    dataset: str,
    metrics: dict[str, Any],
    input_mean: list[float],
    input_std: list[float],
) -> Path:
    """Write `weights` (a state dict of `spec`'s network) and their story to `path`, atomically.

    `dataset` is the trained-on fingerprint (``TrainResult.dataset``, e.g. ``fashion-mnist:1f2e...``);
    `input_mean`/`input_std` what the network's input was normalised with (0-255 units).
    """
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in check_weights(weights, spec, str(path)).items()}
    if not len(input_mean) == len(input_std) == spec.in_channels:
        raise CheckpointError(f"input_mean/input_std need {spec.in_channels} values (one per input channel), "
                              f"got {len(input_mean)}/{len(input_std)}")  # fmt: skip
    prep = Preprocessing(spec.resolution, spec.resolution, tuple(map(float, input_mean)),
                         tuple(map(float, input_std)), "L" if spec.in_channels == 1 else "RGB")  # fmt: skip
    header = {"format": FORMAT, "shufflesearch_version": _version(), "spec": spec.to_dict(), "recipe": recipe,
              "dataset": dataset, "metrics": metrics, "preprocessing": prep.to_dict()}  # fmt: skip
    metadata = {key: value if key in _PLAIN else json.dumps(value) for key, value in header.items()}
    return write_atomically(path, save(tensors, metadata))


def save_result(path: str | os.PathLike, result: Any, spec: ShuffleNetSpec | None = None) -> Path:
    """Write a training run's kept weights (a ``TrainResult`` from ``train_proxy(..., keep_weights=True)``)
    with its spec (`spec`, default ``result.spec``), recipe, dataset fingerprint, metrics and input statistics.

    >>> save_result("m.safetensors", train_proxy(spec, data, keep_weights=True))  # doctest: +SKIP
    """
    if result.weights is None:
        raise CheckpointError(f"{path}: the run kept no weights (status {result.status}); train with keep_weights=True")
    spec = spec if spec is not None else ShuffleNetSpec.from_dict(result.spec)
    metrics = {k: getattr(result, k) for k in RESULT_METRICS}
    return save_checkpoint(path, result.weights, spec, recipe=result.fidelity, dataset=result.dataset,
                           metrics=metrics, input_mean=list(result.input_mean),
                           input_std=list(result.input_std))  # fmt: skip


def load_checkpoint(path: str | os.PathLike, preset: str | None = None) -> Checkpoint:
    """Our safetensors checkpoint (spec from the file) or an official one (spec from `preset`).

    Raises CheckpointError (one line) for an unknown file, a missing preset, or the first key or
    shape that does not fit.
    """
    path = Path(path)
    data = read_input_file(path, MAX_CHECKPOINT_BYTES, "checkpoint")
    if _is_safetensors(data):
        return _load_ours(path, data, preset)
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":  # torch.save: a zip archive, or a legacy pickle
        if preset is None:
            raise CheckpointError(f"{path} is a PyTorch checkpoint without a spec (e.g. official ShuffleNet-Series "
                                  "weights): name its preset, e.g. --preset shufflenet_v1_x1_0_g3")  # fmt: skip
        spec = get_preset(preset)
        state = official_state_dict(_torch_load(path, data))
        weights = check_weights(state, spec, str(path), preset)
        meta = {"kind": "official", "preset": preset, "format": "ShuffleNet-Series ShuffleNetV1"}
        return Checkpoint(spec, weights, meta, OFFICIAL_PREPROCESSING, path)
    raise CheckpointError(f"{path} is neither a shufflesearch checkpoint (.safetensors) nor a PyTorch one "
                          "(torch.save): pass a file that `train --save` or ShuffleNet-Series wrote")  # fmt: skip


def official_state_dict(checkpoint: Any) -> dict[str, Any]:
    """Our names for an official checkpoint's tensors: unwrap ``state_dict``, drop ``module.``,
    ``classifier.0.`` -> ``classifier.`` (theirs is a one-layer Sequential); otherwise the same names."""
    import torch

    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the PyTorch file is not a state dict (name -> tensor) nor {'state_dict': ...}")
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        renamed["classifier." + key[len("classifier.0.") :] if key.startswith("classifier.0.") else key] = value
    return renamed


def check_weights(
    weights: dict[str, Any], spec: ShuffleNetSpec, what: str, preset: str | None = None
) -> dict[str, Any]:
    """`weights` if they fit `spec`'s network exactly (keys and shapes), else CheckpointError naming
    the first misfit, the network expected and, when one does, the preset the weights fit.

    BatchNorm's ``num_batches_tracked`` may be absent (checkpoints from before PyTorch 0.4.1); it
    does not affect the network's output.
    """
    expected = _shapes(spec)
    weights = dict(weights)
    for key in expected.keys() - weights.keys():
        if key.endswith("num_batches_tracked"):
            import torch

            weights[key] = torch.tensor(0, dtype=torch.int64)
    name = f"preset {preset}" if preset else spec.label
    misfit = _first_misfit(weights, expected)
    if misfit:
        fits = next((p for p, s in sorted(list_presets().items()) if not _first_misfit(weights, _shapes(s))), None)
        hint = f"; it fits preset {fits}" if fits and fits != preset else ""
        raise CheckpointError(f"{what} does not fit {name}: {misfit}{hint}")
    return weights


def trained_model(ckpt: Checkpoint, device: str = "cpu") -> Any:
    """The checkpoint's network in eval mode on `device` (channels-last), its weights loaded strictly."""
    import torch

    from .model import build_model

    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        model = build_model(ckpt.spec)
    model.load_state_dict(ckpt.weights, strict=True)
    return model.eval().to(device, memory_format=torch.channels_last)  # as trained: faster convs


def _load_ours(path: Path, data: bytes, preset: str | None) -> Checkpoint:
    from safetensors.torch import load

    try:
        weights = load(data)
        header = _metadata(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others on corrupt files
        raise CheckpointError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a shufflesearch checkpoint "
                              f"(format {header.get('format')!r}, expected {FORMAT!r})")  # fmt: skip
    try:
        meta = {k: json.loads(v) for k, v in header.items() if k not in _PLAIN}
        spec = ShuffleNetSpec.from_dict(meta.pop("spec"))
        prep = Preprocessing.from_dict(meta.pop("preprocessing"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint header ({exc})") from None
    if preset is not None and get_preset(preset) != spec:
        raise CheckpointError(f"{path} holds {spec.label}, not preset {preset}: our checkpoints carry their "
                              "spec, drop --preset")  # fmt: skip
    meta.update(kind="shufflesearch", format=header["format"], shufflesearch_version=header["shufflesearch_version"])
    return Checkpoint(spec, check_weights(weights, spec, str(path)), meta, prep, path)


def _version() -> str:
    # The package root is loaded before any of its modules; importing it here would make this
    # low layer import the evaluators above it (the root re-exports them).
    return sys.modules[__package__].__version__


def _is_safetensors(data: bytes) -> bool:
    # 8 bytes little-endian header length, then the JSON header
    return len(data) > 9 and data[8:9] == b"{" and 8 + int.from_bytes(data[:8], "little") <= len(data)


def _metadata(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {})


def _torch_load(path: Path, data: bytes) -> Any:
    import pickle

    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise CheckpointError(f"cannot load {path} safely (weights_only=True): {first[:200]}") from None


def _shapes(spec: ShuffleNetSpec) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of `spec`'s network and its shape, built on the meta device (no memory, no init)."""
    import torch

    from .model import ShuffleNetV1

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in ShuffleNetV1(spec).state_dict().items()}


def _first_misfit(weights: dict[str, Any], expected: dict[str, tuple[int, ...]]) -> str | None:
    for key, shape in expected.items():
        if key not in weights:
            return f"missing key {key} (shape {_fmt(shape)})"
        got = tuple(getattr(weights[key], "shape", ()))
        if got != shape:
            return f"{key} has shape {_fmt(got)}, expected {_fmt(shape)}"
    extra = sorted(weights.keys() - expected.keys())
    return f"unexpected key {extra[0]}" if extra else None


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"
