"""Export a spec's network to ONNX and prove ONNX Runtime computes the same function.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> result = export_onnx(ShuffleNetSpec(groups=3, scale=0.5), "model.onnx")  # doctest: +SKIP
>>> result.max_abs_diff <= 1e-4  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch  # already loaded by .model; the wrapper below is a module

from .atomic import check_writable, write_atomically
from .checkpoint import Checkpoint, check_weights
from .errors import MachineError, UsageError
from .memory import check_fits_in_memory, weight_count_floor
from .model import build_model
from .spec import ShuffleNetSpec

OPSET = 17
MAX_OPSET = 20  # the newest opset torch's TorchScript exporter writes
MAX_BATCH = 4096
TOLERANCE = 1e-4  # times the logits' scale (at least 1)


ONNX_MAX_BYTES = 2**31  # one protobuf message: weights stored inside the file cannot exceed it
# Copies of the weights an export holds at once: the network, and torch's exporter's traced graph,
# ONNX initializers and serialized model. Measured peak: 4.2-4.6x the weights above the process's
# start (a 524 MiB network peaked 2.4 GiB above it), so a network just under 2 GiB needs about 9 GiB.
EXPORT_WEIGHT_COPIES = 4


class ExportError(MachineError):
    """ONNX export failed or ONNX Runtime disagrees with PyTorch."""


class TooLargeForOnnx(UsageError):
    """A spec whose float32 weights alone exceed what one ONNX file can hold."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    max_abs_diff: float  # ONNX Runtime vs PyTorch on seeded inputs
    opset: int
    batch: int | None = 1  # None: a dynamic batch axis
    takes_pixels: bool = False  # the graph takes float pixels in 0-255 (normalisation baked in, or none needed)
    spec: ShuffleNetSpec | None = None  # the exported network (its resolution: the traced input's)
    weights: Path | None = None  # the checkpoint the weights came from (None: seeded random weights)
    input: str = ""  # what the graph takes, in words: channels, pixel range, crop, normalisation


def onnx_bytes(
    spec: ShuffleNetSpec, seed: int = 0, input_hw: tuple[int, int] | None = None, randomize_bn: bool = True
) -> tuple[bytes, Any]:
    """Serialized ONNX model of `spec`'s seeded, eval-mode network, and that network.

    `input_hw` is the traced input's (height, width), the spec's resolution by default: the
    network is fully convolutional up to an adaptive pool, so any size runs. `randomize_bn`
    gives batch norm realistic statistics (see `randomize_batch_norm`); off, it keeps fresh init.

    >>> data, model = onnx_bytes(ShuffleNetSpec(groups=3, scale=0.5), input_hw=(480, 640))  # doctest: +SKIP
    """
    height, width = input_hw or (spec.resolution, spec.resolution)
    model = _seeded_model(spec, seed, randomize_bn)
    return _export(model, (1, spec.in_channels, height, width), "image", "logits", spec.label), model


def _seeded_model(spec: ShuffleNetSpec, seed: int, randomize_bn: bool, batch: int = 1) -> Any:
    import torch

    _check_onnx_size(spec, batch)
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    if randomize_bn:
        randomize_batch_norm(model)
    return model


def _check_onnx_size(spec: ShuffleNetSpec, batch: int = 1) -> None:
    """Refuse, before building anything, a network no ONNX file holds (exit 2) or this machine cannot
    export: `EXPORT_WEIGHT_COPIES` of its weights and a batch's largest activation (exit 1)."""
    weights = 4 * weight_count_floor(spec)
    if weights >= ONNX_MAX_BYTES:  # refuse before minutes of building and tracing, not in protobuf after them
        raise TooLargeForOnnx(f"{spec.label} has over {weights / 2**30:.1f} GiB of weights; an ONNX file holds under "
                              "2 GiB: lower the widths or the number of classes")  # fmt: skip
    check_fits_in_memory(spec, batch, EXPORT_WEIGHT_COPIES, purpose="to export it to ONNX (its weights 4 times over)")


def module_onnx_bytes(
    module: Any, input_shape: tuple[int, ...], input_name: str = "image", output_name: str = "logits"
) -> bytes:
    """Serialized ONNX model of any eval-mode `module`, traced on zeros of `input_shape`.

    >>> import torch
    >>> len(module_onnx_bytes(torch.nn.ReLU(), (1, 1, 2, 2), "x", "y")) > 0  # doctest: +SKIP
    True
    """
    return _export(module, input_shape, input_name, output_name, type(module).__name__)


def _export(
    module: Any,
    input_shape: tuple[int, ...],
    input_name: str,
    output_name: str,
    what: str,
    opset: int = OPSET,
    dynamic_batch: bool = False,
) -> bytes:
    """The one call to torch's exporter: opset, names, the batch axis and the error every export raises."""
    import io

    import torch

    buffer = io.BytesIO()
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (torch.zeros(input_shape),), buffer, input_names=[input_name],
                              output_names=[output_name], opset_version=opset, dynamic_axes=axes,
                              dynamo=False)  # fmt: skip
        except Exception as exc:  # e.g. protobuf's 2 GiB limit, reached by weights the floor did not count
            raise ExportError(f"ONNX export of {what} failed: {' '.join(str(exc).split())[:300]}") from None
    return buffer.getvalue()


def randomize_batch_norm(model) -> None:
    """Random BN affine and statistics, in place, from torch's current seed.

    Fresh init zeroes some BN gammas (identity residual branches); realistic statistics make
    an equality check exercise every layer and a timed model compute realistic values.
    """
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def export_onnx(
    spec: ShuffleNetSpec,
    path: str | os.PathLike,
    seed: int = 0,
    weights: dict[str, Any] | None = None,
    batch: int | None = 1,
    opset: int = OPSET,
    input_mean: list[float] | None = None,
    input_std: list[float] | None = None,
    pixels: bool = False,
) -> ExportResult:
    """Write `spec`'s network to `path` (atomically) after checking it in ONNX Runtime.

    `weights` (a state dict, e.g. `load_checkpoint(...).weights`) are loaded strictly; without
    them the network is seeded and its batch norm randomised (a shape-and-speed stand-in).
    `batch=None` gives the graph a dynamic batch axis (checked at two batch sizes). With
    `input_mean`/`input_std` (0-255 units, per channel) the graph takes float pixels in 0-255
    and normalises them itself; `pixels=True` says it takes them without normalising (official
    weights). Such a graph is checked on uniform 0-255 inputs, any other on standard normal ones.
    The check allows `TOLERANCE` times the logits' scale (at least 1).

    >>> ckpt = load_checkpoint("m.safetensors")  # doctest: +SKIP
    >>> export_onnx(ckpt.spec, "m.onnx", weights=ckpt.weights, batch=None,
    ...             input_mean=ckpt.preprocessing.mean, input_std=ckpt.preprocessing.std)  # doctest: +SKIP
    """
    if batch is not None and (type(batch) is not int or not 1 <= batch <= MAX_BATCH):
        raise UsageError(f"batch={batch!r} must be an integer in [1, {MAX_BATCH}], or None for a dynamic batch axis")
    if not 7 <= opset <= MAX_OPSET:
        raise UsageError(f"opset={opset!r} must be in [7, {MAX_OPSET}] (torch's exporter); e.g. {OPSET}")
    if (input_mean is None) != (input_std is None):
        raise UsageError("input_mean and input_std go together: give both or neither")
    path = Path(path)
    check_writable(path.parent)  # a read-only or full folder fails before the export, not after it
    import numpy as np
    import onnxruntime as ort
    import torch

    if weights is None:
        model = _seeded_model(spec, seed, randomize_bn=True, batch=batch or 3)
    else:
        _check_onnx_size(spec, batch or 3)  # a dynamic axis is checked at batch 3
        model = build_model(spec)
        model.load_state_dict(check_weights(weights, spec, "weights"), strict=True)
        model.eval()
    if input_mean is not None:
        model = Normalised(model, input_mean, input_std).eval()
    traced = batch or 1
    shape = (traced, spec.in_channels, spec.resolution, spec.resolution)
    data = _export(model, shape, "image", "logits", spec.label, opset, dynamic_batch=batch is None)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    pixels = pixels or input_mean is not None
    diff = 0.0
    for n in (traced,) if batch is not None else (1, 3):
        if pixels:  # what the graph will be fed: a check on unit-scale inputs would miss 0-255's range
            x = torch.rand(n, *shape[1:], generator=generator) * 255
        else:
            x = torch.randn(n, *shape[1:], generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        bound = TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
        err = float(np.max(np.abs(got - expected)))
        if not err <= bound:
            raise ExportError(f"ONNX Runtime output differs from PyTorch by {err:.2e} (> {bound:.1e}) at batch {n}")
        diff = max(diff, err)
    write_atomically(path, data)
    described = (f"{spec.in_channels} x {spec.resolution} x {spec.resolution} "
                 + ("float pixels 0-255" if pixels else "normalised floats"))  # fmt: skip
    return ExportResult(path, len(data), diff, opset, batch, pixels, spec, input=described)


def export_checkpoint(
    ckpt: Checkpoint, path: str | os.PathLike, batch: int | None = 1, opset: int = OPSET, resolution: int | None = None
) -> ExportResult:
    """`ckpt`'s trained network to ONNX, its normalisation baked in (the graph takes 0-255 float
    pixels in `ckpt.preprocessing.channels` order); `resolution` traces another input size (the
    network is fully convolutional up to its global pool, so the weights fit any size)."""
    spec = ckpt.spec if resolution is None else ckpt.spec.replace(resolution=resolution)
    prep = ckpt.preprocessing
    identity = all(m == 0 for m in prep.mean) and all(s == 1 for s in prep.std)  # official: raw pixels already
    mean, std = (None, None) if identity else (list(prep.mean), list(prep.std))
    result = export_onnx(spec, path, weights=ckpt.weights, batch=batch, opset=opset, input_mean=mean, input_std=std,
                         pixels=True)  # fmt: skip
    return dataclasses.replace(result, weights=ckpt.path, input=_describe_input(ckpt, spec))


def export_trained(
    out: str | os.PathLike,
    weights: str | os.PathLike,
    *,
    preset: str | None = None,
    batch: int | None = 1,
    opset: int = OPSET,
    resolution: int | None = None,
) -> ExportResult:
    """The checkpoint at `weights` exported to `out`: ours (spec from the file) or an official
    ShuffleNet-Series one loaded into `preset`; see `export_checkpoint` for the rest.

    >>> export_trained("m.onnx", "official.pth.tar", preset="shufflenet_v1_x1_0_g3").input  # doctest: +SKIP
    'BGR (official order) float pixels 0-255, shorter side 256 px, centre crop 224, no normalisation'
    """
    from .checkpoint import load_checkpoint

    return export_checkpoint(load_checkpoint(weights, preset), out, batch=batch, opset=opset, resolution=resolution)


def _describe_input(ckpt: Checkpoint, spec: ShuffleNetSpec) -> str:
    prep = ckpt.preprocessing
    how = "no normalisation" if ckpt.kind == "official" else "normalised inside the graph"
    crop = f"shorter side {prep.resize} px, centre crop {spec.resolution}" if prep.resize != prep.resolution else (
        f"{spec.resolution} x {spec.resolution} px")  # fmt: skip
    channels = {"L": "grayscale", "RGB": "RGB", "BGR": "BGR (official order)"}[prep.channels]
    return f"{channels} float pixels 0-255, {crop}, {how}"


class Normalised(torch.nn.Module):
    """(x - mean) / std, then the network: a graph that takes float pixels in 0-255."""

    def __init__(self, net: torch.nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        channels = net.spec.in_channels
        if not len(mean) == len(std) == channels or not all(s > 0 for s in std):
            raise UsageError(f"input_mean/input_std need {channels} values (one per input channel), std > 0")
        self.net = net
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
