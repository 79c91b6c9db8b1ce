"""Proxy trainer and result cache, on the real Fashion-MNIST files with tiny subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from shufflesearch.accuracy.cache import ResultCache, result_key
from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, LR_MAX, Fidelity, FidelityError, adapt_spec
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
    r = train_proxy(TINY_SPEC, fashion, TINY.replace(lr=LR_MAX), seed=0, threads=1)  # the largest allowed
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
        ({"train_images": 0}, r"train_images=0 must be an integer in \[2, 10,000,000\] \(BatchNorm .*=10000"),
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
    # Every result stored then was scored on the test split: that recipe keeps its key, and the
    # default recipe, scored on validation images since, can never be served one of them.
    on_test = DEFAULT_FIDELITY.replace(scored_on="test", validation_images=123)  # no images held out: not in the key
    assert result_key(ShuffleNetSpec(), "abc", on_test, 0, TRAINER_VERSION) == (
        "790d72593579c5d60adcedd0db46b4c73c8d1ca7e4fe7f25339c40d3d8035af3"
    )
    default = result_key(ShuffleNetSpec(), "abc", DEFAULT_FIDELITY, 0, TRAINER_VERSION)
    assert default != result_key(ShuffleNetSpec(), "abc", on_test, 0, TRAINER_VERSION)
    assert default != result_key(ShuffleNetSpec(), "abc", DEFAULT_FIDELITY.replace(validation_images=4000), 0,
                                 TRAINER_VERSION)  # fmt: skip


def test_recipe_imports_no_heavy_library():
    from fresh_process import heavy_imports

    assert heavy_imports("import shufflesearch.accuracy.recipe", ("torch", "numpy", "optuna")) == []


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
    with pytest.raises(TooLargeForThisMachine, match=r"to train on batches of 64\b.*; .* or the batch size"):
        train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1)


def _weights_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Killed(Exception):
    pass


def _kill_after_epoch(k):
    def progress(p):
        if p.epoch_end and p.epoch >= k:
            raise _Killed  # as a kill after the state file of epoch k was written

    return progress


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(fashion, tmp_path, precision):
    fid = TINY.replace(epochs=3, precision=precision)  # fp16: the gradient scaler's state resumes too
    whole = train_proxy(TINY_SPEC, fashion, fid, seed=5, threads=1, keep_weights=True)
    state = tmp_path / "state.pt"
    with pytest.raises(_Killed):
        train_proxy(TINY_SPEC, fashion, fid, seed=5, threads=1, state_file=state, progress=_kill_after_epoch(1))
    stored = torch.load(state, weights_only=True)  # plain tensors and containers: no arbitrary unpickling
    assert stored["step"] == 4 and len(stored["curve"]) == 1
    steps = []
    resumed = train_proxy(TINY_SPEC, fashion, fid, seed=5, threads=1, state_file=state, keep_weights=True,
                          progress=lambda p: steps.append(p.step))  # fmt: skip
    assert steps == list(range(5, 13)), "the resumed run starts after epoch 1"
    assert _weights_equal(resumed.weights, whole.weights)
    assert (resumed.top1, resumed.top5, resumed.test_loss) == (whole.top1, whole.top5, whole.test_loss)
    assert _without_timing(resumed.curve) == _without_timing(whole.curve)
    assert resumed.images_seen == whole.images_seen == 3 * 256
    # Finished: running again only re-evaluates the stored final state.
    again = train_proxy(TINY_SPEC, fashion, fid, seed=5, threads=1, state_file=state, progress=_kill_after_epoch(0))
    assert again.top1 == whole.top1


def test_another_runs_state_file_is_refused_in_one_line(fashion, tmp_path):
    from shufflesearch.errors import UsageError

    state = tmp_path / "state.pt"
    train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1, state_file=state)
    with pytest.raises(UsageError, match=r"was written for another run \(seed 0 there, 1 here\)") as info:
        train_proxy(TINY_SPEC, fashion, TINY, seed=1, threads=1, state_file=state)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"fidelity\.lr 0\.2 there, 0\.1 here"):
        train_proxy(TINY_SPEC, fashion, TINY.replace(lr=0.1), seed=0, threads=1, state_file=state)
    state.write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="is not a training state file"):
        train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1, state_file=state)


def test_result_carries_top5_device_preprocessing_and_weights_on_request(fashion, tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    r = train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1, cache=cache)
    assert r.top1 <= r.top5 <= 1.0 and r.device == "cpu" and r.environment["device"] == "cpu"
    assert r.weights is None and "weights" not in r.to_dict()
    assert len(r.input_mean) == len(r.input_std) == 1 and 50 < r.input_mean[0] < 100  # 0-255 pixel units
    kept = train_proxy(TINY_SPEC, fashion, TINY, seed=0, threads=1, cache=cache, keep_weights=True)
    assert not kept.cached, "a cached result has no weights: keep_weights trains"
    assert kept.weights and all(t.device.type == "cpu" and t.is_contiguous() for t in kept.weights.values())
    assert (kept.top1, kept.top5, _without_timing(kept.curve)) == (r.top1, r.top5, _without_timing(r.curve))
    assert train_proxy(TINY_SPEC, fashion, TINY, seed=0, cache=cache).cached


def test_cache_keys_of_gpu_runs_and_fp16_stand_apart(fashion):
    spec = adapt_spec(TINY_SPEC, fashion, TINY)
    cpu = result_key(spec, "abc", TINY, 0, TRAINER_VERSION)
    assert cpu == result_key(spec, "abc", TINY, 0, TRAINER_VERSION, "cpu")
    assert result_key(spec, "abc", TINY, 0, TRAINER_VERSION, "cuda:0") == result_key(
        spec, "abc", TINY, 0, TRAINER_VERSION, "cuda:1"
    )
    others = {result_key(spec, "abc", TINY, 0, TRAINER_VERSION, d) for d in ("cuda:0", "mps")}
    others |= {result_key(spec, "abc", TINY.replace(precision=p), 0, TRAINER_VERSION) for p in ("bf16", "fp16")}
    assert len(others | {cpu}) == 5
    # The older spelling is the same recipe, with the same key.
    assert Fidelity(bf16=True) == Fidelity(precision="bf16") and Fidelity(bf16=True).to_dict()["precision"] == "bf16"
    assert Fidelity.from_dict({**DEFAULT_FIDELITY.to_dict(), "bf16": True}).precision == "bf16"
    with pytest.raises(FidelityError, match="bf16=True contradicts precision='fp16'"):
        Fidelity(bf16=True, precision="fp16")


def test_the_older_bf16_spelling_reads_and_replaces_the_precision(fashion):
    spec = adapt_spec(TINY_SPEC, fashion, TINY)
    bf16 = TINY.replace(precision="bf16")
    assert bf16.bf16 and not TINY.bf16 and not TINY.replace(precision="fp16").bf16
    assert bf16.replace(bf16=False) == TINY and bf16.replace(bf16=False).precision == "fp32"
    assert TINY.replace(bf16=True) == bf16 and TINY.replace(precision="fp16").replace(bf16=True) == bf16
    assert Fidelity(bf16=False) == Fidelity() and bf16.replace(precision="fp32") == TINY
    assert "bf16" not in bf16.to_dict() and bf16.to_dict()["precision"] == "bf16"
    key = result_key(spec, "abc", bf16, 0, TRAINER_VERSION)
    assert result_key(spec, "abc", TINY.replace(bf16=True), 0, TRAINER_VERSION) == key
    assert result_key(spec, "abc", bf16.replace(bf16=False), 0, TRAINER_VERSION) == result_key(
        spec, "abc", TINY, 0, TRAINER_VERSION
    )
    with pytest.raises(FidelityError, match="bf16=False contradicts precision='bf16'"):
        Fidelity(bf16=False, precision="bf16")
    with pytest.raises(FidelityError, match="bf16='yes' must be True or False"):
        TINY.replace(bf16="yes")


def test_asking_for_a_missing_gpu_fails_before_any_work(fashion):
    from shufflesearch.accuracy.devices import DeviceUnavailable

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"touched the dataset ({name}) before checking the device")

    with pytest.raises(DeviceUnavailable, match=r"device 'cuda' is not available: torch sees cpu"):
        train_proxy(TINY_SPEC, Untouchable(), TINY, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_run_learns_and_records_its_device(fashion, precision):
    fid = Fidelity(
        train_images=2000, epochs=3, batch_size=64, eval_images=1000, curve_eval_images=200, precision=precision
    )
    r = train_proxy(ShuffleNetSpec(groups=3, scale=0.25), fashion, fid, seed=0, device="cuda", keep_weights=True)
    assert r.status == "ok" and r.top1 > 0.4, r.curve
    assert r.device == "cuda:0" and r.environment["gpu"] and r.environment["precision"] == precision
    assert all(t.device.type == "cpu" for t in r.weights.values())
    assert [p["epoch"] for p in r.curve] == [1.0, 2.0, 3.0]


@pytest.mark.gpu
def test_gpu_loop_reads_back_only_at_sync_points(fashion):
    import warnings

    events = []
    fid = TINY.replace(train_images=2048, batch_size=32, curve_eval_images=0)  # 64 steps, one epoch
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_proxy(TINY_SPEC, fashion, fid, seed=0, device="cuda", progress=events.append)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert [e.step for e in events] == [50, 64], "progress at each sync point and the epoch end"
    assert len(syncs) < 20, [str(w.message)[:120] for w in syncs[:5]]


@pytest.mark.gpu
def test_gpu_state_file_resumes(fashion, tmp_path):
    state = tmp_path / "state.pt"
    fid = TINY.replace(epochs=2)
    # Another run with a state file (deterministic kernels), never interrupted.
    whole = train_proxy(TINY_SPEC, fashion, fid, seed=0, device="cuda", state_file=tmp_path / "whole.pt",
                        keep_weights=True)  # fmt: skip
    benchmark = torch.backends.cudnn.benchmark
    with pytest.raises(_Killed):
        train_proxy(TINY_SPEC, fashion, fid, seed=0, device="cuda", state_file=state, progress=_kill_after_epoch(1))
    resumed = train_proxy(TINY_SPEC, fashion, fid, seed=0, device="cuda", state_file=state, keep_weights=True)
    assert resumed.status == "ok" and [p["epoch"] for p in resumed.curve] == [1.0, 2.0]
    assert _weights_equal(resumed.weights, whole.weights)
    assert (resumed.top1, resumed.top5, resumed.test_loss) == (whole.top1, whole.top5, whole.test_loss)
    assert torch.backends.cudnn.benchmark == benchmark and not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(Exception, match="device 'cuda' there, 'cpu' here"):
        train_proxy(TINY_SPEC, fashion, fid, seed=0, device="cpu", state_file=state)


def test_resumable_cuda_runs_use_deterministic_kernels_and_restore_the_settings(monkeypatch):
    from shufflesearch.accuracy.devices import cuda_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    with cuda_kernels("cuda:0", reproducible=True):  # only flags: runs without a GPU
        assert not cudnn.benchmark and cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    with cuda_kernels("cuda:0", reproducible=False):
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_limited_evaluation_scores_a_class_balanced_subset_not_the_first_images():
    from shufflesearch.accuracy.evaluate import count_correct, eval_indices

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as an image folder lists them
    keep = eval_indices(labels, 200)
    assert torch.bincount(labels[keep]).tolist() == [20] * 10
    assert eval_indices(labels, None) is None and eval_indices(labels, 1000) is None
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, 0.5, 0.1], [5.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert [int(c) for c in count_correct(logits, torch.tensor([1, 5]))] == [1, 2]
