"""Proxy trainer and result cache, on the real Fashion-MNIST files with tiny subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from shufflesearch.accuracy.cache import ResultCache, result_key
from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, Fidelity, FidelityError, adapt_spec
from shufflesearch.accuracy.trainer import TRAINER_VERSION, TrainResult, train_proxy
from shufflesearch.spec import ShuffleNetSpec

IN_CI = os.environ.get("CI") == "true"
# A deliberately small net and subset: each run takes a second or two on a shared 2-core CPU.
TINY_SPEC = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1))
TINY = Fidelity(
    train_images=256, epochs=1, batch_size=64, resolution=None, stem="auto", eval_images=200, curve_eval_images=100
)


def _without_timing(curve):
    return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]


def test_seeded_runs_are_reproducible(fashion):
    a = train_proxy(TINY_SPEC, fashion, TINY, seed=3, threads=1)
    b = train_proxy(TINY_SPEC, fashion, TINY, seed=3, threads=1)
    assert a.status == b.status == "ok"
    assert a.top1 == b.top1 and a.test_loss == b.test_loss
    assert _without_timing(a.curve) == _without_timing(b.curve)
    c = train_proxy(TINY_SPEC, fashion, TINY, seed=4, threads=1)
    assert _without_timing(c.curve) != _without_timing(a.curve), "another seed must give another run"


def test_result_records_cost_and_environment(fashion):
    r = train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1)
    assert r.images_seen == 256 == r.curve[-1]["images_seen"]  # 4 full batches of 64
    assert r.seconds > 0 and r.cpu_seconds > 0
    assert r.environment["threads"] == 1 and r.environment["versions"]["torch"]
    assert r.spec["in_channels"] == 1 and r.spec["num_classes"] == 10 and r.spec["stem"] == "small"
    assert r.fidelity == TINY.to_dict() and r.dataset.startswith("fashion-mnist:")
    assert TrainResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_absurd_learning_rate_diverges_without_raising(fashion):
    r = train_proxy(TINY_SPEC, fashion, TINY.replace(lr=1e5), seed=0, threads=1)
    assert r.status == "diverged"
    assert r.top1 is None and r.test_loss is None
    assert r.images_seen < 256


def test_progress_callback_sees_every_step_and_epoch_ends(fashion):
    events = []
    train_proxy(TINY_SPEC, fashion, TINY.replace(epochs=2), seed=0, progress=events.append, threads=1)
    assert [e.step for e in events] == list(range(1, 9))
    assert [e.epoch for e in events if e.epoch_end] == [1.0, 2.0]
    assert all(e.images_per_s > 0 and e.train_loss > 0 for e in events)


def test_time_budget_ends_the_run_early(fashion):
    r = train_proxy(TINY_SPEC, fashion, TINY.replace(epochs=50, time_budget_s=0.5), seed=0, threads=1)
    assert r.status == "ok" and r.images_seen < 50 * 256


def test_cache_hit_skips_training_and_survives_another_process(fashion, tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    first = train_proxy(TINY_SPEC, fashion, TINY, seed=1, cache=cache, threads=1)
    assert not first.cached and len(cache) == 1
    events = []
    again = train_proxy(TINY_SPEC, fashion, TINY, seed=1, cache=cache, progress=events.append)
    assert again.cached and not events, "a hit must not train"
    assert again.top1 == first.top1 and again.curve == first.curve
    # A fresh process reads the same file: the entry is on disk, not in memory.
    code = (
        "import sys; from shufflesearch.accuracy.cache import ResultCache;"
        "from shufflesearch.accuracy.datasets import load_dataset;"
        "from shufflesearch.accuracy.trainer import train_proxy; from shufflesearch.accuracy.recipe import Fidelity;"
        "from shufflesearch.spec import ShuffleNetSpec;"
        f"r = train_proxy(ShuffleNetSpec.from_json({TINY_SPEC.to_json()!r}), load_dataset('fashion-mnist'),"
        f" Fidelity.from_dict({TINY.to_dict()!r}), seed=1, cache=ResultCache(sys.argv[1]),"
        " progress=lambda p: sys.exit('trained again'));"
        "print(r.cached, r.top1)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(cache.path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", str(first.top1)]
    # Another seed or fidelity is another key.
    assert not train_proxy(TINY_SPEC, fashion, TINY, seed=2, cache=cache, threads=1).cached
    assert len(cache) == 2


def _fill(path: str, prefix: str, n: int) -> None:
    cache = ResultCache(path)
    for i in range(n):
        cache.put(f"{prefix}{i}", {"i": i})


def test_cache_survives_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ResultCache(path).put("before", {"kept": True})
    child = "import sys; from shufflesearch.accuracy.cache import ResultCache; c = ResultCache(sys.argv[1])\n"
    child += "for i in range(150): c.put(sys.argv[2] + str(i), {'i': i})"
    procs = [subprocess.Popen([sys.executable, "-c", child, path, f"p{k}-"]) for k in range(3)]
    threads = [threading.Thread(target=_fill, args=(path, f"t{k}-", 50)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = ResultCache(path)
    assert len(cache) == 1 + 3 * 150 + 2 * 50
    assert cache.get("before") == {"kept": True} and cache.get("p2-149") == {"i": 149}


def test_result_key_depends_on_every_input(fashion):
    spec = adapt_spec(TINY_SPEC, fashion, TINY)
    base = result_key(spec, "abc", TINY, 0, TRAINER_VERSION)
    assert base == result_key(spec, "abc", Fidelity.from_dict(TINY.to_dict()), 0, TRAINER_VERSION)
    assert base == result_key(spec, "abc", TINY.replace(epochs=1.0), 0, TRAINER_VERSION)  # int or float: one key
    others = [
        result_key(spec.replace(groups=3), "abc", TINY, 0, TRAINER_VERSION),
        result_key(spec, "abd", TINY, 0, TRAINER_VERSION),
        result_key(spec, "abc", TINY.replace(epochs=2), 0, TRAINER_VERSION),
        result_key(spec, "abc", TINY, 1, TRAINER_VERSION),
        result_key(spec, "abc", TINY, 0, TRAINER_VERSION + 1),
    ]
    assert len({base, *others}) == 6


def test_adapt_spec_fits_the_dataset(fashion):
    spec = ShuffleNetSpec(groups=8, scale=0.5)  # an ImageNet spec: 3 channels, 1000 classes, 224 px
    small = adapt_spec(spec, fashion, DEFAULT_FIDELITY.replace(resolution=None, stem="auto"))
    assert (small.in_channels, small.num_classes, small.resolution, small.stem) == (1, 10, 28, "small")
    assert small.stage_channels == spec.stage_channels and small.stem_channels == spec.stem_channels
    big = adapt_spec(spec, fashion, DEFAULT_FIDELITY.replace(resolution=128, stem="auto"))
    assert (big.resolution, big.stem) == (128, "imagenet")
    forced = adapt_spec(spec, fashion, DEFAULT_FIDELITY.replace(resolution=56, stem="imagenet"))
    assert (forced.resolution, forced.stem) == (56, "imagenet")
    kept = adapt_spec(spec.replace(stem="small"), fashion, DEFAULT_FIDELITY.replace(resolution=64, stem="keep"))
    assert kept.stem == "small"


def test_upsampled_resolution_trains_at_that_size(fashion):
    r = train_proxy(TINY_SPEC, fashion, TINY.replace(resolution=40, stem="imagenet"), seed=0, threads=1)
    assert r.status == "ok" and r.spec["resolution"] == 40 and r.spec["stem"] == "imagenet"


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"train_images": 0}, r"train_images=0 must be a positive integer; e\.g\. train_images=128"),
        ({"epochs": float("nan")}, r"epochs=nan must be a positive number"),
        ({"schedule": "step"}, r"schedule='step' must be one of cosine, onecycle, linear"),
        ({"resolution": 20}, r"resolution=20 must be None .* \[28, 512\]"),
        ({"label_smoothing": 1.5}, r"label_smoothing=1\.5 must lie in \[0, 0\.99\]"),
        ({"time_budget_s": -1.0}, r"time_budget_s=-1\.0 must be None or a positive number"),
    ],
)
def test_bad_fidelity_is_one_line_error(change, pattern):
    with pytest.raises(FidelityError, match=pattern) as info:
        DEFAULT_FIDELITY.replace(**change)
    assert "\n" not in str(info.value)


def test_cache_keys_keep_their_meaning():
    # Pinned on main before the recipe left trainer.py: a changed key silently drops every stored result.
    assert result_key(ShuffleNetSpec(), "abc", DEFAULT_FIDELITY, 0, TRAINER_VERSION) == (
        "790d72593579c5d60adcedd0db46b4c73c8d1ca7e4fe7f25339c40d3d8035af3"
    )


def test_recipe_imports_no_heavy_library():
    code = "import sys, shufflesearch.accuracy.recipe; print(sorted({'torch', 'numpy', 'optuna'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fidelity_round_trips_and_rejects_unknown_keys():
    assert Fidelity.from_dict(json.loads(json.dumps(DEFAULT_FIDELITY.to_dict()))) == DEFAULT_FIDELITY
    with pytest.raises(FidelityError, match="unknown fidelity key 'epoch'; known keys: augment"):
        Fidelity.from_dict({"epoch": 3})


def test_tiny_real_run_learns_fashion_mnist(fashion):
    # Chance is 10%; 2,000 images x 3 epochs of a 0.25x net reach 75-76% (seeds 0-2). 40% leaves room for
    # seed and platform noise while still failing a trainer that does not learn (or mislabels data).
    fid = Fidelity(train_images=2000, epochs=3, batch_size=64, eval_images=1000, curve_eval_images=0)
    r = train_proxy(ShuffleNetSpec(groups=3, scale=0.25), fashion, fid, seed=0, threads=1)
    assert r.status == "ok"
    assert r.top1 > 0.4, r.curve
    assert r.curve[-1]["train_loss"] < r.curve[0]["train_loss"]


def test_a_batch_too_large_for_memory_is_refused_before_training(fashion, monkeypatch):
    import shufflesearch.memory as memory
    from shufflesearch.memory import TooLargeForThisMachine, memory_floor_bytes

    spec = adapt_spec(TINY_SPEC, fashion, TINY)
    one_image = memory_floor_bytes(spec)
    monkeypatch.setattr(memory, "_available_bytes", lambda: 2 * one_image)  # enough to run it, not to train it
    with pytest.raises(TooLargeForThisMachine, match=r"to train on batches of 64; .* or the batch size"):
        train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1)
