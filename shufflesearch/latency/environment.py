"""The machine and runtimes a latency was measured on: it travels with every measurement.

The description itself lives in `device_runner` (it must also run, stdlib-only, on a
device), so a local and a remote result carry the same keys.

>>> info = machine_info()
>>> sorted(info)[:3]
['arch', 'board', 'cpu_affinity']
>>> describe(info)  # doctest: +SKIP
'x86_64 AMD EPYC, 2 cores, Linux-6.1.0-x86_64-with-glibc2.36, Python 3.11.2, onnxruntime 1.32.0, torch 2.13.0'
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .device_runner import describe_machine


def machine_info() -> dict[str, Any]:
    """Architecture, CPU model and flags, cores, OS, Python and runtime versions of this machine."""
    info = describe_machine()
    info["versions"]["shufflesearch"] = __version__
    return info


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
