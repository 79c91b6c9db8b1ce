"""Image classification data for proxy training, read from local files (no torchvision, no downloads).

Three sources, each decoded once into uint8 N x C x H x W tensors:
- ``fashion-mnist`` (default): the IDX files of Debian's ``dataset-fashion-mnist`` package, or --data-dir;
- ``cifar10``: the python batches (--data-dir at ``cifar-10-batches-py``), unpickled through an allowlist;
- ``imagefolder``: one subfolder per class, with ``train/`` + ``test/`` (or ``val/``) or a 20% hold-out.

>>> ds = load_dataset("fashion-mnist")
>>> tuple(ds.train_images.shape), ds.num_classes
((60000, 1, 28, 28), 10)
>>> len(train_subset(ds.train_labels, 1000, seed=0))  # 100 images of each class
1000
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...spec import RESOLUTION_RANGE
from ..recipe import DATASETS  # the names have one home: the torch-free recipe (the CLI lists them)
from .cifar10 import load_cifar10
from .fashion_mnist import load_fashion_mnist
from .image_dataset import (
    DatasetError,
    ImageDataset,
    check_size,
    fingerprint_of,
    resize,
    train_subset,
    validation_split,
)
from .image_folder import load_image_folder

__all__ = ["DATASETS", "DatasetError", "ImageDataset", "load_dataset", "train_subset", "validation_split"]


def load_dataset(name: str, data_dir: str | Path | None = None, image_size: int | None = None) -> ImageDataset:
    """Read a dataset from local files; ``image_size`` resizes it (required for ``imagefolder``).

    >>> load_dataset("fashion-mnist", image_size=32).train_images.shape  # or "cifar10", "path/to/cifar-10-batches-py"
    torch.Size([60000, 1, 32, 32])
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    lo, hi = RESOLUTION_RANGE
    if image_size is not None and (type(image_size) is not int or not lo <= image_size <= hi):
        raise DatasetError(f"image_size={image_size!r} must be an integer in [{lo}, {hi}] px, the model resolutions")
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "imagefolder":
        return load_image_folder(directory, image_size)
    ds = load_fashion_mnist(directory) if name == "fashion-mnist" else load_cifar10(directory)
    if image_size is None or image_size == ds.image_size:
        return ds
    check_size(name, len(ds.train_images) + len(ds.test_images), ds.in_channels, image_size)
    return dataclasses.replace(
        ds,
        train_images=resize(ds.train_images, image_size),
        test_images=resize(ds.test_images, image_size),
        fingerprint=fingerprint_of(ds.fingerprint, f"resized to {image_size}"),
    )
