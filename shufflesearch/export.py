"""Export a spec's network to ONNX and prove ONNX Runtime computes the same function.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> result = export_onnx(ShuffleNetSpec(groups=3, scale=0.5), "model.onnx")  # doctest: +SKIP
>>> result.max_abs_diff <= 1e-4  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import check_writable, write_atomically
from .errors import MachineError, UsageError
from .memory import weight_count_floor
from .model import build_model
from .spec import ShuffleNetSpec

OPSET = 17
TOLERANCE = 1e-4


ONNX_MAX_BYTES = 2**31  # one protobuf message: weights stored inside the file cannot exceed it


class ExportError(MachineError):
    """ONNX export failed or ONNX Runtime disagrees with PyTorch."""


class TooLargeForOnnx(UsageError):
    """A spec whose float32 weights alone exceed what one ONNX file can hold."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    max_abs_diff: float  # ONNX Runtime vs PyTorch on one seeded input
    opset: int


def onnx_bytes(
    spec: ShuffleNetSpec, seed: int = 0, input_hw: tuple[int, int] | None = None, randomize_bn: bool = True
) -> tuple[bytes, Any]:
    """Serialized ONNX model of `spec`'s seeded, eval-mode network, and that network.

    `input_hw` is the traced input's (height, width), the spec's resolution by default: the
    network is fully convolutional up to an adaptive pool, so any size runs. `randomize_bn`
    gives batch norm realistic statistics (see `randomize_batch_norm`); off, it keeps fresh init.

    >>> data, model = onnx_bytes(ShuffleNetSpec(groups=3, scale=0.5), input_hw=(480, 640))  # doctest: +SKIP
    """
    import torch

    weights = 4 * weight_count_floor(spec)
    if weights >= ONNX_MAX_BYTES:  # refuse before minutes of building and tracing, not in protobuf after them
        raise TooLargeForOnnx(f"{spec.label} has over {weights / 2**30:.1f} GiB of weights; an ONNX file holds under "
                              "2 GiB: lower the widths or the number of classes")  # fmt: skip
    height, width = input_hw or (spec.resolution, spec.resolution)
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    if randomize_bn:
        randomize_batch_norm(model)
    return _export(model, (1, spec.in_channels, height, width), "image", "logits", spec.label), model


def module_onnx_bytes(
    module: Any, input_shape: tuple[int, ...], input_name: str = "image", output_name: str = "logits"
) -> bytes:
    """Serialized ONNX model of any eval-mode `module`, traced on zeros of `input_shape`.

    >>> import torch
    >>> len(module_onnx_bytes(torch.nn.ReLU(), (1, 1, 2, 2), "x", "y")) > 0  # doctest: +SKIP
    True
    """
    return _export(module, input_shape, input_name, output_name, type(module).__name__)


def _export(module: Any, input_shape: tuple[int, ...], input_name: str, output_name: str, what: str) -> bytes:
    """The one call to torch's exporter: opset, names and the error every export raises."""
    import io

    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (torch.zeros(input_shape),), buffer, input_names=[input_name],
                              output_names=[output_name], opset_version=OPSET, dynamo=False)  # fmt: skip
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


def export_onnx(spec: ShuffleNetSpec, path: str | os.PathLike, seed: int = 0) -> ExportResult:
    """Write `spec`'s network to `path` (atomically) after checking it in ONNX Runtime."""
    path = Path(path)
    check_writable(path.parent)  # a read-only or full folder fails before the export, not after it
    import numpy as np
    import onnxruntime as ort
    import torch

    data, model = onnx_bytes(spec, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, spec.in_channels, spec.resolution, spec.resolution, generator=generator)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= TOLERANCE:
        raise ExportError(f"ONNX Runtime output differs from PyTorch by {diff:.2e} (> {TOLERANCE:g})")
    write_atomically(path, data)
    return ExportResult(path, len(data), diff, OPSET)
