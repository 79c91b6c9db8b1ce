"""What a spec needs in memory at the least, and whether this machine has it. Pure Python, no torch.

The floor lets `build_model` and the trainer refuse a valid spec that cannot fit before
allocating anything: past a point the kernel would kill the process or the machine would
swap for hours.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> weight_count_floor(ShuffleNetSpec(groups=3, scale=1.0))
1820160
"""

from __future__ import annotations

from .arch import plan
from .errors import MachineError
from .spec import ShuffleNetSpec

__all__ = [
    "TooLargeForThisMachine",
    "available_bytes",
    "check_fits_in_memory",
    "memory_floor_bytes",
    "weight_count_floor",
]


class TooLargeForThisMachine(MachineError):
    """A valid spec whose weights and activations cannot fit in this machine's memory."""


def weight_count_floor(spec: ShuffleNetSpec) -> int:
    """The weights of the 1x1 convolutions and the classifier: nearly all of a network's, never more."""
    p = plan(spec)
    weights = p.head.in_channels * p.head.num_classes
    for stage in p.stages:
        for u, copies in ((stage.first, 1), (stage.repeat, stage.repeats - 1)):
            weights += copies * (u.c_in * u.mid // u.first_groups + u.mid * u.branch_out // u.groups)
    return weights


def memory_floor_bytes(spec: ShuffleNetSpec, batch: int = 1, weight_copies: int = 1) -> int:
    """A lower bound on the memory of a forward pass of `batch` images: float32 weights of the 1x1
    convolutions and the classifier (nearly all of them; training holds `weight_copies` of them:
    the weights, their gradients, the optimiser's momentum) plus the largest activation."""
    p = plan(spec)
    largest = p.stem.out_channels * p.stem.conv_size**2
    for stage in p.stages:
        u = stage.first
        # A stage's first bottleneck runs before its stride; the stage's output is its widest tensor after it.
        largest = max(largest, u.mid * u.in_size**2, u.c_out * u.out_size**2)
    return 4 * (weight_copies * weight_count_floor(spec) + batch * largest)


def check_fits_in_memory(
    spec: ShuffleNetSpec, batch: int = 1, weight_copies: int = 1, data_bytes: int = 0, purpose: str | None = None
) -> None:
    """Raise `TooLargeForThisMachine` if the floor (plus `data_bytes` the caller will hold: a run's
    images) exceeds the memory available; silent where unknown. `purpose` says what for, in words
    ("to export it to ONNX"); by default, running one image or training on batches of `batch`."""
    available = _available_bytes()
    need = memory_floor_bytes(spec, batch, weight_copies) + data_bytes
    if available is not None and need > available:
        what = purpose or ("to run one image" if batch == weight_copies == 1 else f"to train on batches of {batch}")
        images = data_bytes >= need / 10  # worth naming: the images are a good part of it
        if images:
            what += f" ({_size(data_bytes)} of it images)"
        hints = ", or the batch size" if batch > 1 else ""
        hints += ", the training subset or the evaluation images" if images else ""
        raise TooLargeForThisMachine(
            f"{spec.label} needs at least {_size(need)} {what}; this machine has "
            f"{_size(available)} available: lower the widths, scale or resolution{hints}"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _available_bytes() -> int | None:
    """MemAvailable (Linux), capped by an address-space limit; None where neither is known."""
    import resource

    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else None


def available_bytes() -> int | None:
    """The memory this machine can give now (see `_available_bytes`, which tests stand in for)."""
    return _available_bytes()
