"""The machine and runtimes a number was measured on: it travels with every measurement.

One capture for every result: a local latency, a device's (the device runner ships this file
beside itself, so a remote result carries the same keys) and a training run (which adds its
own keys, such as threads). Stdlib only, valid Python 3.8, never raises.

>>> info = machine_info()
>>> sorted(info)[:3]
['arch', 'board', 'cpu_affinity']
>>> describe(info)  # doctest: +SKIP
'x86_64 AMD EPYC, 2 cores, Linux-6.1.0-x86_64-with-glibc2.36, Python 3.11.2, onnxruntime 1.32.0, torch 2.13.0'
"""
# Devices run old Pythons: keep this file valid Python 3.8 (tests/test_latency_measure.py checks it).

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["describe", "machine_info"]

# Versions recorded when installed; a missing one is simply left out (a device has no torch).
VERSIONED = ("onnxruntime", "numpy", "torch", "shufflesearch")
# CPU features that decide which ONNX Runtime kernels run; stored with every measurement.
_KERNEL_FLAGS = {
    "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
    "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2",
}  # fmt: skip
# MIDR "CPU part" numbers (implementer 0x41 = Arm, 0x51 = Qualcomm) as /proc/cpuinfo prints them.
_ARM_PARTS = {
    "0x41": {
        "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
        "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
        "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
        "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
        "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
        "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
    },
    "0x51": {
        "0x800": "Kryo 2xx Gold", "0x801": "Kryo 2xx Silver", "0x802": "Kryo 3xx Gold",
        "0x803": "Kryo 3xx Silver", "0x804": "Kryo 4xx Gold", "0x805": "Kryo 4xx Silver",
    },
}  # fmt: skip


def machine_info() -> dict[str, Any]:
    """Architecture, CPU model and flags, cores, load, OS, Python and runtime versions of this machine."""
    cpuinfo = _read("/proc/cpuinfo")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "arch": platform.machine(),
        "cpu_model": _cpu_model(cpuinfo) or platform.processor() or "unknown",
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(affinity) if affinity is not None else None,
        "cpu_flags": _kernel_flags(cpuinfo),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,  # busy = noisy
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").strip() or None,
        "board": _read("/sys/firmware/devicetree/base/model").strip("\x00\n ") or None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: v for name, v in ((n, _version(n)) for n in VERSIONED) if v},
    }


def describe(machine: dict[str, Any]) -> str:
    """One line for a table caption or a log: where a number comes from."""
    versions = machine.get("versions", {})
    runtimes = ", ".join(f"{name} {versions[name]}" for name in ("onnxruntime", "torch") if name in versions)
    parts = [
        f"{machine.get('arch', '?')} {machine.get('cpu_model', '?')}",
        f"{machine.get('cpu_cores', '?')} cores",
        machine.get("board"),
        machine.get("os"),
        f"Python {machine.get('python', '?')}",
        runtimes,
    ]
    return ", ".join(p for p in parts if p)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_values(cpuinfo: str, key: str) -> list:
    values = []
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            values.append(value.strip())
    return values


def _cpu_model(cpuinfo: str) -> str:
    # x86 (and some ARM kernels) name the CPU; ARM kernels usually give only MIDR fields.
    names = _cpuinfo_values(cpuinfo, "model name")
    parts = list(zip(_cpuinfo_values(cpuinfo, "CPU implementer"), _cpuinfo_values(cpuinfo, "CPU part")))
    if parts:
        counts: dict = {}
        for implementer, part in parts:
            name = _ARM_PARTS.get(implementer.lower(), {}).get(part.lower())
            label = name or f"implementer {implementer} part {part}"
            counts[label] = counts.get(label, 0) + 1
        cores = ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))
        hardware = _cpuinfo_values(cpuinfo, "Hardware")
        return f"{hardware[0]} ({cores})" if hardware else cores
    return names[0] if names else ""


def _kernel_flags(cpuinfo: str) -> list:
    for key in ("flags", "Features"):
        found = _cpuinfo_values(cpuinfo, key)
        if found:
            return sorted(_KERNEL_FLAGS.intersection(found[0].split()))
    return []


def _version(module: str) -> str:
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # not installed, or no metadata: the key is simply left out
        return ""
