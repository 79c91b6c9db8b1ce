"""Fashion-MNIST from its four IDX files (gzipped or raw): Debian's dataset-fashion-mnist package or a folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .download import cached_folder
from .image_dataset import DatasetError, ImageDataset, fingerprint_of

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "FASHION_MNIST_FILES", "load_fashion_mnist"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = tuple(f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1"))
# Deflate expands at most ~1032x, so a header promising more is corrupt (and not worth allocating).
_MAX_DEFLATE_RATIO = 1100
_FASHION_FIX = "reinstall with `apt-get install --reinstall dataset-fashion-mnist` or replace the file"


def load_fashion_mnist(data_dir: Path | None) -> ImageDataset:
    # With no folder named: Debian's package, else the copy `shufflesearch data get fashion-mnist` cached.
    cached = cached_folder("fashion-mnist")
    directory = data_dir or (cached if not FASHION_MNIST_DIR.is_dir() and cached.is_dir() else FASHION_MNIST_DIR)
    names = ", ".join(f"{f}[.gz]" for f in FASHION_MNIST_FILES)
    if data_dir is None:
        fix = (
            "download it with `shufflesearch data get fashion-mnist`, install it with "
            "`apt-get install dataset-fashion-mnist`, or pass --data-dir DIR holding the four IDX files"
        )
    else:
        fix = "pass --data-dir DIR holding the four IDX files, or omit it to use the dataset-fashion-mnist package"
    fix += f" ({names})"
    if not directory.is_dir():
        raise DatasetError(f"Fashion-MNIST not found in {directory}: {fix}")
    arrays, hashes = [], []
    for stem, ndim in zip(FASHION_MNIST_FILES, (3, 1, 3, 1), strict=True):
        found = [p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()]
        if not found:
            raise DatasetError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}: {fix}")
        array, digest = _read_idx(found[0], ndim)
        arrays.append(array)
        hashes.append(digest)
    for split, images, labels in (("train", *arrays[:2]), ("t10k", *arrays[2:])):
        problem = (
            f"hold {images.shape[1]}x{images.shape[2]} images, not 28x28" if images.shape[1:] != (28, 28)
            else f"have {len(images)} images, {len(labels)} labels" if len(images) != len(labels) or not len(images)
            else f"have label {labels.max()}, outside the classes 0..9" if labels.max() >= len(FASHION_MNIST_CLASSES)
            else None
        )  # fmt: skip
        if problem:
            raise DatasetError(f"Fashion-MNIST {split} files in {directory} {problem}: {_FASHION_FIX}")
    return ImageDataset(
        "fashion-mnist", FASHION_MNIST_CLASSES,
        torch.from_numpy(arrays[0]).unsqueeze(1), torch.from_numpy(arrays[1]).long(),
        torch.from_numpy(arrays[2]).unsqueeze(1), torch.from_numpy(arrays[3]).long(),
        str(directory), fingerprint_of("fashion-mnist", *hashes),
    )  # fmt: skip


def _read_idx(path: Path, ndim: int) -> tuple[np.ndarray, str]:
    """Decode an IDX file of unsigned bytes (gzipped or raw); also return the sha256 of the file."""
    raw = path.read_bytes()

    def corrupt(problem: str) -> DatasetError:
        return DatasetError(f"{path} {problem}: {_FASHION_FIX}")

    stream: Any = gzip.GzipFile(fileobj=io.BytesIO(raw)) if raw[:2] == b"\x1f\x8b" else io.BytesIO(raw)
    try:
        header = stream.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim:
            raise corrupt(f"is truncated: {len(header)} bytes, less than an IDX header ({4 + 4 * ndim})")
        if header[:3] != b"\x00\x00\x08" or header[3] != ndim:
            raise corrupt(f"has magic number 0x{header[:4].hex()}, expected 0x000008{ndim:02x} (IDX, uint8, {ndim}-D)")
        dims = struct.unpack(f">{ndim}I", header[4:])
        count = math.prod(dims)
        if count > _MAX_DEFLATE_RATIO * len(raw):
            raise corrupt(f"header promises {dims} items, more than the file can hold")
        buf = bytearray(count)
        got = stream.readinto(buf)
        if got != count:
            raise corrupt(f"is truncated: header promises {dims} = {count} bytes, found {got}")
        if stream.read(1):  # reading to the end also makes gzip check its CRC
            raise corrupt(f"has bytes after the {count} its header {dims} promises")
    except (OSError, EOFError, zlib.error) as exc:
        raise corrupt(f"is truncated or not a valid gzip file ({exc})") from exc
    return np.frombuffer(buf, np.uint8).reshape(dims), hashlib.sha256(raw).hexdigest()
