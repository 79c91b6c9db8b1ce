"""arm64 emulation: the real aarch64 ONNX Runtime under QEMU, instructions counted by our TCG plugin.

QEMU tests need qemu-user, gcc, libglib2.0-dev and network access to Debian/PyPI for the first
(cached) set-up. With CI=true they must run; elsewhere they skip when emulation is unavailable.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from shufflesearch.export import onnx_bytes
from shufflesearch.latency.emulated import (
    EmulationError,
    InstructionCount,
    count_instructions,
    device_profiles,
    ensure_sysroot,
    estimate_ms,
    parse_counts,
    sysroot_status,
)
from shufflesearch.latency.emulated.guest import (
    FAKETIME_HIDDEN,
    SETUP_COMMAND,
    guest_command,
    guest_env,
    plugin_path,
    qemu_binary,
    run_guest,
)
from shufflesearch.paper import TABLE8_LATENCY_MS
from shufflesearch.spec import ShuffleNetSpec

IN_CI = os.environ.get("CI") == "true"
# Tiny networks at 64 px: a few seconds each under emulation.
BASE = ShuffleNetSpec(groups=3, scale=0.5, repeats=(1, 2, 1), resolution=64, num_classes=10)
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def cache_root():
    try:
        qemu_binary()
        started = time.monotonic()
        root = ensure_sysroot()
    except EmulationError as exc:
        if IN_CI:
            pytest.fail(f"arm64 emulation must run in CI: {exc}")
        pytest.skip(f"arm64 emulation unavailable on this machine: {exc}")
    if time.monotonic() - started < 5:  # it was cached: a second call must be near-instant
        again = time.monotonic()
        assert ensure_sysroot() == root
        assert time.monotonic() - again < 1.0
    return root


@pytest.fixture(scope="module")
def counts(cache_root):
    """Counts shared by several tests (each is one emulated process)."""
    cache = {}

    def get(spec, key=None):
        key = key or spec
        if key not in cache:
            data, _ = onnx_bytes(spec)
            cache[key] = count_instructions(data, SHAPE, runs=3)
        return cache[key]

    return get


# -- no QEMU needed ------------------------------------------------------------------------------
def test_missing_sysroot_names_the_fix_command(tmp_path):
    with pytest.raises(EmulationError) as info:
        count_instructions(b"not a model", SHAPE, cache_dir=tmp_path / "nothing-here")
    message = str(info.value)
    assert message.endswith(SETUP_COMMAND) and "\n" not in message
    assert sysroot_status(tmp_path / "nothing-here")["ready"] is False


def test_interrupted_setup_never_looks_valid(tmp_path):
    # A sysroot directory without the manifest (written last) is what an interrupted set-up leaves.
    (tmp_path / "arm64" / "sysroot" / "usr" / "bin").mkdir(parents=True)
    assert sysroot_status(tmp_path / "arm64")["manifest"] is None
    with pytest.raises(EmulationError, match="not set up"):
        count_instructions(b"", SHAPE, cache_dir=tmp_path / "arm64")


def test_plugin_output_parsing_rejects_unbalanced_markers():
    good = "classes 7\nrun 10 1 2 3 0 1 1 2\nexit\n"
    assert parse_counts(good) == [[10, 1, 2, 3, 0, 1, 1, 2]]
    with pytest.raises(EmulationError, match="markers"):
        parse_counts(good + "error marker 2 from vcpu 0 while active vcpu -1\n")
    with pytest.raises(EmulationError, match="malformed"):
        parse_counts("run 11 1 2 3 0 1 1 2\n")  # classes do not add up to the total


def test_fit_recovers_a_known_linear_law_and_picks_it():
    xs = [10e6, 20e6, 40e6, 80e6, 160e6]
    fit, candidates = device_profiles.fit_points(xs, [2e-6 * x + 3 for x in xs])
    assert fit.kind == "linear" and fit.loo_error_pct < 1e-6
    assert fit.coefficients == pytest.approx((2e-6, 3))
    assert set(candidates) == set(device_profiles.FIT_KINDS) - {"mix"}  # no mix given: not a candidate
    assert min(candidates["loglog"]) > 0


def test_stored_profile_matches_the_paper_and_its_fit_reproduces():
    data = device_profiles.read_profile("snapdragon820")
    points = data["points"]
    assert [(p["model"], *p["input_hw"], p["published_ms"]) for p in points] == list(TABLE8_LATENCY_MS)
    for point in points:  # a mix adds up to its total
        assert sum(point["mix"].values()) == point["instructions"]
    refit, candidates = device_profiles.fit_points(
        [p["instructions"] for p in points], [p["published_ms"] for p in points], [p["mix"] for p in points]
    )
    stored = device_profiles.load_profile("snapdragon820")
    assert refit.kind == stored.kind
    assert refit.coefficients == pytest.approx(stored.coefficients, rel=1e-6)
    assert refit.loo_error_pct == pytest.approx(stored.loo_error_pct, abs=0.01)
    assert refit.loo_error_pct == min(sum(v) / len(v) for v in candidates.values())
    assert data["regenerate"] == device_profiles.REGENERATE_COMMAND


def _stored_count(index: int) -> InstructionCount:
    point = device_profiles.read_profile("snapdragon820")["points"][index]
    shape = (1, 3, *point["input_hw"])
    return InstructionCount(point["instructions"], [point["instructions"]], point["mix"], "neoverse-n1", "0x414fd0c1", "", "", shape, 0.0)  # fmt: skip


def test_estimate_says_estimated_and_grows_with_instructions():
    small, large = estimate_ms(_stored_count(0)), estimate_ms(_stored_count(8))  # 0.5x at 224, 2x at 720x1280
    assert "estimated" in small.basis and "Snapdragon 820" in small.basis
    assert 0 < small.estimated_ms < large.estimated_ms
    assert small.fit_error_pct > 0  # an honest fit is never exact
    assert small.to_dict()["count"]["input_shape"] == [1, 3, 224, 224]


def test_unknown_profile_is_a_user_error():
    with pytest.raises(ValueError, match="snapdragon820"):
        estimate_ms(_stored_count(0), profile="snapdragon821")


# -- real QEMU -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_counts_repeat_across_separate_processes(counts):
    first, second = counts(BASE), counts(BASE, key="again")
    assert abs(first.instructions - second.instructions) / first.instructions < 0.005
    assert first.spread < 0.005 and len(first.per_run) == 3
    assert sum(first.mix.values()) == first.instructions
    assert first.mix["simd_dp"] > 0.2 * first.instructions  # MLAS kernels are NEON-heavy
    assert first.mix["sve"] == 0  # pinned neoverse-n1 has no SVE: no SVE kernels chosen
    assert first.cpu == "neoverse-n1" and first.midr == "0x414fd0c1"
    assert first.guest["cpuinfo"]["CPU part"] == "0xd0c" and first.guest["machine"] == "aarch64"
    assert first.ort_version == ort.__version__ and first.qemu_version.startswith("qemu-aarch64")


@pytest.mark.slow
def test_emulated_runtime_computes_what_host_onnxruntime_computes(counts):
    data, _ = onnx_bytes(BASE)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)  # the guest's input
    expected = session.run(None, {session.get_inputs()[0].name: x})[0].ravel()
    guest = counts(BASE).guest
    np.testing.assert_allclose(guest["output_head"], expected[:8], atol=1e-3)
    assert guest["output_sum"] == pytest.approx(float(expected.sum()), abs=1e-2)


@pytest.mark.slow
def test_wider_model_needs_more_instructions(counts):
    assert counts(BASE.replace(scale=1.0)).instructions > 1.5 * counts(BASE).instructions


@pytest.mark.slow
def test_repeated_identical_units_add_identical_cost(counts):
    two, three, four = (counts(BASE.replace(repeats=(1, n, 1))) for n in (2, 3, 4))
    first_unit, second_unit = three.instructions - two.instructions, four.instructions - three.instructions
    assert first_unit > 0 and second_unit > 0
    # Each median moves by at most its own run-to-run spread (a few thousand instructions here).
    noise = sum(c.spread * c.instructions for c in (two, three, three, four))
    assert abs(second_unit - first_unit) <= noise + 0.01 * first_unit


@pytest.mark.slow
def test_int8_model_runs_dot_product_kernels_that_fp32_does_not(counts, tmp_path):
    # neoverse-n1 advertises asimddp: ORT's int8 kernels use SDOT/UDOT, which the plugin classifies apart.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    (tmp_path / "fp32.onnx").write_bytes(onnx_bytes(BASE)[0])
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QUInt8)
    int8 = count_instructions(tmp_path / "int8.onnx", SHAPE, runs=1)
    assert int8.mix["simd_dot"] > 0
    assert counts(BASE).mix["simd_dot"] == 0


@pytest.mark.slow
def test_a_model_the_runtime_rejects_is_a_user_error(cache_root):
    data, _ = onnx_bytes(BASE)
    with pytest.raises(ValueError, match="rejected the model"):
        count_instructions(data, (1, 3, 64), runs=1)  # rank 3 input for a rank 4 network


@pytest.mark.slow
def test_plugin_counts_only_the_marking_thread_between_markers(cache_root, tmp_path):
    # Same busy loop: run by a helper thread while the marking thread waits, then by the marking thread.
    code = (
        "import os, threading\n"
        "def mark(code):\n"
        "    try: os.lseek(-1, 0x5348554600000000 + code, 0)\n"
        "    except OSError: pass\n"
        "def spin():\n"
        "    total = 0\n"
        "    for i in range(100000): total += i\n"
        "mark(1); t = threading.Thread(target=spin); t.start(); t.join(); mark(2)\n"
        "mark(1); spin(); mark(2)\n"
        "mark(2)\n"  # unbalanced stop: reported as an error line, not counted
    )
    out = tmp_path / "counts.txt"
    qemu, _ = qemu_binary()
    cmd = [*guest_command(qemu, cache_root / "sysroot", plugin_path(cache_root), out), "-c", code]
    assert run_guest(cmd, timeout=600, env=guest_env()).returncode == 0
    lines = Path(out).read_text().splitlines()
    regions = [int(line.split()[1]) for line in lines if line.startswith("run ")]
    assert len(regions) == 2
    helper_thread, own_thread = regions
    assert own_thread > 5_000_000  # 100k Python loop iterations
    assert helper_thread < own_thread / 10  # the waiting thread's own work only
    assert any(line.startswith("error marker 2") for line in lines)
    with pytest.raises(EmulationError):
        parse_counts("\n".join(lines))


def test_guest_wall_clock_is_frozen_and_its_variables_stay_out_of_the_guest(cache_root, tmp_path):
    # ONNX Runtime's path inside Run() depends on the wall clock: a frozen clock keeps counts repeating.
    code = (
        "import json, os, time\n"
        "a = time.time(); sum(range(300000)); b = time.time()\n"
        "print(json.dumps({'a': a, 'b': b, 'env': sorted(os.environ)}))\n"
    )
    qemu, _ = qemu_binary()
    cmd = [*guest_command(qemu, cache_root / "sysroot", plugin_path(cache_root), tmp_path / "c.txt"), "-c", code]
    done = run_guest(cmd, timeout=600, env=guest_env())
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["a"] == seen["b"]  # no time passes for the guest
    assert abs(seen["a"] - 1577836800) <= 14 * 3600  # FROZEN_CLOCK, 2020-01-01 00:00:00 in the host's time zone
    # The guest's environment is the fixed one, and FAKETIME (a constant; QEMU 7.2's -U would remove another).
    assert set(seen["env"]) == set(guest_env()) - set(FAKETIME_HIDDEN)
    assert {"FAKETIME", "ORT_DISABLE_TELEMETRY"} <= set(seen["env"])
