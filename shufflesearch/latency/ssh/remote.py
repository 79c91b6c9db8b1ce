"""Measure on a device over ssh: one model checked against PyTorch, many models in one call, or a reachability probe."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...spec import ShuffleNetSpec
from ..measure import LatencyResult, check_outputs, check_settings, result_from_timing, torch_output_sample
from .options import check_ssh_options
from .session import RUNNER_FILES, SshClientMissingError, SshSession, bundle
from .target import SshTarget, SshTargetError

DEFAULT_TIMEOUT_S = 300.0
_PYTHON = re.compile(r"/?[A-Za-z0-9_+.][A-Za-z0-9_+.-]*(?:/[A-Za-z0-9_+.-]+)*")  # no leading "-"


def measure_remote(
    spec_or_onnx: ShuffleNetSpec | str | Path,
    target: SshTarget | str,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = 0,
) -> LatencyResult:
    """ONNX Runtime latency on `target`, with the device's own machine description.

    A spec is exported with seeded weights and the device's output is checked against
    PyTorch's before the result is returned; an .onnx path is timed as it is.
    """
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    check_settings("onnxruntime", threads, runs, warmup)
    session = _open_session(target, python, ssh_options, seed, timeout_s)
    model_bytes, expected, label, resolution = _model_payload(spec_or_onnx, seed)
    args = ["model.onnx", *_runner_args(session, threads, runs, warmup, seed)]
    payload = session.measure(python, args, bundle({"model.onnx": model_bytes}))

    diff = check_outputs(expected, payload["output_sample"], target.url) if expected is not None else None
    return result_from_timing(
        payload["times_ms"],
        runs=runs,
        warmup=warmup,
        target=target.url,
        backend="onnxruntime",
        threads=threads,
        resolution=resolution or int(payload["input_shape"][-1]),
        machine=payload["machine"],
        model=label,
        max_abs_diff=diff,
    )


def time_models_remote(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    target: SshTarget | str,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 10,
    clock: str = "wall",
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = 0,
) -> dict[str, Any]:
    """Time many ONNX models on `target` in ONE ssh call (the runner's manifest mode).

    `files` maps plain file names to bytes (models, no weights needed: see device_runner);
    returns the runner's payload: {"results": {name: {"times_ms": [...], ...}}, "machine": {...}, ...}.
    """
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    check_settings("onnxruntime", threads, runs, warmup)
    if clock not in ("wall", "cpu") or (clock == "cpu" and threads != 1):
        raise SshTargetError(f"clock={clock!r} must be 'wall', or 'cpu' with threads=1 (it times one thread)")
    reserved = (*RUNNER_FILES, "manifest.json")
    for name in files:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or name in reserved:
            raise SshTargetError(f"file name {name!r} must be a plain name other than {'/'.join(reserved)}")
    session = _open_session(target, python, ssh_options, seed, timeout_s)
    tar = bundle({**files, "manifest.json": json.dumps(manifest).encode()})
    args = ["--manifest", "manifest.json", "--clock", clock, *_runner_args(session, threads, runs, warmup, seed)]
    return session.measure(python, args, tar)


def check_remote(
    target: SshTarget | str, python: str = "python3", ssh_options: Sequence[str] | str = (), timeout_s: float = 60.0
) -> None:
    """Reach `target` and import onnxruntime there, in one short ssh call: fail before minutes of local work."""
    target = target if isinstance(target, SshTarget) else SshTarget.parse(target)
    _open_session(target, python, ssh_options, 0, min(timeout_s, 60.0)).probe(python)


def _open_session(target: SshTarget, python: str, ssh_options: Sequence[str] | str, seed: int, timeout_s: float):
    if not isinstance(python, str) or not _PYTHON.fullmatch(python):
        raise SshTargetError(f"python={python!r} must be a command name or path without spaces; e.g. /usr/bin/python3")
    options = check_ssh_options(ssh_options, target)
    if type(seed) is not int:
        raise SshTargetError(f"seed={seed!r} must be an integer; e.g. 0")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
        raise SshTargetError(f"timeout_s={timeout_s!r} must be a positive number of seconds; e.g. 300")
    if shutil.which("ssh") is None:
        raise SshClientMissingError(
            "no `ssh` client on this machine; install it (Debian: apt-get install openssh-client)"
        )
    return SshSession(target, options, timeout_s)


def _runner_args(session: SshSession, threads: int, runs: int, warmup: int, seed: int) -> list[str]:
    args = ["--threads", threads, "--runs", runs, "--warmup", warmup, "--seed", seed, "--max-seconds", session.budget()]
    return [str(a) for a in args]


def _model_payload(spec_or_onnx: Any, seed: int) -> tuple[bytes, list[float] | None, str, int | None]:
    """(ONNX bytes, PyTorch's output sample or None, label, resolution or None)."""
    if isinstance(spec_or_onnx, ShuffleNetSpec):
        from ...export import onnx_bytes

        data, model = onnx_bytes(spec_or_onnx, seed)
        res = spec_or_onnx.resolution
        expected = torch_output_sample(model, (1, spec_or_onnx.in_channels, res, res), seed)
        return data, expected, spec_or_onnx.label, res
    path = Path(spec_or_onnx)
    if not path.is_file():
        raise SshTargetError(f"ONNX model {str(path)!r} does not exist; pass a spec or an exported .onnx file")
    return path.read_bytes(), None, path.name, None
