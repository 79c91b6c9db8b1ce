"""Hostile training input (issue 17): what cannot train is refused in one line, what can is handled.

Through the real `main` where it can be: recipes that cannot train (a batch of one image under
BatchNorm, a learning rate past float32, epochs without end) exit 2 before any data loads; a damaged
proxy-result cache is a miss with one warning; large images are resized per batch and counted in the
memory check; an empty or relative XDG_CACHE_HOME means ~/.cache.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from shufflesearch.accuracy import images
from shufflesearch.accuracy.cache import ResultCache, default_cache_path
from shufflesearch.accuracy.datasets import DatasetError, ImageDataset
from shufflesearch.accuracy.recipe import Fidelity, FidelityError
from shufflesearch.accuracy.train_result import DamagedResult, TrainResult, cached_result
from shufflesearch.accuracy.trainer import train_proxy
from shufflesearch.cache_dir import cache_root
from shufflesearch.cli import main
from shufflesearch.spec import ShuffleNetSpec

TINY_NET = ["--groups", "2", "--scale", "0.25", "--repeats", "1,1,1", "--device", "cpu"]
TINY_RUN = ["--subset", "64", "--batch-size", "32", "--epochs", "1", "--resolution", "32"]


def run(args):
    """The real CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info, redirect_stdout(out), redirect_stderr(err):
        main(args)
    return exit_info.value.code, out.getvalue(), err.getvalue()


def one_line(err: str, prefix: str = "error: ") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- recipes that cannot train: refused up front, naming the option, exit 2 --------------------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--subset", "1"], "--subset 1 must be an integer in [2, 10,000,000] (BatchNorm needs two images"),
        (["--subset", "1", "--resolution", "28"], "--subset 1 must be"),
        (["--subset", "0"], "--subset 0 must be"),
        (["--subset", "-5"], "--subset -5 must be"),
        (["--subset", "1" + "0" * 30], "must be an integer in [2, 10,000,000]; e.g. --subset 10000"),
        (["--batch-size", "1"], "--batch-size 1 must be an integer in [2, 65,536] (BatchNorm"),
        (["--batch-size", "99999999"], "--batch-size 99999999 must be an integer in [2, 65,536]"),
        (["--epochs", "1e12"], "--epochs 1000000000000.0 must be a positive number at most 1000"),
        (["--epochs", "1001"], "at most 1000"),
        (["--epochs", "0"], "--epochs 0.0 must be a positive number"),
        (["--epochs", "-1"], "--epochs -1.0 must be"),
        (["--epochs", "nan"], "--epochs nan must be"),
        (["--epochs", "inf"], "--epochs inf must be"),
        (["--resolution", "513"], "--resolution 513 must be"),
        (["--time-budget", "-1"], "--time-budget -1.0 must be"),
        (["--time-budget", "nan"], "--time-budget nan must be"),
        (["--precision", "fp8"], "'fp8' is not one of fp32, bf16, fp16"),
    ],
)
def test_train_refuses_a_recipe_that_cannot_train_in_one_line(args, fragment, monkeypatch):
    import shufflesearch.accuracy.datasets as datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("loaded data for a refused recipe"))
    code, _, err = run(["train", *TINY_NET, "--no-cache", *args])
    assert code == 2 and fragment in one_line(err)


@pytest.mark.parametrize("args", [["--epochs", "1e12"], ["--subset", "1"], ["--resolution", "20"]])
def test_fidelity_command_refuses_the_same_recipes(args):
    code, _, err = run(["fidelity", "--device", "cpu", *args])
    assert code == 2 and args[0] in one_line(err)


SMALL_STUDY = (
    "[space]\ngroups = [3]\nscale = [0.25, 0.5]\nrepeats = [[1, 2], [1, 2], [1, 2]]\n[budget]\nmflops = [20]\n"
)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("lr = 1e300", "lr=1e+300 must be a positive number at most 1000"),
        ("lr = inf", "lr=inf must be"),
        ("lr = nan", "lr=nan must be"),
        ("lr = 0", "lr=0.0 must be"),
        ("lr = -0.1", "lr=-0.1 must be"),
        ("lr = true", "lr=True must be a number"),
        ("lr = '0.1'", "lr='0.1' must be a number"),
        ("lr_width_exponent = 1e300", "lr_width_exponent=1e+300 must lie in [-2, 2]"),
        ("lr_width_exponent = nan", "lr_width_exponent=nan must lie"),
        ("momentum = 1.0", "momentum=1.0 must lie in [0, 0.999]"),
        ("momentum = -0.1", "momentum=-0.1 must lie"),
        ("epochs = 1e12", "epochs=1000000000000.0 must be a positive number at most 1000"),
        ("epochs = 1" + "0" * 400, "epochs=10000000000000000000... (401 characters) is too large"),
        ("batch_size = 1", "batch_size=1 must be an integer in [2, 65,536] (BatchNorm"),
        ("batch_size = 2.5", "batch_size=2.5 must be an integer"),
        ("train_images = 1", "train_images=1 must be an integer in [2, 10,000,000] (BatchNorm"),
        ("train_images = 100000000000", "train_images=100000000000 must be an integer in [2, 10,000,000]; e.g."),
        ("eval_images = 0", "eval_images=0 must be None (the whole split) or an integer"),
        ("eval_images = true", "eval_images=True must be"),
        ("curve_eval_images = 100000000000", "curve_eval_images=100000000000 must be an integer in [0, 10,000,000]"),
        ("nesterov = 'yes'", "nesterov='yes' must be true or false"),
        ("time_budget_s = 0", "time_budget_s=0.0 must be None or a positive number"),
    ],
)
def test_a_study_fidelity_that_cannot_train_names_its_line(tmp_path, line, fragment):
    study = tmp_path / "s.toml"  # a small space: the file is refused in milliseconds
    study.write_text(SMALL_STUDY + f"[accuracy.fidelity]\n{line}\n")
    code, _, err = run(["search", str(study), "--storage", f"sqlite:///{tmp_path}/s.db"])
    key = line.split(" = ")[0]
    message = one_line(err)
    assert code == 2 and f"s.toml:8: accuracy.fidelity.{key}: " in message and fragment in message, message
    assert not (tmp_path / "s.db").exists()


def test_the_smallest_maps_and_a_ragged_last_batch_train(fashion, cache_home):
    # 28 px through the ImageNet stem leaves Stage4 at 1x1: BatchNorm needs (and gets) two images a batch.
    code, out, err = run(["train", *TINY_NET, "--subset", "5", "--batch-size", "2", "--epochs", "2",
                          "--resolution", "28", "--json"])  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["status"] == "ok" and result["spec"]["stem"] == "imagenet", err
    assert result["images_seen"] == 8  # 2 batches of 2 a epoch: the ragged fifth image is dropped, reshuffled


def test_a_dataset_of_one_training_image_is_refused_before_training():
    x = torch.zeros((1, 1, 28, 28), dtype=torch.uint8)
    one = ImageDataset("one", ("a", "b"), x, torch.zeros(1, dtype=torch.int64), x.clone(), torch.zeros(1, dtype=torch.int64),
                       "memory", "f00")  # fmt: skip
    spec = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1))
    with pytest.raises(DatasetError, match=r"1 training images are too few to hold out a validation split"):
        train_proxy(spec, one, Fidelity(train_images=10))
    with pytest.raises(FidelityError, match=r"one has 1 training image: a training batch needs at least 2"):
        train_proxy(spec, one, Fidelity(train_images=10, scored_on="test"))


# -- a damaged proxy-result cache: a miss with one warning, then overwritten -----------------------------------
def _result(**changes) -> dict:
    spec = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1), in_channels=1, num_classes=10, resolution=32)
    good = TrainResult(0.5, 1.2, [{"epoch": 1.0, "images_seen": 64, "train_loss": 2.1, "top1": 0.4}], 1.0, 64, "ok",
                       spec.to_dict(), "fashion-mnist:abc", Fidelity().to_dict(), 0)  # fmt: skip
    return {**good.to_dict(), **changes}


DAMAGED_VALUES = {
    "not JSON": "{'top1': 0.5",
    "NaN": json.dumps(_result()).replace('"top1": 0.5', '"top1": NaN'),
    "a list": "[1, 2, 3]",
    "a string": '"ok"',
    "null": "null",
    "nested too deep": "[" * 100_000 + "]" * 100_000,
    "empty object": "{}",
    "missing curve": json.dumps({k: v for k, v in _result().items() if k != "curve"}),
    "unknown field": json.dumps(_result(colour="red")),
    "top1 a string": json.dumps(_result(top1="high")),
    "top1 above 1": json.dumps(_result(top1=7.0)),
    "seed a float": json.dumps(_result(seed=1.5)),
    "images_seen a bool": json.dumps(_result(images_seen=True)),
    "status unknown": json.dumps(_result(status="great")),
    "ok without top1": json.dumps(_result(top1=None)),
    "curve of strings": json.dumps(_result(curve=["a"])),
    "curve point short": json.dumps(_result(curve=[{"epoch": 1.0}])),
    "invalid spec": json.dumps(_result(spec={"groups": 5})),
    "spec a list": json.dumps(_result(spec=[1])),
    "std zero": json.dumps(_result(input_std=[0.0])),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_VALUES))
def test_a_damaged_cache_entry_is_a_miss_with_one_warning(tmp_path, damage, recwarn):
    cache = ResultCache(tmp_path / "c.sqlite")
    cache.put("k", _result())
    assert cached_result(cache, "k").cached  # the good entry reads back
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE results SET value = ? WHERE key = 'k'", (DAMAGED_VALUES[damage],))
    assert cached_result(cache, "k") is None and cached_result(cache, "k") is None
    assert [str(w.message) for w in recwarn].__len__() == 1 and "entry k is damaged" in str(recwarn[0].message)
    cache.put("k", _result(top1=0.6))  # what the retrain does: the entry is whole again
    assert cached_result(cache, "k").top1 == 0.6


def test_a_stored_value_of_the_wrong_sqlite_type_is_a_miss(tmp_path, recwarn):
    cache = ResultCache(tmp_path / "c.sqlite")
    with sqlite3.connect(cache.path) as db:
        db.execute("INSERT INTO results VALUES ('blob', ?, 0)", (b"\xff\xfe junk",))
        db.execute("INSERT INTO results VALUES ('int', 42, 0)")
    assert cache.get("blob") is None and cache.get("int") is None and len(recwarn) == 1
    with pytest.raises(DamagedResult, match="a JSON int, not an object"):
        TrainResult.from_dict(42)


def _damage_pages(path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page after the header's
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["entry", "not a database", "damaged pages", "empty file"])
def test_train_with_a_damaged_cache_warns_once_trains_and_heals(fashion, tmp_path, monkeypatch, damage):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # relative: ignored (XDG spec), so ~/.cache
    monkeypatch.chdir(tmp_path)
    args = ["train", *TINY_NET, *TINY_RUN, "--json"]
    assert run(args)[0] == 0
    path = home / ".cache" / "shufflesearch" / "proxy-results.sqlite"
    assert path.is_file() and not (tmp_path / "relative").exists()
    if damage == "entry":
        with sqlite3.connect(path) as db:
            db.execute("UPDATE results SET value = '{\"top1\": '")
    else:
        for extra in ("-wal", "-shm"):
            (path.parent / (path.name + extra)).unlink(missing_ok=True)
        path.write_bytes(b"" if damage == "empty file" else b"garbage " * 2000)
        if damage == "damaged pages":
            path.unlink()
            ResultCache(path)
            with sqlite3.connect(path) as db:
                db.executemany("INSERT INTO results VALUES (?, ?, 0)", [(f"f{i}", "{}" * 500) for i in range(300)])
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _damage_pages(path)
    code, out, err = run(args)
    assert code == 0 and json.loads(out)["cached"] is False
    if damage != "empty file":  # SQLite takes an empty file for a new database: nothing to warn about
        assert "proxy-result cache" in one_line(err, "warning: ")
    if damage in ("entry", "empty file"):  # the entry was overwritten: the next run is a hit, silently
        code, out, err = run(args)
        assert code == 0 and json.loads(out)["cached"] is True and not err.strip()


# -- an empty or relative XDG_CACHE_HOME means the default -----------------------------------------------------
@pytest.mark.parametrize("value", ["", " ", "relative", "$HOME/.cache", "~/.cache", "./x"])
def test_an_empty_or_relative_xdg_cache_home_means_home_cache(value, tmp_path, monkeypatch):
    from shufflesearch.latency.emulated.sysroot import default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cache_root() == tmp_path / ".cache" / "shufflesearch"
    assert default_cache_path() == tmp_path / ".cache" / "shufflesearch" / "proxy-results.sqlite"
    assert default_cache_dir() == tmp_path / ".cache" / "shufflesearch" / "arm64"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path().parent == tmp_path / "xdg" / "shufflesearch"


def test_without_a_usable_home_the_cache_still_lies_in_an_absolute_folder():
    import pwd

    assert cache_root({"HOME": "", "XDG_CACHE_HOME": ""}).is_absolute()
    assert cache_root({"HOME": "rel"}) == cache_root({}) and cache_root({}).is_absolute()
    assert str(cache_root({})).startswith(pwd.getpwuid(__import__("os").getuid()).pw_dir)


# -- memory: large images are resized per batch, and the check counts them ---------------------------------------
def test_a_large_split_keeps_its_own_size_and_resizes_per_batch(fashion, monkeypatch):
    x = fashion.train_images[:3000]
    held = images.RunImages(x, 512)  # 3000 x 512 px would be 750 MiB resized: over the up-front limit
    assert not held.up_front and held.x.shape[-1] == 28 and held.x.nbytes == x.nbytes
    assert images.split_bytes(3000, 1, 28, 512) == x.nbytes and images.split_bytes(30, 1, 28, 48) == 30 * 48 * 48
    index = torch.tensor([5, 2999, 0])
    assert torch.equal(held.take(index), images.resize_images(x[index], 512))  # the same pixels as up front
    small = x[:200]
    monkeypatch.setattr(images, "RESIZE_UP_FRONT_BYTES", 0)  # force the per-batch path on a small split
    lazy, eager = images.RunImages(small, 64, stats=True), images.resize_images(small, 64)
    assert torch.equal(torch.cat([part for _, part in lazy.chunks(7)]), eager)
    mean, std = images.channel_stats(eager)
    assert torch.allclose(lazy.mean, mean, rtol=1e-5) and torch.allclose(lazy.std, std, rtol=1e-5)


def test_a_run_resizing_per_batch_trains_on_the_same_pixels(fashion, monkeypatch):
    spec = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1))
    fid = Fidelity(train_images=128, epochs=1, batch_size=64, resolution=40, eval_images=100, curve_eval_images=50)
    eager = train_proxy(spec, fashion, fid, threads=1)
    monkeypatch.setattr(images, "RESIZE_UP_FRONT_BYTES", 0)
    lazy = train_proxy(spec, fashion, fid, threads=1)
    assert lazy.status == eager.status == "ok" and lazy.images_seen == eager.images_seen == 128
    assert lazy.input_mean == pytest.approx(eager.input_mean, rel=1e-5)  # float64 sums instead of float32
    assert lazy.input_std == pytest.approx(eager.input_std, rel=1e-5)
    assert lazy.test_loss == pytest.approx(eager.test_loss, rel=1e-2)


def test_train_at_512_px_counts_its_images_and_is_refused_before_resizing_any(fashion, monkeypatch):
    import shufflesearch.memory as memory
    from shufflesearch.accuracy.recipe import adapt_spec

    spec = adapt_spec(ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1)), fashion, Fidelity(resolution=512))
    floor = memory.memory_floor_bytes(spec, 128, 3)
    monkeypatch.setattr(memory, "_available_bytes", lambda: floor + 2**20)  # the net fits, its images do not
    monkeypatch.setattr(images, "resize_images", lambda *a: pytest.fail("resized before the memory check"))
    code, _, err = run(["train", *TINY_NET, "--no-cache", "--resolution", "512"])
    message = one_line(err)
    assert code == 1 and "to train on batches of 128 (0." in message and "GiB of it images)" in message
    assert "the training subset or the evaluation images" in message


def test_an_export_this_machine_cannot_hold_is_refused_before_building(tmp_path, monkeypatch):
    import shufflesearch.export as export
    import shufflesearch.memory as memory

    spec = ShuffleNetSpec(groups=3, scale=0.25, resolution=32)
    weights = 4 * memory.weight_count_floor(spec)
    monkeypatch.setattr(memory, "_available_bytes", lambda: 3 * weights)  # the weights 3 times: not enough
    monkeypatch.setattr(export, "build_model", lambda spec: pytest.fail("built a network it must refuse"))
    code, _, err = run(["export", "--groups", "3", "--scale", "0.25", "--resolution", "32",
                        "--out", str(tmp_path / "m.onnx")])  # fmt: skip
    assert code == 1 and "to export it to ONNX (its weights 4 times over)" in one_line(err)
    assert not list(tmp_path.iterdir())
