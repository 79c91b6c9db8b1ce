"""The blocks of a spec (stem, distinct units, head) and of a space, as tiny weightless ONNX models."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from ...arch import Head, Stem, Unit, plan
from ...errors import UsageError
from ...spec import ShuffleNetSpec, SpecError


class LutError(UsageError):
    """A table that cannot answer: unreadable, another family, or built for another input or space."""


def block_plan(spec: ShuffleNetSpec) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """((stem key, head key), [(stride-2 unit key, stride-1 unit key) per stage]); keys name the input size."""
    stem, stages, head = plan(spec)
    return (_stem_key(stem, spec.stem), _head_key(head)), [(_unit_key(s.first), _unit_key(s.repeat)) for s in stages]


def _stem_key(stem: Stem, kind: str) -> str:
    return f"stem:{stem.in_channels}>{stem.out_channels}:{kind}@{stem.in_size}"


def _unit_key(u: Unit) -> str:
    return f"unit:{u.c_in}>{u.c_out}:m{u.mid}:s{u.stride}:g{u.groups}:gf{int(u.group_first)}:sh{int(u.shuffle)}@{u.in_size}"


def _head_key(head: Head) -> str:
    return f"head:{head.in_channels}>{head.num_classes}@{head.in_size}"


def block_modules(spec: ShuffleNetSpec, seed: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """key -> (eval-mode module, input shape), sliced from the spec's own network (repeats >= 2 per stage)."""
    import torch
    from torch import nn

    from ...export import randomize_batch_norm
    from ...model import build_model

    two = spec.replace(repeats=(2, 2, 2))  # the same blocks, each stage's stride-1 unit once
    torch.manual_seed(seed)
    model = build_model(two).eval()
    randomize_batch_norm(model)
    stem, stages, head = plan(two)
    out = {
        _stem_key(stem, spec.stem): (
            nn.Sequential(model.first_conv, model.maxpool),
            (1, stem.in_channels, stem.in_size, stem.in_size),
        )
    }
    for stage in stages:
        for u, index in ((stage.first, stage.index), (stage.repeat, stage.index + 1)):
            out[_unit_key(u)] = (model.features[index], (1, u.c_in, u.in_size, u.in_size))
    out[_head_key(head)] = (
        nn.Sequential(model.globalpool, nn.Flatten(1), model.classifier),
        (1, head.in_channels, head.in_size, head.in_size),
    )
    return out


def export_block(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """A block's ONNX bytes; the runner feeds every block as "x" and reads "y"."""
    from ...export import module_onnx_bytes

    return module_onnx_bytes(module, input_shape, input_name="x", output_name="y")


def strip_weights(model_bytes: bytes, weights_file: str) -> tuple[bytes, list[list[float]]]:
    """The model with its float weights moved to `weights_file` (not written) and their fill recipe.

    Timing needs shapes, not values: a table's blocks weigh ~1 GB at 224 px, their skeletons a few MB.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(model_bytes)
    fill, offset = [], 0
    for tensor in model.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or math.prod(tensor.dims) < 64:
            continue  # small tensors (and int64 shapes) stay inline, exact
        values = numpy_helper.to_array(tensor)
        fill.append([offset, int(values.size), float(values.mean()), float(values.std())])
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", weights_file), ("offset", str(offset)), ("length", str(values.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        offset += -(-values.nbytes // 64) * 64
    return model.SerializeToString(), fill


def overhead_model() -> bytes:
    """A one-value Relu: what a runner call costs when the network costs nothing."""
    from onnx import TensorProto, helper

    from ...export import OPSET

    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, 1, 1]) for name in "xy")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "overhead", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def block_keys(spec: ShuffleNetSpec) -> list[str]:
    (stem, head), stages = block_plan(spec)
    return [stem, *(k for pair in stages for k in pair), head]


def width_specs(space: Any, in_channels: int, stem: str, seed: int) -> tuple[list[ShuffleNetSpec], dict]:
    """One spec per distinct width layout (stem, stage widths, groups, bottleneck, shuffle), and the space's summary."""
    if hasattr(space, "scales"):
        rng = random.Random(seed)
        specs = []
        for g in space.groups:
            for b in space.bottleneck_ratio:
                for sh in space.shuffle:
                    for s in space.scales():
                        repeats = tuple(rng.randint(lo, hi) for lo, hi in space.repeats)
                        try:
                            specs.append(ShuffleNetSpec(groups=g, scale=s, repeats=repeats, bottleneck_ratio=b,
                                                        shuffle=sh, resolution=space.resolution,
                                                        num_classes=space.num_classes, in_channels=in_channels,
                                                        stem=stem))  # fmt: skip
                        except SpecError:
                            continue  # as SearchSpace.width_ladder: not every scale gives valid widths
        names = ("groups", "scale", "scale_step", "repeats", "bottleneck_ratio", "shuffle")
        described = {n: json.loads(json.dumps(getattr(space, n))) for n in names if hasattr(space, n)}
    else:
        specs = list(space)
        described = {"specs": len(specs)}
    if not specs or not all(isinstance(s, ShuffleNetSpec) for s in specs):
        raise LutError("the space gives no valid spec; pass a SearchSpace or a non-empty list of ShuffleNetSpec")
    context = {(s.resolution, s.num_classes, s.in_channels, s.stem) for s in specs}
    if len(context) > 1:
        raise LutError(
            f"a table covers one (resolution, num_classes, in_channels, stem); the specs have {sorted(context)}"
        )
    unique: dict[tuple, ShuffleNetSpec] = {}
    for s in specs:
        unique.setdefault(
            (s.groups, s.stem_channels, s.stage_channels, s.bottleneck_ratio, s.shuffle and s.groups > 1), s
        )
    return list(unique.values()), described
