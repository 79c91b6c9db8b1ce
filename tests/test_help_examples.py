"""Every `--help` shows a real example, and every example works as printed on a fresh clone.

Cheap commands run their examples for real (exit 0) in a copy of the repo's layout. Expensive
ones (training, measuring, searching) run with their heavy call replaced by a stop: reaching
it proves the example parsed and passed validation. Files an example reads must be in the
repo; folders it writes to must exist there. An example that needs a device or a server
(ssh://, postgresql://) is checked the same way, and every help must also show one that a
newcomer can run here.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
from pathlib import Path

import pytest
import typer

from shufflesearch import cli

REPO = Path(__file__).resolve().parents[1]
REMOTE = ("ssh://", "postgresql://")
CHEAP = {("analyze",), ("models",), ("table",), ("export",), ("studies", "list"), ("init",)}
# The first call past validation of each command: an example that reaches one of them is valid.
HEAVY_CALLS = {
    ("analyze",): [],
    ("models",): [],
    ("table",): [],
    ("export",): ["shufflesearch.export.export_onnx"],
    ("latency",): [
        "shufflesearch.latency.measure.measure_latency",
        "shufflesearch.latency.ssh.measure_remote",
        "shufflesearch.latency.emulated.emulate_spec",
        "shufflesearch.latency.lut.LatencyTable.load",
    ],
    ("train",): ["shufflesearch.accuracy.trainer.train_proxy"],
    ("evaluate",): ["shufflesearch.checkpoint.load_checkpoint"],
    ("score",): ["shufflesearch.accuracy.zero_cost.score_on_dataset"],
    ("lut", "build"): ["shufflesearch.latency.lut.build_lut"],
    ("lut", "validate"): ["shufflesearch.latency.lut.LatencyTable.load"],
    ("fidelity",): ["shufflesearch.accuracy.fidelity.run_fidelity"],
    ("resolution",): ["shufflesearch.accuracy.resolution.measure_resolution"],
    ("setup",): ["shufflesearch.latency.emulated.sysroot.ensure_sysroot"],
    ("init",): [],
    ("data", "get"): ["shufflesearch.accuracy.datasets.download.fetch_dataset"],
    ("search",): ["shufflesearch.search.workers.run_search", "shufflesearch.search.workers.check_resumable"],
    ("finish",): ["shufflesearch.finish.winner.finish_winner"],
    ("studies", "list"): ["shufflesearch.search.results.summarize_studies"],
    ("report",): [
        "shufflesearch.report.study.study_attrs",
        "shufflesearch.report.study.load_records",
        "shufflesearch.report.study.build_report",
    ],
}
NEEDS_DATASET = {("train",), ("score",), ("fidelity",), ("resolution",)}
INPUT_OPTIONS = {"--space", "--lut", "--data-dir"}
OUTPUT_OPTIONS = {"--out", "--save"}


def command_paths() -> list[tuple[str, ...]]:
    """Every runnable command of the CLI, e.g. ("analyze",), ("lut", "build")."""
    root = typer.main.get_command(cli.app)
    ctx = root.context_class(root)  # typer vendors its own click: no isinstance checks against `click`

    def walk(group, prefix: tuple[str, ...]):
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if hasattr(command, "list_commands"):
                yield from walk(command, (*prefix, name))
            else:
                yield (*prefix, name)

    return sorted(walk(root, ()))


def group_paths() -> list[tuple[str, ...]]:
    """The command groups, e.g. ("lut",): `shufflesearch lut --help` needs an example too."""
    return sorted({path[:-1] for path in command_paths() if len(path) > 1})


@functools.cache  # read once: every example's every input asks
def files_written_by_examples() -> frozenset[str]:
    """What the help examples write (a latency table from `lut build`): another example may read it."""
    root = typer.main.get_command(cli.app)
    ctx = root.context_class(root)
    written = set()
    for path in command_paths():
        command = root
        for name in path:
            command = command.get_command(ctx, name)
        for example in examples_in(command.help or ""):
            written.update(named_files(shlex.split(example)[1:])[1])
    return frozenset(written)


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    return done.value.code


def help_text(path: tuple[str, ...], capsys) -> str:
    capsys.readouterr()
    assert run_cli([*path, "--help"]) == 0
    return capsys.readouterr().out


def examples_in(text: str) -> list[str]:
    """The commands after "Example:" in help text, unwrapped (click wraps at ~78 columns)."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines()]
        joined = ""
        for line in lines:
            # textwrap breaks after a word's hyphen ("fashion-" / "mnist"): rejoin without a space.
            glue = "" if re.search(r"\w-$", joined) else " "
            joined = f"{joined}{glue}{line}" if joined else line
        found += [m.strip() for m in re.split(r"Example:", joined)[1:]]
    return found


def command_of(argv: list[str]) -> tuple[str, ...]:
    """The longest known command path that the example's words start with."""
    known = set(command_paths())
    for n in range(len(argv), 0, -1):
        if tuple(argv[:n]) in known:
            return tuple(argv[:n])
    raise AssertionError(f"{shlex.join(argv)!r} names no command of shufflesearch (known: {sorted(known)})")


def named_files(argv: list[str]) -> tuple[list[str], list[str]]:
    """(files read, files written) that an example names: options' values and path-like arguments."""
    reads, writes = [], []
    for before, word in zip(["", *argv], argv, strict=False):
        if word.startswith("-") or "://" in word:
            continue
        if before in OUTPUT_OPTIONS:
            writes.append(word)
        elif before in INPUT_OPTIONS or "/" in word or re.search(r"\.(toml|json|onnx|csv|md|db)$", word):
            reads.append(word)
    return reads, writes


class Reached(Exception):
    """Raised in place of a heavy call: the example got through parsing and validation."""


def stop_heavy_calls(monkeypatch, command: tuple[str, ...]) -> None:
    def stop(*args, **kwargs):
        raise Reached

    for dotted in HEAVY_CALLS[command]:
        monkeypatch.setattr(dotted, stop)  # "module.function" or "module.Class.method"


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch) -> Path:
    """The repo's layout as a fresh clone has it: the study files and an empty reports/ folder."""
    shutil.copytree(REPO / "studies", tmp_path / "studies", ignore=shutil.ignore_patterns("*.db*", "*.lock", "*.json"))
    (tmp_path / "reports").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SHUFFLESEARCH_DEBUG", raising=False)
    return tmp_path


def test_every_command_is_classified():
    assert set(command_paths()) == set(HEAVY_CALLS), "add the new command to HEAVY_CALLS (and CHEAP if it is fast)"


@pytest.mark.parametrize("path", [(), *group_paths(), *command_paths()], ids=lambda p: " ".join(p) or "shufflesearch")
def test_help_examples_run_as_printed(path, fresh_clone, capsys, monkeypatch, request):
    examples = examples_in(help_text(path, capsys))
    where = f"`shufflesearch {' '.join(path)} --help`".replace("  ", " ")
    assert examples, f"{where} shows no 'Example:' line"
    assert any(not any(r in e for r in REMOTE) for e in examples), (
        f"{where}: every example needs a device or a server ({examples}); add one that runs on a fresh clone"
    )
    for example in examples:
        words = shlex.split(example)
        assert words[0] == "shufflesearch", f"{where}: example {example!r} must start with `shufflesearch`"
        argv = words[1:]
        command = command_of(argv)
        assert command[: len(path)] == path, f"{where}: example {example!r} runs another command"
        reads, writes = named_files(argv)
        for name in reads:
            assert (REPO / name).exists() or name in files_written_by_examples(), (
                f"{where}: example {example!r} reads {name}, which is neither in the repo nor made by an example"
            )
        for name in writes:
            parent = Path(name).parent
            assert (REPO / parent).is_dir(), f"{where}: example {example!r} writes into {parent}/, not in the repo"
        check_example(example, argv, command, capsys, monkeypatch, request)


def check_example(example, argv, command, capsys, monkeypatch, request) -> None:
    capsys.readouterr()
    if command in CHEAP and not any(r in example for r in REMOTE):
        code = run_cli(argv)
        assert code == 0, f"{example!r} exited {code}: {capsys.readouterr().err.strip()}"
        return
    if command in NEEDS_DATASET:
        request.getfixturevalue("fashion")  # the real dataset is loaded and checked; skips/fails if absent
    with monkeypatch.context() as patch:
        stop_heavy_calls(patch, command)
        try:
            code = run_cli(argv)
        except Reached:
            return
    raise AssertionError(f"{example!r} stopped before its work (exit {code}): {capsys.readouterr().err.strip()}")


def test_examples_are_found_in_wrapped_help():
    text = (
        "  Example: shufflesearch train --dataset fashion-\n  mnist --epochs 2\n\nOptions:\n  Example: a\n  Example: b"
    )
    assert examples_in(text) == ["shufflesearch train --dataset fashion-mnist --epochs 2", "a", "b"]


def test_named_files_tells_reads_from_writes():
    argv = ["search", "studies/demo.toml", "--out", "reports/x.csv", "--storage", "postgresql://u@db/nas"]
    assert named_files(argv) == (["studies/demo.toml"], ["reports/x.csv"])
