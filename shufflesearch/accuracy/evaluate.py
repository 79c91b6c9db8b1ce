"""Top-1 and top-5 of a trained network: on a dataset's test split, or on an ImageNet-style folder.

Both feed the network as its checkpoint says (`checkpoint.Preprocessing`): our checkpoints as
the trainer did (resize, the training mean/std), official ones as ShuffleNet-Series evaluated
(shorter side to 256, centre crop 224, BGR, float 0-255, no normalisation).

>>> ckpt = load_checkpoint("shufflenetv1_g3_1.0x.pth.tar", preset="shufflenet_v1_x1_0_g3")  # doctest: +SKIP
>>> evaluate_folder(trained_model(ckpt), "imagenet/val", ckpt.preprocessing)  # doctest: +SKIP
{'top1': 0.678, 'top5': 0.876, 'images': 50000, 'classes': 1000}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint, Preprocessing, trained_model
from ..errors import UsageError
from .datasets import DatasetError, ImageDataset, train_subset
from .datasets.image_folder import IMAGE_SUFFIXES
from .images import as_tensor, resize_images

__all__ = ["count_correct", "eval_indices", "evaluate_checkpoint", "evaluate_folder", "evaluate_split", "folder_images",
           "load_image"]  # fmt: skip

BATCH = 100


def evaluate_checkpoint(
    ckpt: Checkpoint,
    *,
    folder: str | os.PathLike | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    limit: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint: on an ImageNet-style `folder`, or on `dataset`'s test split
    (default: the dataset our checkpoint was trained on). `device` is resolved first (one line if absent).

    The result also says what was evaluated (`on`) and, for a split, whether it is the very data
    the checkpoint was trained with (`same_dataset`, by fingerprint).
    """
    from .datasets import DATASETS, load_dataset
    from .devices import resolve_device

    where = resolve_device(device)
    if folder is not None and dataset is not None:
        raise UsageError("evaluate on a validation folder or on a dataset's test split, not both")
    trained_on = ckpt.meta.get("dataset", "")
    if folder is None and dataset is None:
        dataset = trained_on.split(":")[0]
        if dataset not in DATASETS or dataset == "imagefolder":
            raise UsageError("name what to evaluate on: --data-dir VAL (one folder per class) or --dataset, "
                             "e.g. --dataset fashion-mnist")  # fmt: skip
    model = trained_model(ckpt, where)
    if folder is not None:
        return {**evaluate_folder(model, folder, ckpt.preprocessing, where, limit), "on": str(folder), "device": where}
    size = ckpt.spec.resolution if dataset == "imagefolder" else None
    data = load_dataset(dataset, data_dir, size)
    scores = evaluate_split(model, data, ckpt.preprocessing, where, limit)
    same = trained_on == f"{data.name}:{data.fingerprint}"
    return {**scores, "on": f"{data.name} test split", "same_dataset": same, "device": where}


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    dataset: ImageDataset,
    preprocessing: Preprocessing,
    device: str = "cpu",
    limit: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 (fractions) over `dataset`'s test split.

    `limit` scores the class-balanced subset the trainer's `eval_images` scores (seed 0), so a
    checkpoint's stored top-1 can be reproduced from the file alone.
    """
    spec = model.eval().spec
    if dataset.in_channels != spec.in_channels or dataset.num_classes != spec.num_classes:
        raise DatasetError(f"{dataset.name} has {dataset.in_channels}-channel images in {dataset.num_classes} classes; "
                           f"the network takes {spec.in_channels} channels and predicts {spec.num_classes} classes")  # fmt: skip
    x, y = as_tensor(dataset.test_images), as_tensor(dataset.test_labels)
    keep = eval_indices(y, limit)
    if keep is not None:
        x, y = x[keep], y[keep]
    counts = _Counts()
    for i in range(0, len(y), BATCH):
        xb = resize_images(x[i : i + BATCH], preprocessing.resolution)
        counts.add(model, _to_input(xb, preprocessing, device), y[i : i + BATCH].to(device))
    return counts.result()


@torch.no_grad()
def evaluate_folder(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    preprocessing: Preprocessing,
    device: str = "cpu",
    limit: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 (fractions) over an ImageNet-style folder: one sub-folder per class, labels in
    sorted folder order (ImageNet's `n01440764`... is the official order). `limit` scores the
    class-balanced subset of that many images (seed 0, as `evaluate_split`), not the first classes."""
    items, classes = folder_images(folder)
    model.eval()
    if len(classes) != model.spec.num_classes:
        raise DatasetError(f"{folder} has {len(classes)} class folders; the network predicts "
                           f"{model.spec.num_classes} classes: give one folder per class, in its training order")  # fmt: skip
    keep = eval_indices(torch.tensor([c for _, c in items]), limit)
    if keep is not None:
        items = [items[i] for i in keep.tolist()]
    counts = _Counts()
    for i in range(0, len(items), BATCH):
        chunk = items[i : i + BATCH]
        xb = torch.stack([load_image(path, preprocessing) for path, _ in chunk])
        counts.add(model, _to_input(xb, preprocessing, device), torch.tensor([c for _, c in chunk], device=device))
    return {**counts.result(), "classes": len(classes)}


def eval_indices(labels: Any, limit: int | None) -> torch.Tensor | None:
    """The test images `limit` scores: the class-balanced subset of seed 0, whatever the run's seed,
    so the trainer, a checkpoint's evaluation and the ONNX check all score the same images.
    None: every image (no limit, or one at least the split's size).

    >>> eval_indices(torch.tensor([0, 0, 0, 1, 1, 1]), 2).tolist()  # one of each class, not the first two
    [2, 5]
    """
    labels = as_tensor(labels)
    if limit is None or limit >= len(labels):
        return None
    return train_subset(labels, limit, 0)


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct top-1 (argmax) and top-5 predictions in a batch, as tensors on its device (no host read)."""
    best = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return (logits.argmax(1) == labels).sum(), (best == labels[:, None]).any(1).sum()


def folder_images(folder: str | os.PathLike) -> tuple[list[tuple[Path, int]], list[str]]:
    """(image path, class index) for every image under `folder`'s class sub-folders, and the class names."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: give a validation folder with one sub-folder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        items += [(p, label) for p in found]
    if not items:
        raise DatasetError(f"{root} holds no images in class sub-folders ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return items, classes


def load_image(path: Path, prep: Preprocessing) -> torch.Tensor:
    """One image as uint8 C x S x S, channels in file order (RGB or L): shorter side resized to
    `prep.resize`, centre crop `prep.resolution` (rounding as torchvision's CenterCrop)."""
    import numpy as np
    from PIL import Image, ImageOps

    size, crop = prep.resize, prep.resolution
    try:
        with Image.open(path) as image:
            image = image.convert("L" if prep.channels == "L" else "RGB")
            if prep.antialias and size == crop:  # exactly what our image-folder loader trained on
                return _chw(np.asarray(ImageOps.fit(image, (crop, crop), Image.Resampling.BILINEAR)))
            pixels = np.asarray(image)
    except Exception as exc:  # PIL raises many types on bad files
        raise DatasetError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    x = _chw(pixels)
    h, w = x.shape[1:]
    # OpenCV's rounding of the long side, as the official OpencvResize
    oh, ow = (size, int(size / h * w + 0.5)) if h < w else (int(size / w * h + 0.5), size)
    x = F.interpolate(x[None].float(), (oh, ow), mode="bilinear", align_corners=False, antialias=prep.antialias)
    x = x[0].round_().clamp_(0, 255).to(torch.uint8)
    top, left = round((oh - crop) / 2.0), round((ow - crop) / 2.0)
    if top < 0 or left < 0:
        raise DatasetError(f"{path}: resized to {oh}x{ow} px, smaller than the {crop} px crop")
    return x[:, top : top + crop, left : left + crop].contiguous()


def _chw(pixels: Any) -> torch.Tensor:
    x = torch.from_numpy(pixels.copy())
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def _to_input(x: torch.Tensor, prep: Preprocessing, device: str) -> torch.Tensor:
    x = x.to(device).float()
    if prep.channels == "BGR":
        x = x.flip(1)
    mean = torch.tensor(prep.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)  # 2-3x faster convs on a CPU


class _Counts:
    """Correct top-1 and top-5 counts, summed on the device (one host read at the end)."""

    def __init__(self) -> None:
        self.top1 = self.top5 = self.n = 0

    def add(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        top1, top5 = count_correct(model(x).float(), y)
        self.top1, self.top5 = self.top1 + top1, self.top5 + top5
        self.n += len(y)

    def result(self) -> dict[str, Any]:
        if not self.n:
            raise DatasetError("no images to evaluate")
        return {"top1": int(self.top1) / self.n, "top5": int(self.top5) / self.n, "images": self.n}
