"""The counting policy, in one table: where each traced op's cost goes.

The budget (`Complexity.macs`, what the paper calls MFLOPs) is multiply-adds of the
convolutions and the classifier at batch 1, one per MAC. Batch norm, ReLU, pooling and
residual adds are reported beside it in `Complexity.other_ops`, under the key named here.
Layout ops count nothing. `closed_form` takes its `other_ops` keys from this table and
`fvcore_check` builds its tracer handles from it (any op not listed counts nothing there).
"""

from __future__ import annotations

from typing import NamedTuple

MACS = "macs"  # counted into the budget


class Rule(NamedTuple):
    into: str | None  # MACS, an `other_ops` key (reported beside the budget), or None (nothing)
    fvcore_handle: str = ""  # the `fvcore.nn.jit_handles` function that counts a MACS op


POLICY: dict[str, Rule] = {
    "aten::_convolution": Rule(MACS, "conv_flop_jit"),  # Cout*H*W*Cin/g*k*k
    "aten::linear": Rule(MACS, "linear_flop_jit"),  # classifier, no bias
    "aten::matmul": Rule(MACS, "matmul_flop_jit"),  # classifier if traced as matmul
    "aten::batch_norm": Rule("batch_norm"),  # one per value written by each conv
    "aten::relu": Rule("relu"),  # stem; each unit's first 1x1; its branch out (after the add at stride 1)
    "aten::relu_": Rule("relu"),  # in-place form of the same
    "aten::max_pool2d": Rule("pooling"),  # stem, 3x3 stride 2: 9 per output value
    "aten::avg_pool2d": Rule("pooling"),  # stride-2 unit shortcut, 3x3: 9 per output value
    "aten::adaptive_avg_pool2d": Rule("pooling"),  # global average pool: 1 per input value
    "aten::add": Rule("add"),  # residual add of a stride-1 unit
    "aten::add_": Rule("add"),  # in-place form of the same
    "aten::reshape": Rule(None),  # channel shuffle
    "aten::transpose": Rule(None),  # channel shuffle
    "aten::cat": Rule(None),  # stride-2 unit join
    "aten::flatten": Rule(None),  # pooled features to the classifier
}

# The `Complexity.other_ops` keys, in table order.
OTHER_OPS: tuple[str, ...] = tuple(dict.fromkeys(r.into for r in POLICY.values() if r.into not in (MACS, None)))
