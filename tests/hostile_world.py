"""The world each hostile-input case runs in (tests/test_hostile_input.py), and the stand-ins for heavy steps.

Tiny files in the real formats (IDX, CIFAR-10 pickles, PNG folders, a LUT, study files and a stored study in a real
SQLite file), and fakes that return a plausible result where the real step would export, time or train for seconds.
Reports are drawn for real (matplotlib's Agg, at a low resolution): that is where mathtext in a label raised.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np

from shufflesearch.presets import list_presets

CANARY = Path(tempfile.gettempdir()) / f"shufflesearch-canary-{os.getpid()}"  # a shell payload would create it


# -- the files ---------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_fmnist(directory: Path) -> None:
    from shufflesearch.accuracy.datasets.fashion_mnist import FASHION_MNIST_FILES

    rng = np.random.default_rng(0)
    labels = np.arange(20, dtype=np.uint8) % 10  # every class twice: a class-balanced batch of up to 20 exists
    arrays = [rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), labels, rng.integers(0, 256, (10, 28, 28),
              dtype=np.uint8), labels[:10]]  # fmt: skip
    directory.mkdir(parents=True)
    for name, array in zip(FASHION_MNIST_FILES, arrays, strict=True):
        (directory / f"{name}.gz").write_bytes(gzip.compress(_idx(array), mtime=0))


def _write_cifar(directory: Path, per_batch: int = 4) -> None:
    from shufflesearch.accuracy.datasets.cifar10 import CIFAR10_TRAIN_BATCHES

    directory.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    rng = np.random.default_rng(0)
    for i, name in enumerate([*CIFAR10_TRAIN_BATCHES, "test_batch"]):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [(i * per_batch + j) % 10 for j in range(per_batch)]}  # fmt: skip
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))


def _write_images(root: Path) -> None:
    from PIL import Image

    for c, name in enumerate(["ant", "cat"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), (40 * c + i, 0, 0)).save(root / name / f"{i}.png")


def _write_lut(path: Path) -> None:
    """A valid table covering the default 224 px input, every preset and the tiny study's space (timings made up:
    only parsing and the checks before timing are tested)."""
    from shufflesearch.latency.lut import LatencyTable
    from shufflesearch.latency.lut.blocks import block_keys, width_specs
    from shufflesearch.search.space import SearchSpace

    tiny = SearchSpace(groups=(3, 8), scale=(0.1, 0.5), repeats=((1, 2), (1, 2), (1, 2)))  # TINY_STUDY's
    keys = {k for spec in [*list_presets().values(), *width_specs(tiny, 3, "imagenet", 0)[0]] for k in block_keys(spec)}
    table = LatencyTable(resolution=224, num_classes=1000, in_channels=3, stem="imagenet", target="local", threads=1,
                         clock="wall", statistic="median_ms", blocks={k: {"us": 10.0} for k in sorted(keys)},
                         fit={"a": 1.0, "b_us": 5.0, "points": []})  # fmt: skip
    table.save(path)


TINY_STUDY = """
[study]
name = "tiny"
trials = 2
[budget]
mflops = [13, 40]
[space]
groups = [3, 8]
scale = [0.1, 0.5]
repeats = [[1, 2], [1, 2], [1, 2]]
"""
PARETO_STUDY = """
[study]
name = "front"
mode = "pareto"
[budget]
range = [5, 60]
[objective]
second = "{second}"
lut = "luts/tiny.lut.json"
"""


NASTY = f'<script>alert(1)</script>&"x" [/] [bold] $(touch {CANARY}); `touch {CANARY}`'
# What matplotlib, Markdown or a terminal would read as their own: mathtext (`$\frac{$` raised), TeX, HTML, a
# table's column break, a code span, a line break, NUL, a bidi override, an escape sequence, and length.
MATHTEXT = (
    "$\\frac{$ $x^2$ \\input{/etc/passwd} <b>&amp;</b> | `code` [a](javascript:x) *em* _u_\nb\x00\u202e\x1b[2J"
    + "y" * 300
)


def _write_stored_study(url: str) -> None:
    """tiny-13M as a (shared, untrusted) storage may hold it: hostile text in every free-form attribute."""
    import optuna

    from shufflesearch.search.storage import open_storage

    storage = open_storage(url)
    for name, window, text in (("tiny-13M", [6.5, 13.0], NASTY), ("tiny-40M", [13.0, 40.0], MATHTEXT)):
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        for key, value in {"window_mflops": window, "mode": "per-budget", "study_file": text, "candidates": 3,
                           "dataset": MATHTEXT}.items():  # fmt: skip
            study.set_user_attr(key, value)
        # Each label reaches a figure: the winner's names a bar (stage costs), a latency kind a legend entry.
        attrs = {"label": text, "preset": text, "worker": text, "status": text, "mflops": 12.0, "params": 1000,
                 "top1": 0.8, "latency_ms": 3.0, "latency_kind": MATHTEXT, "spec": {"groups": 3, "scale": 0.25}}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(value=0.8, user_attrs=attrs))
    storage.engine.dispose()  # the template is copied per case: no write-ahead log left open


def build_world(root: Path) -> None:
    from shufflesearch.latency.lut import LatencyTable

    _write_fmnist(root / "data" / "fmnist")
    _write_fmnist(root / "data" / "idx-damaged")
    damaged = root / "data" / "idx-damaged" / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(gzip.compress(gzip.decompress(damaged.read_bytes())[:5000]))
    _write_cifar(root / "data" / "cifar")
    _write_cifar(root / "data" / "cifar-evil")
    (root / "data" / "cifar-evil" / "data_batch_2").write_bytes(f"cos\nsystem\n(S'touch {CANARY}'\ntR.".encode())
    _write_images(root / "data" / "images")
    _write_images(root / "data" / "images-broken")
    (root / "data" / "images-broken" / "cat" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "studies").mkdir()
    (root / "studies" / "tiny.toml").write_text(TINY_STUDY)
    (root / "studies" / "pareto.toml").write_text(PARETO_STUDY.format(second="mflops"))
    (root / "studies" / "latency.toml").write_text(PARETO_STUDY.format(second="latency"))
    (root / "studies" / "bad.toml").write_text("[study]\nname = 'x'\ntrials = -1\n")
    (root / "studies" / "binary.toml").write_bytes(bytes(range(256)))
    (root / "junk").mkdir()
    (root / "junk" / "junk.db").write_bytes(b"not a database" * 100)
    _write_stored_study(f"sqlite:///{root / 'studies' / 'tiny.db'}")
    (root / "luts").mkdir()
    _write_lut(root / "luts" / "tiny.lut.json")
    LatencyTable.load(root / "luts" / "tiny.lut.json")  # the fixture itself must be valid
    (root / "luts" / "damaged.lut.json").write_text((root / "luts" / "tiny.lut.json").read_text()[:300])
    (root / "keep.txt").write_text("precious")
    (root / "keep.csv").write_text("a,b\n1,2\n")
    (root / "existing_dir").mkdir()
    (root / "existing_dir" / "thesis.tex").write_text("precious")
    (root / "devnull").symlink_to("/dev/null")


# -- the heavy steps, stopped --------------------------------------------------------------------
class Heavy(Exception):
    """Raised where real work would start; the wrapper around the library call returns a plausible result."""


def raise_heavy(*args, **kwargs):
    raise Heavy


def until_heavy(real, fake):
    """Run `real` (all its checks) until its heavy step raises Heavy, then return `fake(*args, **kwargs)`."""

    def wrapper(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except Heavy:
            return fake(*args, **kwargs)

    return wrapper


FAKE_ONNX = b"fake onnx model"


def fake_export(spec, path, seed=0, **options):
    from shufflesearch.atomic import write_atomically
    from shufflesearch.export import ExportResult

    return ExportResult(write_atomically(path, FAKE_ONNX), len(FAKE_ONNX), 0.0, options.get("opset", 17),
                        options.get("batch", 1), spec=spec)  # fmt: skip


def fake_timing(spec, *args, **kwargs):
    from shufflesearch.latency.measure import result_from_timing

    return result_from_timing([1.0, 1.1, 1.2], runs=3, warmup=0, target="local", backend="onnxruntime", threads=1,
                              resolution=spec.resolution, machine={"arch": "test"}, model=spec.label)  # fmt: skip


def fake_emulation(spec, profile="snapdragon820", runs=5, cache_dir=None):
    from shufflesearch.latency.emulated import INSTRUCTION_CLASSES, InstructionCount, estimate_ms

    mix = {name: 10**7 for name in INSTRUCTION_CLASSES}
    shape = (1, spec.in_channels, spec.resolution, spec.resolution)
    count = InstructionCount(sum(mix.values()), [sum(mix.values())], mix, "cortex-a72", "0x410fd083", "1.0", "8.0",
                             shape, 0.0)  # fmt: skip
    return estimate_ms(count, profile)


def fake_lut(space, *args, in_channels=3, stem="imagenet", **kwargs):
    from shufflesearch.latency.lut import LatencyTable

    return LatencyTable(resolution=space.resolution, num_classes=space.num_classes, in_channels=in_channels,
                        stem=stem, target="local", threads=1, clock="wall", statistic="median_ms",
                        blocks={"stem": {"us": 1.0}}, fit={"a": 1.0, "b_us": 0.0, "points": []})  # fmt: skip


def fake_validation(table, specs, *args, **kwargs):
    from shufflesearch.latency.lut import LutValidation

    rows = [{"label": s.label, "spec": s.to_dict(), "predicted_us": 1.0, "measured_us": 1.0, "error_pct": 0.0}
            for s in specs]  # fmt: skip
    return LutValidation(0.0, 1.0, 1.0, rows, table.clock, table.statistic, 0.0)


def fake_training(run, keep_weights=False):  # no weights: a run that kept none ends in one line
    from shufflesearch.accuracy.trainer import TrainResult

    top1 = 0.5 + run.spec.groups / 100 + run.spec.scale / 10  # distinct per Table 2 model: Spearman is defined
    return TrainResult(top1, 1.0, [], 0.01, 1, "ok", run.spec.to_dict(), run.dataset.name, run.fid.to_dict(), run.seed)


def fake_scores(spec, dataset, fidelity=None, batch_size=64, names=("synflow",), seed=0, device="cpu"):
    """score_on_dataset's checks (spec adaptation, the minibatch, the score names), then made-up scores.

    Its heavy part starts with resizing the minibatch (1 GB at 2048 px), hence a wrapper, not a stop."""
    from shufflesearch.accuracy import zero_cost
    from shufflesearch.accuracy.datasets import train_subset
    from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, adapt_spec

    trained = adapt_spec(spec, dataset, fidelity or DEFAULT_FIDELITY)
    train_subset(dataset.train_labels, batch_size, seed)
    names = zero_cost._check_names(names)
    return trained, zero_cost.ZeroCostResult({n: 1.0 for n in names}, {n: 0.0 for n in names}, batch_size, seed)


class FvcoreCheck:
    def __init__(self, macs, seconds):
        self.macs, self.seconds = macs, seconds


def one_process(real):
    """run_fidelity in this process: workers > 1 would spawn processes that do not see the stopped training."""

    def wrapper(*args, **kwargs):
        return real(*args, **{**kwargs, "workers": 1})

    return wrapper
