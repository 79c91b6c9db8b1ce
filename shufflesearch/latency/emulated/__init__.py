"""`--target arm64-emulated`: count the real aarch64 ONNX Runtime's instructions under QEMU, estimate ms.

The guest is Debian arm64 Python with the aarch64 onnxruntime wheel, run by qemu-aarch64 (user mode)
from the sysroot that `shufflesearch setup arm64` builds. A small TCG plugin counts the guest
instructions of the calling thread between markers around `session.run`: a deterministic cost of the
real aarch64 code path. It ignores caches and memory stalls, so it is NOT a latency; `estimate_ms`
turns it into an estimate for a device profile calibrated on published measurements. Emulated wall
time is never reported.

- `sysroot`: the one-time, cached set-up (Debian arm64 sysroot, wheels, plugin);
- `guest`: running the guest under QEMU with the counting plugin (shared by set-up and counts);
- `count`: instructions of one inference (`guest_counter.py` runs inside the guest);
- `device_profiles`: published latencies + stored counts -> a fitted estimator per device;
- `estimate`: an instruction count -> estimated ms on a device profile;
- `calibrate`: regenerate a profile (`python -m shufflesearch.latency.emulated.calibrate`).

>>> count = count_instructions("model.onnx", (1, 3, 224, 224))  # doctest: +SKIP
>>> estimate_ms(count).estimated_ms  # doctest: +SKIP
37.4
"""

from __future__ import annotations

from .count import INSTRUCTION_CLASSES, EmulationInputError, InstructionCount, count_instructions, parse_counts
from .estimate import EmulatedEstimate, emulate_spec, estimate_ms
from .guest import HOST_PACKAGES, SETUP_COMMAND, EmulationError
from .sysroot import ensure_sysroot, sysroot_status

__all__ = [
    "HOST_PACKAGES",
    "INSTRUCTION_CLASSES",
    "SETUP_COMMAND",
    "EmulatedEstimate",
    "EmulationError",
    "EmulationInputError",
    "InstructionCount",
    "count_instructions",
    "emulate_spec",
    "ensure_sysroot",
    "estimate_ms",
    "parse_counts",
    "sysroot_status",
]
