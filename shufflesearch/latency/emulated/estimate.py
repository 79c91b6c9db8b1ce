"""An ESTIMATED device latency from an instruction count: a device profile's fit, never emulated wall time.

>>> estimate = emulate_spec(get_preset("shufflenet_v1_x0_5_g3"))  # doctest: +SKIP
>>> estimate.estimated_ms, estimate.basis  # doctest: +SKIP
(15.3, 'estimated from guest instruction count under QEMU, calibrated on paper Table 8 (Snapdragon 820)')
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ...spec import ShuffleNetSpec
from . import device_profiles
from .count import InstructionCount, count_instructions
from .device_profiles import BASIS


@dataclass(frozen=True)
class EmulatedEstimate:
    instructions: int
    estimated_ms: float
    profile: str
    fit_error_pct: float  # leave-one-out mean absolute relative error of the profile's fit
    basis: str = BASIS
    model: str = ""  # the profile's fitted formula
    count: InstructionCount | None = field(default=None, compare=False)  # the measurement behind it

    def to_dict(self) -> dict:
        """JSON-ready: the estimate, its basis and fit error, and the count with cpu/MIDR/versions."""
        data = dataclasses.asdict(self)
        if self.count is not None:
            data["count"]["input_shape"] = list(self.count.input_shape)
        return data


def estimate_ms(count: InstructionCount, profile: str = "snapdragon820") -> EmulatedEstimate:
    """An ESTIMATED single-thread latency on a device profile, from an instruction count and its mix.

    >>> estimate = estimate_ms(count_instructions(onnx_bytes, (1, 3, 224, 224)))  # doctest: +SKIP
    >>> estimate.estimated_ms, estimate.fit_error_pct, estimate.basis  # doctest: +SKIP
    (15.3, 2.8, 'estimated from guest instruction count under QEMU, calibrated on paper Table 8 (Snapdragon 820)')
    """
    fit = device_profiles.load_profile(profile)
    return EmulatedEstimate(
        instructions=count.instructions,
        estimated_ms=round(fit.predict_ms(count.instructions, count.mix), 2),
        profile=profile,
        fit_error_pct=round(fit.loo_error_pct, 1),
        basis=fit.basis or BASIS,
        model=fit.formula,
        count=count,
    )


def emulate_spec(
    spec: ShuffleNetSpec, profile: str = "snapdragon820", runs: int = 5, cache_dir: str | os.PathLike | None = None
) -> EmulatedEstimate:
    """Export `spec` to ONNX, count its aarch64 instructions under QEMU, and estimate ms on `profile`.

    >>> from shufflesearch.presets import get_preset
    >>> estimate = emulate_spec(get_preset("shufflenet_v1_x0_5_g3"))  # doctest: +SKIP
    >>> estimate.count.instructions, estimate.estimated_ms  # doctest: +SKIP
    """
    from ...export import onnx_bytes  # torch: only when a network is actually exported

    device_profiles.read_profile(profile)  # an unknown profile fails before minutes of emulation
    data, _ = onnx_bytes(spec)
    count = count_instructions(data, (1, spec.in_channels, spec.resolution, spec.resolution), runs, cache_dir)
    return estimate_ms(count, profile)
