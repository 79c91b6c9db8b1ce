"""Runs INSIDE the emulated aarch64 Python (stdlib + onnxruntime + numpy only; never imports shufflesearch).

Usage (by count.py and batch.py, with a fixed argv, environment and working directory; models on stdin):
    python3.11 -S -B -c "$(cat guest_counter.py)" 1,3,224,224 RUNS WARMUP < model.onnx
    python3.11 -S -B -c "$(cat guest_counter.py)" batch < records

In batch mode ONNX Runtime is loaded once and stdin carries one record per model: a JSON line
{"shape": [...], "runs": R, "warmup": W, "size": N} then N bytes of ONNX. Each model is counted
in a forked child: it emits marker 3 with argument i (the plugin writes "model i"), its brackets,
and one JSON line {"i": i, "output_sum": ...} on stdout; a model ONNX Runtime rejects ends the run.

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
MARKER_MODEL = 3
MODEL_REJECTED = 3  # exit status: ONNX Runtime refused the model or input shape


def marker(code, argument=0):
    # Fails with EBADF by design: the plugin reads the arguments at syscall entry.
    with contextlib.suppress(OSError):
        os.lseek(-1, MARKER_MAGIC + code, argument)


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


def open_session(ort, model):
    options = ort.SessionOptions()
    # One thread, no spinning, sequential: counts then repeat within 0.05%.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def count_one(ort, np, model, shape, runs, warmup):
    """Counted inferences of one model; its first output, flattened."""
    session = open_session(ort, model)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    outputs = measure(session.run, feed, runs, warmup)
    return outputs[0].ravel() if outputs else np.zeros(0, np.float32)


def describe(ort, np):
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "cpuinfo": cpuinfo_identification(),
    }


def rejected(exc, index=None):
    """A model or shape ONNX Runtime rejects: the host reports it as a user error."""
    error = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    json.dump(error if index is None else {"i": index, **error}, sys.stdout)
    sys.stdout.flush()
    sys.exit(MODEL_REJECTED)


def main(argv):
    if argv[1] == "batch":
        return batch(sys.stdin.buffer)
    shape_text, runs, warmup = argv[1], int(argv[2]), int(argv[3])
    model = sys.stdin.buffer.read()
    import numpy as np
    import onnxruntime as ort

    shape = tuple(int(v) for v in shape_text.split(","))
    try:
        first = count_one(ort, np, model, shape, runs, warmup)
    except Exception as exc:
        rejected(exc)
    json.dump(
        {
            **describe(ort, np),
            "input_shape": list(shape),
            "runs": runs,
            "warmup": warmup,
            "output_head": [float(v) for v in first[:8]],
            "output_sum": float(first.sum(dtype=np.float64)),
        },
        sys.stdout,
    )


def batch(stream):
    """Count every model of the record stream, each in a fork of this one process: ONNX Runtime loads once.

    Each model is counted in a child forked from the same parent state (ONNX Runtime loaded and
    warmed up on the first model, uncounted), so its count does not depend on the models before it:
    in one long process, allocator state drifted and counts moved by up to 0.3% between two runs.
    """
    import numpy as np
    import onnxruntime as ort

    index = 0
    while True:
        header = stream.readline()
        if not header.strip():
            break
        record = json.loads(header)
        model = stream.read(record["size"])
        shape = tuple(record["shape"])
        if index == 0:  # translate ONNX Runtime's common code once, here (no markers), for every child to inherit
            with contextlib.suppress(Exception):
                session = open_session(ort, model)
                session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
                del session
        sys.stdout.flush()
        child = os.fork()
        if child == 0:
            code = 0
            marker(MARKER_MODEL, index)
            try:
                first = count_one(ort, np, model, shape, record["runs"], record["warmup"])
                line = {"i": index, "output_sum": float(first.sum(dtype=np.float64))}
            except Exception as exc:
                line, code = {"i": index, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}, MODEL_REJECTED
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            os._exit(code)
        status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        if status != 0:
            sys.exit(status if status == MODEL_REJECTED else 1)
        del model
        index += 1
    json.dump({"guest": describe(ort, np), "models": index}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
