"""CIFAR-10 from its python batches, unpickled through an allowlist (data only, nothing imported)."""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .download import cached_folder
from .image_dataset import DatasetError, ImageDataset, fingerprint_of

__all__ = ["CIFAR10_TRAIN_BATCHES", "load_cifar10"]

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FIX = "re-extract cifar-10-python.tar.gz"


def load_cifar10(data_dir: Path | None) -> ImageDataset:
    fix = (
        "run `shufflesearch data get cifar10`, or download the python version (cifar-10-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass --data-dir path/to/cifar-10-batches-py"
    )
    if data_dir is None:  # the copy `shufflesearch data get cifar10` cached
        data_dir = cached_folder("cifar10")
        if not data_dir.is_dir():
            raise DatasetError(f"CIFAR-10 is not in the cache ({data_dir}) and no --data-dir was given: {fix}")
    if (data_dir / "cifar-10-batches-py").is_dir():  # pointed at the folder it was extracted into
        data_dir = data_dir / "cifar-10-batches-py"
    for name in ("batches.meta", *CIFAR10_TRAIN_BATCHES, "test_batch"):
        if not (data_dir / name).is_file():
            raise DatasetError(f"CIFAR-10 file {name} not found in {data_dir}: {fix}")
    meta, digest = _unpickle(data_dir / "batches.meta")
    names = _entry(meta, "label_names", data_dir / "batches.meta")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(s, bytes | str) for s in names):
        raise DatasetError(f"{data_dir / 'batches.meta'}: label_names must be a list of 10 strings: {_CIFAR_FIX}")
    classes = tuple(s.decode("utf-8", "replace") if isinstance(s, bytes) else s for s in names)
    hashes, splits = [digest], []
    for batch_names in (CIFAR10_TRAIN_BATCHES, ("test_batch",)):
        parts = [_read_cifar_batch(data_dir / name, len(classes)) for name in batch_names]
        hashes += [digest for _, _, digest in parts]
        images, labels = (torch.from_numpy(np.concatenate(arrays)) for arrays in list(zip(*parts, strict=True))[:2])
        splits += [images, labels]
    return ImageDataset("cifar10", classes, *splits, str(data_dir), fingerprint_of("cifar10", *hashes))


def _read_cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray, str]:
    batch, digest = _unpickle(path)
    data, labels = _entry(batch, "data", path), _entry(batch, "labels", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,) and len(data)):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' is {got}, CIFAR-10 has uint8 N x 3072 (3x32x32): {_CIFAR_FIX}")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(v) is int for v in labels):
        raise DatasetError(f"{path}: 'labels' must be a list of {len(data)} ints, one per image: {_CIFAR_FIX}")
    label_array = np.asarray(labels, dtype=np.int64)
    if not 0 <= label_array.min() <= label_array.max() < num_classes:
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1} (the classes in batches.meta): {_CIFAR_FIX}")
    # Each row is the R, G, B planes of a 32x32 image in row-major order: already C x H x W.
    return np.ascontiguousarray(data).reshape(-1, 3, 32, 32), label_array, digest


def _entry(obj: Any, key: str, path: Path) -> Any:
    # The official batches have bytes keys (pickled by Python 2); Python 3 re-pickles may have str keys.
    if isinstance(obj, dict):
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
    raise DatasetError(f"{path} has no {key!r} entry (not a CIFAR-10 batch): point --data-dir at cifar-10-batches-py")


def _latin1_encode(text: Any, encoding: Any) -> bytes:
    # Python 3 pickles bytes as _codecs.encode(str, "latin1") under protocol 2; nothing else passes.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 batch may reference: numpy array reconstruction.

    The official batches (Python 2, numpy 1, protocol 2) name numpy.core.multiarray._reconstruct, numpy.ndarray
    and numpy.dtype; numpy 2 re-pickles name numpy._core, protocol 5 uses _frombuffer. The functions come
    from numpy's own reduce output, so no deprecated module is imported.
    """
    reconstruct, frombuffer = np.empty(0).__reduce__()[0], np.empty(1).__reduce_ex__(5)[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles data only: a global outside the numpy allowlist raises before anything is imported."""

    def __init__(self, file: io.BytesIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise DatasetError(
                f"{self._path} references {module}.{name}, not numpy: refusing to unpickle; {_CIFAR_FIX}"
            )
        return self._allowed[(module, name)]


def _unpickle(path: Path) -> tuple[Any, str]:
    raw = path.read_bytes()
    try:
        # Walk the opcodes first, in pure Python and bounded by the file: a damaged length field (BYTEARRAY8 of
        # 10**18 bytes) makes the C unpickler fail to allocate it and print a stray "SystemError" line.
        with warnings.catch_warnings():  # a damaged STRING opcode holds invalid escapes: an error below, not a warning
            warnings.simplefilter("ignore", DeprecationWarning)
            for _ in pickletools.genops(io.BytesIO(raw)):
                pass
        obj = _CifarUnpickler(io.BytesIO(raw), path).load()
    except DatasetError:
        raise
    except Exception as exc:  # a corrupt pickle fails in many ways (EOFError, struct, numpy...): report them alike
        raise DatasetError(
            f"{path} is not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc}): {_CIFAR_FIX}"
        ) from exc
    return obj, hashlib.sha256(raw).hexdigest()
