"""The decoded dataset every loader returns, the class-balanced subset, and the checks they share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from ...errors import UsageError

__all__ = [
    "MAX_IMAGE_BYTES",
    "DatasetError",
    "ImageDataset",
    "check_size",
    "fingerprint_of",
    "resize",
    "train_subset",
    "validation_split",
]

# 50k CIFAR images at 224 px take 7.5 GB: refuse before allocating rather than swap a shared machine.
MAX_IMAGE_BYTES = 4 * 2**30


class DatasetError(UsageError):
    """A dataset that is missing, malformed or unsafe: the message names the file, the rule and the fix."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Decoded images (uint8, N x C x S x S) and int64 labels; ``test_*`` is the held-out evaluation split."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    source: str
    fingerprint: str

    def __post_init__(self) -> None:
        c, s = self.train_images.shape[1:3] if self.train_images.ndim == 4 else (0, 0)
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if x.dtype != torch.uint8 or tuple(x.shape[1:]) != (c, s, s) or not x.is_contiguous() or not len(x):
                raise DatasetError(
                    f"{self.name} {split} images: {x.dtype} {tuple(x.shape)}, need uint8 N x {c} x {s} x {s}"
                )
            k = len(self.classes)
            if y.dtype != torch.int64 or y.shape != x.shape[:1] or not 0 <= int(y.min()) <= int(y.max()) < k:
                raise DatasetError(f"{self.name} {split} labels: {y.dtype} {tuple(y.shape)}, need int64 in [0, {k})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[2]


def train_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted int64 indices of ``n`` training items, as class-balanced as the class sizes allow.

    Deterministic for a seed, and nested: the subset of size n lies inside the one of size n + k.

    >>> train_subset(torch.tensor([0, 0, 1, 1, 1]), 2, seed=0).tolist()  # one of each class
    [0, 2]
    """
    if labels.ndim != 1 or labels.is_floating_point():
        raise DatasetError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    if type(n) is not int or not 1 <= n <= len(labels):
        raise DatasetError(f"train subset size {n!r} must be an integer in [1, {len(labels)}] (the training set size)")
    gen = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    perms = [m[torch.randperm(len(m), generator=gen)] for m in members]
    # Water-filling: classes too small for an equal share give all they have, the rest split what is left.
    # The seed picks which classes take the remainder, so no class is always favoured.
    order = torch.randperm(len(members), generator=gen).tolist()
    taken, remaining = [0] * len(members), n
    left = sorted(order, key=lambda k: len(members[k]))  # stable: ties keep the seeded order
    while left and len(members[left[0]]) * len(left) <= remaining:
        k = left.pop(0)
        taken[k] = len(members[k])
        remaining -= taken[k]
    for i, k in enumerate(j for j in order if j in left):
        taken[k] = remaining // len(left) + (i < remaining % len(left))
    return torch.sort(torch.cat([p[:t] for p, t in zip(perms, taken, strict=True)])).values


# The validation carve-out is drawn with its own seed, never a run's: every run and seed is scored on
# the same held-out images, and no run trains on them.
VALIDATION_SEED = 20_171_204
# A small training set gives at most this share of its images to validation.
VALIDATION_SHARE_MAX = 0.2


def validation_split(labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation, training) sorted indices: `n` class-balanced images held out of the training
    labels (at most a fifth of them), and all the others, which are what a run may train on.

    >>> held, rest = validation_split(torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), 2)
    >>> len(held), len(rest), sorted(torch.tensor([0] * 5 + [1] * 5)[held].tolist())
    (2, 8, [0, 1])
    """
    size = len(labels)
    n = min(n, int(size * VALIDATION_SHARE_MAX))
    if n < 1:
        raise DatasetError(f"{size} training images are too few to hold out a validation split; "
                           "score on the test split (scored_on = 'test')")  # fmt: skip
    held = train_subset(labels, n, VALIDATION_SEED)
    keep = torch.ones(size, dtype=torch.bool)
    keep[held] = False
    return held, torch.nonzero(keep).flatten()


def check_size(what: str, count: int, channels: int, size: int) -> None:
    need = count * channels * size * size
    if need > MAX_IMAGE_BYTES:
        limit = f"{MAX_IMAGE_BYTES / 2**30:.0f} GiB limit"
        raise DatasetError(
            f"{what}: {count} images at {size} px need {need / 2**30:.1f} GiB, over the {limit}: pick a smaller size"
        )


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    # torch resizes uint8 directly (within 1 grey level of the float path, 3x faster, no float copy).
    return torch.nn.functional.interpolate(images, (size, size), mode="bilinear", antialias=True).contiguous()


def fingerprint_of(*parts: str) -> str:
    """A short, stable hex fingerprint of `parts` (what the result cache keys a dataset by)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
