"""Runs INSIDE the emulated aarch64 Python (stdlib + onnxruntime + numpy only; never imports shufflesearch).

Usage (by emulated.py, with a fixed argv, environment and working directory; model bytes on stdin):
    python3.11 -S -B -c "$(cat guest_counter.py)" 1,3,224,224 RUNS WARMUP < model.onnx

Every measured region is bracketed by markers the QEMU plugin (insn_count.c) sees: a
failing lseek(-1, MAGIC + code, 0). Code 1 starts counting on this thread, code 2 stops
it. The first bracket is empty: it measures the markers' own cost, which the host
subtracts. Then WARMUP uncounted inferences, then RUNS bracketed ones. One JSON object
on stdout describes the guest (versions, machine, cpuinfo identification).
"""

import contextlib
import json
import os
import platform
import sys

MARKER_MAGIC = 0x5348554600000000  # keep in sync with insn_count.c
MARKER_START = 1
MARKER_STOP = 2
MODEL_REJECTED = 3  # exit status: ONNX Runtime refused the model or input shape


def marker(code):
    # Fails with EBADF by design: the plugin reads the arguments at syscall entry.
    with contextlib.suppress(OSError):
        os.lseek(-1, MARKER_MAGIC + code, 0)


def cpuinfo_identification():
    """The fields ONNX Runtime's CPU detection reads; must match the -cpu QEMU emulates."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("CPU implementer", "CPU variant", "CPU part", "CPU revision", "Features"):
                    fields.setdefault(key, value.strip())
    except OSError:
        pass
    return fields


def measure(run, feed, runs, warmup):
    """Empty bracket (the markers' own cost), uncounted warm-up, then one bracket per inference."""
    marker(MARKER_START)
    marker(MARKER_STOP)
    for _ in range(warmup):
        run(None, feed)
    outputs = None
    for _ in range(runs):
        marker(MARKER_START)
        outputs = run(None, feed)
        marker(MARKER_STOP)
    return outputs


def main(argv):
    shape_text, runs, warmup = argv[1], int(argv[2]), int(argv[3])
    model = sys.stdin.buffer.read()
    import numpy as np
    import onnxruntime as ort

    shape = tuple(int(v) for v in shape_text.split(","))
    options = ort.SessionOptions()
    # One thread, no spinning, sequential: counts then repeat within 0.05%.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        outputs = measure(session.run, feed, runs, warmup)
    except Exception as exc:  # a model or shape ONNX Runtime rejects: the host reports it as a user error
        json.dump({"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}, sys.stdout)
        sys.exit(MODEL_REJECTED)

    first = outputs[0].ravel() if outputs else np.zeros(0, np.float32)
    json.dump(
        {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "input_shape": list(shape),
            "runs": runs,
            "warmup": warmup,
            "cpuinfo": cpuinfo_identification(),
            "output_head": [float(v) for v in first[:8]],
            "output_sum": float(first.sum(dtype=np.float64)),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv)
