"""Regenerate a device profile: count instructions for every point of paper Table 8 under QEMU, refit.

python -m shufflesearch.latency.emulated.calibrate          # about 8 min of emulation on 2 cores
python -m shufflesearch.latency.emulated.calibrate --refit  # refit the stored counts only
"""

from __future__ import annotations

import os
import time

from ...paper import TABLE8_LATENCY_MS
from .count import count_instructions
from .device_profiles import CalibrationFit, read_profile, write_profile
from .sysroot import LineProgress, ensure_sysroot


def calibrate(
    name: str = "snapdragon820",
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: LineProgress | None = None,
) -> CalibrationFit:
    """Count instructions for every paper Table 8 point under QEMU, fit, and write the profile atomically."""
    from ...export import onnx_bytes  # torch: only when networks are exported
    from ...presets import get_preset

    say = progress or (lambda message: None)
    points, env = [], {}
    for preset, height, width, ms in TABLE8_LATENCY_MS:
        started = time.monotonic()
        # Counts repeat within ~0.03% between runs (tests check 0.5%), so big inputs need only one.
        small = height * width <= 224 * 224
        data = onnx_bytes(get_preset(preset), seed=0, input_hw=(height, width), randomize_bn=False)[0]
        count = count_instructions(
            data, (1, 3, height, width), runs=3 if small else 1, warmup=2 if small else 1, cache_dir=cache_dir
        )
        points.append({
            "model": preset, "input_hw": [height, width], "published_ms": ms, "instructions": count.instructions,
            "spread": round(count.spread, 6), "runs": len(count.per_run), "mix": count.mix,
        })  # fmt: skip
        env = {"cpu": count.cpu, "midr": count.midr, "ort_version": count.ort_version, "qemu_version": count.qemu_version}  # fmt: skip
        say(f"{preset} {height}x{width}: {count.instructions / 1e6:.1f} M instructions ({time.monotonic() - started:.0f} s)")  # fmt: skip
    return write_profile(name, points, env, path)


if __name__ == "__main__":  # the regeneration script named in every profile; --refit reuses stored counts
    import sys

    if "--refit" in sys.argv:
        stored = read_profile("snapdragon820")
        result = write_profile("snapdragon820", stored["points"], stored["measured_with"])
    else:
        ensure_sysroot(progress=print)
        result = calibrate(progress=print)
    print(f"{result.formula}; leave-one-out error {result.loo_error_pct:.1f}% (max {result.loo_max_error_pct:.1f}%)")
