"""Local latency measurement: ONNX Runtime and PyTorch eager, the shared runner script, the environment."""

import ast
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shufflesearch import environment
from shufflesearch.environment import describe, machine_info
from shufflesearch.export import export_onnx
from shufflesearch.latency import device_runner
from shufflesearch.latency.device_runner import latency_stats, seeded_input
from shufflesearch.latency.measure import (
    LatencyResult,
    LatencySettingError,
    OutputMismatchError,
    check_outputs,
    measure_latency,
    measure_onnx_file,
)
from shufflesearch.spec import ShuffleNetSpec

TINY = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1), resolution=32)
RUNS = 5
RUNNER = device_runner.__file__


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def result(request) -> LatencyResult:
    return measure_latency(TINY, backend=request.param, runs=RUNS, warmup=2)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(TINY, path)
    return path


def test_result_statistics_come_from_its_own_runs(result):
    times = np.array(result.times_ms)
    assert len(times) == result.runs == RUNS and result.warmup == 2
    assert (times > 0).all()
    assert result.median_ms == pytest.approx(np.median(times))
    assert result.p90_ms == pytest.approx(np.percentile(times, 90))
    assert result.min_ms == times.min() <= result.median_ms <= result.p90_ms <= times.max()
    iqr = np.percentile(times, 75) - np.percentile(times, 25)
    assert result.iqr_ms == pytest.approx(iqr)
    assert result.spread_pct == pytest.approx(100 * iqr / np.median(times))


def test_result_describes_the_measurement(result):
    assert (result.target, result.threads, result.resolution, result.kind) == ("local", 1, 32, "measured")
    assert result.model == TINY.label
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4  # checked before timing
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["backend"] == result.backend and data["machine"]["arch"] == platform.machine()


def test_machine_info_matches_this_machine():
    import onnxruntime
    import torch

    info = machine_info()
    assert info["arch"] == platform.machine()
    assert info["cpu_cores"] == os.cpu_count()
    assert info["python"] == platform.python_version()
    assert info["versions"]["onnxruntime"] == onnxruntime.__version__
    assert info["versions"]["torch"] == torch.__version__
    assert info["cpu_model"] and info["cpu_model"] != "unknown"
    line = describe(info)
    assert "\n" not in line and info["arch"] in line and onnxruntime.__version__ in line


ARM_BIG_LITTLE = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp\n"
    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x{1 if i > 5 else 2}\n"
    f"CPU part\t: {'0xd0b' if i > 5 else '0xd05'}\nCPU revision\t: 0\n\n"
    for i in range(8)
)


def test_arm_cpuinfo_is_named_by_core_type():
    # A Cortex-A55/A76 big.LITTLE SoC: ARM kernels give MIDR fields, not a model name.
    assert environment._cpu_model(ARM_BIG_LITTLE) == "Cortex-A55 x6, Cortex-A76 x2"
    assert environment._kernel_flags(ARM_BIG_LITTLE) == ["asimd", "asimddp", "asimdhp"]
    unknown = ARM_BIG_LITTLE.replace("0x41", "0x99") + "Hardware\t: Vendor SoC\n"
    assert environment._cpu_model(unknown).startswith("Vendor SoC (implementer 0x99 part 0xd05 x6")


def test_torch_threads_are_recorded_and_restored():
    import torch

    before = torch.get_num_threads()
    result = measure_latency(TINY, backend="torch", threads=2, runs=3, warmup=0)
    assert result.threads == 2 and result.backend == "torch"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"backend": "tflite"}, "backend='tflite'"),
        ({"threads": 0}, "threads=0"),
        ({"threads": True}, "threads=True"),
        ({"runs": 2}, "runs=2"),
        ({"warmup": -1}, "warmup=-1"),
    ],
)
def test_bad_settings_are_one_line_value_errors(kwargs, named):
    with pytest.raises(LatencySettingError) as info:
        measure_latency(TINY, **kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert named in message and "\n" not in message


def test_output_check_rejects_a_different_network():
    expected = [float(v) for v in np.linspace(-3, 3, 50)]
    assert check_outputs(expected, [v + 5e-5 for v in expected], "local") == pytest.approx(5e-5)
    with pytest.raises(OutputMismatchError, match="differs from PyTorch"):
        check_outputs(expected, [v + 1e-3 for v in expected], "local")
    with pytest.raises(OutputMismatchError):
        check_outputs(expected, [float("nan")] * 50, "local")
    with pytest.raises(OutputMismatchError, match="49 output values"):
        check_outputs(expected, expected[:49], "local")


def test_measure_onnx_file(tiny_onnx):
    result = measure_onnx_file(tiny_onnx, runs=RUNS, warmup=1)
    assert (result.backend, result.resolution, result.model, result.max_abs_diff) == (
        "onnxruntime",
        32,
        "tiny.onnx",
        None,
    )
    assert len(result.times_ms) == RUNS and result.median_ms > 0
    with pytest.raises(LatencySettingError, match="does not exist"):
        measure_onnx_file(tiny_onnx.with_name("missing.onnx"))
    with pytest.raises(LatencySettingError, match="does not match"):
        measure_onnx_file(tiny_onnx, input_shape=(1, 3, 64, 64), runs=3)  # the exported input is fixed at 32


@given(st.lists(st.floats(0.01, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_latency_stats_match_numpy(times):
    stats = latency_stats(times)
    for key, q in (("median_ms", 50), ("p90_ms", 90)):
        assert stats[key] == pytest.approx(np.percentile(times, q), rel=1e-9, abs=1e-9)
    assert stats["min_ms"] == min(times) and stats["max_ms"] == max(times)


def test_seeded_input_is_deterministic_uniform_float32():
    a, b, c = seeded_input((1, 3, 32, 32), 0), seeded_input((1, 3, 32, 32), 0), seeded_input((1, 3, 32, 32), 1)
    assert a.dtype == np.float32 and a.shape == (1, 3, 32, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= -1 and a.max() < 1
    assert abs(a.mean()) < 0.05 and a.std() == pytest.approx((1 / 3) ** 0.5, rel=0.05)


def test_runner_script_prints_one_json_line(tiny_onnx):
    done = subprocess.run(
        [sys.executable, RUNNER, str(tiny_onnx), "--runs", "4", "--warmup", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert payload["ok"] and len(payload["times_ms"]) == 4 and payload["input_shape"] == [1, 3, 32, 32]
    assert payload["median_ms"] == latency_stats(payload["times_ms"])["median_ms"]
    assert payload["machine"]["arch"] == platform.machine() and len(payload["output_sample"]) == TINY.num_classes


def test_runner_runs_alone_with_the_files_shipped_to_a_device(tiny_onnx, tmp_path):
    # What a device gets over ssh: the runner and environment.py side by side, no shufflesearch installed.
    from shufflesearch.latency.ssh.session import RUNNER_FILES

    for name, path in RUNNER_FILES.items():
        shutil.copy(path, tmp_path / name)
    command = [sys.executable, "-I", str(tmp_path / "device_runner.py"), str(tiny_onnx), "--runs", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    payload = json.loads(done.stdout.splitlines()[-1])
    assert payload["ok"], payload
    local = machine_info()
    assert set(payload["machine"]) == set(local) and payload["machine"]["arch"] == local["arch"]


def test_runner_without_onnxruntime_says_how_to_fix(tiny_onnx):
    # -S hides site-packages: the interpreter a bare device would have.
    done = subprocess.run([sys.executable, "-S", RUNNER, str(tiny_onnx)], capture_output=True, text=True, timeout=60)
    payload = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == device_runner.EXIT_FAILED
    assert payload["ok"] is False and payload["error"] == "missing-modules"
    assert "pip install onnxruntime" in payload["message"]


@pytest.mark.parametrize("path", [RUNNER, environment.__file__])  # environment.py is shipped beside the runner
def test_runner_is_python38_and_stdlib_only(path):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source, feature_version=(3, 8))  # a SyntaxError here breaks old devices
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):  # 3.9+/3.10+ call forms that parse fine but fail at run time
            assert not any(k.arg == "strict" for k in node.keywords), ast.unparse(node)
            assert not (isinstance(node.func, ast.Attribute) and node.func.attr in {"removeprefix", "removesuffix"})
    assert imported - set(sys.stdlib_module_names) <= {"numpy", "onnxruntime"}
