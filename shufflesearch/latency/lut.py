"""Latency lookup tables: time each distinct block on a target once, predict any spec as a fitted sum.

A network is the stem (conv+BN+ReLU+max pool), its ShuffleNet units and the head (global pool
+ FC). Stride-1 units of a stage are identical, so a table holds one entry per distinct
(stem | unit | head) configuration of a search space at one resolution (1,300 for the default
space at 224 px), each timed as a tiny ONNX model with ONNX Runtime, less the runner's
per-call overhead. A spec's prediction is `a * sum(block us) + b`, with a and b fitted at
build time on whole networks of the space timed among the blocks (the fit points, their
residuals and the leave-one-out error are stored). Blocks ship without weights: the device
fills them with seeded values of the recorded mean and spread (see device_runner), so a remote
build sends a few MB instead of ~1 GB.

>>> from shufflesearch.presets import get_preset
>>> from shufflesearch.search.space import SearchSpace
>>> table = build_lut(SearchSpace(), target="local")  # 3-4 min on 2 cores  # doctest: +SKIP
>>> table.save("studies/laptop.lut.json")  # doctest: +SKIP
>>> table = LatencyTable.load("studies/laptop.lut.json")  # doctest: +SKIP
>>> round(table.predict_ms(get_preset("shufflenet_v1_x1_0_g3")), 1)  # doctest: +SKIP
4.8
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..complexity import count_macs
from ..spec import ShuffleNetSpec, SpecError
from .device_runner import summarize, time_manifest
from .environment import machine_info

FORMAT, FORMAT_VERSION, FAMILY = "shufflesearch-latency-lut", 1, "shufflenet_v1"
STATISTICS = ("median_ms", "min_ms")
CHUNK_MODELS = 150  # models per runner call: progress and per-call timeouts, without many ssh round trips
Progress = Callable[[str, int, int], None]  # (phase, done, total)


class LutError(ValueError):
    """A table that cannot answer: unreadable, another family, or built for another input or space."""


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
    source: str = field(default="", compare=False)  # the file it was loaded from, for messages
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
                self._missing(spec, _plan(spec)[1][i][1])
        return self.fit["a"] * total + self.fit["b_us"]

    def predict_ms(self, spec: ShuffleNetSpec) -> float:
        return self.predict_us(spec) / 1e3

    def _parts(self, spec: ShuffleNetSpec) -> tuple[float, tuple[tuple[float, float | None], ...]]:
        """(stem + head us, ((stride-2 unit us, stride-1 unit us or None), ...)) for `spec`'s widths."""
        self.check_spec(spec)
        (stem, head), stages = _plan(spec)
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
        widths, _ = _width_specs(space, self.in_channels, self.stem, 0)
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
        return f"shufflesearch lut build --target {self.target}{options} --out {out}"

    # -- file ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "source"}
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
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LutError(f"latency table {path} does not exist; {fix}") from None
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
        if not all(isinstance(getattr(self, k), int) for k in ("resolution", "num_classes", "in_channels", "threads")):
            raise ValueError("resolution, num_classes, in_channels and threads must be integers")
        if self.clock not in ("wall", "cpu") or self.statistic not in STATISTICS:
            raise ValueError(f"clock {self.clock!r} or statistic {self.statistic!r} is unknown")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- blocks of a spec ------------------------------------------------------------------------


def _plan(spec: ShuffleNetSpec) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """((stem key, head key), [(stride-2 unit key, stride-1 unit key) per stage]); keys name the input size."""
    r, g = spec.resolution, spec.groups
    h = r if spec.stem == "small" else _half(_half(r))
    stem = f"stem:{spec.in_channels}>{spec.stem_channels}:{spec.stem}@{r}"
    shuffle = int(spec.shuffle and g > 1)
    stages, c_in = [], spec.stem_channels
    for i, (c, mid) in enumerate(zip(spec.stage_channels, spec.bottleneck_channels)):
        first = f"unit:{c_in}>{c}:m{mid}:s2:g{g}:gf{int(i > 0)}:sh{shuffle}@{h}"
        h = _half(h)
        stages.append((first, f"unit:{c}>{c}:m{mid}:s1:g{g}:gf1:sh{shuffle}@{h}"))
        c_in = c
    return (stem, f"head:{c_in}>{spec.num_classes}@{h}"), stages


def _half(h: int) -> int:
    return (h - 1) // 2 + 1  # 3x3, stride 2, padding 1 (convs and pools alike)


def _block_modules(spec: ShuffleNetSpec, seed: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """key -> (eval-mode module, input shape), sliced from the spec's own network (repeats >= 2 per stage)."""
    import torch
    from torch import nn

    from ..export import randomize_batch_norm
    from ..model import build_model

    torch.manual_seed(seed)
    model = build_model(spec.replace(repeats=(2, 2, 2))).eval()
    randomize_batch_norm(model)
    (stem, head), stages = _plan(spec)
    r = spec.resolution
    h = r if spec.stem == "small" else _half(_half(r))
    out = {stem: (nn.Sequential(model.first_conv, model.maxpool), (1, spec.in_channels, r, r))}
    index, c_in = 0, spec.stem_channels
    for (first, repeat), c in zip(stages, spec.stage_channels):
        out[first] = (model.features[index], (1, c_in, h, h))
        h = _half(h)
        out[repeat] = (model.features[index + 1], (1, c, h, h))
        index, c_in = index + 2, c
    out[head] = (nn.Sequential(model.globalpool, nn.Flatten(1), model.classifier), (1, c_in, h, h))
    return out


def _export(module: Any, input_shape: tuple[int, ...]) -> bytes:
    import io
    import warnings

    import torch

    from ..export import OPSET

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(input_shape),), buffer, input_names=["x"], output_names=["y"],
                          opset_version=OPSET, dynamo=False)  # fmt: skip
    return buffer.getvalue()


def _strip_weights(model_bytes: bytes, weights_file: str) -> tuple[bytes, list[list[float]]]:
    """The model with its float weights moved to `weights_file` (not written) and their fill recipe.

    Timing needs shapes, not values: a table's blocks weigh ~1 GB at 224 px, their skeletons a few MB.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(model_bytes)
    fill, offset = [], 0
    for tensor in model.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or math.prod(tensor.dims) < 64:
            continue  # small tensors (and int64 shapes) stay inline, exact
        values = numpy_helper.to_array(tensor)
        fill.append([offset, int(values.size), float(values.mean()), float(values.std())])
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", weights_file), ("offset", str(offset)), ("length", str(values.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        offset += -(-values.nbytes // 64) * 64
    return model.SerializeToString(), fill


def _overhead_model() -> bytes:
    """A one-value Relu: what a runner call costs when the network costs nothing."""
    from onnx import TensorProto, helper

    from ..export import OPSET

    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, 1, 1]) for name in "xy")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "overhead", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


# -- timing many models, here or on a device -------------------------------------------------


@dataclass
class _Runner:
    """Times named ONNX models in chunks through device_runner's manifest mode, in-process or over ssh."""

    target: Any  # "local" or an SshTarget
    threads: int
    runs: int
    warmup: int
    clock: str
    rounds: int = 1
    seed: int = 0
    python: str = "python3"
    ssh_options: Sequence[str] | str = ()
    timeout_s: float = 1800.0
    machine: dict[str, Any] = field(default_factory=dict)

    def time(self, models: list[tuple], phase: str, progress: Progress | None, every_chunk: Sequence[tuple] = ()):
        """models: (name, weightless ONNX bytes, fill recipe) -> {name: [run times (ms) of each timing]}.

        Every model is timed once per round, each round in its own shuffled order, so a burst of
        load on a shared machine (or a device heating up) spoils one timing of a model, not its
        latency. Each of `every_chunk` (reference networks) is also timed in every chunk: it
        sees the same conditions as the blocks it is compared with.
        """
        timings: dict[str, list[list[float]]] = {}
        for r in range(self.rounds):
            order = list(models)
            random.Random(self.seed * 1000 + r).shuffle(order)
            for start in range(0, len(order), CHUNK_MODELS):
                files, entries = {}, []
                for i, (name, data, fill) in enumerate([*order[start : start + CHUNK_MODELS], *every_chunk]):
                    files[f"m{i}.onnx"] = data
                    entries.append({"name": name, "file": f"m{i}.onnx"})
                    if fill:
                        entries[-1]["weights"] = {"file": "w.bin", "fill": fill}  # one at a time: a shared name
                for name, result in self._run(files, {"models": entries}).items():
                    timings.setdefault(name, []).append(result["times_ms"])
                if progress:
                    progress(phase, r * len(order) + min(start + CHUNK_MODELS, len(order)), self.rounds * len(order))
        return timings

    def _run(self, files: dict[str, bytes], manifest: dict) -> dict[str, Any]:
        settings = dict(threads=self.threads, runs=self.runs, warmup=self.warmup, seed=self.seed, clock=self.clock)
        if self.target == "local":
            with tempfile.TemporaryDirectory(prefix="shufflesearch-lut-") as directory:
                for name, data in files.items():
                    Path(directory, name).write_bytes(data)
                results = time_manifest(directory, manifest, **settings)
            self.machine = self.machine or machine_info()
            return results
        from .ssh import time_models_remote

        payload = time_models_remote(files, manifest, self.target, python=self.python, ssh_options=self.ssh_options,
                                     timeout_s=self.timeout_s, **settings)  # fmt: skip
        self.machine = payload["machine"]
        return payload["results"]


def _runner(target: Any, threads: int, runs: int, warmup: int, clock: str, rounds: int, **remote: Any) -> _Runner:
    from .measure import check_settings
    from .ssh import SshTarget

    check_settings("onnxruntime", threads, runs, warmup)
    if clock not in ("wall", "cpu") or (clock == "cpu" and threads != 1):
        raise LutError(f"clock={clock!r} must be 'wall', or 'cpu' with threads=1 (it times one thread)")
    if type(rounds) is not int or not 1 <= rounds <= 100:
        raise LutError(f"rounds={rounds!r} must be an integer in [1, 100]; 3 outvotes one disturbed timing")
    if target != "local" and not isinstance(target, SshTarget):
        target = SshTarget.parse(target)
    return _Runner(target, threads, runs, warmup, clock, rounds, **remote)


def _robust_us(timings: list[list[float]], statistic: str) -> float:
    """Median over timings of each timing's statistic, in us."""
    values = sorted(summarize(times)[statistic] * 1e3 for times in timings)
    return (values[(len(values) - 1) // 2] + values[len(values) // 2]) / 2


# -- building --------------------------------------------------------------------------------


def build_lut(
    space: Any,
    target: Any = "local",
    threads: int = 1,
    runs: int = 20,
    warmup: int = 3,
    rounds: int = 3,
    clock: str = "wall",
    statistic: str = "median_ms",
    fit_points: int = 12,
    in_channels: int = 3,
    stem: str = "imagenet",
    seed: int = 0,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = 1800.0,
    holdout: Iterable[ShuffleNetSpec] = (),
    progress: Progress | None = None,
) -> LatencyTable:
    """Time every distinct block of `space` on `target` once, and fit the sum to `fit_points` whole networks.

    `space` is a shufflesearch.search.space.SearchSpace (anything with its fields and `scales()`)
    or an iterable of specs. `target` is "local" or "ssh://user@host[:port]"; remote blocks
    are timed in a few ssh calls of CHUNK_MODELS models (`timeout_s` each). Each block is
    timed `rounds` times (`runs` runs each, rounds in shuffled orders) and keeps the median
    round. The `fit_points` networks (the space's widths, evenly spaced in MACs) and the
    `holdout` specs are timed whole among the blocks, under the same conditions; holdout specs
    are not fitted on, so table.fit["holdout"] is a held-out error free of the machine's drift.
    `progress(phase, done, total)` is called per exported width and per timed chunk.
    """
    started = time.monotonic()
    if statistic not in STATISTICS:
        raise LutError(f"statistic={statistic!r} must be one of {', '.join(STATISTICS)}; median_ms is the protocol's")
    runner = _runner(target, threads, runs, warmup, clock, rounds, seed=seed, python=python,
                     ssh_options=ssh_options, timeout_s=timeout_s)  # fmt: skip
    if runner.target != "local":  # an unreachable device fails now, not after minutes of exporting blocks
        from .ssh import check_remote

        check_remote(runner.target, python, ssh_options, timeout_s)
    widths, described = _width_specs(space, in_channels, stem, seed)
    ranked = sorted(widths, key=count_macs)
    picks = sorted({round(i * (len(ranked) - 1) / max(1, fit_points - 1)) for i in range(fit_points)})
    fit_specs = [ranked[i] for i in picks] if fit_points > 0 else []
    from ..export import onnx_bytes

    holdout = list(holdout)
    covered = {key for spec in widths for key in _keys(spec)}  # keys name resolution, classes, stem and widths
    for spec in holdout:
        if not set(_keys(spec)) <= covered:
            raise LutError(f"holdout spec {spec.label!r} lies outside the space the table covers; pick it there")
    networks = {f"fit#{i}": s for i, s in enumerate(fit_specs)} | {f"holdout#{i}": s for i, s in enumerate(holdout)}
    with _torch_threads(1):  # tracing on a busy machine: more threads only fight over the cores
        models = _export_blocks(widths, seed, progress)
        for name, spec in networks.items():
            models[name] = _strip_weights(onnx_bytes(spec, seed)[0], "w.bin")
    overhead = [("overhead", _overhead_model(), [])]  # per call: timed in every chunk
    timings = runner.time([(name, *models[name]) for name in sorted(models)], "time", progress, overhead)

    overhead_us = _robust_us(timings["overhead"], statistic)
    blocks = {}
    for key in sorted(k for k in models if k not in networks):
        median_us, us = _robust_us(timings[key], "median_ms"), _robust_us(timings[key], statistic)
        per_round = [summarize(t)[statistic] * 1e3 for t in timings[key]]
        blocks[key] = {"us": max(0.0, us - overhead_us), "median_us": median_us,
                       "min_us": min(min(t) for t in timings[key]) * 1e3,
                       "spread_pct": 100 * (max(per_round) - min(per_round)) / us if us > 0 else 0.0}  # fmt: skip
    first = widths[0]
    table = LatencyTable(
        resolution=first.resolution, num_classes=first.num_classes, in_channels=first.in_channels, stem=first.stem,
        target="local" if runner.target == "local" else runner.target.url, threads=threads, clock=clock,
        statistic=statistic, blocks=blocks, fit={"a": 1.0, "b_us": 0.0, "points": []}, overhead_us=overhead_us,
        runs=runs, warmup=warmup, rounds=rounds, machine=runner.machine, space=described,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    measured = {name: _robust_us(timings[name], statistic) for name in networks}
    table.fit = fit_sum([(s, table.predict_us(s), measured[f"fit#{i}"]) for i, s in enumerate(fit_specs)])
    table._cache.clear()
    if holdout:
        predicted = [table.predict_us(s) for s in holdout]
        table.fit["holdout"] = _compare(holdout, predicted, [measured[f"holdout#{i}"] for i in range(len(holdout))])
    table.build_seconds = time.monotonic() - started
    return table


def _export_blocks(widths: list[ShuffleNetSpec], seed: int, progress: Progress | None) -> dict[str, tuple]:
    models: dict[str, tuple[bytes, list]] = {}
    for i, spec in enumerate(widths):
        needed = [k for k in _keys(spec) if k not in models]
        if needed:
            modules = _block_modules(spec, seed)
            for key in needed:
                models[key] = _strip_weights(_export(*modules[key]), "w.bin")
        if progress:
            progress("export", i + 1, len(widths))
    return models


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)  # a process-wide setting: leave it as found


def _keys(spec: ShuffleNetSpec) -> list[str]:
    (stem, head), stages = _plan(spec)
    return [stem, *(k for pair in stages for k in pair), head]


def _width_specs(space: Any, in_channels: int, stem: str, seed: int) -> tuple[list[ShuffleNetSpec], dict]:
    """One spec per distinct width layout (stem, stage widths, groups, bottleneck, shuffle), and the space's summary."""
    if hasattr(space, "scales"):
        rng = random.Random(seed)
        specs = []
        for g in space.groups:
            for b in space.bottleneck_ratio:
                for sh in space.shuffle:
                    for s in space.scales():
                        repeats = tuple(rng.randint(lo, hi) for lo, hi in space.repeats)
                        try:
                            specs.append(ShuffleNetSpec(groups=g, scale=s, repeats=repeats, bottleneck_ratio=b,
                                                        shuffle=sh, resolution=space.resolution,
                                                        num_classes=space.num_classes, in_channels=in_channels,
                                                        stem=stem))  # fmt: skip
                        except SpecError:
                            continue  # as SearchSpace.width_ladder: not every scale gives valid widths
        names = ("groups", "scale", "scale_step", "repeats", "bottleneck_ratio", "shuffle")
        described = {n: json.loads(json.dumps(getattr(space, n))) for n in names if hasattr(space, n)}
    else:
        specs = list(space)
        described = {"specs": len(specs)}
    if not specs or not all(isinstance(s, ShuffleNetSpec) for s in specs):
        raise LutError("the space gives no valid spec; pass a SearchSpace or a non-empty list of ShuffleNetSpec")
    context = {(s.resolution, s.num_classes, s.in_channels, s.stem) for s in specs}
    if len(context) > 1:
        raise LutError(
            f"a table covers one (resolution, num_classes, in_channels, stem); the specs have {sorted(context)}"
        )
    unique: dict[tuple, ShuffleNetSpec] = {}
    for s in specs:
        unique.setdefault(
            (s.groups, s.stem_channels, s.stage_channels, s.bottleneck_ratio, s.shuffle and s.groups > 1), s
        )
    return list(unique.values()), described


def fit_sum(points: Sequence[tuple[ShuffleNetSpec, float, float]]) -> dict[str, Any]:
    """Fit measured = a * block sum + b minimising relative error; points are (spec, sum_us, measured_us).

    Stores each point's residual and the leave-one-out MAPE: the honest estimate of the fit's error.
    """
    import numpy as np

    def solve(s: Any, m: Any) -> tuple[float, float]:
        a_only = float(np.sum(s / m) / np.sum((s / m) ** 2)) if len(s) else 1.0  # b = 0
        if len(s) < 2:
            return a_only, 0.0
        (a, b), *_ = np.linalg.lstsq(np.stack([s / m, 1 / m], 1), np.ones(len(m)), rcond=None)
        return (float(a), float(b)) if a > 0 else (a_only, 0.0)

    s, m = (np.array([p[i] for p in points], dtype=float) for i in (1, 2))
    a, b = solve(s, m)
    rows = [{"label": spec.label, "spec": spec.to_dict(), "sum_us": si, "measured_us": mi, "predicted_us": a * si + b,
             "error_pct": 100 * (a * si + b - mi) / mi} for spec, si, mi in points]  # fmt: skip
    keep = np.ones(len(s), dtype=bool)
    loo = []
    for i in range(len(s) if len(s) > 2 else 0):
        keep[i] = False
        a_i, b_i = solve(s[keep], m[keep])
        loo.append(abs(a_i * s[i] + b_i - m[i]) / m[i])
        keep[i] = True
    return {"a": a, "b_us": b, "points": rows, "mape_pct": float(np.mean([abs(r["error_pct"]) for r in rows])) if rows
            else None, "loo_mape_pct": 100 * float(np.mean(loo)) if loo else None}  # fmt: skip


# -- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LutValidation:
    """Predicted vs measured end-to-end latency of whole networks on the table's target."""

    mape_pct: float  # mean |predicted - measured| / measured
    kendall_tau: float  # rank agreement: what a search needs most
    within_10pct: float  # share of specs predicted within +-10%
    rows: list[dict[str, Any]]  # label, spec, predicted_us, measured_us, error_pct
    clock: str
    statistic: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_lut(
    table: LatencyTable,
    specs: Iterable[ShuffleNetSpec],
    runs: int = 50,
    warmup: int = 10,
    rounds: int = 3,
    seed: int = 0,
    python: str = "python3",
    ssh_options: Sequence[str] | str = (),
    timeout_s: float = 1800.0,
    progress: Progress | None = None,
) -> LutValidation:
    """Measure each spec end to end at the table's threads, clock and statistic; compare with its prediction.

    A local wall-clock table is checked against `measure_latency` (its output checked against
    PyTorch); other tables against the whole network timed by the same runner as the blocks.
    Each spec is measured `rounds` times (shuffled order) and keeps the median round.
    """
    started = time.monotonic()
    specs = list(specs)
    if len(specs) < 2:
        raise LutError(
            f"validation needs at least 2 specs to rank, got {len(specs)}; e.g. 20 random specs of the space"
        )
    predicted = [table.predict_us(spec) for spec in specs]  # mismatches fail before any timing
    runner = _runner(table.target, table.threads, runs, warmup, table.clock, rounds, seed=seed, python=python,
                     ssh_options=ssh_options, timeout_s=timeout_s)  # fmt: skip
    if table.target == "local" and table.clock == "wall":
        from .measure import measure_latency

        timings: dict[str, list] = {}
        jobs = [
            (r, i) for r in range(rounds) for i in random.Random(seed * 1000 + r).sample(range(len(specs)), len(specs))
        ]
        for done, (_, i) in enumerate(jobs, 1):
            result = measure_latency(specs[i], threads=table.threads, runs=runs, warmup=warmup, seed=seed)
            timings.setdefault(f"net#{i}", []).append(list(result.times_ms))
            if progress:
                progress("measure", done, len(jobs))
    else:
        from ..export import onnx_bytes

        models = [(f"net#{i}", *_strip_weights(onnx_bytes(s, seed)[0], "w.bin")) for i, s in enumerate(specs)]
        timings = runner.time(models, "measure", progress)
    measured = [_robust_us(timings[f"net#{i}"], table.statistic) for i in range(len(specs))]
    return LutValidation(**_compare(specs, predicted, measured), clock=table.clock, statistic=table.statistic,
                         seconds=time.monotonic() - started)  # fmt: skip


def _compare(specs: list[ShuffleNetSpec], predicted: list[float], measured: list[float]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    rows = [{"label": s.label, "spec": s.to_dict(), "predicted_us": p, "measured_us": m, "error_pct": 100 * (p - m) / m}
            for s, p, m in zip(specs, predicted, measured)]  # fmt: skip
    errors = [abs(r["error_pct"]) for r in rows]
    tau = float(kendalltau(predicted, measured).statistic) if len(rows) > 1 else float("nan")
    return {"mape_pct": sum(errors) / len(errors), "kendall_tau": tau,
            "within_10pct": sum(e <= 10 for e in errors) / len(errors), "rows": rows}  # fmt: skip
