"""Checkpoints: ours round-trip a real training; official ShuffleNet-Series layouts load strictly; evaluation."""

import dataclasses

import numpy as np
import pytest
import torch
from official_shufflenet import official_checkpoint

from shufflesearch.accuracy import Fidelity, train_proxy
from shufflesearch.accuracy.evaluate import evaluate_folder, evaluate_split, load_image
from shufflesearch.checkpoint import (
    OFFICIAL_PREPROCESSING,
    CheckpointError,
    Preprocessing,
    load_checkpoint,
    save_checkpoint,
    trained_model,
)
from shufflesearch.model import build_model
from shufflesearch.presets import get_preset
from shufflesearch.spec import ShuffleNetSpec

QUICK = Fidelity(
    train_images=300, epochs=1, resolution=28, stem="small", eval_images=1000, curve_eval_images=0, scored_on="test"
)  # reproduced below from the file alone, on the same test images


@pytest.fixture(scope="module")
def trained(fashion, tmp_path_factory):
    """A real 1-epoch Fashion-MNIST training, saved as a checkpoint: (result, path)."""
    spec = ShuffleNetSpec(groups=3, scale=0.25, repeats=(1, 2, 1))
    result = train_proxy(spec, fashion, QUICK, seed=0, threads=1, keep_weights=True)
    assert result.status == "ok" and result.weights is not None
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, result.weights, ShuffleNetSpec.from_dict(result.spec), recipe=result.fidelity,
                    dataset=result.dataset, metrics={"top1": result.top1, "top5": result.top5},
                    input_mean=result.input_mean, input_std=result.input_std)  # fmt: skip
    return result, path


def test_checkpoint_round_trip_gives_the_trained_predictions(trained, fashion):
    result, path = trained
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "shufflesearch" and ckpt.spec.to_dict() == result.spec
    assert ckpt.meta["dataset"] == result.dataset and ckpt.meta["recipe"] == result.fidelity
    assert ckpt.meta["metrics"]["top1"] == result.top1
    assert ckpt.preprocessing.mean == tuple(result.input_mean) and ckpt.preprocessing.channels == "L"
    assert all(torch.equal(ckpt.weights[k], v) for k, v in result.weights.items())
    # the file alone reproduces the trainer's test-split top-1 (same images, same preprocessing)
    scores = evaluate_split(trained_model(ckpt), fashion, ckpt.preprocessing, limit=QUICK.eval_images)
    assert scores["images"] == QUICK.eval_images
    assert scores["top1"] == pytest.approx(result.top1, abs=1 / scores["images"])  # a tie may fall either way
    assert scores["top5"] >= scores["top1"]


def test_checkpoint_is_plain_safetensors_with_json_metadata(trained):
    from safetensors import safe_open

    _, path = trained
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert "classifier.weight" in set(f.keys())
    assert meta["format"] == "shufflesearch-checkpoint/1" and '"groups": 3' in meta["spec"]


@pytest.mark.parametrize(("preset", "dataparallel"), [("shufflenet_v1_x0_5_g3", True),
                                                     ("shufflenet_v1_x0_5_g3", False),
                                                     ("shufflenet_v1_x0_5_g8", True)])  # fmt: skip
def test_an_official_checkpoint_loads_strictly_and_gives_the_official_networks_logits(tmp_path, preset, dataparallel):
    spec = get_preset(preset)
    reference, official = official_checkpoint(spec.groups, f"{spec.scale}x", dataparallel=dataparallel)
    assert "classifier.0.weight" in "".join(official["state_dict"])  # theirs: a one-layer Sequential
    torch.save(official, tmp_path / "official.pth.tar")
    ckpt = load_checkpoint(tmp_path / "official.pth.tar", preset=preset)
    assert ckpt.kind == "official" and ckpt.preprocessing == OFFICIAL_PREPROCESSING
    x = torch.rand(2, 3, 224, 224) * 255  # what their evaluation feeds: float pixels 0-255, no normalisation
    with torch.no_grad():
        expected, got = reference(x), trained_model(ckpt)(x)
    # same weights, another summation order (channels-last): equal up to rounding at the logits' scale
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, float(expected.abs().max())))
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_a_wrong_size_checkpoint_is_refused_in_one_line_naming_key_and_preset(tmp_path):
    _, official = official_checkpoint(3, "0.5x")
    torch.save(official, tmp_path / "half.pth.tar")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "half.pth.tar", preset="shufflenet_v1_x1_0_g3")
    message = str(err.value)
    assert "\n" not in message
    assert "preset shufflenet_v1_x1_0_g3: first_conv.0.weight has shape 12x3x3x3, expected 24x3x3x3" in message
    assert "it fits preset shufflenet_v1_x0_5_g3" in message


def test_official_checks_name_missing_and_unexpected_keys_and_need_a_preset(tmp_path):
    _, official = official_checkpoint(8, "0.5x")
    state = official["state_dict"]
    torch.save(official, tmp_path / "ok.pth.tar")
    with pytest.raises(CheckpointError, match=r"without a spec.*--preset shufflenet_v1_x1_0_g3"):
        load_checkpoint(tmp_path / "ok.pth.tar")
    torch.save({"state_dict": {**state, "module.extra": torch.zeros(1)}}, tmp_path / "extra.pth.tar")
    with pytest.raises(CheckpointError, match=r"unexpected key extra$"):
        load_checkpoint(tmp_path / "extra.pth.tar", preset="shufflenet_v1_x0_5_g8")
    del state["module.classifier.0.weight"]
    torch.save(official, tmp_path / "missing.pth.tar")
    with pytest.raises(CheckpointError, match=r"missing key classifier.weight \(shape 1000x768\)"):
        load_checkpoint(tmp_path / "missing.pth.tar", preset="shufflenet_v1_x0_5_g8")


def test_checkpoints_from_before_num_batches_tracked_still_load(tmp_path):
    _, official = official_checkpoint(3, "0.5x")
    old = {k: v for k, v in official["state_dict"].items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    assert load_checkpoint(tmp_path / "old.pth", preset="shufflenet_v1_x0_5_g3").spec.groups == 3


def test_unsafe_and_unknown_files_are_refused(tmp_path, trained):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pth", preset="shufflenet_v1_x0_5_g3")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="neither a shufflesearch checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a shufflesearch checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="drop --preset"):
        load_checkpoint(trained[1], preset="shufflenet_v1_x1_0_g3")


def test_save_refuses_weights_of_another_network(tmp_path):
    spec = ShuffleNetSpec(groups=3, scale=0.25, resolution=28, stem="small", in_channels=1, num_classes=10)
    weights = build_model(spec.replace(num_classes=12)).state_dict()
    with pytest.raises(CheckpointError, match=r"classifier\.weight has shape 12x"):
        save_checkpoint(tmp_path / "m.safetensors", weights, spec, recipe={}, dataset="x", metrics={},
                        input_mean=[0.0], input_std=[1.0])  # fmt: skip
    assert not list(tmp_path.iterdir())


def _write_folder(root, images, labels, classes):
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(folder / f"{i:04d}.png")


def test_evaluate_folder_matches_the_split_on_the_same_images(trained, fashion, tmp_path):
    _, path = trained
    ckpt = load_checkpoint(path)
    from shufflesearch.accuracy.datasets import train_subset

    n = 120
    keep = train_subset(fashion.test_labels, n, 0)  # the images evaluate_split(limit=n) scores
    classes = [f"{i:02d}_{name}" for i, name in enumerate(fashion.classes)]  # sorted = training order
    _write_folder(tmp_path, fashion.test_images[keep, 0], fashion.test_labels[keep].tolist(), classes)
    model = trained_model(ckpt)
    folder = evaluate_folder(model, tmp_path, ckpt.preprocessing)
    split = evaluate_split(model, fashion, ckpt.preprocessing, limit=n)
    assert folder == {**split, "classes": 10}
    (tmp_path / "extra_class").mkdir()
    with pytest.raises(Exception, match="11 class folders; the network predicts 10 classes"):
        evaluate_folder(model, tmp_path, ckpt.preprocessing)


def test_official_preprocessing_resizes_the_shorter_side_crops_the_centre_and_feeds_bgr(tmp_path):
    from PIL import Image

    from shufflesearch.accuracy.evaluate import _to_input

    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[:, 180:220, 2] = 255  # a blue stripe at the centre
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", OFFICIAL_PREPROCESSING)
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8  # 300x400 -> 256x341, centre 224
    assert int(x[0].min()) == int(x[0].max()) == 200 and int(x[2, 0, 112]) == 255  # still RGB, stripe kept
    fed = _to_input(x[None], OFFICIAL_PREPROCESSING, "cpu")
    assert float(fed[0, 2].mean()) == 200.0 and fed.dtype == torch.float32  # BGR: red is channel 2, in 0-255


def test_evaluate_folder_runs_a_bgr_network_on_mixed_sizes(tmp_path):
    spec = ShuffleNetSpec(groups=3, scale=0.25, resolution=32, num_classes=6, repeats=(1, 1, 1))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    # Known predictions: the pooled features are >= 0 (a ReLU's), so classifier rows c_k * ones rank
    # the classes by c_k for every image: 1, 3, 4, 5, 2, then 0 (last, outside the top 5).
    ranking = torch.tensor([0.1, 0.6, 0.2, 0.5, 0.4, 0.3])
    with torch.no_grad():
        model.classifier.weight.copy_(ranking[:, None].expand_as(model.classifier.weight))
    rng = np.random.default_rng(0)
    for c in range(6):
        for i, (h, w) in enumerate([(40, 60), (70, 45)]):
            folder = tmp_path / f"class{c}"
            folder.mkdir(exist_ok=True)
            from PIL import Image

            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    prep = dataclasses.replace(OFFICIAL_PREPROCESSING, resolution=32, resize=40)
    scores = evaluate_folder(model, tmp_path, prep)
    assert scores["images"] == 12 and scores["classes"] == 6
    assert scores["top1"] == pytest.approx(2 / 12) and scores["top5"] == pytest.approx(10 / 12)  # class 1; all but 0
    assert isinstance(Preprocessing.from_dict(prep.to_dict()), Preprocessing)


def _cli(args, capsys):
    from shufflesearch.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_cli_export_and_evaluate_a_trained_checkpoint(trained, fashion, tmp_path, capsys):
    import json

    import onnxruntime as ort

    result, path = trained
    code, out, err = _cli(["export", "--weights", str(path), "--dynamic-batch", "--out", str(tmp_path / "m.onnx"),
                           "--json"], capsys)  # fmt: skip
    data = json.loads(out)
    assert code == 0, err
    assert data["batch"] == "dynamic" and data["weights"] == str(path) and data["spec"] == result.spec
    assert "grayscale float pixels 0-255" in data["input"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": fashion.test_images[:7].float().numpy()})[0]
    ckpt = load_checkpoint(path)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (ckpt.preprocessing.mean, ckpt.preprocessing.std))
    with torch.no_grad():
        expected = trained_model(ckpt)((fashion.test_images[:7].float() - mean) / std)
    assert (logits.argmax(1) == expected.argmax(1).numpy()).all()

    code, out, err = _cli(["evaluate", "--weights", str(path), "--limit", "1000", "--device", "cpu", "--json"], capsys)
    data = json.loads(out)
    assert code == 0, err
    assert data["on"] == "fashion-mnist test split" and data["same_dataset"] and data["images"] == 1000
    assert data["top1"] == pytest.approx(result.top1, abs=1e-3) and 0 <= data["top1"] <= data["top5"] <= 1
    code, out, _ = _cli(["evaluate", "--weights", str(path), "--limit", "1000", "--device", "cpu"], capsys)
    assert code == 0 and f"top-1 {100 * data['top1']:.2f} %" in out and "1,000 images" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--groups", "8", "--weights", "W"], "--groups: with trained weights the network comes from"),
        (["export", "--weights", "W", "--batch", "2", "--dynamic-batch"], "--batch N or --dynamic-batch, not both"),
        (["export", "--trial", "3"], "--trial, --budget and --budget-ms name a trial of --study FILE"),
        (["export", "--weights", "W", "--preset", "shufflenet_v1_x1_0_g3"], "drop --preset"),
        (["evaluate", "--weights", "W", "--data-dir", "nowhere"], "nowhere is not a folder"),
        (["evaluate", "--weights", "W", "--device", "cuda:7"], "device 'cuda:7' is not available"),
    ],
)
def test_cli_refuses_in_one_line(trained, tmp_path, capsys, args, message):
    args = [str(trained[1]) if a == "W" else a for a in args]
    if args[0] == "export":
        args += ["--out", str(tmp_path / "m.onnx")]
    code, _, err = _cli(args, capsys)
    assert code in (1, 2) and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.gpu
def test_evaluation_on_a_gpu_matches_the_cpu(trained, fashion):
    ckpt = load_checkpoint(trained[1])
    on_cpu = evaluate_split(trained_model(ckpt), fashion, ckpt.preprocessing, "cpu", limit=1000)
    on_gpu = evaluate_split(trained_model(ckpt, "cuda:0"), fashion, ckpt.preprocessing, "cuda:0", limit=1000)
    assert on_gpu["images"] == 1000 and abs(on_gpu["top1"] - on_cpu["top1"]) <= 2 / 1000  # ties may fall either way
