"""Cross-check the closed-form counter with fvcore's tracer, under the same policy.

fvcore's default table also counts batch norm and adaptive pooling; ours is built from
`policy.POLICY`, so only the budget's ops (convolutions and the classifier) count.
A handle returning 0 is the only way to drop an op: fvcore 0.1.5 still counts batch
norm when its handle is set to None.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

from ..model import build_model
from ..spec import ShuffleNetSpec
from .policy import MACS, POLICY


def _zero(inputs, outputs) -> int:
    return 0


def _handles() -> dict:
    """One fvcore handle per op of `POLICY`: fvcore's own for the budget's ops, zero for the rest."""
    from fvcore.nn import jit_handles

    return {op: getattr(jit_handles, r.fvcore_handle) if r.into == MACS else _zero for op, r in POLICY.items()}


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
