"""Closed-form cost of a ShuffleNet v1 spec: no torch, no tracing.

The budget number is the paper's convention: multiply-adds (MACs) of convolutions and
the classifier, batch 1. Batch norm, ReLU, pooling and residual adds are counted beside
it (`other_ops`), never in it. Layer names equal the PyTorch module names of
`shufflesearch.model`, so every layer can be checked against a tracer.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> c = count_complexity(ShuffleNetSpec(groups=3, scale=1.0))
>>> round(c.mflops, 2), c.params
(137.46, 1864728)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

from ..spec import ShuffleNetSpec

BYTES_PER_VALUE = 4  # fp32


class LayerCost(NamedTuple):  # a tuple: thousands are built per second in a search
    name: str  # PyTorch module name, e.g. "features.0.branch_main_1.0"
    stage: str  # "stem", "stage2", "stage3", "stage4", "head"
    op: str  # "conv1x1", "conv3x3", "dwconv3x3", "fc"
    groups: int
    in_channels: int
    out_channels: int
    out_size: int  # output height = width
    macs: int
    params: int  # weights of the layer plus its batch norm's gamma and beta


class StageCost(NamedTuple):
    name: str
    macs: int
    params: int
    out_channels: int
    out_size: int


@dataclass(frozen=True)
class Complexity:
    """Cost of one spec. `macs` is the budget metric ("MFLOPs as in the paper" = macs/1e6)."""

    macs: int
    params: int
    stages: tuple[StageCost, ...]
    other_ops: dict[str, int] = field(default_factory=dict)  # not in `macs`
    activation_values: int = 0  # values written by all convs, pools and the FC at batch 1
    peak_activation_bytes: int = 0  # largest live set (shortcut + conv in + conv out), fp32
    model_bytes: int = 0  # fp32 parameters + batch-norm running statistics
    # (layer, copies): a stride-1 unit's layers stand for all identical units of its stage.
    templates: tuple[tuple[LayerCost, int], ...] = field(default=(), repr=False, compare=False)

    @functools.cached_property
    def layers(self) -> tuple[LayerCost, ...]:
        """Every conv and FC layer, named like the PyTorch modules (expanded on first use)."""
        out = []
        for layer, copies in self.templates:
            if copies == 1:
                out.append(layer)
                continue
            _, first, rest = layer.name.split(".", 2)
            out.extend(layer._replace(name=f"features.{int(first) + k}.{rest}") for k in range(copies))
        return tuple(sorted(out, key=_module_order))

    @property
    def mflops(self) -> float:
        """Multiply-adds in millions: what the paper calls MFLOPs."""
        return self.macs / 1e6

    @property
    def model_mb(self) -> float:
        return self.model_bytes / 1e6

    def to_dict(self) -> dict:
        return {
            "macs": self.macs,
            "mflops": self.mflops,
            "params": self.params,
            "stages": [s._asdict() for s in self.stages],
            "other_ops": dict(self.other_ops),
            "activation_values": self.activation_values,
            "peak_activation_bytes": self.peak_activation_bytes,
            "model_mb": self.model_mb,
        }


def _module_order(layer: LayerCost) -> tuple:
    parts = layer.name.split(".")
    rank = {"first_conv": 0, "features": 1, "classifier": 2}[parts[0]]
    return (rank, int(parts[1]) if rank == 1 else 0, layer.name)


def _down(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 conv or pool."""
    return (size - 1) // 2 + 1


def count_macs(spec: ShuffleNetSpec) -> int:
    """The budget metric alone, for hot loops (a search sampling thousands of specs).

    Same policy as `count_complexity`, summed per stage: one stride-2 unit plus
    (repeats - 1) identical stride-1 units. Tests hold the two equal.
    """
    size = spec.resolution
    c_in = spec.stem_channels
    g = spec.groups
    if spec.stem == "imagenet":
        size = _down(size)
        macs = spec.in_channels * c_in * 9 * size * size
        size = _down(size)
    else:
        macs = spec.in_channels * c_in * 9 * size * size
    for s, (repeats, c_out, mid) in enumerate(zip(spec.repeats, spec.stage_channels, spec.bottleneck_channels)):
        first_groups = 1 if s == 0 else g
        out = _down(size)
        macs += c_in * mid // first_groups * size * size + mid * 9 * out * out + mid * (c_out - c_in) // g * out * out
        unit = (2 * c_out * mid // g + mid * 9) * out * out
        macs += (repeats - 1) * unit
        size, c_in = out, c_out
    return macs + c_in * spec.num_classes


def count_complexity(spec: ShuffleNetSpec) -> Complexity:
    """Per-layer, per-stage and total cost of `spec` (see module docstring for the policy).

    Each distinct layer is costed once; identical stride-1 units of a stage count as copies.
    """
    templates: list[tuple[LayerCost, int]] = []
    other = {"batch_norm": 0, "relu": 0, "pooling": 0, "add": 0}
    tally = {"bn_channels": 0, "peak": 0, "written": 0}
    stage_totals: dict[str, list[int]] = {}

    def conv(name, stage, c_in, c_out, k, stride, groups, size, live, copies=1):
        out = _down(size) if stride == 2 else size
        weights = c_out * (c_in // groups) * k * k
        op = "conv1x1" if k == 1 else ("dwconv3x3" if groups == c_in == c_out else "conv3x3")
        layer = LayerCost(name, stage, op, groups, c_in, c_out, out, weights * out * out, weights + 2 * c_out)
        templates.append((layer, copies))
        totals = stage_totals.setdefault(stage, [0, 0])
        totals[0] += copies * layer.macs
        totals[1] += copies * layer.params
        written = c_out * out * out
        other["batch_norm"] += copies * written
        tally["written"] += copies * written
        tally["bn_channels"] += copies * c_out
        tally["peak"] = max(tally["peak"], live + c_in * size * size + written)
        return out

    size, stem = spec.resolution, spec.stem_channels
    size = conv("first_conv.0", "stem", spec.in_channels, stem, 3, 2 if spec.stem == "imagenet" else 1, 1, size, 0)
    other["relu"] += stem * size * size
    shapes = {}  # stage -> (channels, size) of its output
    if spec.stem == "imagenet":
        size = _down(size)
        other["pooling"] += 9 * stem * size * size
        tally["written"] += stem * size * size
    shapes["stem"] = (stem, size)
    c_in, unit, g = stem, 0, spec.groups
    for s, (repeats, c_out, mid) in enumerate(zip(spec.repeats, spec.stage_channels, spec.bottleneck_channels)):
        stage = f"stage{s + 2}"
        # The stride-2 unit (copies=1), then one stride-1 unit standing for all repeats - 1 of them.
        for stride, copies in ((2, 1), (1, repeats - 1)):
            if copies == 0:
                continue
            branch = c_out - c_in if stride == 2 else c_out
            pre = f"features.{unit}."
            live = c_in * size * size  # the shortcut stays alive while the branch runs
            first_groups = 1 if (s == 0 and stride == 2) else g
            conv(pre + "branch_main_1.0", stage, c_in, mid, 1, 1, first_groups, size, live, copies)
            out = conv(pre + "branch_main_1.3", stage, mid, mid, 3, stride, mid, size, live, copies)
            conv(pre + "branch_main_2.0", stage, mid, branch, 1, 1, g, out, live, copies)
            other["relu"] += copies * (mid * size * size + branch * out * out)
            if stride == 2:
                other["pooling"] += 9 * c_in * out * out
                tally["written"] += c_in * out * out
            else:
                other["add"] += copies * c_out * out * out
            size, c_in, unit = out, c_out, unit + copies
        shapes[stage] = (c_out, size)
    other["pooling"] += c_in * size * size  # global average pool
    fc_weights = c_in * spec.num_classes
    templates.append((LayerCost("classifier", "head", "fc", 1, c_in, spec.num_classes, 1, fc_weights, fc_weights), 1))
    stage_totals["head"] = [fc_weights, fc_weights]
    shapes["head"] = (spec.num_classes, 1)
    tally["written"] += c_in + spec.num_classes  # pooled features, logits

    stages = tuple(StageCost(name, macs, params, *shapes[name]) for name, (macs, params) in stage_totals.items())
    params = sum(st.params for st in stages)
    return Complexity(
        macs=sum(st.macs for st in stages),
        params=params,
        stages=stages,
        other_ops=other,
        activation_values=tally["written"],
        peak_activation_bytes=tally["peak"] * BYTES_PER_VALUE,
        model_bytes=(params + 2 * tally["bn_channels"]) * BYTES_PER_VALUE,
        templates=tuple(templates),
    )
