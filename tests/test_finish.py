"""The last mile: a tiny real study on Fashion-MNIST, its winner finished into a folder a user can hand on."""

import json
import subprocess
import sys
import textwrap

import pytest

STUDY = """
[study]
name = "tiny"
trials = 2
sampler = "random"
pruner = "none"
enqueue_presets = false
[budget]
mflops = [13]
[space]
groups = [3]
scale = [0.1, 0.5]
repeats = [[1, 1], [1, 2], [1, 1]]
[accuracy]
device = "cpu"
[accuracy.fidelity]
train_images = 256
epochs = 1
batch_size = 64
eval_images = 200
curve_eval_images = 0
resolution = 28
stem = "small"
"""
# The finishing recipe at test size: 2 steps an epoch, scored on 300 test images.
TINY = {"train_images": 128, "eval_images": 300, "device": "cpu"}


@pytest.fixture(scope="module")
def study(fashion, tmp_path_factory):
    """A real two-trial search (seconds), its weights kept under the default policy."""
    from shufflesearch.search import load_study, run_search

    folder = tmp_path_factory.mktemp("study")
    (folder / "tiny.toml").write_text(textwrap.dedent(STUDY))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
        config = load_study(folder / "tiny.toml")
        run_search(config, config.default_storage())
        yield config, config.default_storage()


@pytest.fixture(scope="module")
def finished(study):
    from shufflesearch.finish import finish_winner

    config, url = study
    return finish_winner(config, url, budget=13, epochs=1, latency_runs=5, **TINY)


def test_the_finished_winner_is_one_folder_to_hand_on(study, finished):
    import numpy as np
    import onnxruntime as ort
    import torch

    from shufflesearch.checkpoint import load_checkpoint, trained_model
    from shufflesearch.search.artifacts import trial_checkpoint
    from shufflesearch.search.results import find_trial

    config, url = study
    _, winner = find_trial(config, url, budget=13)
    out = finished.out
    assert out == config.path.parent / "finished" / f"tiny-13M-trial{winner['trial']}"
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.onnx", "metrics.json", "README.md"}
    assert finished.trial == winner["trial"] and finished.proxy_top1 == winner["top1"]
    assert 0 < finished.top1 <= finished.top5 <= 1 and finished.images == 300
    assert finished.onnx["agree"] == finished.onnx["images"] == 300 and finished.onnx["max_abs_diff"] < 1e-3
    assert finished.latency["kind"] == "measured" and finished.latency["ms"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] == finished.top1 and metrics["recipe"]["train_images"] == 128
    assert metrics["training_top1"] == finished.top1  # the trainer's score, on the images the ONNX check used
    assert metrics["dataset"].startswith("fashion-mnist:") and metrics["device"] == "cpu"
    readme = (out / "README.md").read_text()
    assert f"trial {winner['trial']} of tiny-13M" in readme and "model.onnx" in readme and "measured on local" in readme

    # The checkpoint rebuilds the network alone; the ONNX file takes 0-255 pixels and gives the same logits.
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.spec.label == finished.label and ckpt.spec.resolution == 28 and ckpt.spec.stem == "small"
    pixels = torch.randint(0, 256, (3, 1, 28, 28)).float()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (ckpt.preprocessing.mean, ckpt.preprocessing.std))
    with torch.no_grad():
        reference = trained_model(ckpt)((pixels - mean) / std).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0]  # batch 3: the batch axis is dynamic
    np.testing.assert_allclose(logits, reference, atol=1e-4)

    # The search kept the winner's proxy weights in its artifact store (the default policy: best per budget).
    proxy = load_checkpoint(trial_checkpoint(config, url, winner["trial"], budget=13))
    assert proxy.spec == ckpt.spec and proxy.meta["metrics"]["top1"] == winner["top1"]


@pytest.mark.slow  # three short trainings, one in a fresh process
def test_a_killed_finishing_run_resumes_to_the_same_weights(study, tmp_path):
    from safetensors.torch import load_file

    from shufflesearch.finish import finish_winner

    config, url = study
    whole = finish_winner(config, url, budget=13, epochs=2, out=tmp_path / "whole", target=None, **TINY)
    # Killed (SIGKILL, no clean-up) at the first step after epoch 1 ended: its state is on disk.
    killer = f"""
import os, signal
from shufflesearch.search import load_study
from shufflesearch.finish import finish_winner
def progress(p):
    if p.step > p.steps // 2:
        os.kill(os.getpid(), signal.SIGKILL)
finish_winner(load_study({str(config.path)!r}), {url!r}, budget=13, epochs=2, out={str(tmp_path / "killed")!r},
              target=None, progress=progress, **{TINY!r})
"""
    run = subprocess.run([sys.executable, "-c", killer], capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    assert (tmp_path / "killed" / "training-state.pt").exists() and not (tmp_path / "killed" / "model.onnx").exists()
    steps = []
    resumed = finish_winner(config, url, budget=13, epochs=2, out=tmp_path / "killed", target=None,
                            progress=lambda p: steps.append(p.step), **TINY)  # fmt: skip
    assert steps and min(steps) > 2  # it went on from epoch 1, it did not start again
    a, b = (load_file(r.out / "model.safetensors") for r in (whole, resumed))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (resumed.top1, resumed.top5) == (whole.top1, whole.top5)


def test_a_folder_holding_another_run_is_refused_in_one_line(study, finished):
    from shufflesearch.finish import FinishError, finish_winner

    config, url = study
    with pytest.raises(FinishError, match=r"holds another finishing run \(its recipe differs\)") as error:
        finish_winner(config, url, budget=13, epochs=3, out=finished.out, **TINY)
    assert "\n" not in str(error.value)


def test_finish_command_line_errors_are_one_line_before_any_work(study):
    import io
    from contextlib import redirect_stderr

    from shufflesearch.cli import main

    config, _ = study
    for args, code, fragment in [(["--budget", "20"], 2, "error: --budget 20: study tiny has budgets 13 MFLOPs"),
                                 (["--device", "cuda:7"], 1, "error: device 'cuda:7' is not available"),
                                 (["--device", "gpu"], 2, "error: device 'gpu' is not one of")]:  # fmt: skip
        err = io.StringIO()
        with pytest.raises(SystemExit) as exit_info, redirect_stderr(err):
            main(["finish", str(config.path), "--epochs", "1", *args])
        assert exit_info.value.code == code and err.getvalue().startswith(fragment), err.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1


def test_finish_package_imports_light():
    from fresh_process import heavy_imports

    assert heavy_imports("import shufflesearch.finish, shufflesearch.finish.recipe", ("torch", "optuna", "onnx")) == []
