"""The plan of a spec's network: its stem, every unit's convolutions and sizes, its head.

The one walk of the architecture (paper Table 1, Fig. 2): the model builds its modules
from it, the closed-form counters cost it, the memory floor bounds it and the latency
tables cut it into blocks. Pure Python, no torch.

>>> from shufflesearch.spec import ShuffleNetSpec
>>> p = plan(ShuffleNetSpec(groups=3, scale=1.0))
>>> p.stem.out_size, [(s.first.c_out, s.first.out_size, s.repeats) for s in p.stages]
(56, [(240, 28, 4), (480, 14, 8), (960, 7, 4)])
>>> first = p.stages[0].first  # Stage2's first 1x1 conv is ungrouped: its input, the stem, is narrow
>>> first.c_in, first.mid, first.stride, first.first_groups, first.groups
(24, 60, 2, 1, 3)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .spec import ShuffleNetSpec

__all__ = ["Head", "Plan", "Stage", "Stem", "Unit", "halve", "plan"]


def halve(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 conv or pool."""
    return (size - 1) // 2 + 1


class Stem(NamedTuple):
    """3x3 conv (+ BN, ReLU), then a 3x3 stride-2 max pool on the ImageNet stem."""

    in_channels: int
    out_channels: int
    stride: int  # of the conv: 2 on the ImageNet stem; 1 on the small-input stem (28-64 px)
    pool: bool  # the max pool: ImageNet stem only
    in_size: int
    conv_size: int  # the conv's output size
    out_size: int  # after the pool


class Unit(NamedTuple):
    """One ShuffleNet unit (Fig. 2 b/c): 1x1 group conv, shuffle, 3x3 depthwise conv, 1x1 group conv."""

    c_in: int
    c_out: int
    mid: int  # bottleneck width
    stride: int  # 2: concatenates an average-pooled shortcut; 1: adds the input
    group_first: bool  # the first 1x1 conv is grouped (all but Stage2's first unit)
    first_groups: int  # groups of the first 1x1 conv: `groups` if group_first, else 1
    groups: int  # of the last 1x1 conv (and the shuffle)
    branch_out: int  # the branch's width: c_out, less the shortcut's c_in where a stride-2 unit concatenates
    shuffle: bool  # channel shuffle runs (shuffle on and groups > 1)
    in_size: int
    out_size: int


class Stage(NamedTuple):
    """A stride-2 unit, then `repeats - 1` identical stride-1 units (`repeat`)."""

    name: str  # "stage2", "stage3", "stage4"
    first: Unit
    repeat: Unit
    repeats: int
    index: int  # position of `first` in the model's `features`


class Head(NamedTuple):
    """Global average pool and a bias-free fully connected classifier."""

    in_channels: int
    num_classes: int
    in_size: int


class Plan(NamedTuple):
    """A whole network: stem, Stage2 to Stage4, head."""

    stem: Stem
    stages: tuple[Stage, ...]
    head: Head

    def units(self) -> Iterator[Unit]:
        """Every unit in order, Stage2 to Stage4 (as `model.features` holds them)."""
        for stage in self.stages:
            yield stage.first
            for _ in range(stage.repeats - 1):
                yield stage.repeat


_STAGE_NAMES = ("stage2", "stage3", "stage4")
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__: plan() runs in hot loops


def plan(spec: ShuffleNetSpec) -> Plan:
    """The plan of `spec`'s network. Cheap (a few microseconds): a search costs thousands of specs a second."""
    size, c_in = spec.resolution, spec.stem_channels
    if spec.stem == "imagenet":
        conv_size = halve(size)
        stem = _new(Stem, (spec.in_channels, c_in, 2, True, size, conv_size, halve(conv_size)))
    else:
        stem = _new(Stem, (spec.in_channels, c_in, 1, False, size, size, size))
    g, shuffle = spec.groups, spec.shuffle and spec.groups > 1
    size, index, stages = stem.out_size, 0, []
    widths = zip(_STAGE_NAMES, spec.repeats, spec.stage_channels, spec.bottleneck_channels)
    for s, (name, repeats, c_out, mid) in enumerate(widths):
        out, grouped = halve(size), s > 0  # the paper leaves Stage2's first 1x1 conv ungrouped
        first = _new(Unit, (c_in, c_out, mid, 2, grouped, g if grouped else 1, g, c_out - c_in, shuffle, size, out))
        repeat = _new(Unit, (c_out, c_out, mid, 1, True, g, g, c_out, shuffle, out, out))
        stages.append(_new(Stage, (name, first, repeat, repeats, index)))
        size, c_in, index = out, c_out, index + repeats
    return _new(Plan, (stem, tuple(stages), _new(Head, (c_in, spec.num_classes, size))))
