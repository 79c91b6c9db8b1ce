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
