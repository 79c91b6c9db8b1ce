"""Hostile input through the real CLI: every command's options, study files, dataset files, SSH targets.

Every case must end in a result (exit 0) or ONE line `error: ...` on stderr (exit 2 for bad input, 1 for the
environment): never a traceback, a hang, a half-written file, or a command run by a shell.

A valid input would start minutes of work (export and timing, training, scoring, the arm64 set-up, the trial
loop). That one heavy step is replaced by a recorder returning a plausible result (see `heavy`),
so a case takes milliseconds; everything before it -- option parsing, spec validation, study-file parsing,
dataset loading (tiny files in the real formats), storage (real SQLite files), path checks, atomic writes, and a
report's plots (real matplotlib at a low resolution) -- is the real code.

Counts: each fuzz test counts the cases it ran; SHUFFLESEARCH_FUZZ_COUNTS=path writes them as JSON at the end.
FUZZ_EXAMPLES=n raises every fuzz test's max_examples to n (a long run), e.g.
    FUZZ_EXAMPLES=400 SHUFFLESEARCH_FUZZ_COUNTS=/tmp/counts.json .venv/bin/pytest tests/test_hostile_input.py
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import html.parser
import io
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import typer
from hostile_world import (
    CANARY,
    FAKE_ONNX,
    MATHTEXT,
    NASTY,
    PARETO_STUDY,
    TINY_STUDY,
    FvcoreCheck,
    build_world,
    fake_emulation,
    fake_export,
    fake_lut,
    fake_scores,
    fake_timing,
    fake_training,
    fake_validation,
    one_process,
    raise_heavy,
    until_heavy,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shufflesearch.cli import app, main
from shufflesearch.presets import list_presets

COUNTS: Counter = Counter()  # fuzz test -> cases run (and exit codes seen), written at teardown
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
# Each case copies a small tree and deletes it: ~100 ms on this disk, ~1 ms in memory.
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
SHELL = [f"$(touch {CANARY})", f"`touch {CANARY}`", f";touch {CANARY}", f"| touch {CANARY}", f"&& touch {CANARY} #"]
HOSTILE = [
    *SHELL, "", " ", "-", "--", "0", "-1", "nan", "inf", "-inf", "1e309", "0x10", "1_0", "9" * 400, "a" * 5000,
    "é", "😀", "\u202e", "\udcff", "\n", "a\nb", "[/]", "[bold]x", "<script>alert(1)</script>", "'", '"', "\\",
    "../../../etc/passwd", "~", "%s%n", "{0}", "--json", "--help", "$\\frac{$", "$x$", "\\$", "<b>&amp;</b>", "| a |",
    "`x`", "[a](javascript:x)",
]  # fmt: skip
# Text a file or a database can hold but an argv cannot: NUL and other control characters (no lone surrogate).
IN_FILES = [*(t for t in HOSTILE if "\udcff" not in t), "\x00", "a\x00b", "sqlite:///\x00x", "\x1b[2J", "\x7f"]
# A database holds JSON, whose "\udcff" is a lone surrogate again: no UTF-8 output can write it as it is.
IN_STORAGE = [*IN_FILES, "\udcff", MATHTEXT]
# Paths, relative to the copy of the world each case runs in. No absolute output path: "/dev/null" as --out
# was replaced by a regular file (as root); the regressions below show that on a FIFO of the case's own.
PATHS = [
    "data/fmnist", "data/cifar", "data/images", "data/idx-damaged", "data/cifar-evil", "data/images-broken",
    "studies/tiny.toml", "studies/pareto.toml", "studies/latency.toml", "studies/bad.toml", "studies/binary.toml",
    "luts/tiny.lut.json", "luts/damaged.lut.json", "keep.txt", "keep.csv", "devnull", "existing_dir", "missing/x",
    "out/m.onnx", "out/t.csv", "out/t.md", "out/lut.json", "reports/r", ".", "..", "/", "/dev/null", "/dev/zero",
    "x" * 300, "a/" * 600, "[/].md", "<b>.csv", f"$(touch {CANARY}).md",
]  # fmt: skip
OUTPUT_OPTIONS = {"--out", "--save"}  # paths a command writes: absolute system paths are left out of these
SSH_TARGETS = [
    "local", "arm64-emulated", "ssh://pi@board", "ssh://pi@127.0.0.1:1", "ssh://[::1]:22", "ssh://board",
    "ssh://pi@board:0", "ssh://pi@board:99999", "ssh://-oProxyCommand=touch@board", f"ssh://pi@board;touch {CANARY}",
    f"ssh://$(touch {CANARY})@board", "ssh://pi@-oProxyCommand=x", "ssh://pi@board/path", "ssh://", "ssh://@",
    "ssh://pi@[::1%eth0]", "ssh://pi@bo ard", "ssh://pi@board:22:33", "SSH://pi@board",
]  # fmt: skip
DOMAIN = {  # meaningful values per option name, so fuzzing reaches past the first check
    "--preset": sorted(list_presets()),
    "--stem": ["imagenet", "small"],
    "--target": SSH_TARGETS,
    "--backend": ["onnxruntime", "torch"],
    "--python": ["python3", "/usr/bin/python3", f"python3;touch {CANARY}", "py thon"],
    "--ssh-options": ["-i key", "-p 2222", "'", '"unclosed', "-o 'A B'", "\n"],
    "--profile": ["snapdragon820", "../../etc/passwd", "nosuch"],
    "--dataset": ["fashion-mnist", "cifar10", "imagefolder", "FASHION-MNIST"],
    "--zero-cost": ["synflow", "synflow,grad_norm,naswot", "naswot,naswot", ",", "bogus"],
    "--clock": ["wall", "cpu"],
    "--statistic": ["median_ms", "min_ms"],
    "--storage": [
        "sqlite:///studies/s.db",
        "sqlite:///",
        "sqlite:///.",
        "sqlite:///existing_dir",
        "sqlite:///keep.txt",
        "sqlite:///junk/junk.db",
        "sqlite:////dev/null/x.db",
        "sqlite:///[/].db",
        "sqlite://rel.db",
        "postgresql://u@127.0.0.1:1/db",
        f"postgresql://u@$(touch {CANARY})/db",
        "mysql://u@h/db",
        "",
    ],
    "--study": ["tiny-13M", "tiny-40M", "<script>", "[/]"],
    "--seeds": ["0", "0,1", "-1", str(2**64), "1,a"],
    "component": ["arm64", "ARM64", "x86"],
}


VALID = {  # values each option accepts, so that half the cases get past validation into the command's work
    "--groups": ["3", "8", "1"], "--scale": ["0.25", "0.5", "1.0"], "--scales": ["0.5,1.0"], "--repeats": ["4,8,4"],
    "--resolution": ["32", "48", "224"], "--classes": ["10", "1000"], "--stage-channels": ["240,480,960"],
    "--stem-channels": ["24"], "--bottleneck": ["0.25", "0.5"], "--in-channels": ["1", "3"], "--threads": ["1"],
    "--runs": ["3", "50"], "--warmup": ["0", "10"], "--timeout": ["30"], "--rounds": ["1", "3"], "--seed": ["0", "7"],
    "--image-size": ["28", "32"], "--subset": ["10"], "--epochs": ["1", "0.5"], "--batch-size": ["4"],
    "--time-budget": ["10"], "--batch": ["4", "8"], "--workers": ["1", "2"], "--trials": ["1", "5"],
    "--target": ["local", "arm64-emulated", "ssh://pi@board"], "--out": ["out/m.onnx", "out/t.csv", "reports/r"],
    "--data-dir": ["data/fmnist", "data/cifar", "data/images"], "--lut": ["luts/tiny.lut.json"],
    "--space": ["studies/tiny.toml", "studies/pareto.toml"], "--storage": ["sqlite:///studies/s.db"],
    "--python": ["python3"], "--ssh-options": ["-i key"], "--profile": ["snapdragon820"], "--study": ["tiny-13M"],
    "study_file": ["studies/tiny.toml", "studies/pareto.toml", "studies/latency.toml"], "component": ["arm64"],
    "table_file": ["luts/tiny.lut.json"], "--specs": ["2", "5"], "--device": ["cpu", "auto", "cuda"],
    "--precision": ["fp32", "bf16"], "--save": ["out/m.safetensors"], "--trial": ["0", "1"], "--budget": ["13", "40"],
    "--opset": ["17"], "--limit": ["10"], "--weights": ["out/m.safetensors", "keep.txt"],
}  # fmt: skip


def _lists(item: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(item, max_size=6).map(lambda xs: ",".join(map(str, xs)))


INTS = st.one_of(st.integers(-3, 70), st.sampled_from([0, 1, 28, 2048, 2049, 100_000, 2**31, 2**63, 2**64, -(2**70)]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.1, 0.25, 0.5, 1.0, 4.0, 1e-9]))
TYPED = {
    int: INTS.map(str),
    float: FLOATS.map(str),
    str: st.one_of(_lists(st.integers(-2, 20)), _lists(FLOATS), st.text(max_size=12)),
    Path: st.sampled_from(PATHS),
}


def _commands() -> dict[str, object]:
    """Every leaf command of the app, by its words ("lut build"), read from typer's click objects."""
    found = {}

    def walk(group, words):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*words, name))
            else:
                found[" ".join((*words, name))] = command

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _commands()


def _values(param, hostile: bool) -> st.SearchStrategy:
    names = [*param.opts, *param.secondary_opts]
    name = names[0] if param.param_type_name == "option" else param.name
    domain = VALID.get(name, []) + DOMAIN.get(name, [])
    if not hostile and domain:
        return st.sampled_from(VALID.get(name) or domain)
    paths = [p for p in PATHS if not p.startswith("/")] if set(names) & OUTPUT_OPTIONS else PATHS
    annotation = param.type_descriptor.annotation
    typed = st.sampled_from(paths) if annotation is Path else TYPED.get(annotation, TYPED[str])
    return st.one_of(*([st.sampled_from(domain)] if domain else []), typed, st.sampled_from(HOSTILE))


@st.composite
def argvs(draw, words: str) -> list[str]:
    """Argv for one command: its real options (and bogus ones) in any order, with typed and hostile values."""
    command = COMMANDS[words]
    argv = words.split()
    hostile = draw(st.booleans())  # else plausible values only: the case reaches the command's own checks and work
    for param in command.params:  # positional arguments first; missing ones are a case too
        if param.param_type_name == "argument" and draw(st.integers(0, 9)):
            argv.append(draw(_values(param, hostile)))
    options = [p for p in command.params if p.param_type_name == "option"]
    bogus = st.sampled_from(["--bogus", "-x", "--gruops", "--json=1", "--help", "---", "--out="])
    for _ in range(draw(st.integers(0, 6))):
        if hostile and draw(st.integers(0, 12)) == 0:
            argv.append(draw(bogus))
            continue
        param = draw(st.sampled_from(options))
        argv.append(draw(st.sampled_from([*param.opts, *param.secondary_opts])))
        if not param.is_flag:
            argv.append(draw(_values(param, hostile)))
    return argv


@pytest.fixture(scope="module")
def world():
    """The files every case starts from (copied per case), in memory when the machine allows."""
    root = Path(tempfile.mkdtemp(prefix="shufflesearch-hostile-", dir=FAST_TMP))
    build_world(root / "template")
    yield root
    shutil.rmtree(root, ignore_errors=True)
    CANARY.unlink(missing_ok=True)


@pytest.fixture()
def heavy(world, monkeypatch):
    """Stop every heavy step (one per command, named here) and point the default dataset at tiny files.

    Function-scoped on purpose: a test without it (the real report below) runs the real code."""
    from shufflesearch import export
    from shufflesearch.accuracy import fidelity, resolution, trainer, zero_cost
    from shufflesearch.accuracy.datasets import download, fashion_mnist
    from shufflesearch.accuracy.datasets.download import FetchResult
    from shufflesearch.complexity import count_complexity, fvcore_check
    from shufflesearch.latency import emulated, lut, measure, ssh
    from shufflesearch.report import build
    from shufflesearch.search import workers

    mp = monkeypatch
    mp.setenv("XDG_CACHE_HOME", str(world / "cache"))  # results cache and arm64 sysroot: never the user's
    mp.setattr(fashion_mnist, "FASHION_MNIST_DIR", world / "template" / "data" / "fmnist")
    mp.setattr(export, "_export", raise_heavy)  # export, latency local/ssh/emulated: every torch.onnx.export
    mp.setattr(export, "export_onnx", until_heavy(export.export_onnx, fake_export))
    mp.setattr(measure, "measure_latency", until_heavy(measure.measure_latency, fake_timing))
    mp.setattr(ssh, "measure_remote", until_heavy(ssh.measure_remote, fake_timing))
    mp.setattr(ssh.session.SshSession, "probe", lambda session, python: None)  # lut build: the device answers
    mp.setattr(emulated, "emulate_spec", until_heavy(emulated.emulate_spec, fake_emulation))
    mp.setattr(lut.build, "export_blocks", raise_heavy)  # lut build: exporting then timing every block
    mp.setattr(lut, "build_lut", until_heavy(lut.build_lut, fake_lut))
    mp.setattr(lut.timing.Runner, "time", raise_heavy)  # lut validate: timing whole networks (cpu clock, ssh)
    mp.setattr(lut, "validate_lut", until_heavy(lut.validate_lut, fake_validation))
    mp.setattr(trainer._Run, "run", fake_training)  # train, fidelity: the training loop
    mp.setattr(fidelity, "run_fidelity", one_process(fidelity.run_fidelity))
    mp.setattr(resolution, "train_many", one_process(resolution.train_many))  # resolution: its runs, here
    mp.setattr(zero_cost, "score_on_dataset", fake_scores)  # score, fidelity --zero-cost
    mp.setattr(emulated.sysroot, "ensure_sysroot", lambda **kwargs: world / "cache" / "arm64")  # setup: downloads
    mp.setattr(download, "_download", raise_heavy)  # data get: the HTTP transfer
    mp.setattr(download, "fetch_dataset", until_heavy(download.fetch_dataset, lambda dataset, *a, **k: FetchResult(
        dataset, download.cached_folder(dataset))))  # fmt: skip
    mp.setattr(workers, "_run_with_progress", lambda *args: None)  # search: the trial loop
    mp.setattr(workers, "_run_processes", lambda *args: None)
    mp.setattr(build, "DPI", 20)  # report: the real plots, fewer pixels (mathtext raised while drawing)
    mp.setattr(fvcore_check, "fvcore_count", lambda spec: FvcoreCheck(count_complexity(spec).macs, 0.0))
    return world


@pytest.fixture(scope="module", autouse=True)
def write_counts():
    yield
    target = os.environ.get("SHUFFLESEARCH_FUZZ_COUNTS")
    if target:
        Path(target).write_text(json.dumps(COUNTS, indent=1, sort_keys=True) + "\n")


# -- running one case --------------------------------------------------------------------------
def run(argv: list[str]) -> tuple[int, str, str]:
    """The CLI in-process with a real process's streams: strict UTF-8 stdout, backslash-escaped stderr."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue().decode(), err.getvalue().decode()


def _snapshot(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes()
        for p in root.rglob("*")
        if p.is_symlink() or p.is_file()
    }


STORAGE_FILES = (".db", ".db-wal", ".db-shm", ".lock")  # open_storage creates SQLite files: not outputs


def _resumable(argv: list[str], path: str) -> bool:
    """`finish` keeps its folder's run description and training state on failure: the same command resumes."""
    if argv[0] != "finish":
        return False
    outs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"]  # click keeps the last
    return path.startswith(("studies/finished/", *(out.rstrip("/") + "/" for out in outs[-1:])))


CASE_SECONDS = 60  # a case takes milliseconds; one still running after this is hanging (a FIFO, a lock)


class _Hang(BaseException):
    """Raised by the alarm; not an Exception, so the CLI's own error handling cannot turn it into a result."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """SIGALRM ends the block after `seconds`. pytest-timeout's alarm shares the timer: it is put back after."""

    def expire(signum, frame):
        raise _Hang

    handler = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _reads_only(argv: list[str], code: int) -> bool:
    """Commands that only read the storage: listing, reporting, and a refused --resume."""
    return argv[:2] == ["studies", "list"] or argv[:1] == ["report"] or (argv[:1] == ["search"] and
                                                                         "--resume" in argv and code != 0)  # fmt: skip


def check_case(world: Path, argv: list[str], name: str, prepare=None) -> tuple[int, str, str]:
    """Run one case in a fresh copy of the world (changed by `prepare(root)`); assert the contract; count it."""
    from shufflesearch.search import results

    results._reader.cache_clear()  # one process per command in real life: no storage engine from the last case
    case = Path(tempfile.mkdtemp(dir=world))
    shutil.copytree(world / "template", case / "w", symlinks=True)
    if prepare is not None:
        prepare(case / "w")
    before = _snapshot(case / "w")
    try:
        with contextlib.chdir(case / "w"):
            try:
                with _time_limit(CASE_SECONDS):
                    code, out, err = run(argv)
            except _Hang:
                raise AssertionError(f"{argv}: no result after {CASE_SECONDS} s (a hang)") from None
        assert "Traceback" not in out + err, (argv, err)
        assert code in (0, 1, 2), (argv, code, err)
        if code:
            assert err.startswith("error: ") and err.count("\n") == 1, (argv, code, err)
        else:
            assert out.strip() or "--help" in argv, (argv, err)
        assert not CANARY.exists(), (argv, "a shell ran a payload")
        after = _snapshot(case / "w")
        leftovers = [p for p in after if ".tmp" in p or ".old-" in p or ".partial-" in p]
        assert not leftovers, (argv, leftovers)
        changed = {p for p in after.keys() | before.keys() if after.get(p) != before.get(p)}
        if _reads_only(argv, code):  # a reader leaves every database as it was, and creates none
            assert not {p for p in changed if p.endswith(".db")}, (argv, code, err, changed)
        if code:  # a failed command changes nothing but storage files (and the folder `finish` resumes from)
            assert all(p.endswith(STORAGE_FILES) or _resumable(argv, p) for p in changed), (argv, err, changed)
        else:
            _check_outputs_complete(case / "w", argv)
            for marker in (p for p in changed if p.endswith(REPORT_MARKER)):
                _check_report_folder((case / "w" / marker).parent)
    finally:
        shutil.rmtree(case, ignore_errors=True)
    COUNTS[name] += 1
    COUNTS[f"{name} exit {code}"] += 1
    return code, out, err


REPORT_MARKER = ".shufflesearch-report"


def _check_report_folder(folder: Path) -> None:
    """A report just written: every file its marker lists, as listed; plots that are PNG and SVG; Markdown and
    HTML that carry no markup from the stored labels (the page's own tags are there, a `<script>` is not)."""
    import hashlib
    import xml.etree.ElementTree as ET

    listed = [line.split("  ", 1) for line in (folder / REPORT_MARKER).read_text().splitlines()[1:]]
    assert listed and all(hashlib.sha256((folder / rel).read_bytes()).hexdigest() == sha for sha, rel in listed)
    for _, rel in listed:
        path = folder / rel
        if path.suffix == ".png":
            assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), rel
        elif path.suffix == ".svg":
            assert ET.parse(path).getroot().tag.endswith("svg"), rel
        elif path.suffix == ".md":
            text = path.read_text()
            assert "<" not in text and "\x00" not in text and "\x1b" not in text, (rel, text)
    page = (folder / "index.html").read_text()
    assert page.rstrip().endswith("</html>") and "<script" not in page and "<b>" not in page


def _check_outputs_complete(root: Path, argv: list[str]) -> None:
    """What a successful command wrote is whole: the file its recorder wrote, a parseable table or page."""
    from shufflesearch.latency.lut import LatencyTable

    outs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"]
    if not outs or "--help" in argv:
        return
    out = root / outs[-1]  # click keeps the last value
    if argv[0] == "export":
        assert out.read_bytes() == FAKE_ONNX, argv
    elif argv[0] == "table":
        text = out.read_text()
        if out.suffix.lower() == ".csv":
            rows = list(csv.reader(io.StringIO(text)))
            assert len(rows) > 1 and len({len(r) for r in rows}) == 1, argv
        assert text.endswith("\n"), argv
    elif argv[:2] == ["lut", "build"]:
        LatencyTable.load(out)
    elif argv[0] == "report":
        assert (out / "index.html").read_text().rstrip().endswith("</html>"), argv


# -- 1. every command's options -------------------------------------------------------------------
def fuzz_settings(default_examples: int) -> settings:
    # `heavy` is set up once per test, not per case: its patches are the same for every case.
    return settings(
        max_examples=max(default_examples, FUZZ_EXAMPLES),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


GROUPS = {  # one test per group keeps each under a minute on a slow machine
    "spec": (["analyze", "models", "table", "export"], 300),
    "latency": (["latency", "lut build", "lut validate"], 300),
    "accuracy": (["train", "score", "fidelity", "resolution"], 200),
    "search": (["search", "studies list", "setup", "init", "data get"], 200),
    "report": (["report"], 60),
    "ship": (["evaluate", "finish"], 100),
}


def test_every_command_is_fuzzed():
    fuzzed = {c for commands, _ in GROUPS.values() for c in commands}
    assert fuzzed == set(COMMANDS), "a new command must join a fuzz group"


def _fuzz_group(group: str):
    commands, default = GROUPS[group]

    @fuzz_settings(default)
    @given(st.sampled_from(commands).flatmap(argvs))
    def fuzz(heavy, argv):
        check_case(heavy, argv, f"cli {argv[0]}" if argv[0] not in ("lut", "studies") else f"cli {' '.join(argv[:2])}")

    fuzz.__name__ = f"test_fuzzed_{group}_commands_end_in_a_result_or_one_line"
    return fuzz


test_fuzzed_spec_commands_end_in_a_result_or_one_line = _fuzz_group("spec")
test_fuzzed_latency_commands_end_in_a_result_or_one_line = _fuzz_group("latency")
test_fuzzed_accuracy_commands_end_in_a_result_or_one_line = _fuzz_group("accuracy")
test_fuzzed_search_commands_end_in_a_result_or_one_line = _fuzz_group("search")
test_fuzzed_report_commands_end_in_a_result_or_one_line = _fuzz_group("report")
test_fuzzed_ship_commands_end_in_a_result_or_one_line = _fuzz_group("ship")


# -- 2. hostile study files, stored records (spec JSON) and dataset files, through the CLI ----------
class _Raw(str):
    """TOML text written into a study file as it is: nesting too deep to build as Python values first."""


def _nested(depth: int, opening: str, closed: bool) -> _Raw:
    closing = "]" if opening == "[" else " }"
    return _Raw(opening * depth + ("1" + closing * depth if closed else ""))


DEEP_TOML = st.builds(_nested, st.sampled_from([30, 400, 100_000]), st.sampled_from(["[", "{ a = "]), st.booleans())


def _toml(value) -> str:
    if isinstance(value, _Raw):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(map(_toml, value)) + "]"


def _study_values() -> dict[str, st.SearchStrategy]:
    from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY
    from shufflesearch.search import study_file

    scalars = st.one_of(INTS, FLOATS, st.booleans(), st.sampled_from(IN_FILES))
    generic = st.one_of(scalars, st.lists(scalars, max_size=3), st.lists(st.lists(INTS, max_size=3), max_size=4))
    fidelity = st.dictionaries(st.sampled_from([*DEFAULT_FIDELITY.to_dict(), "bogus"]), scalars, max_size=3)
    domain = {
        "study.mode": study_file.MODES, "study.sampler": study_file.SAMPLERS, "study.pruner": study_file.PRUNERS,
        "study.storage": DOMAIN["--storage"], "objective.second": study_file.SECOND_OBJECTIVES,
        "objective.lut": ["luts/tiny.lut.json", "luts/damaged.lut.json", "keep.txt", "missing.json", "/dev/zero"],
        "accuracy.dataset": DOMAIN["--dataset"], "accuracy.data_dir": [p for p in PATHS if p.startswith("data/")],
        "study.name": ["tiny", "a" * 64, "a" * 65, "-x", "x.y", NASTY], "budget.mflops": [[13], [13, 40], [1e9]],
    }  # fmt: skip
    keys = {f"{section}.{key}" for section, names in study_file._SCHEMA.items() for key in names}
    return {k: st.one_of(st.sampled_from(domain[k]), generic) if k in domain else generic for k in sorted(keys)} | {
        "accuracy.fidelity": st.one_of(fidelity, generic), "bogus.key": generic, "study.bogus": generic,
    }  # fmt: skip


STUDY_VALUES = _study_values()


@st.composite
def study_texts(draw) -> str:
    """The tiny valid study with some keys (from the real schema, so new keys are fuzzed too) set to drawn values,
    now and then one nested deeply."""
    import tomllib

    data = tomllib.loads(TINY_STUDY)
    for key in draw(st.lists(st.sampled_from(sorted(STUDY_VALUES)), max_size=4, unique=True)):
        section, name = key.split(".")
        data.setdefault(section, {})[name] = draw(STUDY_VALUES[key])
    if draw(st.integers(0, 5)) == 0:  # tomllib recurses per level of nesting
        section, name = draw(st.sampled_from(sorted(STUDY_VALUES))).split(".")
        data.setdefault(section, {})[name] = draw(DEEP_TOML)
    return "\n".join(f"[{s}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items()) for s, keys in data.items())


@fuzz_settings(150)
@given(study_texts(), st.sampled_from([["search", "studies/f.toml", "--json"], ["search", "studies/f.toml"],
                                       ["report", "studies/f.toml"], ["lut", "build", "--space", "studies/f.toml",
                                       "--out", "out/t.json"], ["search", "studies/f.toml", "--resume"]]))  # fmt: skip
def test_fuzzed_study_files_end_in_a_result_or_one_line(heavy, text, argv):
    check_case(heavy, argv, "study file", prepare=lambda root: (root / "studies" / "f.toml").write_text(text))


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), INTS, FLOATS, st.sampled_from(IN_FILES)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
SPEC_JSON = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(["groups", "scale", "repeats", "resolution", "num_classes", "stem",
                                     "stage_channels", "bottleneck_ratio", "shuffle", "in_channels", "bogus"]),
                    JSON, max_size=5),
    st.builds(lambda spec: spec.to_dict(), st.sampled_from(list(list_presets().values()))),
)  # fmt: skip
NUMBER = st.one_of(st.none(), INTS, FLOATS)
TEXT = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(IN_STORAGE))
NUMERIC_ATTRS = ["mflops", "params", "top1", "latency_ms", "train_seconds"]
TEXT_ATTRS = ["label", "preset", "status", "worker", "latency_kind", "dataset"]


def _trial_attrs(number, text) -> st.SearchStrategy:
    optional = {k: number for k in NUMERIC_ATTRS} | {k: text for k in TEXT_ATTRS} | {"curve": JSON}
    return st.fixed_dictionaries({"spec": SPEC_JSON}, optional=optional)


def _study_attrs(window, mode, count) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={"window_mflops": window, "mode": mode, "candidates": count})


STATES = st.sampled_from(["COMPLETE", "PRUNED", "FAIL"])
REPORT_ARGVS = [["report", "studies/tiny.toml"], ["report", "studies/tiny.toml", "--json"]]
# Study attributes as the runner writes them and trial attributes as another version might (numbers, any
# value, where numbers belong; text where text belongs): every command reads these. Any JSON anywhere (a damaged
# or foreign database): the report reads these too; `studies list` cannot yet (test_studies_list_of_...).
TYPED_STORAGE = st.tuples(
    _study_attrs(st.lists(st.one_of(INTS, FLOATS), min_size=2, max_size=2), st.sampled_from(["per-budget", "pareto"]),
                 INTS),
    st.lists(st.tuples(_trial_attrs(NUMBER, TEXT), STATES), max_size=3),
    st.sampled_from([*REPORT_ARGVS, ["studies", "list"], ["studies", "list", "--json"]]),
)  # fmt: skip
ANY_STORAGE = st.tuples(
    _study_attrs(JSON, JSON, JSON), st.lists(st.tuples(_trial_attrs(JSON, JSON), STATES), max_size=3),
    st.sampled_from(REPORT_ARGVS),
)  # fmt: skip


def _store(root: Path, study_attrs: dict, trials: list[tuple[dict, str]]) -> None:
    """Replace studies/tiny.db by a storage holding tiny-13M with these attributes, as a shared database might."""
    import optuna

    from shufflesearch.search.storage import open_storage

    (root / "studies" / "tiny.db").unlink()
    storage = open_storage(f"sqlite:///{root / 'studies' / 'tiny.db'}")
    study = optuna.create_study(study_name="tiny-13M", storage=storage, direction="maximize")
    for key, value in study_attrs.items():
        study.set_user_attr(key, value)
    for attrs, state in trials:
        done = state == "COMPLETE"
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState[state], value=0.5 if done else None,
                                                  user_attrs=attrs))  # fmt: skip
    storage.engine.dispose()


@fuzz_settings(60)
@given(st.one_of(TYPED_STORAGE, ANY_STORAGE))
def test_fuzzed_stored_records_end_in_a_result_or_one_line(heavy, case):
    """Spec JSON and every attribute a trial or study stores, as a shared (or damaged) storage may hold them."""
    study_attrs, trials, argv = case
    check_case(heavy, argv, "stored records", prepare=lambda root: _store(root, study_attrs, trials))


WRONGLY_TYPED = {
    "top1 not a number": ({}, [({"top1": {"a": 1}}, "COMPLETE"), ({"top1": {"b": 2}}, "COMPLETE")]),
    "no window": ({"window_mflops": None}, []),
}


@pytest.mark.parametrize("name", WRONGLY_TYPED)
def test_studies_list_of_wrongly_typed_records(heavy, name):
    study_attrs, trials = WRONGLY_TYPED[name]
    check_case(heavy, ["studies", "list"], "regressions", prepare=lambda root: _store(root, study_attrs, trials))


DATASET_FILES = {  # kind -> its folder in the world and the options that load it
    "fashion-mnist": ("data/fmnist", []),
    "cifar10": ("data/cifar", []),
    "imagefolder": ("data/images", ["--image-size", "32"]),
}


def _damage(root: Path, folder: str, pick: int, how: str, at: int, data: bytes) -> None:
    files = sorted(p for p in (root / folder).rglob("*") if p.is_file())
    path = files[pick % len(files)]
    raw = path.read_bytes()
    gz = raw[:2] == b"\x1f\x8b"
    if how == "payload" and gz:  # damage what the gzip holds: reaches the IDX parser
        inner = gzip.decompress(raw)
        at %= len(inner) + 1
        path.write_bytes(gzip.compress(inner[:at] + data + inner[at + len(data) :]))
    elif how == "cut":
        path.write_bytes(raw[: at % (len(raw) + 1)])
    else:
        at %= len(raw) + 1
        path.write_bytes(raw[:at] + data + raw[at + len(data) :])


@fuzz_settings(150)
@given(st.sampled_from(sorted(DATASET_FILES)), st.integers(0, 50), st.sampled_from(["cut", "overwrite", "payload"]),
       st.integers(0, 10**6), st.binary(min_size=1, max_size=16), st.sampled_from(["score", "train"]))  # fmt: skip
def test_damaged_dataset_files_end_in_a_result_or_one_line(heavy, kind, pick, how, at, data, command):
    """Malformed IDX, CIFAR pickles and images, read by the real loaders through the CLI."""
    folder, options = DATASET_FILES[kind]
    argv = [command, "--dataset", kind, "--data-dir", folder, *options, "--json"]
    argv += ["--batch", "4"] if command == "score" else ["--no-cache"]
    check_case(heavy, argv, f"damaged {kind}", prepare=lambda root: _damage(root, folder, pick, how, at, data))


# -- 3. the bugs fuzzing found, kept ----------------------------------------------------------------
REGRESSIONS = {  # name -> (argv, exit code, a fragment of the one line)
    "markup in a path": (["table", "--out", "[/].md"], 0, "wrote [/].md"),
    "markup in a stored label": (["studies", "list"], 0, "<script>alert(1)</script>"),
    "unclosed quote in ssh options": (
        ["latency", "--target", "ssh://pi@board", "--ssh-options", "'"], 2, "No closing quotation"),
    "unclosed quote in lut ssh options": (
        ["lut", "build", "--out", "t.json", "--target", "ssh://pi@board", "--ssh-options", '"a'], 2, "--ssh-options"),
    "infinite ssh timeout": (["latency", "--target", "ssh://pi@board", "--timeout", "inf"], 2, "--timeout"),
    "empty sqlite path": (["studies", "list", "--storage", "sqlite:///"], 2, "names a folder"),
    "sqlite path is a folder": (["report", "studies/tiny.toml", "--storage", "sqlite:///."], 2, "names a folder"),
    "not a database": (["search", "studies/tiny.toml", "--storage", "sqlite:///keep.txt"], 2, "not an SQLite"),
    "seed beyond torch": (["train", "--seed", str(2**64), "--json"], 2, "--seed"),
    "negative seed": (["score", "--seed", "-1"], 2, "--seed"),
    "seeds beyond torch": (["fidelity", "--seeds", f"0,{2**64}"], 2, "--seeds"),
    "output is a pipe": (["table", "--out", "pipe.csv"], 2, "not a regular file"),
    "export to a pipe": (["export", "--out", "pipe.csv"], 2, "not a regular file"),
    "lut to a pipe": (["lut", "build", "--out", "pipe.csv"], 2, "not a regular file"),
    # Inputs: a FIFO without a writer blocked the read forever; /dev/zero was read until memory ran out.
    "study file is a pipe": (["report", "pipe.toml"], 2, "study file pipe.toml is a FIFO"),
    "study file is /dev/zero": (["report", "/dev/zero"], 2, "study file /dev/zero is a character device"),
    "space is /dev/zero": (["lut", "build", "--space", "/dev/zero", "--out", "t.json"], 2, "character device"),
    "lut is a pipe": (["latency", "--lut", "pipe.lut.json"], 2, "latency table pipe.lut.json is a FIFO"),
    "lut is /dev/zero": (["latency", "--lut", "/dev/zero"], 2, "latency table /dev/zero is a character device"),
    "validated lut is a pipe": (["lut", "validate", "pipe.lut.json"], 2, "latency table pipe.lut.json is a FIFO"),
    "validated lut is /dev/zero": (["lut", "validate", "/dev/zero"], 2, "/dev/zero is a character device"),
    "study's lut is a pipe": (["search", "studies/lut-pipe.toml"], 2, "latency table pipe.lut.json is a FIFO"),
    "study's lut is /dev/zero": (["search", "studies/lut-zero.toml"], 2, "/dev/zero is a character device"),
    # Nesting deeper than the parsers' recursion limit: RecursionError tracebacks.
    "deeply nested study file": (["report", "deep.toml"], 2, "nested too deeply"),
    "deeply nested lut": (["latency", "--lut", "deep.lut.json"], 2, "nested too deeply"),
    "deeply nested validated lut": (["lut", "validate", "deep.lut.json"], 2, "nested too deeply"),
    "study's lut deeply nested": (["search", "studies/lut-deep.toml"], 2, "nested too deeply"),
    # NUL in a path: "embedded null byte" tracebacks from open() and SQLite.
    "NUL in a study's lut": (["search", "studies/lut-nul.toml"], 2, ":9: objective.lut: "),
    "NUL in a study's storage": (["search", "studies/storage-nul.toml"], 2, ":4: study.storage: "),
}  # fmt: skip


def _special_files(root: Path) -> None:
    """FIFOs (with no writer), deeply nested files, and studies whose table is one of them or holds a NUL."""
    for name in ("pipe.csv", "pipe.toml", "pipe.lut.json"):
        os.mkfifo(root / name)
    (root / "deep.toml").write_text("a = " + "[" * 100_000)
    (root / "deep.lut.json").write_text("[" * 200_000)
    tables = {"pipe": "pipe.lut.json", "zero": "/dev/zero", "deep": "deep.lut.json", "nul": "a\\u0000b"}
    for name, table in tables.items():
        text = PARETO_STUDY.format(second="latency").replace("luts/tiny.lut.json", table)
        (root / "studies" / f"lut-{name}.toml").write_text(text)
    storage = TINY_STUDY.replace('name = "tiny"\n', 'name = "tiny"\nstorage = "sqlite:///\\u0000x"\n')
    (root / "studies" / "storage-nul.toml").write_text(storage)


@pytest.mark.parametrize("name", REGRESSIONS)
def test_found_by_fuzzing(heavy, name):
    argv, expected, fragment = REGRESSIONS[name]
    code, out, err = check_case(heavy, argv, "regressions", prepare=_special_files)
    assert code == expected and fragment in (out if code == 0 else err), (out, err)


def test_damaged_pickle_length_is_one_line(heavy):
    """A BYTEARRAY8 whose length field says 10**18 bytes: the C unpickler printed a stray SystemError line."""
    huge = b"\x80\x05\x96" + (10**18).to_bytes(8, "little") + b"x"
    argv = ["score", "--dataset", "cifar10", "--data-dir", "data/cifar", "--batch", "4", "--json"]
    code, _, err = check_case(heavy, argv, "regressions", prepare=lambda root: (root / "data/cifar/batches.meta")
                              .write_bytes(huge))  # fmt: skip
    assert code == 2 and "not a readable CIFAR-10 pickle" in err


def test_study_seed_stays_in_the_samplers_range(tmp_path):
    """Optuna's samplers take seeds below 2**32 and each local worker adds 1000 to the study's seed."""
    import optuna

    from shufflesearch.accuracy.recipe import SEED_MAX
    from shufflesearch.search.study_file import StudyFileError, load_study

    path = tmp_path / "s.toml"
    for seed in (-1, SEED_MAX + 1, 2**64):
        path.write_text(TINY_STUDY.replace("trials = 2", f"trials = 2\nseed = {seed}"))
        with pytest.raises(StudyFileError, match=r"study\.seed"):
            load_study(path)
    path.write_text(TINY_STUDY.replace("trials = 2", f"trials = 2\nseed = {SEED_MAX}"))
    assert load_study(path).seed == SEED_MAX
    optuna.samplers.TPESampler(seed=SEED_MAX + 1000 * 63)  # the 64th worker of `--workers 64`


# -- 4. a real report of a real study, its names and labels hostile -------------------------------------
class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags, self.text = set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.text += [value for name, value in attrs if name in ("title", "alt") and value]

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_real_report_of_a_real_study_escapes_hostile_names(tmp_path, monkeypatch, fashion):
    """`shufflesearch report` of a study really trained, whose stored labels, preset names, worker and status
    and whose study file's dataset name are hostile (a shared database, an edited file): text, never markup.

    tests/test_report.py proves build_report escapes a hostile *study name*; this goes through the CLI, the
    storage and every other free-form field (a study name itself cannot be hostile: study files refuse it).
    """
    import optuna
    from sqlalchemy import text as sql

    from shufflesearch.search.storage import open_storage
    from shufflesearch.search.study_file import load_study
    from shufflesearch.search.workers import run_search

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    study_file = tmp_path / "tiny.toml"
    fidelity = "[accuracy.fidelity]\ntrain_images = 256\nepochs = 1\neval_images = 200\ncurve_eval_images = 100\n"
    study_file.write_text(TINY_STUDY.replace("[13, 40]", "[13]").replace("trials = 2", "trials = 2\npruner = 'none'")
                          + fidelity)  # fmt: skip
    config = load_study(study_file)
    run_search(config, config.default_storage(), trials=2)

    storage = open_storage(config.default_storage())
    study = optuna.load_study(study_name="tiny-13M", storage=storage)
    study.set_user_attr("dataset", NASTY)
    # Finished trials are read-only through Optuna: write their attributes as another client of the database could.
    with storage.engine.begin() as db:
        for trial in study.get_trials():
            for key in ("label", "preset", "worker", "status"):
                where = {"trial": trial._trial_id, "key": key}
                db.execute(sql("DELETE FROM trial_user_attributes WHERE trial_id = :trial AND key = :key"), where)
                db.execute(sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                               "VALUES (:trial, :key, :value)"), {**where, "value": json.dumps(NASTY)})  # fmt: skip
    text = study_file.read_text().replace("[accuracy.fidelity]", f"[accuracy]\ndataset = {json.dumps(NASTY)}\n"
                                          "[accuracy.fidelity]")  # fmt: skip
    study_file.write_text(text)

    code, out, err = run(["report", str(study_file), "--out", "reports/tiny"])
    assert code == 0, err
    assert "[/]" in out and not CANARY.exists()  # the terminal shows the text too, as text
    page = (tmp_path / "reports" / "tiny" / "index.html").read_text()
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "<script>alert" not in page
    assert sum(NASTY in t for t in parsed.text) >= 2  # a label and the dataset, as text
    code, out, err = run(["studies", "list", "--storage", config.default_storage()])
    assert code == 0 and "Stored studies" in out, err  # '[/]' in a cell was parsed as markup and raised
    code, out, err = run(["studies", "list", "--storage", config.default_storage(), "--json"])
    assert code == 0 and json.loads(out)[0]["best_label"] == NASTY, err
