"""Closed-form cost of a ShuffleNet v1 spec: no torch, no tracing.

What counts into the budget (`macs`, multiply-adds as in the paper) and what is reported
beside it (`other_ops`) is the table in `policy`, one line per op. Layer names equal the
PyTorch module names of `shufflesearch.model`, so every layer can be checked against a tracer.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> c = count_complexity(ShuffleNetSpec(groups=3, scale=1.0))
>>> round(c.mflops, 2), c.params
(137.46, 1864728)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

from ..arch import plan
from ..spec import ShuffleNetSpec
from .policy import OTHER_OPS

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
    other_ops: dict[str, int] = field(default_factory=dict)  # `policy.OTHER_OPS` -> count, not in `macs`
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


def count_macs(spec: ShuffleNetSpec) -> int:
    """The budget metric alone, for hot loops (a search sampling thousands of specs).

    Same policy as `count_complexity`, summed per stage: one stride-2 unit plus
    (repeats - 1) identical stride-1 units. Tests hold the two equal.
    """
    stem, stages, head = plan(spec)
    macs = stem.in_channels * stem.out_channels * 9 * stem.conv_size**2
    for _, first, repeat, repeats, _ in stages:
        macs += _unit_macs(*first) + (repeats - 1) * _unit_macs(*repeat)
    return macs + head.in_channels * head.num_classes


def _unit_macs(c_in, c_out, mid, stride, group_first, first_groups, groups, branch_out, shuffle, in_size, out_size):
    """One `arch.Unit`: 1x1 (grouped) in at the input size; 3x3 depthwise and 1x1 grouped out at the output size."""
    return c_in * mid // first_groups * in_size * in_size + (mid * 9 + mid * branch_out // groups) * out_size * out_size


def count_complexity(spec: ShuffleNetSpec) -> Complexity:
    """Per-layer, per-stage and total cost of `spec` (see module docstring for the policy).

    Each distinct layer is costed once; identical stride-1 units of a stage count as copies.
    """
    templates: list[tuple[LayerCost, int]] = []
    other = dict.fromkeys(OTHER_OPS, 0)  # keys from the policy table
    tally = {"bn_channels": 0, "peak": 0, "written": 0}
    stage_totals: dict[str, list[int]] = {}

    def conv(name, stage, c_in, c_out, k, groups, size, out, live, copies=1):
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

    stem, stages, head = plan(spec)
    conv("first_conv.0", "stem", stem.in_channels, stem.out_channels, 3, 1, stem.in_size, stem.conv_size, 0)
    other["relu"] += stem.out_channels * stem.conv_size**2
    if stem.pool:
        other["pooling"] += 9 * stem.out_channels * stem.out_size**2
        tally["written"] += stem.out_channels * stem.out_size**2
    shapes = {"stem": (stem.out_channels, stem.out_size)}  # stage -> (channels, size) of its output
    for stage in stages:
        # The stride-2 unit (copies=1), then one stride-1 unit standing for all repeats - 1 of them.
        for u, copies, index in ((stage.first, 1, stage.index), (stage.repeat, stage.repeats - 1, stage.index + 1)):
            if copies == 0:
                continue
            pre, size, out, mid = f"features.{index}.", u.in_size, u.out_size, u.mid
            live = u.c_in * size * size  # the shortcut stays alive while the branch runs
            conv(pre + "branch_main_1.0", stage.name, u.c_in, mid, 1, u.first_groups, size, size, live, copies)
            conv(pre + "branch_main_1.3", stage.name, mid, mid, 3, mid, size, out, live, copies)
            conv(pre + "branch_main_2.0", stage.name, mid, u.branch_out, 1, u.groups, out, out, live, copies)
            other["relu"] += copies * (mid * size * size + u.branch_out * out * out)
            if u.stride == 2:
                other["pooling"] += 9 * u.c_in * out * out
                tally["written"] += u.c_in * out * out
            else:
                other["add"] += copies * u.c_out * out * out
        shapes[stage.name] = (stage.first.c_out, stage.first.out_size)
    c_in, size = head.in_channels, head.in_size
    other["pooling"] += c_in * size * size  # global average pool
    fc_weights = c_in * head.num_classes
    templates.append((LayerCost("classifier", "head", "fc", 1, c_in, head.num_classes, 1, fc_weights, fc_weights), 1))
    stage_totals["head"] = [fc_weights, fc_weights]
    shapes["head"] = (head.num_classes, 1)
    tally["written"] += c_in + head.num_classes  # pooled features, logits

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
