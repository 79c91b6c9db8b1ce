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
