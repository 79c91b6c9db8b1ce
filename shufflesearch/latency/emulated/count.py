"""Count the real aarch64 ONNX Runtime's instructions for one inference under QEMU.

The guest is Debian arm64 Python with the aarch64 onnxruntime wheel, run by qemu-aarch64 (user mode)
from the sysroot that `shufflesearch setup arm64` builds. A small TCG plugin counts the guest
instructions of the calling thread between markers around `session.run`: a deterministic cost of the
real aarch64 code path (one ORT thread, pinned -cpu and cpuinfo, fixed QEMU seed and guest address
space, a frozen guest clock, fixed argv and environment). It ignores caches and memory stalls, so
it is NOT a latency (`estimate` turns it into one for a calibrated device profile).

>>> count_instructions("model.onnx", (1, 3, 224, 224)).instructions  # doctest: +SKIP
4447355
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UsageError
from .guest import SETUP_COMMAND, EmulationError, guest_command, guest_env, plugin_path, qemu_binary, run_guest
from .sysroot import default_cache_dir, read_manifest

# Same order as enum insn_class in insn_count.c; classified from the A64 32-bit encodings.
INSTRUCTION_CLASSES = ("simd_dot", "simd_dp", "simd_ldst", "sve", "ldst", "branch", "other")
WARMUP_RUNS = 2
MODEL_REJECTED = 3  # guest exit status, as in guest_counter.py


class EmulationInputError(UsageError):
    """A bad argument: runs, input shape, a missing model file, or a model ONNX Runtime rejects."""


@dataclass(frozen=True)
class InstructionCount:
    """Guest instructions per inference (median over runs), net of the markers' own cost."""

    instructions: int
    per_run: list[int]
    mix: dict[str, int]  # class -> instructions in the median run (classes of INSTRUCTION_CLASSES)
    cpu: str
    midr: str
    ort_version: str
    qemu_version: str
    input_shape: tuple[int, ...]
    spread: float  # max relative deviation of a run from the median
    marker_overhead: int = 0  # instructions of an empty marker bracket, already subtracted
    guest: dict = field(default_factory=dict, compare=False)  # versions, cpuinfo, output checksum

    @property
    def mix_fraction(self) -> dict[str, float]:
        total = sum(self.mix.values()) or 1
        return {name: count / total for name, count in self.mix.items()}


def count_instructions(
    onnx_path_or_bytes: str | os.PathLike | bytes,
    input_shape: tuple[int, ...],
    runs: int = 5,
    cache_dir: str | os.PathLike | None = None,
    warmup: int = WARMUP_RUNS,
    timeout_s: float = 3600,
) -> InstructionCount:
    """Count aarch64 instructions of one inference of an ONNX model under QEMU (median of `runs`).

    >>> count_instructions(onnx_bytes, (1, 3, 64, 64), runs=3).instructions  # doctest: +SKIP
    4447355
    """
    if runs < 1 or warmup < 0:
        raise EmulationInputError(f"runs={runs}, warmup={warmup}: need runs >= 1 and warmup >= 0; e.g. runs=5")
    shape = tuple(int(v) for v in input_shape)
    if not shape or any(v < 1 for v in shape):
        raise EmulationInputError(f"input_shape={shape} must be positive dimensions; e.g. (1, 3, 224, 224)")
    if not isinstance(onnx_path_or_bytes, bytes) and not Path(onnx_path_or_bytes).is_file():
        raise EmulationInputError(f"ONNX model {onnx_path_or_bytes} does not exist; pass an .onnx file or its bytes")
    root, manifest, qemu, qemu_version, plugin = guest_setup(cache_dir)
    model = onnx_path_or_bytes if isinstance(onnx_path_or_bytes, bytes) else Path(onnx_path_or_bytes).read_bytes()
    # The guest's argv, environment and working directory are identical from run to run: the script goes
    # in as -c text and the model on stdin, so no temporary path reaches the guest (counts then repeat).
    script = Path(__file__).with_name("guest_counter.py").read_text()
    argv = ["-c", script, ",".join(map(str, shape)), str(runs), str(warmup)]
    with tempfile.TemporaryDirectory(prefix="shufflesearch-arm64-") as tmp:
        counts_file = Path(tmp) / "counts.txt"
        cmd = guest_command(qemu, root / "sysroot", plugin, counts_file) + argv
        try:
            result = run_guest(cmd, input=model, timeout=timeout_s, cwd="/", env=guest_env())
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"emulated inference exceeded {timeout_s:g} s; use a smaller input or model") from exc
        if result.returncode == MODEL_REJECTED:
            reason = json.loads(result.stdout).get("error", "unknown error")
            raise EmulationInputError(
                f"aarch64 ONNX Runtime rejected the model for input_shape={shape} ({reason}); "
                "check the model and shape with onnxruntime on this machine first"
            )
        if result.returncode != 0:
            tail = (result.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise EmulationError(
                f"emulated guest failed (exit {result.returncode}: {tail[:300]}); run: {SETUP_COMMAND}"
            )
        regions = parse_counts(counts_file.read_text())
    guest = json.loads(result.stdout)
    return count_from_regions(regions, guest, manifest, qemu_version)


def parse_counts(text: str) -> list[list[int]]:
    """Plugin output -> one [total, class counts...] per marker bracket; unbalanced markers raise."""
    regions = []
    for line in text.splitlines():
        if line.startswith("error"):
            raise EmulationError(f"instruction counter: {line}; the guest's markers must nest on one thread")
        if line.startswith("run "):
            values = [int(v) for v in line.split()[1:]]
            if len(values) != 1 + len(INSTRUCTION_CLASSES) or sum(values[1:]) != values[0]:
                raise EmulationError(f"malformed plugin line {line!r}; rebuild with: {SETUP_COMMAND}")
            regions.append(values)
    return regions


def guest_setup(cache_dir: str | os.PathLike | None = None) -> tuple[Path, dict, str, str, Path]:
    """(cache root, sysroot manifest, qemu binary, its version, plugin): what every emulated count needs."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    manifest = read_manifest(root)
    if manifest is None:
        raise EmulationError(f"the arm64 sysroot is not set up at {root}; run: {SETUP_COMMAND}")
    qemu, qemu_version = qemu_binary()
    return root, manifest, qemu, qemu_version, plugin_path(root)


def count_from_regions(regions: list[list[int]], guest: dict, manifest: dict, qemu_version: str) -> InstructionCount:
    """The InstructionCount of one guest process. First region = empty marker bracket (overhead); the rest = one inference each."""
    runs = guest.get("runs", 0)
    if len(regions) != runs + 1:
        raise EmulationError(f"expected {runs + 1} counted regions, the plugin reported {len(regions)}")
    overhead, measured = regions[0], regions[1:]
    net = [[value - base for value, base in zip(region, overhead, strict=True)] for region in measured]
    totals = [region[0] for region in net]
    median = int(statistics.median_low(totals))
    median_run = net[totals.index(median)]
    spread = max(abs(t - median) for t in totals) / median if median else 0.0
    return InstructionCount(
        instructions=median,
        per_run=totals,
        mix=dict(zip(INSTRUCTION_CLASSES, median_run[1:], strict=True)),
        cpu=manifest["cpu"],
        midr=manifest["midr"],
        ort_version=guest.get("onnxruntime", "unknown"),
        qemu_version=qemu_version,
        input_shape=tuple(guest.get("input_shape", ())),
        spread=spread,
        marker_overhead=overhead[0],
        guest=guest,
    )
