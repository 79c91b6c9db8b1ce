"""A folder of images, one subfolder per class, with train/ + test/ (or val/) or a seeded 20% hold-out."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .image_dataset import DatasetError, ImageDataset, check_size

__all__ = ["HOLDOUT_FRACTION", "IMAGE_SUFFIXES", "LAYOUT", "load_image_folder"]

HOLDOUT_FRACTION = 0.2
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
LAYOUT = "ROOT/<class>/<images> (20% held out per class) or ROOT/train/<class>/ + ROOT/test/<class>/ (or val/)"


def load_image_folder(root: Path | None, image_size: int | None) -> ImageDataset:
    if root is None or not root.is_dir():
        raise DatasetError(f"imagefolder needs --data-dir naming a folder laid out as {LAYOUT}; got {root}")
    if image_size is None:
        raise DatasetError("imagefolder needs an image size (e.g. --image-size 64): its images are resized to it")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    held_out = "test" if "test" in subdirs else "val" if "val" in subdirs else None
    if "train" in subdirs and held_out:
        train, test = _class_files(root / "train"), _class_files(root / held_out)
        if set(train) != set(test):
            odd = ", ".join(sorted(set(train) ^ set(test)))
            raise DatasetError(f"{root}: train/ and {held_out}/ must hold the same class folders; only in one: {odd}")
    elif "train" in subdirs or held_out:
        raise DatasetError(f"{root} has {'train' if held_out is None else held_out}/ alone: lay it out as {LAYOUT}")
    else:
        train, test = _hold_out(_class_files(root))
    classes = tuple(sorted(train))
    check_size(str(root), sum(map(len, [*train.values(), *test.values()])), 3, image_size)
    hasher = hashlib.sha256(f"imagefolder at {image_size} px".encode())
    train_x, train_y = _read_images(train, classes, image_size, hasher)
    test_x, test_y = _read_images(test, classes, image_size, hasher)
    return ImageDataset("imagefolder", classes, train_x, train_y, test_x, test_y, str(root), hasher.hexdigest()[:16])


def _class_files(root: Path) -> dict[str, list[Path]]:
    """Non-hidden files under each class subfolder (searched recursively), sorted."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    loose = sorted(p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise DatasetError(f"{root} has images outside class folders ({loose[0]}): lay it out as {LAYOUT}")
    files = {}
    for folder in sorted(p for p in entries if p.is_dir()):
        visible = (p for p in folder.rglob("*") if not any(s.startswith(".") for s in p.relative_to(folder).parts))
        found = sorted(p for p in visible if p.is_file())
        if not found:
            raise DatasetError(f"class folder {folder} has no images: add some or remove the folder")
        files[folder.name] = found
    if not files:
        raise DatasetError(f"{root} has no class folders: lay it out as {LAYOUT}")
    return files


def _hold_out(files: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    # Ordering by a hash of the file name keeps the split the same on every machine and when files are added.
    train, test = {}, {}
    for name, paths in files.items():
        if len(paths) < 2:
            raise DatasetError(
                f"class {name!r} has 1 image; the {HOLDOUT_FRACTION:.0%} hold-out needs 2 or more: add images"
            )
        ordered = sorted(paths, key=lambda p: hashlib.sha256(p.name.encode()).digest())
        n_test = max(1, round(HOLDOUT_FRACTION * len(paths)))
        test[name], train[name] = sorted(ordered[:n_test]), sorted(ordered[n_test:])
    return train, test


def _read_images(
    files: dict[str, list[Path]], classes: tuple[str, ...], size: int, hasher: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, ImageOps

    items = [(path, label) for label, c in enumerate(classes) for path in files[c]]
    out = np.empty((len(items), size, size, 3), np.uint8)
    for row, (path, label) in enumerate(items):
        data = path.read_bytes()
        hasher.update(f"{classes[label]}/{path.name}:{len(data)}\n".encode() + data)
        try:
            with Image.open(io.BytesIO(data)) as image:
                # fit = resize the short side and centre-crop: keeps the aspect ratio instead of squashing.
                out[row] = np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR))
        except Exception as exc:  # PIL raises many types on bad files (OSError, SyntaxError, DecompressionBombError...)
            raise DatasetError(
                f"cannot read image {path} ({type(exc).__name__}: {exc}): remove it or replace it with a readable image"
            ) from exc
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels
