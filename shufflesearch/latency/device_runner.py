#!/usr/bin/env python3
"""Time one ONNX model with ONNX Runtime and print one JSON line: the script shipped to a device.

It runs on the device itself, so it needs only Python >= 3.8, numpy and onnxruntime
(`python3 -m pip install onnxruntime` brings both) and, of shufflesearch, only
`environment.py` (the machine description), which travels beside it. shufflesearch copies
both over SSH and times local ONNX models with the same code, so a latency means the same
thing everywhere. By hand (environment.py beside the runner):

    $ python3 device_runner.py model.onnx --threads 1 --runs 50 --warmup 10
    {"ok":true,"median_ms":4.71,"p90_ms":4.93,...,"times_ms":[...],"machine":{"arch":"aarch64",...}}

Many models in one call (a latency lookup table's blocks) take a manifest instead; models
may ship without weights, which the runner then fills with seeded values of the recorded
mean and spread (weight values do not change dense-kernel timing, and a table's blocks would
otherwise weigh about a gigabyte):

    $ python3 device_runner.py --manifest manifest.json --runs 30 --clock cpu
    {"ok":true,"results":{"stem:3>24:imagenet@224":{"times_ms":[...],...},...},"machine":{...}}

`--clock cpu` times with the thread's CPU clock (one thread only): on a shared, busy host it
leaves out the time other processes hold the core; `wall` (default) is what a user waits.
On failure it prints {"ok":false,"error":CODE,"message":...} and exits with status 3.
"""
# Devices run old Pythons: keep this file valid Python 3.8 (tests/test_latency_measure.py checks it).

from __future__ import annotations

import argparse
import json
import os
import sys
import time

RUNNER_VERSION = 2
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
EXIT_FAILED = 3
OUTPUT_SAMPLE_SIZE = 1024  # output values sent back for the host's equality check
_MASK64 = (1 << 64) - 1


class RunnerError(Exception):
    """A failure the host turns into a specific error: `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- machine description ---------------------------------------------------------------


def machine_info() -> dict:
    """shufflesearch.environment.machine_info: the package's, or the copy shipped beside this script."""
    if __package__:
        from .. import environment
    else:
        environment = _load_beside("environment.py")
    return environment.machine_info()


def _load_beside(name: str):
    # On a device the host ships environment.py beside this file; in a source tree it is one folder up.
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, name), os.path.join(os.path.dirname(here), name)):
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(name[: -len(".py")], path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise RunnerError("missing-file", f"{name} must be shipped beside {os.path.basename(__file__)}")


# -- statistics --------------------------------------------------------------------------


def percentile(sorted_values: list, q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_stats(times_ms: list) -> dict:
    """Median, p90, min, max, mean, IQR and spread (IQR as % of the median) of timed runs."""
    if not times_ms:
        raise ValueError("no timed runs to summarize")
    values = sorted(times_ms)
    median = percentile(values, 50)
    iqr = percentile(values, 75) - percentile(values, 25)
    return {
        "median_ms": median,
        "p90_ms": percentile(values, 90),
        "min_ms": values[0],
        "max_ms": values[-1],
        "mean_ms": sum(values) / len(values),
        "iqr_ms": iqr,
        "spread_pct": 100.0 * iqr / median if median > 0 else 0.0,
    }


# -- inputs and outputs ------------------------------------------------------------------


def seeded_input(shape: tuple, seed: int = 0):
    """Float32 values in [-1, 1) from splitmix64 over the element index: bit-identical on every platform
    and numpy version (numpy's Generator streams are not guaranteed stable across versions)."""
    import numpy as np

    size = 1
    for dim in shape:
        size *= int(dim)
    with np.errstate(over="ignore"):
        z = np.arange(size, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 1) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    top24 = (z >> np.uint64(40)).astype(np.float32)  # 24 bits: exact in float32
    return (top24 / np.float32(1 << 23) - np.float32(1.0)).reshape(tuple(int(d) for d in shape))


def sample_indices(size: int):
    """Up to OUTPUT_SAMPLE_SIZE evenly spaced flat indices (all of them for a classifier's logits)."""
    import numpy as np

    if size <= OUTPUT_SAMPLE_SIZE:
        return np.arange(size, dtype=np.int64)
    return np.arange(OUTPUT_SAMPLE_SIZE, dtype=np.int64) * (size - 1) // (OUTPUT_SAMPLE_SIZE - 1)


# -- timing ------------------------------------------------------------------------------


def time_onnx(model, threads=1, runs=50, warmup=10, seed=0, input_shape=None, max_seconds=None, clock="wall") -> dict:
    """Time `model` (a path or serialized bytes) at batch 1 on `threads` intra-op threads.

    The first run, on the seeded input, gives the output sample the host compares with
    PyTorch; `warmup` untimed runs follow, then `runs` timed ones (milliseconds each).
    `clock` "cpu" counts only this thread's CPU time (needs threads == 1: ONNX Runtime then
    computes on the calling thread).
    """
    import onnxruntime as ort

    if clock not in CLOCKS:
        raise RunnerError("bad-arguments", f"clock {clock!r} must be one of {', '.join(CLOCKS)}")
    if clock == "cpu" and threads != 1:
        raise RunnerError("bad-arguments", f"clock 'cpu' times one thread only; threads={threads} needs clock 'wall'")
    now = CLOCKS[clock]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RunnerError("bad-model", f"ONNX Runtime cannot load the model: {_one_line(exc)}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise RunnerError("bad-model", f"the model must take exactly one float32 input, not {len(inputs)}")
    declared = list(inputs[0].shape)
    shape = list(input_shape) if input_shape else declared
    if len(shape) != len(declared) or any(isinstance(d, int) and d != s for d, s in zip(declared, shape)):
        raise RunnerError("bad-shape", f"input shape {shape} does not match the model's input {declared}")
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise RunnerError("dynamic-shape", f"input shape {shape} is not fixed; pass --shape 1,3,224,224")
    feed = {inputs[0].name: seeded_input(shape, seed)}
    start = time.perf_counter()
    output = session.run(None, feed)[0]
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = now()
        session.run(None, feed)
        times.append((now() - t0) * 1e3)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            raise RunnerError("time-budget", f"timing exceeded {max_seconds:g} s after {len(times)} runs")
    flat = output.reshape(-1)
    return {
        "times_ms": times,
        "input_shape": shape,
        "output_shape": list(output.shape),
        "output_sample": [float(v) for v in flat[sample_indices(flat.size)]],
        "session": {
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization_level": "all",
            "providers": session.get_providers(),
        },
    }


def time_manifest(directory, manifest, threads=1, runs=50, warmup=10, seed=0, max_seconds=None, clock="wall") -> dict:
    """Time every model a manifest lists, one after another; {name: {"times_ms", "input_shape", "output_shape"}}.

    manifest = {"models": [{"name": ..., "file": "m0.onnx", "weights": {"file": "m0.bin",
    "fill": [[offset_bytes, count, mean, std], ...]}}, ...]}; "weights" is optional. A weight
    file is written just before its model is timed and removed right after, so the device
    never holds more than one model's weights.
    """
    models = manifest.get("models") if isinstance(manifest, dict) else None
    if not isinstance(models, list) or not models:
        raise RunnerError("bad-manifest", "the manifest must be an object with a non-empty list 'models'")
    start = time.perf_counter()
    results = {}
    for entry in models:
        name, path = entry.get("name"), _member(directory, entry.get("file"))
        if not isinstance(name, str) or name in results:
            raise RunnerError("bad-manifest", f"model name {name!r} must be a string, unique in the manifest")
        weights = entry.get("weights")
        budget = None
        if max_seconds is not None:
            budget = max_seconds - (time.perf_counter() - start)
            if budget <= 0:
                raise RunnerError("time-budget", f"timing exceeded {max_seconds:g} s after {len(results)} models")
        weight_path = _member(directory, weights["file"]) if weights else None
        try:
            if weight_path:
                _write_weights(weight_path, weights["fill"], seed)
            timing = time_onnx(path, threads, runs, warmup, seed, entry.get("input_shape"), budget, clock)
        finally:
            if weight_path and os.path.exists(weight_path):
                os.remove(weight_path)
        results[name] = {k: timing[k] for k in ("times_ms", "input_shape", "output_shape")}
    return results


def _member(directory, name) -> str:
    # Manifests come from the host, but a file name must still never leave the bundle's directory.
    if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
        raise RunnerError("bad-manifest", f"file name {name!r} must be a plain name inside the bundle")
    return os.path.join(directory, name)


def _write_weights(path, fill, seed) -> None:
    """Seeded uniform float32 values with each tensor's recorded mean and standard deviation."""
    import numpy as np

    with open(path, "wb") as f:
        for index, (offset, count, mean, std) in enumerate(fill):
            values = seeded_input((int(count),), seed + index) * np.float32(std * 3**0.5) + np.float32(mean)
            f.seek(int(offset))
            f.write(values.astype("<f4").tobytes())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


# -- command line ------------------------------------------------------------------------


def _shape(text: str) -> list:
    try:
        shape = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shape {text!r} must be comma-separated integers, e.g. 1,3,224,224"
        ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shape {text!r} needs positive dimensions, e.g. 1,3,224,224")
    return shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Time an ONNX model with ONNX Runtime; print one JSON line.")
    parser.add_argument("model", nargs="?", help="path to the .onnx file (or give --manifest)")
    parser.add_argument("--manifest", default=None, help="JSON manifest of many models to time in one call")
    parser.add_argument("--clock", default="wall", help="wall (default) or cpu: this thread's CPU time")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the input values (default 0)")
    parser.add_argument("--shape", type=_shape, default=None, help="input shape if the model's is not fixed")
    parser.add_argument("--max-seconds", type=float, default=None, help="give up once timing takes longer")
    args = parser.parse_args(argv)
    try:
        payload = _measure(args)
    except RunnerError as exc:
        payload = {"ok": False, "error": exc.code, "message": str(exc)}
    except Exception as exc:  # the host must always get one JSON line, whatever broke
        payload = {"ok": False, "error": "unexpected", "message": f"{type(exc).__name__}: {_one_line(exc)}"}
    payload["runner_version"] = RUNNER_VERSION
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0 if payload["ok"] else EXIT_FAILED


def _measure(args: argparse.Namespace) -> dict:
    if sys.version_info < (3, 8):  # noqa: UP036 (devices may run an older Python than the host)
        raise RunnerError("python-too-old", f"Python {sys.version.split()[0]} is too old: 3.8 or newer is needed")
    missing = []
    for module in ("numpy", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise RunnerError(
            "missing-modules",
            f"cannot import {', '.join(missing)} (fix: `{sys.executable} -m pip install onnxruntime`)",
        )
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        raise RunnerError("bad-arguments", "need --threads >= 1, --runs >= 1 and --warmup >= 0")
    if (args.model is None) == (args.manifest is None):
        raise RunnerError("bad-arguments", "give either a model file or --manifest, not both")
    payload = {"ok": True, "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "seed": args.seed}
    payload["clock"] = args.clock
    if args.manifest is not None:
        try:
            with open(args.manifest, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as exc:
            raise RunnerError("bad-manifest", f"cannot read the manifest {args.manifest!r}: {_one_line(exc)}") from None
        directory = os.path.dirname(os.path.abspath(args.manifest))
        payload["results"] = time_manifest(
            directory, manifest, args.threads, args.runs, args.warmup, args.seed, args.max_seconds, args.clock
        )
    else:
        if not os.path.isfile(args.model):
            raise RunnerError("bad-model", f"no model file at {args.model!r}")
        timing = time_onnx(
            args.model, args.threads, args.runs, args.warmup, args.seed, args.shape, args.max_seconds, args.clock
        )
        payload.update(latency_stats(timing["times_ms"]))
        payload.update(timing)
    payload["machine"] = machine_info()
    return payload


if __name__ == "__main__":
    sys.exit(main())
