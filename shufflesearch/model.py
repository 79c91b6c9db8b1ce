"""The ShuffleNet v1 network as a PyTorch module, built from a `ShuffleNetSpec`.

Faithful to the paper (Fig. 2, Table 1) and the official code: no ReLU after the
depthwise conv, stride-2 units concatenate a 3x3 average-pooled shortcut, the first 1x1
conv of Stage2 is not grouped, convs and the classifier have no bias.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> net = build_model(ShuffleNetSpec(groups=3, scale=0.5, resolution=64))
>>> net(torch.zeros(1, 3, 64, 64)).shape
torch.Size([1, 1000])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MachineError
from .spec import ShuffleNetSpec


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across groups, in the official code's order.

    The official code views C as (C/g, g) and swaps the two axes, which is the inverse of
    the paper's (g, C/g) transpose; both mix every group into every group. Keeping the
    official order lets official weights load unchanged.
    """
    n, c, h, w = x.shape
    return x.reshape(n, c // groups, groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (paper Fig. 2 b/c); stride 2 concatenates, stride 1 adds."""

    def __init__(
        self, c_in: int, c_out: int, mid: int, stride: int, group_first_conv: bool, groups: int, shuffle: bool
    ) -> None:
        super().__init__()
        self.stride, self.groups, self.shuffle = stride, groups, shuffle and groups > 1
        branch_out = c_out - c_in if stride == 2 else c_out
        first_groups = groups if group_first_conv else 1
        # Layer names follow the official code (branch_main_1/2, branch_proj).
        self.branch_main_1 = nn.Sequential(
            *_conv_bn(c_in, mid, 1, 1, first_groups), nn.ReLU(inplace=True), *_conv_bn(mid, mid, 3, stride, mid)
        )
        self.branch_main_2 = nn.Sequential(*_conv_bn(mid, branch_out, 1, 1, groups))
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.shuffle:
            out = channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return F.relu(out + x)
        return torch.cat((self.branch_proj(x), F.relu(out)), 1)


def _units(spec: ShuffleNetSpec):
    """(c_in, c_out, mid, stride, group_first_conv) of every unit, Stage2 to Stage4."""
    c_in = spec.stem_channels
    for stage, (repeats, c_out, mid) in enumerate(zip(spec.repeats, spec.stage_channels, spec.bottleneck_channels)):
        for i in range(repeats):
            # The paper leaves Stage2's first 1x1 conv ungrouped: its input (the stem) is narrow.
            yield c_in, c_out, mid, 2 if i == 0 else 1, not (stage == 0 and i == 0)
            c_in = c_out


class ShuffleNetV1(nn.Module):
    def __init__(self, spec: ShuffleNetSpec) -> None:
        super().__init__()
        self.spec = spec
        stem_stride = 2 if spec.stem == "imagenet" else 1
        self.first_conv = nn.Sequential(
            *_conv_bn(spec.in_channels, spec.stem_channels, 3, stem_stride, 1), nn.ReLU(inplace=True)
        )
        # The small-input stem (28-64 px images) keeps resolution: stride-1 conv, no max pool.
        self.maxpool = nn.MaxPool2d(3, 2, 1) if spec.stem == "imagenet" else nn.Identity()
        self.features = nn.Sequential(*(ShuffleUnit(*unit, spec.groups, shuffle=spec.shuffle) for unit in _units(spec)))
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(spec.stage_channels[-1], spec.num_classes, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
        # Zero the last BN of each residual branch so each stride-1 unit starts as identity:
        # standard for fast, stable short training (Goyal et al. 2017).
        for unit in self.features:
            if unit.stride == 1:
                nn.init.zeros_(unit.branch_main_2[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.first_conv(x))
        x = self.globalpool(self.features(x)).flatten(1)
        return self.classifier(x)


class TooLargeForThisMachine(MachineError):
    """A valid spec whose weights and activations cannot fit in this machine's memory."""


def build_model(spec: ShuffleNetSpec) -> ShuffleNetV1:
    """A freshly initialised network for `spec`, refused up front if it cannot fit in memory.

    The spec's limits are generous (widths up to 65,536): past a point the kernel would kill
    the process or the machine would swap for hours, so refuse while an error can still be printed.
    """
    check_fits_in_memory(spec)
    return ShuffleNetV1(spec)


def weight_count_floor(spec: ShuffleNetSpec) -> int:
    """The weights of the 1x1 convolutions and the classifier: nearly all of a network's, never more."""
    g = spec.groups
    weights = spec.stage_channels[-1] * spec.num_classes
    for c_in, c_out, mid, stride, group_first in _units(spec):
        weights += c_in * mid // (g if group_first else 1) + mid * (c_out - c_in if stride == 2 else c_out) // g
    return weights


def memory_floor_bytes(spec: ShuffleNetSpec, batch: int = 1, weight_copies: int = 1) -> int:
    """A lower bound on the memory of a forward pass of `batch` images: float32 weights of the 1x1
    convolutions and the classifier (nearly all of them; training holds `weight_copies` of them:
    the weights, their gradients, the optimiser's momentum) plus the largest activation."""
    weights = weight_count_floor(spec)
    side = spec.resolution // (2 if spec.stem == "imagenet" else 1)
    largest = spec.stem_channels * side * side
    side //= 2 if spec.stem == "imagenet" else 1  # the max pool
    for width, mid in zip(spec.stage_channels, spec.bottleneck_channels):
        largest = max(largest, mid * side * side)  # a stage's first bottleneck runs before its stride
        side = max(1, (side + 1) // 2)
        largest = max(largest, width * side * side)
    return 4 * (weight_copies * weights + batch * largest)


def check_fits_in_memory(spec: ShuffleNetSpec, batch: int = 1, weight_copies: int = 1) -> None:
    available = _available_bytes()
    need = memory_floor_bytes(spec, batch, weight_copies)
    if available is not None and need > available:
        what = "to run one image" if batch == weight_copies == 1 else f"to train on batches of {batch}"
        raise TooLargeForThisMachine(
            f"{spec.label} needs at least {need / 2**30:.1f} GiB {what}; this machine has "
            f"{available / 2**30:.1f} GiB available: lower the widths, scale or resolution"
            + ("" if batch == 1 else ", or the batch size")
        )


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
