import os

import onnx
import pytest

from shufflesearch.atomic import write_atomically
from shufflesearch.export import export_onnx
from shufflesearch.spec import ShuffleNetSpec


@pytest.mark.parametrize(
    "spec",
    [
        ShuffleNetSpec(groups=3, scale=0.5, resolution=64),
        ShuffleNetSpec(groups=8, scale=0.25, resolution=28, stem="small", in_channels=1, num_classes=10),
        ShuffleNetSpec(groups=2, scale=0.5, resolution=48, shuffle=False, repeats=(1, 2, 1)),
    ],
)
def test_export_matches_pytorch_in_onnxruntime(tmp_path, spec):
    result = export_onnx(spec, tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, spec.in_channels, spec.resolution, spec.resolution]
    assert result.bytes == os.path.getsize(result.path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.csv"
    target.write_text("precious")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomically(target, "new")
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_a_network_over_the_onnx_limit_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """Protobuf caps one ONNX file at 2 GiB: this spec once traced for a minute in 11 GB, then raised."""
    import shufflesearch.export as export
    from shufflesearch.complexity import count_complexity

    big = ShuffleNetSpec(groups=1, stage_channels=(240, 480, 9600), num_classes=65000, resolution=32)
    assert count_complexity(big).params * 4 > 2**31
    monkeypatch.setattr(export, "build_model", lambda spec: pytest.fail("built a network it must refuse"))
    with pytest.raises(export.TooLargeForOnnx, match=r"over 2\.\d GiB of weights; an ONNX file holds under 2 GiB"):
        export_onnx(big, tmp_path / "big.onnx")
    assert not list(tmp_path.iterdir())


def test_onnx_bytes_traces_any_input_size_and_any_module():
    from shufflesearch.export import module_onnx_bytes, onnx_bytes

    spec = ShuffleNetSpec(groups=3, scale=0.25, resolution=32, repeats=(1, 1, 1))
    data, _ = onnx_bytes(spec, input_hw=(48, 80), randomize_bn=False)
    dims = [d.dim_value for d in onnx.load_model_from_string(data).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48, 80]
    import torch

    graph = onnx.load_model_from_string(module_onnx_bytes(torch.nn.ReLU(), (1, 2, 3, 3), "x", "y")).graph
    assert [graph.input[0].name, graph.output[0].name] == ["x", "y"]


def _onnx_logits(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.numpy()})[0]


@pytest.mark.parametrize("batch", [4, None])
def test_export_with_trained_weights_equals_pytorch_on_pixels(tmp_path, fashion, batch):
    """Real (1-epoch) weights, normalisation baked in: the graph takes 0-255 pixels and gives the checkpoint's logits."""
    import numpy as np
    import torch

    from shufflesearch.accuracy import Fidelity, train_proxy
    from shufflesearch.checkpoint import load_checkpoint, save_checkpoint, trained_model

    quick = Fidelity(train_images=200, epochs=1, resolution=28, stem="small", eval_images=200, curve_eval_images=0)
    result = train_proxy(ShuffleNetSpec(groups=3, scale=0.25, repeats=(1, 1, 1)), fashion, quick, keep_weights=True)
    spec = ShuffleNetSpec.from_dict(result.spec)
    save_checkpoint(tmp_path / "m.safetensors", result.weights, spec, recipe=result.fidelity, dataset=result.dataset,
                    metrics={}, input_mean=result.input_mean, input_std=result.input_std)  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    prep = ckpt.preprocessing
    out = export_onnx(ckpt.spec, tmp_path / "m.onnx", weights=ckpt.weights, batch=batch, input_mean=prep.mean,
                      input_std=prep.std)  # fmt: skip
    assert out.max_abs_diff <= 1e-4 and out.batch == batch and out.takes_pixels
    dims = onnx.load(str(out.path)).graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param or dims[0].dim_value) == ("batch" if batch is None else 4)
    pixels = fashion.test_images[: 5 if batch is None else 4].float()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (prep.mean, prep.std))
    with torch.no_grad():
        expected = trained_model(ckpt)((pixels - mean) / std).numpy()
    got = _onnx_logits(out.path, pixels)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_refuses_weights_that_do_not_fit_and_bad_batches(tmp_path):
    from shufflesearch.checkpoint import CheckpointError
    from shufflesearch.errors import UsageError
    from shufflesearch.model import build_model

    spec = ShuffleNetSpec(groups=3, scale=0.25, resolution=32, repeats=(1, 1, 1))
    with pytest.raises(CheckpointError, match="does not fit"):
        export_onnx(spec, tmp_path / "m.onnx", weights=build_model(spec.replace(num_classes=10)).state_dict())
    with pytest.raises(UsageError, match="batch=0 must be"):
        export_onnx(spec, tmp_path / "m.onnx", batch=0)
    with pytest.raises(UsageError, match="opset=99"):
        export_onnx(spec, tmp_path / "m.onnx", opset=99)
    assert not list(tmp_path.iterdir())


def test_export_of_an_official_checkpoint_gives_its_logits(tmp_path, monkeypatch):
    """`export --preset shufflenet_v1_x1_0_g3 --weights official.pth.tar`: the official network's logits (BGR, 0-255)."""
    import numpy as np
    import torch
    from official_shufflenet import official_checkpoint

    from shufflesearch import export
    from shufflesearch.export import export_trained

    seen = []  # the inputs PyTorch computes on: the trace's zeros, then the check's, which must be pixels too
    build = export.build_model
    monkeypatch.setattr(export, "build_model", lambda spec: _record_inputs(build(spec), seen))
    preset = "shufflenet_v1_x0_5_g3"  # the smallest official layout: same code path as x1_0, a quarter of the work
    reference, official = official_checkpoint(3, "0.5x", seed=1)  # their network, not ours under their names
    torch.save(official, tmp_path / "official.pth.tar")
    out = export_trained(tmp_path / "m.onnx", tmp_path / "official.pth.tar", preset=preset)
    assert out.takes_pixels and out.weights == tmp_path / "official.pth.tar" and "no normalisation" in out.input
    checked = [x for x in seen if x.any()]
    assert checked and all(x.min() >= 0 and 128 < x.max() <= 255 for x in checked)  # uniform 0-255, not randn
    x = torch.rand(1, 3, 224, 224) * 255
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.abs(_onnx_logits(out.path, x) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def _record_inputs(model, seen):
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return model
