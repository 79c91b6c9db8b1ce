"""Which device trains: names checked once, before any work, against what torch sees.

A name is "auto" (the first GPU, else Apple's MPS, else the CPU), "cpu", "cuda" (the first
CUDA GPU), "cuda:N" or "mps". A GPU that is not there is a `DeviceUnavailable` (a machine
error, exit 1) naming what torch does see; a name that is no device at all is a `UsageError`.

>>> resolve_device("cpu")
'cpu'
>>> worker_devices("cpu", 2)
['cpu', 'cpu']
>>> resolve_device("gpu")
Traceback (most recent call last):
...
shufflesearch.errors.UsageError: device 'gpu' is not one of auto, cpu, cuda, cuda:N, mps; e.g. --device auto
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import torch

from ..errors import MachineError, UsageError
from .recipe import FidelityError

__all__ = [
    "DEVICE_NAMES",
    "MAX_WORKERS",
    "DeviceUnavailable",
    "check_precision",
    "cuda_kernels",
    "device_info",
    "device_kind",
    "resolve_device",
    "worker_devices",
]

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_NAME = re.compile(r"(auto|cpu|mps|cuda)(?::(\d+))?")


class DeviceUnavailable(MachineError):
    """The device asked for is not on this machine (or this build of torch cannot use it)."""


def resolve_device(name: str = "auto") -> str:
    """The concrete device for `name`: "cpu", "cuda:N" or "mps"; raises before any work if it is not there.

    >>> resolve_device("auto") in ("cpu", "mps") or resolve_device("auto").startswith("cuda:")
    True
    """
    kind, index = _parse(name)
    if kind == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if _mps_available() else "cpu"
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        if not _mps_available():
            raise DeviceUnavailable(f"device 'mps' is not available (it needs Apple silicon): {_what_torch_sees()}")
        return "mps"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = 0 if index is None else index
    if count == 0:
        raise DeviceUnavailable(f"device {name!r} is not available: {_what_torch_sees()}")
    if index >= count:
        raise DeviceUnavailable(f"device {name!r} is not available: {_what_torch_sees()}; e.g. --device cuda:0")
    return f"cuda:{index}"


MAX_WORKERS = 256  # worker processes one machine may start; more machines run the same command


def worker_devices(device: str, workers: int) -> list[str]:
    """One device per worker: with "auto"/"cuda" and k GPUs, cuda:0..k-1 round-robin; else the one device.

    >>> worker_devices("cpu", 3)
    ['cpu', 'cpu', 'cpu']
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UsageError(f"workers={workers!r} must be a positive integer, e.g. workers=2")
    if workers > MAX_WORKERS:  # each worker is a process with its own copy of torch: 2**31 would be a list of 17 GB
        raise UsageError(
            f"workers={workers} is more than {MAX_WORKERS} worker processes on one machine; e.g. workers=2"
        )
    kind, index = _parse(device)
    first = resolve_device(device)
    if kind in ("auto", "cuda") and index is None and first.startswith("cuda"):
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return [gpus[i % len(gpus)] for i in range(workers)]
    return [first] * workers


def device_kind(device: str) -> str:
    """ "cpu", "cuda" or "mps": what decides whether two runs compute the same numbers.

    >>> device_kind("cuda:1")
    'cuda'
    """
    return device.split(":", 1)[0]


def device_info(device: str) -> dict[str, Any]:
    """What a result records about its device: the name, and for a GPU its model and torch's CUDA version."""
    info: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def check_precision(precision: str, device: str | torch.device) -> None:
    """Refuse, before any work, a mixed precision this device has no native support for.

    >>> check_precision("fp16", "cpu")  # autocast to fp16 runs (slowly) anywhere; bf16 needs native support
    """
    device = torch.device(device)
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "bf16" and device.type == "cpu" and not native:
        raise FidelityError(
            "precision='bf16' needs a CPU with native bf16 (e.g. AVX512-BF16 or AMX); use precision='fp32'"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FidelityError(f"precision='bf16' needs a GPU with bf16 (Ampere or newer), not "
                            f"{torch.cuda.get_device_name(device)}; use precision='fp16'")  # fmt: skip


def _parse(name: str) -> tuple[str, int | None]:
    match = _NAME.fullmatch(name.strip().lower()) if isinstance(name, str) else None
    if match is None or (match[2] is not None and match[1] != "cuda"):
        raise UsageError(f"device {name!r} is not one of {', '.join(DEVICE_NAMES)}; e.g. --device auto")
    return match[1], None if match[2] is None else int(match[2])


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _what_torch_sees() -> str:
    """One clause: the devices this torch build can use, and why there is no GPU when there is none."""
    seen = ["cpu"]
    if torch.cuda.is_available():
        seen += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if _mps_available():
        seen.append("mps")
    why = ""
    if len(seen) == 1:
        build = torch.version.cuda
        why = (f" (torch {torch.__version__} is built with CUDA {build}, but no GPU or driver answers)" if build
               else f" (torch {torch.__version__} is a CPU-only build; install a CUDA build of torch for a GPU)")  # fmt: skip
    return f"torch sees {', '.join(seen)}{why}"


CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


@contextlib.contextmanager
def cuda_kernels(where: str, reproducible: bool):
    """cuDNN's fastest kernels for a CUDA run; deterministic ones when it must resume bit for bit.

    cuDNN's benchmark may pick another algorithm in the resumed process, and some of its kernels
    (and cuBLAS's without a fixed workspace) sum in a run-dependent order: a resumed run would
    drift from an uninterrupted one. Every setting is restored afterwards.
    """
    cudnn = torch.backends.cudnn
    old = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled(), os.environ.get(CUBLAS_WORKSPACE))  # fmt: skip
    cuda = where.startswith("cuda")
    cudnn.benchmark = cuda and not reproducible  # fixed shapes: let cuDNN pick its fastest kernels
    if cuda and reproducible:
        cudnn.deterministic = True
        # deterministic cuBLAS (CUDA >= 10.2); torch reads it at its first matmul, so a user may set it earlier
        os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = old[0], old[1]
        torch.use_deterministic_algorithms(old[2], warn_only=old[3])
        if old[4] is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = old[4]
