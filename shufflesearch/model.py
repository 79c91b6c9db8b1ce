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

from .arch import plan
from .memory import check_fits_in_memory
from .spec import ShuffleNetSpec

__all__ = ["ShuffleNetV1", "ShuffleUnit", "build_model", "channel_shuffle"]


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


class ShuffleNetV1(nn.Module):
    def __init__(self, spec: ShuffleNetSpec) -> None:
        super().__init__()
        self.spec = spec
        p = plan(spec)
        stem, head = p.stem, p.head
        self.first_conv = nn.Sequential(
            *_conv_bn(stem.in_channels, stem.out_channels, 3, stem.stride, 1), nn.ReLU(inplace=True)
        )
        # The small-input stem (28-64 px images) keeps resolution: stride-1 conv, no max pool.
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem.pool else nn.Identity()
        self.features = nn.Sequential(
            *(ShuffleUnit(u.c_in, u.c_out, u.mid, u.stride, u.group_first, u.groups, u.shuffle) for u in p.units())
        )
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head.in_channels, head.num_classes, bias=False)
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


def build_model(spec: ShuffleNetSpec) -> ShuffleNetV1:
    """A freshly initialised network for `spec`, refused up front if it cannot fit in memory.

    The spec's limits are generous (widths up to 65,536): past a point the kernel would kill
    the process or the machine would swap for hours, so refuse while an error can still be printed.
    """
    check_fits_in_memory(spec)
    return ShuffleNetV1(spec)
