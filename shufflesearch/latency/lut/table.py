"""The table file: per-block latencies of one target, the fit, and predictions for any spec.

A table is `kind="measured"` (blocks timed on a device) or `kind="estimated"` (blocks' aarch64
instructions counted under emulation, turned into ms by a device `profile`; `basis` says how).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...atomic import write_atomically
from ...input_file import InputFileError, read_input_file
from ...spec import ShuffleNetSpec
from .blocks import LutError, block_plan, width_specs

FORMAT, FORMAT_VERSION, FAMILY = "shufflesearch-latency-lut", 1, "shufflenet_v1"
STATISTICS = ("median_ms", "min_ms")
KINDS = ("measured", "estimated")
# A table of the default space's ~1,300 blocks is ~250 kB; 64 times that bounds what json.loads may build.
MAX_BYTES = 16 * 2**20


@dataclass
class LatencyTable:
    """Per-block latencies (us) of one target and the fit that turns their sum into a network latency."""

    resolution: int
    num_classes: int
    in_channels: int
    stem: str
    target: str  # "local" or "ssh://user@host[:port]"
    threads: int
    clock: str  # "wall" or "cpu" (thread CPU time: a busy shared host's idle-core latency)
    statistic: str  # "median_ms" or "min_ms" of the timed runs
    blocks: dict[str, dict[str, Any]]  # key -> {"us": net of overhead, "median_us", "min_us", ...}
    fit: dict[str, Any]  # {"a", "b_us", "points": [...], "mape_pct"}
    overhead_us: float = 0.0
    runs: int = 20  # per round
    warmup: int = 3
    rounds: int = 3
    backend: str = "onnxruntime"
    machine: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    created: str = ""
    kind: str = "measured"  # or "estimated": never a measurement (see `basis`)
    profile: str = ""  # the device profile of an estimated table, e.g. "snapdragon820"
    basis: str = ""  # how the numbers were obtained, in words
    validation: dict[str, Any] = field(default_factory=dict)  # error against whole networks: mape_pct, kendall_tau
    source: str = field(default="", compare=False)  # the file it was loaded from, for messages
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Read from files too (load turns these into "damaged table"): an estimate must never pass as measured.
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not (isinstance(self.profile, str) and isinstance(self.basis, str) and isinstance(self.validation, dict)):
            raise ValueError("profile and basis must be strings, validation an object")
        if self.kind == "estimated" and not (self.profile and self.basis):
            raise ValueError("an estimated table must name its device profile and basis")
        if self.validation and not (_is_number(self.validation.get("mape_pct"))
                                    and isinstance(self.validation.get("kendall_tau"), (int, float))):  # fmt: skip
            raise ValueError("validation needs numbers 'mape_pct' and 'kendall_tau'")

    @property
    def estimated(self) -> bool:
        return self.kind == "estimated"

    @property
    def predictor(self) -> str:
        """What predicts, in words, for records and messages: e.g. "estimated on snapdragon820 (LUT ...)"."""
        where = f"from {self.source}" if self.source else "from a lookup table"
        if self.estimated:
            return f"estimated on {self.profile} {where} (arm64-emulated instruction counts)"
        return f"LUT-predicted {where} (blocks measured on {self.target}, {self.threads} thread(s))"

    @property
    def measured_error(self) -> dict[str, Any] | None:
        """The table's own measured error against whole networks (not fitted on): what a search records.

        {"mape_pct", "kendall_tau", "specs", "against"} from the stored validation, else from the
        build's held-out networks, else None (only the fit's leave-one-out error is known).
        """
        found = self.validation or self.fit.get("holdout")
        if not isinstance(found, dict) or "mape_pct" not in found:
            return None
        against = found.get("against", f"whole networks measured on {self.target} during the build")
        return {"mape_pct": found["mape_pct"], "kendall_tau": found.get("kendall_tau"),
                "specs": found.get("specs", len(found.get("rows", []))), "against": against}  # fmt: skip

    def predict_us(self, spec: ShuffleNetSpec) -> float:
        """Predicted latency of `spec` in microseconds (a few us per call: made for a search loop)."""
        key = (spec.groups, spec.stem_channels, spec.stage_channels, spec.bottleneck_ratio, spec.shuffle,
               spec.resolution, spec.num_classes, spec.in_channels, spec.stem)  # fmt: skip
        parts = self._cache.get(key)
        if parts is None:
            parts = self._cache[key] = self._parts(spec)
        total, stages = parts
        for i, ((first, repeat), n) in enumerate(zip(stages, spec.repeats)):
            if n == 1:
                total += first
            elif repeat is not None:
                total += first + (n - 1) * repeat
            else:
                self._missing(spec, block_plan(spec)[1][i][1])
        return self.fit["a"] * total + self.fit["b_us"]

    def predict_ms(self, spec: ShuffleNetSpec) -> float:
        return self.predict_us(spec) / 1e3

    def _parts(self, spec: ShuffleNetSpec) -> tuple[float, tuple[tuple[float, float | None], ...]]:
        """(stem + head us, ((stride-2 unit us, stride-1 unit us or None), ...)) for `spec`'s widths."""
        self.check_spec(spec)
        (stem, head), stages = block_plan(spec)
        for needed in (stem, *(first for first, _ in stages), head):
            if needed not in self.blocks:
                self._missing(spec, needed)
        us = {k: self.blocks[k]["us"] for k in (stem, head, *(k for pair in stages for k in pair)) if k in self.blocks}
        return us[stem] + us[head], tuple((us[first], us.get(repeat)) for first, repeat in stages)

    def check_spec(self, spec: ShuffleNetSpec) -> None:
        """Raise LutError (one line, with the command that fixes it) if this table cannot describe `spec`."""
        for name in ("resolution", "num_classes", "in_channels", "stem"):
            ours, theirs = getattr(self, name), getattr(spec, name)
            if ours != theirs:
                raise LutError(
                    f"{self.name} was built for {name}={ours}, spec {spec.label!r} has {name}={theirs}; build a table "
                    f"for it: {self.rebuild_command(**{name: theirs})}"
                )

    def check_covers(self, space: Any) -> None:
        """Raise LutError unless every spec of `space` (a SearchSpace or specs) can be predicted: call it
        before a search starts, not hours into it."""
        widths, _ = width_specs(space, self.in_channels, self.stem, 0)
        deepest = tuple(hi for _, hi in space.repeats) if hasattr(space, "repeats") else None
        for spec in widths:
            self.predict_us(spec.replace(repeats=deepest) if deepest else spec)

    def _missing(self, spec: ShuffleNetSpec, key: str) -> None:
        space = ", ".join(f"{k}={v}" for k, v in self.space.items()) or "its specs"
        raise LutError(
            f"{self.name} has no entry {key!r} needed by spec {spec.label!r} (built for {space}); build a table whose "
            f"space covers the spec: {self.rebuild_command()} --space STUDY.toml"
        )

    @property
    def name(self) -> str:
        return f"latency table {self.source}" if self.source else "this latency table"

    def rebuild_command(self, **changes: Any) -> str:
        """The `shufflesearch lut build` command for this table's target and settings, with `changes`."""
        names = ("resolution", "num_classes", "in_channels", "stem", "threads", "clock", "statistic")
        names = names[:4] if self.estimated else names  # instruction counts have no threads, clock or statistic
        context = {name: getattr(self, name) for name in names}
        defaults = {"resolution": 224, "num_classes": 1000, "in_channels": 3, "stem": "imagenet", "threads": 1,
                    "clock": "wall", "statistic": "median_ms"}  # fmt: skip
        options = "".join(
            f" --{'classes' if k == 'num_classes' else k.replace('_', '-')} {v}"
            for k, v in {**context, **changes}.items()
            if v != defaults[k] or k in changes
        )
        stem = self.source.removesuffix(".json").removesuffix(".lut") if self.source else "device"
        out = "-".join([stem, *(str(v) for v in changes.values())]) + ".lut.json"
        if self.estimated:
            return f"shufflesearch lut build --target {self.target} --profile {self.profile}{options} --out {out}"
        return f"shufflesearch lut build --target {self.target}{options} --out {out}"

    # -- file ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "source"}
        if self.estimated:  # nothing that varies between two builds of the same space
            del data["build_seconds"], data["created"]
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "family": FAMILY,
                "onnxruntime_version": self.machine.get("versions", {}).get("onnxruntime"), **data}  # fmt: skip

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically (an existing file survives any failure)."""
        return write_atomically(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table written by `save`; anything else raises LutError naming the file and the fix."""
        fix = f"build one: shufflesearch lut build --target local --out {path}"
        try:
            data = json.loads(read_input_file(path, MAX_BYTES, "latency table").decode("utf-8"))
        except FileNotFoundError:
            raise LutError(f"latency table {path} does not exist; {fix}") from None
        except InputFileError as exc:
            raise LutError(str(exc)) from None  # a device or a pipe: building a table there would not help
        except RecursionError:  # the JSON decoder recurses per nested array or object
            raise LutError(f"{path} is not a readable latency table (nested too deeply); {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LutError(f"{path} is not a readable latency table ({' '.join(str(exc).split())}); {fix}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LutError(f"{path} is not a shufflesearch latency table (no format {FORMAT!r}); {fix}")
        if data.get("format_version") != FORMAT_VERSION:
            raise LutError(f"{path} has format_version {data.get('format_version')!r}, this version reads "
                           f"{FORMAT_VERSION}; {fix}")  # fmt: skip
        if data.get("family") != FAMILY:
            raise LutError(f"{path} is a latency table for model family {data.get('family')!r}, not {FAMILY}; {fix}")
        names = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "source"}
        try:
            table = cls(**{k: v for k, v in data.items() if k in names}, source=str(path))
            table._check_types()
        except (TypeError, ValueError, KeyError) as exc:
            raise LutError(f"{path} is a damaged latency table ({' '.join(str(exc).split())}); {fix}") from None
        return table

    def _check_types(self) -> None:
        if not (isinstance(self.blocks, dict) and self.blocks):
            raise ValueError("no blocks")
        for key, entry in self.blocks.items():
            if not (isinstance(entry, dict) and _is_number(entry.get("us")) and entry["us"] >= 0):
                raise ValueError(f"block {key!r} has no latency 'us' >= 0")
        if not (isinstance(self.fit, dict) and _is_number(self.fit.get("a")) and _is_number(self.fit.get("b_us"))):
            raise ValueError("fit needs numbers 'a' and 'b_us'")
        # Finite parts can still predict inf (a sum or a product overflows) or NaN (0 x inf): a search
        # minimising that fails every trial. A network sums at most stem + head + 3 stages of 16 units.
        from ...spec import REPEATS_RANGE

        top = max(entry["us"] for entry in self.blocks.values())
        if not math.isfinite(abs(self.fit["a"]) * (top * (2 + 3 * REPEATS_RANGE[1])) + abs(self.fit["b_us"])):
            raise ValueError(f"its fit (a = {self.fit['a']:g}, b_us = {self.fit['b_us']:g}) and block latencies "
                             f"(up to {top:g} us) predict infinity or NaN")  # fmt: skip
        if not all(isinstance(getattr(self, k), int) for k in ("resolution", "num_classes", "in_channels", "threads")):
            raise ValueError("resolution, num_classes, in_channels and threads must be integers")
        if self.clock not in ("wall", "cpu") or self.statistic not in STATISTICS:
            raise ValueError(f"clock {self.clock!r} or statistic {self.statistic!r} is unknown")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
