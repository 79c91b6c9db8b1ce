"""Cross-check the closed-form counter with fvcore's tracer, under the same policy.

fvcore's default table also counts batch norm and adaptive pooling; ours is explicit and
counts only convolutions and the classifier (multiply-adds, 1 per MAC), like the paper.
A handle returning 0 is the only way to drop an op: fvcore 0.1.5 still counts batch
norm when its handle is set to None.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

from ..model import build_model
from ..spec import ShuffleNetSpec


def _zero(inputs, outputs) -> int:
    return 0


def _handles() -> dict:
    from fvcore.nn.jit_handles import conv_flop_jit, linear_flop_jit, matmul_flop_jit

    return {
        "aten::_convolution": conv_flop_jit,  # Cout*H*W*Cin/g*k*k: in the budget
        "aten::linear": linear_flop_jit,  # classifier, no bias: in the budget
        "aten::matmul": matmul_flop_jit,  # classifier if traced as matmul: in the budget
        "aten::batch_norm": _zero,  # reported beside the budget, as in the paper
        "aten::relu": _zero,
        "aten::relu_": _zero,
        "aten::max_pool2d": _zero,
        "aten::avg_pool2d": _zero,
        "aten::adaptive_avg_pool2d": _zero,
        "aten::add": _zero,  # residual add
        "aten::add_": _zero,
    }


@dataclass(frozen=True)
class FvcoreCount:
    macs: int
    by_module: dict[str, int]  # leaf module name -> MACs
    seconds: float  # trace + count time


def fvcore_count(spec: ShuffleNetSpec) -> FvcoreCount:
    """MACs of `spec` as fvcore traces them under our counting policy."""
    import torch
    from fvcore.nn.jit_analysis import JitModelAnalysis

    start = time.perf_counter()
    model = build_model(spec).eval()
    x = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracer deprecation chatter
        analysis = JitModelAnalysis(model, (x,)).clear_op_handles().set_op_handle(**_handles())
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = analysis.total()
        by_module = {
            name: n for name, n in analysis.by_module().items() if n and name and not _has_children(model, name)
        }
    return FvcoreCount(int(total), by_module, time.perf_counter() - start)


def _has_children(model, name: str) -> bool:
    return any(True for _ in model.get_submodule(name).children())
