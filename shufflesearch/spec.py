"""One ShuffleNet v1 variant, described in pure Python (no torch).

A spec is frozen and validated on construction; it round-trips through JSON so it can
live in an Optuna trial, a cache key or a report row.

>>> spec = ShuffleNetSpec(groups=8, scale=0.5)
>>> spec.stem_channels, spec.stage_channels
(16, (192, 384, 768))
>>> ShuffleNetSpec.from_json(spec.to_json()) == spec
True

Width rule (the paper gives none; this one reproduces all eight official layouts):
- stage width = 1x width * scale, rounded to the nearest multiple of 4*groups (ties up,
  at least 4*groups), so that the bottleneck (width/4) splits into `groups` groups;
- stem width = 24 * s rounded to the nearest multiple of `groups` (ties up, at least
  `groups`), with s = scale up to 1x and floor(scale) above it: the official 1.5x models
  keep the 24-channel stem and the 2x models double it.
Nearest (not ceil) keeps a scaled model's cost closest to scale^2 times the 1x cost.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from .errors import UsageError
from .paper import TABLE1_STAGE2_WIDTH, TABLE1_STEM_WIDTH

GROUP_CHOICES = tuple(sorted(TABLE1_STAGE2_WIDTH))  # the group counts the paper defines: 1, 2, 3, 4, 8
SCALE_RANGE = (0.1, 4.0)
REPEATS_RANGE = (1, 16)
RESOLUTION_RANGE = (28, 2048)
BOTTLENECK_CHOICES = (0.25, 0.5, 0.75, 1.0)
# Explicit widths: 10x the widest the width rule gives (6144 at 4x, g8); also keeps every count a float can hold.
MAX_CHANNELS = 65_536
StemKind = Literal["imagenet", "small"]
STEM_KINDS = ("imagenet", "small")


class SpecError(UsageError):
    """An invalid spec: the message names the value, the rule and the nearest valid choice."""


def _round_to_multiple(value: float, multiple: int) -> int:
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)


def derive_stage_channels(groups: int, scale: float) -> tuple[int, int, int]:
    """Stage2/3/4 widths for `groups` at `scale` by the module's width rule."""
    base = TABLE1_STAGE2_WIDTH[groups]  # Stage2 at 1x; Stage3 and Stage4 double it
    return tuple(_round_to_multiple(base * k * scale, 4 * groups) for k in (1, 2, 4))  # type: ignore[return-value]


def derive_stem_channels(groups: int, scale: float) -> int:
    """Stem width for `groups` at `scale` by the module's width rule."""
    s = scale if scale <= 1 else math.floor(scale)
    return _round_to_multiple(TABLE1_STEM_WIDTH * s, groups)


def _nearest(value: float, choices: tuple) -> Any:
    return min(choices, key=lambda c: (abs(c - value), c))


def _clamp(value: float, bounds: tuple) -> Any:
    return min(max(value, bounds[0]), bounds[1])


@dataclass(frozen=True)
class ShuffleNetSpec:
    """A ShuffleNet v1 variant. Widths left as None are derived by the width rule."""

    groups: int = 3
    scale: float = 1.0
    repeats: tuple[int, int, int] = (4, 8, 4)
    stem_channels: int | None = None
    stage_channels: tuple[int, int, int] | None = None
    bottleneck_ratio: float = 0.25
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    shuffle: bool = True
    stem: StemKind = "imagenet"

    def __post_init__(self) -> None:
        # Normalise types first so that JSON lists and ints compare equal to tuples/floats.
        set_ = object.__setattr__
        for name, convert in (("repeats", tuple), ("scale", float), ("bottleneck_ratio", float)):
            set_(self, name, _convert(name, getattr(self, name), convert))
        if self.stage_channels is not None:
            set_(self, "stage_channels", _convert("stage_channels", self.stage_channels, tuple))
        self._check_choices()
        if self.stem_channels is None:
            set_(self, "stem_channels", derive_stem_channels(self.groups, self.scale))
        if self.stage_channels is None:
            set_(self, "stage_channels", derive_stage_channels(self.groups, self.scale))
        self._check_widths()

    # -- validation -------------------------------------------------------------------
    def _check_choices(self) -> None:
        g = self.groups
        if not isinstance(g, int) or isinstance(g, bool) or g not in GROUP_CHOICES:
            near = _nearest(g, GROUP_CHOICES) if isinstance(g, (int, float)) else 3
            raise SpecError(
                f"groups={g!r} is not supported: ShuffleNet v1 defines groups "
                f"{', '.join(map(str, GROUP_CHOICES))}; nearest valid: {near}"
            )
        lo, hi = SCALE_RANGE
        if not (math.isfinite(self.scale) and lo <= self.scale <= hi):
            near = _clamp(self.scale, SCALE_RANGE) if math.isfinite(self.scale) else 1.0
            raise SpecError(f"scale={self.scale:g} must lie in [{lo:g}, {hi:g}]; nearest valid: {near:g}")
        if len(self.repeats) != 3:
            raise SpecError(
                f"repeats={','.join(map(str, self.repeats))} must give 3 unit counts "
                "(Stage2, Stage3, Stage4); e.g. 4,8,4"
            )
        for i, n in enumerate(self.repeats):
            if not isinstance(n, int) or isinstance(n, bool) or not REPEATS_RANGE[0] <= n <= REPEATS_RANGE[1]:
                near = _clamp(n, REPEATS_RANGE) if isinstance(n, (int, float)) else 4
                raise SpecError(
                    f"repeats[{i}]={n!r} must be an integer in [{REPEATS_RANGE[0]}, {REPEATS_RANGE[1]}] "
                    f"(every stage starts with a stride-2 unit); nearest valid: {int(near)}"
                )
        self._check_int("resolution", RESOLUTION_RANGE, "px: the network downsamples up to 32x")
        self._check_int("num_classes", (2, 100_000), "")
        self._check_int("in_channels", (1, 64), "")
        if self.bottleneck_ratio not in BOTTLENECK_CHOICES:
            near = _nearest(self.bottleneck_ratio, BOTTLENECK_CHOICES) if math.isfinite(self.bottleneck_ratio) else 0.25
            raise SpecError(
                f"bottleneck_ratio={self.bottleneck_ratio:g} must be one of "
                f"{', '.join(f'{c:g}' for c in BOTTLENECK_CHOICES)}; nearest valid: {near:g}"
            )
        if self.stem not in STEM_KINDS:
            raise SpecError(f"stem={self.stem!r} must be one of {', '.join(STEM_KINDS)}; e.g. imagenet")
        if not isinstance(self.shuffle, bool):
            raise SpecError(f"shuffle={self.shuffle!r} must be true or false")

    def _check_int(self, name: str, bounds: tuple[int, int], why: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
            finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))  # no float(10**400)
            near = int(_clamp(value, bounds)) if finite else bounds[0]
            why = f" {why}" if why else ""
            raise SpecError(
                f"{name}={value!r} must be an integer in [{bounds[0]}, {bounds[1]}]{why}; nearest valid: {near}"
            )

    def _check_widths(self) -> None:
        g, stem, widths = self.groups, self.stem_channels, self.stage_channels
        if not isinstance(stem, int) or isinstance(stem, bool) or not 1 <= stem <= MAX_CHANNELS:
            raise SpecError(
                f"stem_channels={stem!r} must be an integer in [1, {MAX_CHANNELS}]; "
                f"e.g. {derive_stem_channels(g, self.scale)}"
            )
        if len(widths) != 3 or not all(isinstance(c, int) and not isinstance(c, bool) for c in widths):
            raise SpecError(f"stage_channels={widths!r} must give 3 integer widths (Stage2, Stage3, Stage4)")
        if not all(1 <= c <= MAX_CHANNELS for c in widths):
            raise SpecError(f"stage_channels={widths!r}: each width must be in [1, {MAX_CHANNELS}]")
        for i, (c_in, c_out) in enumerate(zip((stem, *widths[:2]), widths)):
            name = f"stage_channels[{i}]={c_out}"
            if c_out <= c_in:
                raise SpecError(f"{name} must exceed its input width {c_in}: the stride-2 unit concatenates its input")
            mid = c_out * self.bottleneck_ratio
            if mid != int(mid) or int(mid) % g:
                unit = 4 * g if self.bottleneck_ratio == 0.25 else g
                raise SpecError(
                    f"{name}: bottleneck {c_out}*{self.bottleneck_ratio:g} must be a whole multiple of "
                    f"groups={g}; nearest valid: {_round_to_multiple(c_out, unit)}"
                )
            if (c_out - c_in) % g:
                # The input width is the culprit: the output already passed the bottleneck rule.
                in_name = "stem_channels" if i == 0 else f"stage_channels[{i - 1}]"
                raise SpecError(
                    f"{in_name}={c_in}: the concat branch {c_out}-{c_in}={c_out - c_in} of the next stage must be "
                    f"a multiple of groups={g}; nearest valid: {_round_to_multiple(c_in, g)}"
                )
            if i > 0 and c_in % g:
                raise SpecError(f"stage_channels[{i - 1}]={c_in} must be a multiple of groups={g} (grouped 1x1 input)")

    # -- derived ----------------------------------------------------------------------
    @property
    def bottleneck_channels(self) -> tuple[int, int, int]:
        (a, b, c), ratio = self.stage_channels, self.bottleneck_ratio  # unrolled: the counters read it per spec
        return int(a * ratio), int(b * ratio), int(c * ratio)

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. 'g3 x1.0 [4,8,4] 224px'."""
        extra = "" if self.shuffle else " no-shuffle"
        extra += "" if self.stem == "imagenet" else f" {self.stem}-stem"
        extra += "" if self.bottleneck_ratio == 0.25 else f" b{self.bottleneck_ratio:g}"
        repeats = ",".join(map(str, self.repeats))
        return f"g{self.groups} x{self.scale:g} [{repeats}] {self.resolution}px{extra}"

    def replace(self, **changes: Any) -> ShuffleNetSpec:
        """A copy with `changes`; widths are re-derived unless given."""
        if {"groups", "scale"} & changes.keys():
            changes.setdefault("stem_channels", None)
            changes.setdefault("stage_channels", None)
        return dataclasses.replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShuffleNetSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShuffleNetSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        except RecursionError:  # the decoder recurses per nested array or object: [[[[...
            raise SpecError("spec is not valid JSON: arrays or objects nested too deeply") from None
        return cls.from_dict(data)


def _convert(name: str, value: Any, convert: type) -> Any:
    if isinstance(value, (str, bool)) or value is None:
        raise SpecError(f"{name}={value!r} has the wrong type: expected {'a list' if convert is tuple else 'a number'}")
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):  # float(10**400) overflows
        raise SpecError(
            f"{name}={value!r} has the wrong type: expected {'a list' if convert is tuple else 'a number'}"
        ) from None


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
