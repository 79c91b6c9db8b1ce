"""ARM latency: measured locally or on a device over SSH, estimated under emulation or from a LUT.

- `targets`: `latency_on(spec, target)`, the one place a target string gets its meaning;
- `measure`: here, with ONNX Runtime (what a device runs) or PyTorch eager;
- `ssh`: on a device over ssh (`measure_remote`);
- `emulated`: instructions counted under QEMU -> an estimate on a calibrated profile (`emulate_spec`);
- `lut`: a lookup table of per-block latencies, predicting any spec of a space (`build_lut`);
- `device_runner.py`: the timing script itself, shipped to devices with `shufflesearch/environment.py`.

Each loads torch, QEMU or ssh only when it measures: importing this package stays light.

>>> from shufflesearch.presets import get_preset
>>> measure_latency(get_preset("shufflenet_v1_x0_5_g3")).median_ms  # doctest: +SKIP
1.9
"""

from __future__ import annotations

from .measure import LatencyResult, LatencySettingError, OutputMismatchError, measure_latency, measure_onnx_file
from .targets import TablePrediction, UnknownTarget, latency_on

__all__ = [
    "LatencyResult",
    "LatencySettingError",
    "OutputMismatchError",
    "TablePrediction",
    "UnknownTarget",
    "latency_on",
    "measure_latency",
    "measure_onnx_file",
]
