"""Count many ONNX models in ONE emulated guest process: ONNX Runtime loads once, each model is labelled.

Starting the guest (QEMU, Python, `import onnxruntime`) costs seconds; a latency table needs
a thousand blocks. So the host writes the models, one record each, into a file that becomes the
guest's stdin (argv, environment and working directory stay fixed, as for one model), the
guest emits a "model i" marker before each model's brackets, and the plugin's output is split
per model. The guest counts each model in a child it forks from one warmed-up state, so a
model's count does not depend on the models before it (nor on the order of a space's blocks).

>>> counts = count_many([("a", a_bytes, (1, 3, 64, 64)), ("b", b_bytes, (1, 24, 16, 16))])  # doctest: +SKIP
>>> counts["a"].instructions  # doctest: +SKIP
4447355
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .count import (
    MODEL_REJECTED,
    EmulationInputError,
    InstructionCount,
    count_from_regions,
    guest_setup,
    parse_counts,
)
from .guest import SETUP_COMMAND, EmulationError, guest_command, guest_env, release_clock

Model = tuple  # (name, ONNX bytes, input shape), or with (runs, warmup) of its own appended
Progress = Callable[[int], None]  # models counted so far


def count_many(
    models: Iterable[Model],
    runs: int = 1,
    warmup: int = 1,
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = 7200,
    progress: Progress | None = None,
) -> dict[str, InstructionCount]:
    """name -> InstructionCount of one inference (median of `runs` after `warmup`), all in one guest process.

    A model given as (name, bytes, shape, runs, warmup) is counted with its own runs and warm-up.
    `models` may be a generator: its models are written to a temporary file before the guest starts.
    Counts agree with `count_instructions` (one process per model) within about 0.05%.
    """
    if runs < 1 or warmup < 0:
        raise EmulationInputError(f"runs={runs}, warmup={warmup}: need runs >= 1 and warmup >= 0; e.g. runs=1")
    root, manifest, qemu, qemu_version, plugin = guest_setup(cache_dir)
    script = Path(__file__).with_name("guest_counter.py").read_text()
    names: list[str] = []
    shapes: list[tuple[int, ...]] = []
    settings: list[tuple[int, int]] = []  # (runs, warmup) of each model
    with tempfile.TemporaryDirectory(prefix="shufflesearch-arm64-") as tmp:
        counts_file, records = Path(tmp) / "counts.txt", Path(tmp) / "models.bin"
        with open(records, "wb") as out:
            _write_records(out, models, (runs, warmup), names, shapes, settings)
        cmd = [*guest_command(qemu, root / "sysroot", plugin, counts_file), "-c", script, "batch"]
        # stdin is a regular file, not a pipe: the guest's reads then never return short, so what it allocates
        # between models (and with it the instruction count of the next inference) does not follow timing.
        with open(records, "rb") as stdin:
            guest = subprocess.Popen(
                cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", env=guest_env()
            )
        timer = threading.Timer(timeout_s, guest.kill)
        timer.start()
        stderr: list[bytes] = []
        drain = threading.Thread(target=lambda: stderr.append(guest.stderr.read()))
        drain.start()
        try:
            lines = _read_results(guest, progress)
            guest.wait()
        finally:
            timer.cancel()
            if guest.poll() is None:
                guest.kill()
                guest.wait()
            release_clock(guest.pid)
            drain.join()
        _check_exit(guest.returncode, lines, names, shapes, b"".join(stderr), timeout_s)
        regions = split_models(counts_file.read_text())
    summary = lines[-1]
    if summary.get("models") != len(names) or sorted(regions) != list(range(len(names))):
        raise EmulationError(f"the guest counted {summary.get('models')} of {len(names)} models; run: {SETUP_COMMAND}")
    result = {}
    for i, name in enumerate(names):
        info = {**summary["guest"], "input_shape": list(shapes[i]), "runs": settings[i][0], "warmup": settings[i][1],
                "output_sum": lines[i].get("output_sum")}  # fmt: skip
        result[name] = count_from_regions(regions[i], info, manifest, qemu_version)
    return result


def _write_records(out, models, default, names, shapes, settings) -> None:
    for name, data, shape, *own in models:
        runs, warmup = own or default
        if runs < 1 or warmup < 0:
            raise EmulationInputError(f"runs={runs}, warmup={warmup} for {name!r}: need runs >= 1, warmup >= 0")
        if name in names:
            raise EmulationInputError(f"model name {name!r} appears twice; names must be unique")
        shape = tuple(int(v) for v in shape)
        if not shape or any(v < 1 for v in shape):
            raise EmulationInputError(f"input_shape={shape} of {name!r} must be positive dimensions")
        names.append(name)
        shapes.append(shape)
        settings.append((runs, warmup))
        header = {"shape": list(shape), "runs": runs, "warmup": warmup, "size": len(data)}
        out.write(json.dumps(header).encode() + b"\n" + data)
    out.write(b"\n")


def _read_results(guest, progress: Progress | None) -> list[dict]:
    lines = []
    for raw in guest.stdout:
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
        if progress and "output_sum" in lines[-1]:
            progress(len(lines))
    return lines


def _check_exit(code: int, lines: list[dict], names: list[str], shapes: list, stderr: bytes, timeout_s: float) -> None:
    if code == MODEL_REJECTED and lines and "error" in lines[-1]:
        i = lines[-1].get("i", 0)
        raise EmulationInputError(
            f"aarch64 ONNX Runtime rejected model {names[i]!r} for input_shape={shapes[i]} ({lines[-1]['error']}); "
            "check the model and shape with onnxruntime on this machine first"
        )
    if code == -9:
        raise EmulationError(f"emulated counting exceeded {timeout_s:g} s (or was killed); count fewer models per call")
    if code != 0 or not lines or "guest" not in lines[-1]:
        tail = (stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise EmulationError(f"emulated guest failed (exit {code}: {tail[:300]}); run: {SETUP_COMMAND}")


def split_models(text: str) -> dict[int, list[list[int]]]:
    """Plugin output of a batch -> model index -> its [total, class counts...] per bracket."""
    regions: dict[int, list[list[int]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("model "):
            current = int(line.split()[1])
            if current in regions:
                raise EmulationError(f"instruction counter labelled model {current} twice; run: {SETUP_COMMAND}")
            regions[current] = []
        elif line.startswith(("run ", "error")):
            if current is None:
                raise EmulationError(f"instruction counter: a bracket before any model label; run: {SETUP_COMMAND}")
            regions[current].extend(parse_counts(line))
    return regions
