"""The training recipe as data: what a proxy run does, with no torch in sight.

A `Fidelity` is one frozen, validated dataclass (images, epochs, resolution, schedule, ...),
so it can sit in a cache key, a study file and a report row. This module imports only the
standard library and the spec, so parsing a study file costs milliseconds.

>>> Fidelity(train_images=2000, epochs=1).replace(lr=0.1).to_dict()["lr"]
0.1
>>> Fidelity(epochs=0)
Traceback (most recent call last):
...
shufflesearch.accuracy.recipe.FidelityError: epochs=0.0 must be a positive number at most 1000; e.g. epochs=1.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UsageError
from ..spec import ShuffleNetSpec

__all__ = ["BATCH_MAX", "DATASETS", "DEFAULT_FIDELITY", "EPOCHS_MAX", "IMAGES_MAX", "LR_MAX", "SEED_MAX", "SPLITS", "Fidelity",
           "FidelityError", "adapt_spec", "describe_recipe", "lr_multiplier", "peak_lr", "recipe_key",
           "split_of"]  # fmt: skip

# The one seed bound: torch and numpy take it, and so do Optuna's samplers (seeds below
# 2**32), even after each local worker adds 1000 to the study's seed (64 workers fit).
SEED_MAX = 2**31 - 1
SCHEDULES = ("cosine", "onecycle", "linear")
STEMS = ("auto", "small", "imagenet", "keep")
AUGMENTS = ("none", "crop", "crop-flip")
PRECISIONS = ("fp32", "bf16", "fp16")
# What a run is scored on: a validation split carved from the training images (what a search
# chooses by), or the test split (what a finished choice is reported on, never chosen by).
SPLITS = ("validation", "test")
# The datasets a proxy run reads (`datasets.load_dataset`), named here, torch-free, so that a study file
# and the command line can list and check them without loading the readers.
DATASETS = ("fashion-mnist", "cifar10", "imagefolder")
# Bounds on what one proxy run may ask for, each far past any sensible recipe: past them a run
# only runs for days (epochs = 1e12), overflows float32 (lr = 1e300) or asks for more images than
# any dataset we read can hold (a subset or an evaluation is clamped to the dataset's size anyway).
EPOCHS_MAX = 1000.0
LR_MAX = 1000.0  # a peak learning rate this high already diverges at the first step
LR_WIDTH_EXPONENT_MAX = 2.0
IMAGES_MAX = 10_000_000
BATCH_MAX = 65_536
# BatchNorm normalises a training batch by its own statistics: one image (at a 1x1 map) has none.
BATCH_MIN = 2
# Below this input size the imagenet stem would leave Stage4 at 3x3 or less: use the small stem.
SMALL_STEM_BELOW = 112

_FLOAT_FIELDS = ("epochs", "lr", "lr_width_exponent", "warmup_fraction", "label_smoothing", "weight_decay", "momentum",
                 "time_budget_s")  # fmt: skip


class FidelityError(UsageError):
    """An invalid fidelity: the message names the field, the rule and a valid value."""


@dataclass(frozen=True)
class Fidelity:
    """How much (and how) to train: every field enters the cache key.

    `lr` is the peak learning rate at `batch_size`; `lr_width_exponent` scales it per model by
    (1x Stage4 width / this model's Stage4 width) ** exponent, so thin nets may take larger
    steps. `time_budget_s` (if set) also ends the run and anneals the LR by elapsed time, which
    makes the result depend on the machine's speed: `images_seen` records what it got.

    `scored_on` is the split `top1` and the loss are measured on: "validation" holds out
    `validation_images` training images (class-balanced, the same images for every run and seed:
    `datasets.validation_split`; at most a fifth of a small training set) and trains only on the
    rest; "test" scores the dataset's test split, for reporting a finished choice.

    `precision` is the autocast dtype of the forward pass: "fp32" (none), "bf16", or "fp16"
    (with a gradient scaler). The older spelling still works: `bf16=True`/`False` (in the
    constructor, `from_dict` and `replace`) means precision "bf16"/"fp32", and `.bf16` reads
    `precision == "bf16"` (the cache key spells it as before, so stored results keep their keys).

    >>> Fidelity(precision="bf16").bf16, Fidelity(precision="bf16").replace(bf16=False).precision
    (True, 'fp32')

    What a run refuses up front (`FidelityError`, one line, exit 2) and what it handles: a training
    batch holds at least 2 images (`train_images` and `batch_size` >= 2: BatchNorm normalises a
    batch by its own statistics, and one image at a 1x1 map has none); the ragged last batch of an
    epoch is dropped (the order is reshuffled every epoch, so no image is always left out); epochs,
    the learning rate, the images and the batch are bounded (`EPOCHS_MAX`, `LR_MAX`, `IMAGES_MAX`,
    `BATCH_MAX`). A learning rate within the bound that still blows up the loss is a result, not an
    error: the run ends with status "diverged" (a search prunes it; `train` says so in one line).
    """

    train_images: int = 30_000
    epochs: float = 2.0
    resolution: int | None = 48  # None: the dataset's own size
    stem: str = "imagenet"
    batch_size: int = 128
    lr: float = 0.2
    lr_width_exponent: float = 0.0
    schedule: str = "onecycle"
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.1
    weight_decay: float = 5e-5
    momentum: float = 0.9
    nesterov: bool = True
    augment: str = "crop-flip"
    eval_images: int | None = None  # None: the whole scored split
    curve_eval_images: int = 1000  # per-epoch top-1 on this many evaluation images (0: no per-epoch eval)
    time_budget_s: float | None = None
    precision: str = "fp32"
    scored_on: str = "validation"
    validation_images: int = 5000

    def __post_init__(self) -> None:
        def bad(name: str, rule: str, example: Any) -> FidelityError:
            shown = repr(getattr(self, name))
            shown = shown if len(shown) <= 40 else f"{shown[:20]}... ({len(shown)} characters)"
            return FidelityError(f"{name}={shown} {rule}; e.g. {name}={example}")

        for name in _FLOAT_FIELDS:  # a bool is no number here, whatever Python says
            value = getattr(self, name)
            if value is None and name == "time_budget_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, "must be a number", 1.0)
            if isinstance(value, int):  # epochs=2 and epochs=2.0 are equal dataclasses: make them one cache key too
                try:
                    object.__setattr__(self, name, float(value))
                except OverflowError:
                    raise bad(name, "is too large", 1.0) from None
        counts = {"train_images": (BATCH_MIN, IMAGES_MAX, 10_000), "batch_size": (BATCH_MIN, BATCH_MAX, 128),
                  "curve_eval_images": (0, IMAGES_MAX, 1000), "eval_images": (1, IMAGES_MAX, 2000),
                  "validation_images": (1, IMAGES_MAX, 5000)}  # fmt: skip
        for name, (lo, hi, example) in counts.items():
            value = getattr(self, name)
            if name == "eval_images" and value is None:
                continue
            if type(value) is not int or not lo <= value <= hi:
                small = lo == BATCH_MIN and type(value) is int and value < lo
                why = " (BatchNorm needs two images in a training batch)" if small else ""
                none = "None (the whole split) or " if name == "eval_images" else ""
                raise bad(name, f"must be {none}an integer in [{lo}, {hi:,}]{why}", example)
        for name, hi in (("epochs", EPOCHS_MAX), ("lr", LR_MAX)):
            if not 0 < getattr(self, name) <= hi:  # NaN fails too
                raise bad(name, f"must be a positive number at most {hi:g}", 1.0)
        if not abs(self.lr_width_exponent) <= LR_WIDTH_EXPONENT_MAX:
            raise bad("lr_width_exponent", f"must lie in [-{LR_WIDTH_EXPONENT_MAX:g}, {LR_WIDTH_EXPONENT_MAX:g}]", 0.5)
        ranges = {"label_smoothing": 0.99, "weight_decay": 1.0, "momentum": 0.999, "warmup_fraction": 0.9}
        for name, hi in ranges.items():
            if not 0 <= getattr(self, name) <= hi:
                raise bad(name, f"must lie in [0, {hi}]", 0.9 if name == "momentum" else 0.1)
        if self.resolution is not None and (type(self.resolution) is not int or not 28 <= self.resolution <= 512):
            raise bad("resolution", "must be None (the dataset's size) or an integer in [28, 512] px", 56)
        for name, choices in (("schedule", SCHEDULES), ("stem", STEMS), ("augment", AUGMENTS), ("scored_on", SPLITS)):
            if getattr(self, name) not in choices:
                raise bad(name, f"must be one of {', '.join(choices)}", choices[0])
        if type(self.nesterov) is not bool:
            raise bad("nesterov", "must be true or false", True)
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {', '.join(PRECISIONS)}", "'bf16'")
        if self.time_budget_s is not None and not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise bad("time_budget_s", "must be None or a positive number of seconds", 120)

    @property
    def bf16(self) -> bool:
        """The older spelling of the precision: True when it is "bf16"."""
        return self.precision == "bf16"

    def replace(self, **changes: Any) -> Fidelity:
        if "bf16" in changes and "precision" not in changes:  # the older spelling replaces the precision
            changes["precision"] = _bf16_precision(changes.pop("bf16"))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fidelity:
        known = {f.name for f in dataclasses.fields(cls)} | {"bf16"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FidelityError(f"unknown fidelity key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        return cls(**data)


def _bf16_precision(bf16: Any) -> str:
    if bf16 not in (True, False):
        raise FidelityError(f"bf16={bf16!r} must be True or False; e.g. precision='bf16'")
    return "bf16" if bf16 else "fp32"


def _accept_bf16(init: Any) -> Any:
    """The dataclass's __init__, also taking the older `bf16=True|False` (a keyword, not a field:
    `dataclasses.replace` and `to_dict` never see it, so the precision has one home)."""

    @functools.wraps(init)
    def __init__(self: Fidelity, *args: Any, bf16: bool | None = None, **kwargs: Any) -> None:
        if bf16 is not None:
            wanted, given = _bf16_precision(bf16), kwargs.get("precision", "fp32")
            if given not in ("fp32", wanted):
                raise FidelityError(f"bf16={bf16} contradicts precision={given!r}; give precision alone")
            kwargs["precision"] = wanted
        init(self, *args, **kwargs)

    return __init__


Fidelity.__init__ = _accept_bf16(Fidelity.__init__)  # type: ignore[method-assign]

# The recipe chosen by the fidelity study (docs/fidelity.md has the numbers): Fashion-MNIST
# upsampled to 48 px keeps the ImageNet stem's real downsampling and costs 1/5 of 28 px with the
# small stem per image, so the budget buys 30k images x 2 epochs, enough that bigger and grouped
# nets win as on ImageNet (Table 2 Spearman 0.917 on top-1, 0.975 on test loss).
DEFAULT_FIDELITY = Fidelity()


class ImageShape(Protocol):
    """What adapting a spec reads of a dataset (`datasets.ImageDataset` has it; this module stays torch-free)."""

    image_size: int
    in_channels: int
    num_classes: int


def adapt_spec(spec: ShuffleNetSpec, dataset: ImageShape, fidelity: Fidelity = DEFAULT_FIDELITY) -> ShuffleNetSpec:
    """The spec as trained on `dataset`: its channels, classes, resolution and a fitting stem.

    >>> from shufflesearch.accuracy.datasets import load_dataset
    >>> adapt_spec(ShuffleNetSpec(), load_dataset("fashion-mnist")).label
    'g3 x1 [4,8,4] 48px'
    """
    resolution = fidelity.resolution or dataset.image_size
    stem = fidelity.stem
    if stem == "auto":
        stem = "small" if resolution < SMALL_STEM_BELOW else "imagenet"
    elif stem == "keep":
        stem = spec.stem
    return dataclasses.replace(
        spec, in_channels=dataset.in_channels, num_classes=dataset.num_classes, resolution=resolution, stem=stem
    )


def peak_lr(spec: ShuffleNetSpec, fid: Fidelity) -> float:
    """The peak learning rate for `spec`: `fid.lr`, scaled by width when `lr_width_exponent` is set."""
    if not fid.lr_width_exponent:
        return fid.lr
    reference = spec.replace(scale=1.0).stage_channels[-1]
    return fid.lr * (reference / spec.stage_channels[-1]) ** fid.lr_width_exponent


def lr_multiplier(fid: Fidelity, frac: float) -> float:
    """LR multiplier at training fraction `frac` in [0, 1]: linear warm-up, then the decay."""
    frac = min(max(frac, 0.0), 1.0)
    warm = fid.warmup_fraction
    if frac < warm:
        start = 0.04 if fid.schedule == "onecycle" else 0.0
        return start + (1 - start) * (frac + 1e-3) / warm
    t = (frac - warm) / max(1e-9, 1 - warm)
    if fid.schedule == "linear":
        return 1 - t
    return 0.5 * (1 + math.cos(math.pi * t))


def split_of(recipe: dict[str, Any]) -> str:
    """The split a stored recipe's top-1 is on: "validation" or "test" (recipes stored before
    splits had a name were all scored on the test split; anything else reads as unknown)."""
    split = recipe.get("scored_on", "test")
    return split if split in SPLITS else "unknown"


def recipe_key(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe (`Fidelity.to_dict()`, maybe stored by another version) as two compare: a recipe scored
    on the test split without the split's fields, as every recipe was stored before splits had names
    (and no images are held out of it), so old and new spellings of one recipe are equal."""
    key = dict(recipe)
    if key.get("scored_on", "test") == "test":
        key.pop("scored_on", None)
        key.pop("validation_images", None)
    return key


def describe_recipe(recipe: dict[str, Any]) -> str:
    """A recipe (`Fidelity.to_dict()`, maybe stored by another version) in one line, as a person compares two.

    >>> describe_recipe(DEFAULT_FIDELITY.replace(train_images=2000).to_dict())
    '2000 images x 2 epochs at 48 px (imagenet stem), batch 128, lr 0.2 onecycle, crop-flip; scored on 5000 validation images held out of the training set'
    >>> describe_recipe({"train_images": 2000, "epochs": 2.0, "resolution": 48})  # stored before splits had names
    '2000 images x 2 epochs at 48 px (None stem), batch None, lr None None, None; scored on the whole test split'
    """

    def shown(key: str) -> str:  # a stored value of any type reads as itself, never a format error
        value = recipe.get(key)
        return f"{value:g}" if isinstance(value, float) else str(value)

    px, limit, split = recipe.get("resolution"), recipe.get("eval_images"), split_of(recipe)
    if split == "validation":
        held = (
            shown("validation_images") if limit is None else f"{shown('eval_images')} of {shown('validation_images')}"
        )
        scored = f"{held} validation images held out of the training set"
    else:
        scored = f"the whole {split} split" if limit is None else f"{shown('eval_images')} {split} images"
    return (f"{shown('train_images')} images x {shown('epochs')} epochs at "
            f"{shown('resolution') + ' px' if px else 'the data’s own size'} ({shown('stem')} stem), batch "
            f"{shown('batch_size')}, lr {shown('lr')} {shown('schedule')}, {shown('augment')}; scored on {scored}")  # fmt: skip
