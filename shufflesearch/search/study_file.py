"""Study files: a TOML description of a search, validated before any work starts (into a `StudyConfig`).

Errors name the file, the line and the key at fault, e.g.
`studies/x.toml:12: space.groups: 5 is not a ShuffleNet v1 group count (1, 2, 3, 4, 8)`.
TOML is read with the standard library's tomllib (no code execution, no custom tags).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from ..accuracy.recipe import DEFAULT_FIDELITY, SEED_MAX, Fidelity
from ..errors import UsageError
from ..input_file import InputFileError, read_input_file
from ..spec import BOTTLENECK_CHOICES, GROUP_CHOICES, REPEATS_RANGE, RESOLUTION_RANGE, SCALE_RANGE
from .space import SearchSpace
from .study_config import StudyConfig
from .toml_lines import key_lines

MODES = ("per-budget", "pareto")
SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("none", "median", "successive-halving", "hyperband")
SECOND_OBJECTIVES = ("mflops", "latency")
RANK_BY = ("top1", "loss")  # what scores a trial, on the recipe's split: top-1 (maximised) or the loss (minimised)
KEEP_WEIGHTS = ("best", "all", "none")  # best: per budget (pareto: the front); all: every complete trial
# Checked here by shape only (no torch): `accuracy.devices.resolve_device` checks the machine at search start.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]{1,3})?)$")
MAX_BYTES = 2**20  # the shipped studies are under 1 kB; the cap only stops a device or a runaway file
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StudyFileError(UsageError):
    """An invalid study file; the message starts with `path:line: key:`."""


# section -> the keys it may hold
# fmt: off
_SCHEMA: dict[str, set[str]] = {
    "study": {"name", "mode", "trials", "seed", "sampler", "pruner", "storage", "enqueue_presets",
              "repeat_specs", "keep_weights", "artifacts", "finalists", "race_seeds"},
    "budget": {"mflops", "latency_ms", "lut", "min_fraction", "range"},
    "space": {"groups", "scale", "scale_step", "repeats", "bottleneck_ratio", "shuffle", "resolution", "num_classes"},
    "objective": {"rank_by", "second", "lut"},
    "accuracy": {"dataset", "data_dir", "fidelity", "fidelity_by_budget", "device"},
}
# fmt: on


def load_study(path: str | Path) -> StudyConfig:
    """Parse and validate a study file; StudyFileError says where and why it is wrong."""
    path = Path(path)
    try:
        text = read_input_file(path, MAX_BYTES, "study file").decode("utf-8")  # TOML is UTF-8
    except FileNotFoundError:
        raise StudyFileError(f"{path}: no such study file (see studies/ for examples)") from None
    except InputFileError as exc:
        raise StudyFileError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(f"{path}: cannot read the study file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or table: a = [[[[...
        raise StudyFileError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return _Validator(path, text, data).config()


class _Validator:
    def __init__(self, path: Path, text: str, data: dict) -> None:
        self.path, self.text, self.data = path, text, data

    def fail(self, section: str, key: str | None, message: str):
        where = f"{section}.{key}" if key else f"[{section}]"
        # "accuracy.fidelity" is a sub-table; a top-level name holding a dot ("a.b") is one key
        table = (section,) if section in self.data else tuple(section.split("."))
        at = (*table, key) if key else table
        try:
            lines = key_lines(self.text)  # only once it has failed: a valid file costs nothing
        except RecursionError:  # nesting as deep as tomllib goes: the message still names the key
            lines = {}
        line = next((lines[at[:n]] for n in range(len(at), 0, -1) if at[:n] in lines), 1)
        raise StudyFileError(f"{self.path}:{line}: {where}: {message}")

    def get(self, section: str, key: str, kind: type | tuple, default: Any = None) -> Any:
        value = self.data.get(section, {}).get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(section, key, f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            self.fail(section, key, f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def path_text(self, section: str, key: str) -> str | None:
        """A path or URL: a NUL would fail later inside open() or SQLite, with no line to point at."""
        value = self.get(section, key, str, None)
        bad = next((c for c in value or "" if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            self.fail(section, key, f"{value!r} holds the control character {bad!r}; a path or URL cannot")
        return value

    def choice(self, section: str, key: str, choices: tuple, default: str) -> str:
        value = self.get(section, key, str, default)
        if value not in choices:
            self.fail(section, key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number_list(self, section: str, key: str, default: tuple, kind=(int, float)) -> tuple:
        value = self.get(section, key, list, None)
        if value is None:
            return default
        if not value:
            self.fail(section, key, "is empty: the search space needs at least one choice")
        for item in value:
            if isinstance(item, bool) != (kind is bool) or not isinstance(item, kind):
                self.fail(section, key, f"expected a list of {_kind_name(kind)}, got {item!r}")
        return tuple(value)

    def config(self) -> StudyConfig:
        for section, value in self.data.items():
            if section not in _SCHEMA:
                self.fail(section, None, f"unknown section; known: {', '.join(_SCHEMA)}")
            if not isinstance(value, dict):
                self.fail(section, None, "must be a table")
            for key in value:
                if key not in _SCHEMA[section]:
                    self.fail(section, key, f"unknown key; known in [{section}]: {', '.join(sorted(_SCHEMA[section]))}")
        name = self.get("study", "name", str, self.path.stem)
        if not _NAME.match(name):
            self.fail("study", "name", f"{name!r}: use 1-64 letters, digits, '_', '.', '-' (it names files)")
        mode = self.choice("study", "mode", MODES, "per-budget")
        trials = self.get("study", "trials", int, 20)
        if not 1 <= trials <= 100_000:
            self.fail("study", "trials", f"{trials} must be in [1, 100000]")
        seed = self.get("study", "seed", int, 0)
        if not 0 <= seed <= SEED_MAX:
            self.fail("study", "seed", f"{seed} must be in [0, {SEED_MAX}]")
        sampler = self.choice("study", "sampler", SAMPLERS, "tpe")
        pruner = self.choice("study", "pruner", PRUNERS, "hyperband" if mode == "per-budget" else "none")
        if mode == "pareto" and pruner != "none":
            self.fail("study", "pruner", "multi-objective (pareto) studies cannot prune in Optuna; use 'none'")
        space = self._space()
        lo, hi = space.mflops_range
        budgets, budget_range, min_fraction = (), (10.0, 150.0), 0.5
        latency_budgets = self._budgets("latency_ms", "ms")
        if mode == "per-budget":
            budgets = self._budgets("mflops", "M")
            if not budgets and not latency_budgets:
                self.fail("budget", "mflops", "per-budget mode needs budgets, e.g. mflops = [13, 38, 140] "
                                              "and/or latency_ms = [6, 15, 38]")  # fmt: skip
            if budgets and latency_budgets and len(budgets) != len(latency_budgets):
                self.fail("budget", "latency_ms", f"{len(latency_budgets)} latency budgets for {len(budgets)} MFLOPs "
                                                  "budgets: give one per MFLOPs budget (both must hold), or only one list")  # fmt: skip
            min_fraction = float(self.get("budget", "min_fraction", (int, float), 0.5))
            if not 0 <= min_fraction < 1:
                self.fail("budget", "min_fraction", f"{min_fraction} must be in [0, 1)")
            for b in budgets:
                self._check_window("mflops", (b * min_fraction, b), space, lo, hi)
        else:
            window = self.number_list("budget", "range", (10.0, 150.0))
            if len(window) != 2 or not 0 <= window[0] < window[1]:
                self.fail("budget", "range", f"{list(window)} must be [min, max] MFLOPs with min < max")
            budget_range = (float(window[0]), float(window[1]))
            self._check_window("range", budget_range, space, lo, hi)
            if len(latency_budgets) > 1:
                self.fail("budget", "latency_ms", "a pareto study has one front: give at most one latency cap, "
                                                  "e.g. latency_ms = [40]")  # fmt: skip
        second = self.choice("objective", "second", SECOND_OBJECTIVES, "mflops")
        lut = self._lut()
        if second == "latency" and not lut:
            self.fail("objective", "second", "a latency objective needs lut = 'snapdragon820' (shipped, estimated) "
                                             "or lut = 'path/to/device.lut.json'")  # fmt: skip
        if latency_budgets:
            self._check_latency_windows(lut, space, budgets, latency_budgets, min_fraction, budget_range, mode)
        fidelity = self._fidelity(self.get("accuracy", "fidelity", dict, {}))
        by_budget = self._fidelity_by_budget(fidelity, mode, budgets)
        data_dir = self.path_text("accuracy", "data_dir")
        device = self.get("accuracy", "device", str, "auto")
        if not _DEVICE.match(device):
            self.fail("accuracy", "device", f"{device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        artifacts = self.path_text("study", "artifacts")
        if artifacts is not None and not artifacts.strip():
            self.fail("study", "artifacts", "is empty; name a folder, s3://bucket or gs://bucket")
        return StudyConfig(
            name=name, path=self.path, mode=mode, trials=trials, seed=seed,
            sampler=sampler, pruner=pruner, storage=self._storage(),
            enqueue_presets=self.get("study", "enqueue_presets", bool, True), budgets=tuple(map(float, budgets)),
            repeat_specs=self.get("study", "repeat_specs", bool, False),
            latency_budgets=tuple(map(float, latency_budgets)),
            min_fraction=min_fraction, budget_range=budget_range, space=space, second_objective=second,
            rank_by=self.choice("objective", "rank_by", RANK_BY, "top1"),
            lut=lut, dataset=self.get("accuracy", "dataset", str, "fashion-mnist"),
            data_dir=Path(data_dir).expanduser() if data_dir else None, fidelity=fidelity, device=device,
            fidelity_by_budget=by_budget,
            keep_weights=self.choice("study", "keep_weights", KEEP_WEIGHTS, "best"),
            finalists=self._count("finalists", 3, 0), race_seeds=self._count("race_seeds", 4, 1),
            artifacts=str(Path(artifacts).expanduser()) if artifacts and "://" not in artifacts else artifacts,
        )  # fmt: skip

    def _storage(self) -> str | None:
        """The file's storage URL, a relative SQLite path read from the study file's folder (as its default .db is).

        So `storage = "sqlite:///runs.db"` means the same file whatever folder the command runs in.
        """
        url = self.path_text("study", "storage")
        if url is None or not url.startswith("sqlite:///") or not url.removeprefix("sqlite:///"):
            return url
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        return f"sqlite:///{path if path.is_absolute() else self.path.parent / path}"

    def _budgets(self, key: str, unit: str) -> tuple:
        """A budget list; two budgets naming one study (13 and 13.0000001 both print 13M) are refused."""
        budgets = self.number_list("budget", key, ())
        seen: dict[str, float] = {}
        for b in budgets:
            if not (math.isfinite(b) and b > 0):
                self.fail("budget", key, f"{b!r} must be a positive number")
            if f"{b:g}" in seen:
                same = "is listed twice" if seen[f"{b:g}"] == b else f"and {seen[f'{b:g}']!r} both print as {b:g}"
                self.fail("budget", key, f"{b!r} {same}: each budget names its study ({self._name()}-{b:g}{unit}); "
                                         "use budgets that differ in their first 6 digits")  # fmt: skip
            seen[f"{b:g}"] = b
        return budgets

    def _lut(self) -> str | None:
        """The study's one latency predictor: `[budget] lut` or `[objective] lut` (the same if both are given)."""
        budget, objective = self.path_text("budget", "lut"), self.path_text("objective", "lut")
        if budget and objective and budget != objective:
            self.fail("objective", "lut", f"{objective!r} is not budget.lut {budget!r}: a study has one predictor")
        return budget or objective or None

    def _check_latency_windows(self, lut, space, budgets, latency_budgets, min_fraction, budget_range, mode) -> None:
        """Each latency window admits some spec of the space on the study's predictor (fails in ms, not hours in)."""
        from ..latency.lut import LutError, resolve_table
        from .space import LatencyBudget

        if not lut:
            self.fail("budget", "latency_ms", "latency budgets need a predictor: lut = 'snapdragon820' (shipped, "
                                              "estimated) or lut = 'path/to/device.lut.json' (lut build)")  # fmt: skip
        key = "lut" if self.path_text("budget", "lut") else "objective.lut"
        try:
            table = resolve_table(lut)
            table.check_covers(space)
        except LutError as exc:
            self.fail("budget", key.removeprefix("objective."), str(exc))
        f = min_fraction if mode == "per-budget" else 0.0
        for i, ms in enumerate(latency_budgets):
            window = (budgets[i] * f, budgets[i]) if budgets else budget_range if mode == "pareto" else (0.0, math.inf)
            latency = LatencyBudget((ms * f, ms), table.predict_ms)
            if not any(space.feasible(*choice, window, latency) for choice in space.discrete_choices()):
                self.fail("budget", "latency_ms", f"no spec of the space is predicted at {ms * f:g}-{ms:g} ms "
                                                  f"(within {window[0]:g}-{window[1]:g} MFLOPs) by {table.name}")  # fmt: skip

    def _count(self, key: str, default: int, lo: int, hi: int = 50) -> int:
        value = self.get("study", key, int, default)
        if not lo <= value <= hi:
            self.fail("study", key, f"{value} must be in [{lo}, {hi}]")
        return value

    def _name(self) -> str:
        return self.get("study", "name", str, self.path.stem)

    def _fidelity(self, overrides: dict, base: Fidelity = DEFAULT_FIDELITY, table: str = "accuracy.fidelity"):
        try:
            return Fidelity.from_dict({**base.to_dict(), **overrides})
        except (ValueError, TypeError) as exc:
            message = " ".join(str(exc).split())
            # Fidelity's messages start with the key at fault: point at that key's line, not the table's
            named = [k for k in overrides if message.startswith((f"{k}=", f"unknown fidelity key {k!r}"))]
            self.fail(table, named[0] if named else None, message)

    def _fidelity_by_budget(self, fidelity: Fidelity, mode: str, budgets: tuple) -> tuple[tuple[float, Fidelity], ...]:
        """`[accuracy.fidelity_by_budget]`: `60 = { epochs = 4 }` trains budgets above 60 MFLOPs 4 epochs."""
        tiers, table = self.get("accuracy", "fidelity_by_budget", dict, {}), "accuracy.fidelity_by_budget"
        if tiers and (mode != "per-budget" or not budgets):
            self.fail("accuracy", "fidelity_by_budget", "scales the recipe by MFLOPs budget: it needs a per-budget "
                                                        "study with [budget] mflops")  # fmt: skip
        scaled = []
        for key, overrides in tiers.items():
            try:
                above = float(key)
            except ValueError:
                above = math.nan
            if not (math.isfinite(above) and above >= 0):
                self.fail(table, key, f"{key!r} must be a budget in MFLOPs, e.g. 60 = {{ epochs = 4 }}")
            if not isinstance(overrides, dict) or not overrides:
                self.fail(table, key, "must be a table of recipe overrides, e.g. { epochs = 4 }")
            if any(above == other for other, _ in scaled):
                self.fail(table, key, f"{key!r} names a budget another key names too")
            scaled.append((above, self._fidelity(overrides, fidelity, f"{table}.{key}")))
        return tuple(sorted(scaled, key=lambda tier: tier[0]))

    def _check_window(self, key: str, window: tuple[float, float], space: SearchSpace, lo: float, hi: float) -> None:
        if window[1] < lo:
            self.fail("budget", key, f"budget {window[1]:g} MFLOPs: the cheapest spec of the space costs {lo:.1f}; "
                                     "lower space.scale or space.repeats")  # fmt: skip
        if window[0] > hi:
            self.fail("budget", key, f"budget window {window[0]:g}-{window[1]:g} MFLOPs lies above the largest spec "
                                     f"of the space ({hi:.1f}); raise space.scale or lower the budget")  # fmt: skip
        if not space.candidates(window):
            self.fail("budget", key, f"no spec of the space costs {window[0]:g}-{window[1]:g} MFLOPs")

    def _space(self) -> SearchSpace:
        defaults = SearchSpace()
        groups = self.number_list("space", "groups", defaults.groups, int)
        for g in groups:
            if g not in GROUP_CHOICES:
                self.fail("space", "groups", f"{g} is not a ShuffleNet v1 group count {GROUP_CHOICES}")
        scale = self.number_list("space", "scale", defaults.scale)
        if len(scale) != 2 or not SCALE_RANGE[0] <= scale[0] <= scale[1] <= SCALE_RANGE[1]:
            self.fail("space", "scale", f"{list(scale)} must be [min, max] within {list(SCALE_RANGE)}")
        step = self.get("space", "scale_step", (int, float), defaults.scale_step)
        if not (math.isfinite(step) and 0.01 <= step <= 1):
            self.fail("space", "scale_step", f"{step} must be in [0.01, 1]")
        repeats = self.get("space", "repeats", list, None)
        if repeats is None:
            repeats = defaults.repeats
        else:
            ok = len(repeats) == 3 and all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                and REPEATS_RANGE[0] <= r[0] <= r[1] <= REPEATS_RANGE[1] for r in repeats
            )  # fmt: skip
            if not ok:
                self.fail("space", "repeats", f"{repeats!r} must be three [min, max] unit counts within "
                                              f"{list(REPEATS_RANGE)}, e.g. [[2, 6], [4, 10], [2, 6]]")  # fmt: skip
            repeats = tuple(tuple(r) for r in repeats)
        bottleneck = self.number_list("space", "bottleneck_ratio", defaults.bottleneck_ratio)
        for b in bottleneck:
            if b not in BOTTLENECK_CHOICES:
                self.fail("space", "bottleneck_ratio", f"{b} is not one of {BOTTLENECK_CHOICES}")
        shuffle = self.number_list("space", "shuffle", defaults.shuffle, bool)
        resolution = self.get("space", "resolution", int, defaults.resolution)
        if not RESOLUTION_RANGE[0] <= resolution <= RESOLUTION_RANGE[1]:
            self.fail("space", "resolution", f"{resolution} must be in {list(RESOLUTION_RANGE)}")
        classes = self.get("space", "num_classes", int, defaults.num_classes)
        if not 2 <= classes <= 100_000:
            self.fail("space", "num_classes", f"{classes} must be in [2, 100000]")
        return SearchSpace(
            groups=tuple(dict.fromkeys(groups)), scale=(float(scale[0]), float(scale[1])), scale_step=float(step),
            repeats=repeats, bottleneck_ratio=tuple(dict.fromkeys(map(float, bottleneck))),
            shuffle=tuple(dict.fromkeys(shuffle)), resolution=resolution, num_classes=classes,
        )  # fmt: skip


def _kind_name(kind: type | tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
             dict: "a table"}  # fmt: skip
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,))))


__all__ = ["KEEP_WEIGHTS", "MODES", "PRUNERS", "RANK_BY", "SAMPLERS", "SECOND_OBJECTIVES", "StudyConfig", "StudyFileError",
           "load_study"]  # fmt: skip
