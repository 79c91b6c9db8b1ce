"""Datasets: the real Fashion-MNIST package, and IDX / CIFAR / image-folder files written here, valid and broken."""

import gzip
import os
import pickle
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shufflesearch.accuracy.datasets import (
    DatasetError,
    ImageDataset,
    cifar10,
    image_dataset,
    load_dataset,
    train_subset,
)
from shufflesearch.accuracy.datasets import (
    fashion_mnist as idx_loader,
)

IN_CI = os.environ.get("CI") == "true"
FILES = idx_loader.FASHION_MNIST_FILES


def _idx(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    )


def _fmnist_arrays(n_train: int = 12, n_test: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8),
    ]  # fmt: skip


def _write_fmnist(directory: Path, arrays: list[np.ndarray] | None = None, gz: bool = True) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, array in zip(FILES, arrays or _fmnist_arrays(), strict=True):
        data = _idx(array)
        paths[stem] = directory / (stem + ".gz" if gz else stem)
        paths[stem].write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return paths


# --- Fashion-MNIST: the real package ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_mnist() -> ImageDataset:
    if not idx_loader.FASHION_MNIST_DIR.is_dir():
        message = (
            f"Fashion-MNIST is not installed in {idx_loader.FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return load_dataset("fashion-mnist")


def test_real_fashion_mnist_shapes_and_labels(fashion_mnist):
    ds = fashion_mnist
    assert ds.name == "fashion-mnist" and ds.num_classes == 10 and ds.in_channels == 1 and ds.image_size == 28
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.is_contiguous()
    assert ds.train_labels.dtype == torch.int64 and len(ds.train_labels) == 60000 and len(ds.test_labels) == 10000
    # The dataset's documented layout: every class has 6000 training and 1000 test images.
    assert ds.train_labels.bincount().tolist() == [6000] * 10 and ds.test_labels.bincount().tolist() == [1000] * 10
    assert 0 < ds.train_images.float().mean() < 255 and len(ds.fingerprint) == 16


def test_real_fashion_mnist_loads_fast_and_deterministically(fashion_mnist):
    start = time.perf_counter()
    again = load_dataset("fashion-mnist")
    seconds = time.perf_counter() - start
    assert again.fingerprint == fashion_mnist.fingerprint and torch.equal(again.test_images, fashion_mnist.test_images)
    assert seconds < 5, f"loading took {seconds:.2f} s (measured ~0.6-0.9 s on a shared 2-core machine)"


def test_real_fashion_mnist_subset_is_balanced_and_seeded(fashion_mnist):
    labels = fashion_mnist.train_labels
    a, b, other = train_subset(labels, 1000, seed=0), train_subset(labels, 1000, seed=0), train_subset(labels, 1000, 1)
    assert a.dtype == torch.int64 and len(a) == 1000 and len(set(a.tolist())) == 1000
    assert labels[a].bincount().tolist() == [100] * 10
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert set(a.tolist()) <= set(train_subset(labels, 3000, seed=0).tolist())  # nested in n


# --- Fashion-MNIST: IDX files written here -----------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    arrays = _fmnist_arrays()
    _write_fmnist(tmp_path, arrays, gz=gz)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert np.array_equal(ds.train_images[:, 0].numpy(), arrays[0]) and np.array_equal(
        ds.test_images[:, 0].numpy(), arrays[2]
    )
    assert ds.train_labels.tolist() == arrays[1].tolist() and ds.test_labels.tolist() == arrays[3].tolist()
    assert ds.source == str(tmp_path)


def test_fingerprint_follows_the_bytes(tmp_path):
    arrays = _fmnist_arrays()
    _write_fmnist(tmp_path / "a", arrays)
    _write_fmnist(tmp_path / "b", arrays)
    arrays[0][0, 0, 0] ^= 1
    _write_fmnist(tmp_path / "c", arrays)
    prints = [load_dataset("fashion-mnist", tmp_path / d).fingerprint for d in "abc"]
    assert prints[0] == prints[1] != prints[2]


def test_resize_once_at_load(tmp_path):
    arrays = _fmnist_arrays()
    arrays[0][:] = 77  # a constant image stays constant under any interpolation
    _write_fmnist(tmp_path, arrays)
    native = load_dataset("fashion-mnist", tmp_path)
    big = load_dataset("fashion-mnist", tmp_path, image_size=32)
    assert big.train_images.shape == (12, 1, 32, 32) and big.test_images.shape == (6, 1, 32, 32)
    assert big.train_images.dtype == torch.uint8 and big.train_images.is_contiguous()
    assert (big.train_images == 77).all() and torch.equal(big.train_labels, native.train_labels)
    assert big.fingerprint != native.fingerprint
    assert load_dataset("fashion-mnist", tmp_path, image_size=28).fingerprint == native.fingerprint


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


CORRUPTIONS = {
    # name: (file, function of (raw IDX bytes) -> file bytes, error pattern)
    "bad magic": (FILES[0], lambda d: b"\x00\x00\x08\x04" + d[4:], "magic number 0x00000804"),
    "wrong dtype": (FILES[1], lambda d: b"\x00\x00\x0d\x01" + d[4:], "magic number"),
    "truncated images": (FILES[0], lambda d: d[:-100], "truncated"),
    "truncated header": (FILES[2], lambda d: d[:10], "truncated"),
    "trailing bytes": (FILES[3], lambda d: d + b"\x00", "bytes after"),
    "label count mismatch": (FILES[1], lambda d: _idx(np.zeros(11, np.uint8)), "12 images, 11 labels"),
    "label out of range": (FILES[3], lambda d: _idx(np.array([0, 1, 2, 3, 4, 10], np.uint8)), "label 10"),
    "not 28x28": (FILES[2], lambda d: _idx(np.zeros((6, 27, 27), np.uint8)), "27x27"),
    "huge dims": (FILES[0], lambda d: d[:4] + struct.pack(">3I", 2**31, 2**31, 28) + d[16:], "more than the file"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("gz", [True, False])
def test_corrupt_idx_is_a_clear_dataset_error(tmp_path, name, gz):
    stem, corrupt, pattern = CORRUPTIONS[name]
    paths = _write_fmnist(tmp_path, gz=gz)
    data = corrupt(_idx(_fmnist_arrays()[FILES.index(stem)]))
    paths[stem].write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset("fashion-mnist", tmp_path)
    assert "\n" not in str(info.value) and "dataset-fashion-mnist" in str(info.value)


@pytest.mark.parametrize("damage", ["crc", "truncated", "garbage"])
def test_corrupt_gzip_is_a_dataset_error(tmp_path, damage):
    paths = _write_fmnist(tmp_path)
    data = paths[FILES[0]].read_bytes()
    broken = {"crc": _flip(data, len(data) - 6), "truncated": data[: len(data) // 2], "garbage": data[:10] + b"x" * 50}
    paths[FILES[0]].write_bytes(broken[damage])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz is truncated or not a valid gzip file"):
        load_dataset("fashion-mnist", tmp_path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_loader, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no downloaded copy either
    with pytest.raises(
        DatasetError,
        match=r"not found in .*absent: download it with `shufflesearch data get fashion-mnist`, "
        r"install it with `apt-get install dataset-fashion-mnist`",
    ):
        load_dataset("fashion-mnist")
    paths = _write_fmnist(tmp_path / "partial")
    paths[FILES[3]].unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found in .*partial: pass --data-dir"):
        load_dataset("fashion-mnist", tmp_path / "partial")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    gz=st.booleans(),
    target=st.integers(0, 3),
    cut=st.none() | st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
)
def test_damaged_idx_gives_a_dataset_or_a_dataset_error(gz, target, cut, flips):
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_fmnist(Path(tmp), _fmnist_arrays(n_train=4, n_test=3), gz=gz)
        path = paths[FILES[target]]
        data = bytearray(path.read_bytes())
        for at, mask in flips:
            data[at % len(data)] ^= mask
        path.write_bytes(bytes(data[: cut % (len(data) + 1)] if cut is not None else data))
        try:
            ds = load_dataset("fashion-mnist", tmp)
        except DatasetError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:  # damage the format cannot detect (pixel or label bytes in a raw file) still gives a valid dataset
            assert ds.train_images.shape[1:] == (1, 28, 28) and len(ds.train_labels) == len(ds.train_images)
            assert int(ds.train_labels.max()) < 10 and int(ds.test_labels.max()) < 10


# --- CIFAR-10 ------------------------------------------------------------------------------------

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _py2_pickle(obj) -> bytes:
    """Pickle as Python 2 cPickle + numpy 1 wrote the official batches: protocol 2, str as BINSTRING,
    arrays through numpy.core.multiarray._reconstruct (a name numpy 2 no longer has)."""

    def enc(o) -> bytes:
        if isinstance(o, dict):
            return b"}(" + b"".join(enc(k) + enc(v) for k, v in o.items()) + b"u"
        if isinstance(o, list):
            return b"](" + b"".join(map(enc, o)) + b"e"
        if isinstance(o, bytes):
            return b"T" + struct.pack("<i", len(o)) + o
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        assert o.dtype == np.uint8
        dtype = b"cnumpy\ndtype\n" + enc(b"u1") + enc(0) + enc(1) + b"\x87R(" + enc(3) + enc(b"|") + b"NNN" + enc(-1) + enc(-1) + enc(0) + b"tb"  # fmt: skip
        array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + enc(0) + b"\x85" + enc(b"b") + b"\x87R"
        shape = b"(" + b"".join(enc(n) for n in o.shape) + b"t"
        return array + b"(" + enc(1) + shape + dtype + b"\x89" + enc(o.tobytes()) + b"tb"

    return b"\x80\x02" + enc(obj) + b"."


def _write_cifar(directory: Path, per_batch: int = 4, dump=None) -> dict[str, np.ndarray]:
    """Tiny batches with the real structure; returns the data written by file name."""
    dump = dump or (lambda obj: pickle.dumps(obj))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "batches.meta").write_bytes(
        dump({b"num_cases_per_batch": per_batch, b"label_names": CIFAR_NAMES, b"num_vis": 3072})
    )
    rng, written = np.random.default_rng(0), {}
    for i, name in enumerate([*cifar10.CIFAR10_TRAIN_BATCHES, "test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * per_batch,
        }
        (directory / name).write_bytes(dump(batch))
        written[name] = data
    return written


@pytest.mark.parametrize(
    "dump",
    [
        _py2_pickle,
        lambda o: pickle.dumps(o, protocol=2),
        lambda o: pickle.dumps(o, protocol=4),
        lambda o: pickle.dumps(o, protocol=5),
    ],
    ids=["python2-official", "protocol2", "protocol4", "protocol5"],
)
def test_cifar_batches_load(tmp_path, dump):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", dump=dump)
    ds = load_dataset("cifar10", tmp_path)  # the folder it was extracted into also works
    assert ds.classes[:3] == ("airplane", "automobile", "bird") and ds.num_classes == 10
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32) and ds.in_channels == 3
    first = written["data_batch_1"][0]
    # Row layout: 1024 red values, then green, then blue, each 32x32 row-major.
    assert ds.train_images[0, 1, 2, 3] == first[1024 + 2 * 32 + 3]
    assert np.array_equal(ds.test_images.reshape(4, -1).numpy(), written["test_batch"])
    assert ds.train_labels[:5].tolist() == [0, 1, 2, 3, 1] and ds.test_labels.dtype == torch.int64
    assert load_dataset("cifar10", tmp_path / "cifar-10-batches-py").fingerprint == ds.fingerprint


MALICIOUS = {
    "os.system": b"cos\nsystem\n(S'touch {sentinel}'\ntR.",
    "builtins.exec": b'cbuiltins\nexec\n(S\'open("{sentinel}", "w")\'\ntR.',
    "codecs.zlib": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",
}


@pytest.mark.parametrize("name", MALICIOUS)
def test_malicious_cifar_pickle_is_rejected_without_running(tmp_path, name):
    _write_cifar(tmp_path)
    sentinel = tmp_path / "pwned"
    (tmp_path / "data_batch_3").write_bytes(MALICIOUS[name].replace(b"{sentinel}", str(sentinel).encode()))
    with pytest.raises(DatasetError, match=r"data_batch_3 references|refusing") as info:
        load_dataset("cifar10", tmp_path)
    assert not sentinel.exists() and "\n" not in str(info.value)


def test_missing_cifar_says_where_to_get_it(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"CIFAR-10 file data_batch_4 not found in .*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", tmp_path)


def test_cifar_without_a_folder_is_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"not in the cache .*shufflesearch data get cifar10"):
        load_dataset("cifar10")
    _write_cifar(tmp_path / "cache" / "shufflesearch" / "datasets" / "cifar10" / "cifar-10-batches-py")
    assert load_dataset("cifar10").source == str(
        tmp_path / "cache" / "shufflesearch" / "datasets" / "cifar10" / "cifar-10-batches-py"
    )


def test_fashion_mnist_without_the_package_is_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(idx_loader, "FASHION_MNIST_DIR", tmp_path / "no-package")
    with pytest.raises(DatasetError, match=r"shufflesearch data get fashion-mnist.*apt-get install"):
        load_dataset("fashion-mnist")
    cached = tmp_path / "cache" / "shufflesearch" / "datasets" / "fashion-mnist"
    arrays = _fmnist_arrays()
    _write_fmnist(cached, arrays)
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(cached) and ds.test_labels.tolist() == arrays[3].tolist()
    monkeypatch.setattr(idx_loader, "FASHION_MNIST_DIR", tmp_path / "package")
    _write_fmnist(tmp_path / "package", _fmnist_arrays(seed=1))
    assert load_dataset("fashion-mnist").source == str(tmp_path / "package")  # the package comes first


CIFAR_BREAKS = {
    "float data": ("data_batch_2", lambda b: {**b, b"data": b[b"data"].astype(np.float32)}, "'data' is float32"),
    "wrong row size": ("data_batch_2", lambda b: {**b, b"data": b[b"data"][:, :100]}, r"\(4, 100\)"),
    "label count": ("test_batch", lambda b: {**b, b"labels": b[b"labels"][:3]}, "list of 4 ints"),
    "label range": ("test_batch", lambda b: {**b, b"labels": [0, 1, 2, 10]}, r"labels outside 0\.\.9"),
    "no data key": ("data_batch_5", lambda b: {b"labels": b[b"labels"]}, "no 'data' entry"),
    "not a dict": ("data_batch_1", lambda b: [1, 2, 3], "no 'data' entry"),
    "nine classes": ("batches.meta", lambda b: {b"label_names": CIFAR_NAMES[:9]}, "list of 10 strings"),
}


@pytest.mark.parametrize("name", CIFAR_BREAKS)
def test_malformed_cifar_is_a_dataset_error(tmp_path, name):
    _write_cifar(tmp_path)
    file, change, pattern = CIFAR_BREAKS[name]
    path = tmp_path / file
    path.write_bytes(pickle.dumps(change(pickle.loads(path.read_bytes()))))
    with pytest.raises(DatasetError, match=pattern):
        load_dataset("cifar10", tmp_path)


def test_truncated_cifar_pickle_is_a_dataset_error(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 pickle"):
        load_dataset("cifar10", tmp_path)


# --- Image folder ------------------------------------------------------------------------------


def _png(path: Path, value: int, size=(20, 20), mode="RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = {"RGB": (value, 0, 255 - value), "L": value, "RGBA": (value, 0, 255 - value, 255)}[mode]
    Image.new(mode, size, colour).save(path)


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_imagefolder_train_test_layout(tmp_path, held_out):
    for split, count in (("train", 3), (held_out, 2)):
        for i in range(count):
            _png(tmp_path / split / "cat" / f"{i}.png", 200, size=(40, 30), mode="RGBA")
            _png(tmp_path / split / "ant" / f"{i}.png", 10, mode="L")
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"\x00junk")  # hidden files are ignored
    ds = load_dataset("imagefolder", tmp_path, image_size=32)
    assert ds.classes == ("ant", "cat") and ds.in_channels == 3 and ds.image_size == 32
    assert ds.train_images.shape == (6, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_labels.tolist() == [0, 0, 1, 1]
    assert (ds.train_images[0] == 10).all()  # grey L images become equal RGB channels
    assert ds.train_images[3, :, 5, 5].tolist() == [200, 0, 55]  # resized solid colours stay exact


def test_imagefolder_flat_layout_holds_out_20_percent_deterministically(tmp_path):
    for c, name in enumerate(["b", "a"]):
        for i in range(10):
            _png(tmp_path / name / f"img{i:02d}.png", 100 * c + i)
    ds = load_dataset("imagefolder", tmp_path, image_size=28)
    assert ds.classes == ("a", "b") and len(ds.train_labels) == 16 and ds.test_labels.bincount().tolist() == [2, 2]
    train_values = set(ds.train_images[:, 0, 0, 0].tolist())
    test_values = set(ds.test_images[:, 0, 0, 0].tolist())
    assert not train_values & test_values and train_values | test_values == set(range(10)) | set(range(100, 110))
    again = load_dataset("imagefolder", tmp_path, image_size=28)
    assert again.fingerprint == ds.fingerprint and torch.equal(again.test_images, ds.test_images)
    assert load_dataset("imagefolder", tmp_path, image_size=32).fingerprint != ds.fingerprint


def _setup_empty_class(root: Path) -> None:
    _png(root / "a" / "1.png", 1)
    (root / "b").mkdir()


def _setup_non_image(root: Path) -> None:
    _png(root / "a" / "1.png", 1)
    _png(root / "a" / "2.png", 1)
    (root / "a" / "notes.txt").write_text("not an image")


def _setup_broken_png(root: Path) -> None:
    _png(root / "a" / "1.png", 1, size=(64, 64))
    (root / "a" / "2.png").write_bytes((root / "a" / "1.png").read_bytes()[:60])


def _setup_unpaired(root: Path) -> None:
    _png(root / "train" / "a" / "1.png", 1)


def _setup_class_mismatch(root: Path) -> None:
    _png(root / "train" / "a" / "1.png", 1)
    _png(root / "test" / "b" / "1.png", 1)


IMAGEFOLDER_BREAKS = {
    "empty class folder": (_setup_empty_class, r"class folder .*b has no images"),
    "non-image file": (_setup_non_image, r"cannot read image .*notes\.txt"),
    "broken png": (_setup_broken_png, r"cannot read image .*2\.png"),
    "no class folders": (lambda root: root.mkdir(exist_ok=True), "has no class folders"),
    "loose images": (lambda root: _png(root / "1.png", 1), "images outside class folders"),
    "train without test": (_setup_unpaired, "has train/ alone"),
    "class mismatch": (_setup_class_mismatch, "only in one: a, b"),
    "one image per class": (lambda root: _png(root / "a" / "1.png", 1), "needs 2 or more"),
}


@pytest.mark.parametrize("name", IMAGEFOLDER_BREAKS)
def test_broken_imagefolder_is_a_dataset_error(tmp_path, name):
    setup, pattern = IMAGEFOLDER_BREAKS[name]
    root = tmp_path / "root"
    root.mkdir()
    setup(root)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset("imagefolder", root, image_size=32)
    assert "\n" not in str(info.value)


def test_imagefolder_needs_a_folder_and_a_size(tmp_path):
    _png(tmp_path / "a" / "1.png", 1)
    with pytest.raises(DatasetError, match="needs an image size"):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        load_dataset("imagefolder", None, image_size=32)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        load_dataset("imagefolder", tmp_path / "absent", image_size=32)


# --- arguments, invariants, subsets --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"name": "mnist"}, {"name": "fashion-mnist", "image_size": 7}, {"name": "cifar10", "image_size": 32.0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(DatasetError, match=r"unknown dataset|image_size="):
        load_dataset(**kwargs)


def test_oversized_resize_is_refused_before_allocating(tmp_path, monkeypatch):
    _write_fmnist(tmp_path)
    monkeypatch.setattr(image_dataset, "MAX_IMAGE_BYTES", 18 * 64 * 64 - 1)
    with pytest.raises(DatasetError, match="pick a smaller size"):
        load_dataset("fashion-mnist", tmp_path, image_size=64)


def test_image_dataset_checks_its_tensors():
    x, y = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    ImageDataset("t", ("a",), x, y, x, y, "here", "f")
    with pytest.raises(DatasetError, match="images"):
        ImageDataset("t", ("a",), x.float(), y, x, y, "here", "f")
    with pytest.raises(DatasetError, match="labels"):
        ImageDataset("t", ("a",), x, y + 1, x, y, "here", "f")


def test_train_subset_water_fills_small_classes():
    labels = torch.tensor([0] * 2 + [1] * 50 + [2] * 50)
    picked = train_subset(labels, 30, seed=3)
    assert labels[picked].bincount().tolist() == [2, 14, 14]
    assert torch.equal(train_subset(labels, 102, seed=0), torch.arange(102))
    for n in (0, 103, True):
        with pytest.raises(DatasetError, match="train subset size"):
            train_subset(labels, n, seed=0)


@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    fraction=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32),
)
def test_train_subset_is_balanced_nested_and_deterministic(sizes, fraction, seed):
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])[
        torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(1))
    ]
    n = max(1, int(fraction * len(labels)))
    picked = train_subset(labels, n, seed)
    assert len(picked) == n == len(set(picked.tolist())) and torch.equal(picked, train_subset(labels, n, seed))
    counts = labels[picked].bincount(minlength=len(sizes)).tolist()
    for count, size in zip(counts, sizes, strict=True):  # within one of the largest class, unless it ran out
        assert count == size or count >= max(counts) - 1
    if n < len(labels):
        assert set(picked.tolist()) <= set(train_subset(labels, n + 1, seed).tolist())
