"""--help tells the truth: every default it shows is the one a command uses, fixed choices are listed,
completed and checked, one name means one thing, and tables keep every digit at 80 columns.

The defaults are checked by running each command with nothing given and catching the library call it
makes (`PROBES`): the value that call receives, with the library's own defaults filled in, is the value
used. Every default a probed command shows must be caught that way, and so must every default shown for
an option left None in any command (those are the defaults a person writes by hand, and can drift).
"""

import inspect
import io
import re
import types
from contextlib import redirect_stderr, redirect_stdout

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

import shufflesearch.cli
from shufflesearch.cli import main


class Called(BaseException):  # not an Exception: main() turns those into exit codes
    pass


def _commands(group=None, path=()):
    group = group or typer.main.get_command(shufflesearch.cli.app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = dict(_commands())


def _shown_default(command, param):
    ctx = command.make_context(command.name, [], resilient_parsing=True)
    record = param.get_help_record(ctx)
    match = re.search(r"\[default: ([^\]]*?)(?:; [^\]]*)?\]", record[1]) if record else None
    return None if match is None else match[1]


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info, redirect_stdout(out), redirect_stderr(err):
        main(args)
    return exit_info.value.code, out.getvalue(), err.getvalue()


# -- the probes: which library call a command makes, and where each option's value lands in it ------------
def spec_fields(call="spec_of", name="spec"):
    s = lambda field: lambda calls: getattr(calls[call][name], field)  # noqa: E731
    return {"--groups": s("groups"), "--scale": s("scale"), "--repeats": s("repeats"), "--resolution": s("resolution"),
            "--classes": s("num_classes"), "--bottleneck": s("bottleneck_ratio"), "--stem": s("stem"),
            "--in-channels": s("in_channels"), "--shuffle": s("shuffle")}  # fmt: skip


def arg(call, name, then=lambda v: v):
    return lambda calls: then(calls[call][name])


fid = lambda call, field: arg(call, "fidelity", lambda f: getattr(f, field))  # noqa: E731
FAKE_DATA = types.SimpleNamespace(train_labels=range(60_000))

# command -> (argv after the command, {what to catch: (module, function, stop there?, stand-in result)}, extractors)
PROBES = {
    ("analyze",): ([], {"spec_of": ("shufflesearch.cli.complexity", "count_complexity", True, None)},
                   spec_fields()),
    ("table",): ([], {"rows": ("shufflesearch.complexity.sweep", "complexity_rows", True, None)},
                 {**{k: v for k, v in spec_fields("rows", "base").items() if k not in ("--groups", "--scale")},
                  "--groups": arg("rows", "groups"), "--scales": arg("rows", "scales")}),
    ("export",): (["--out", "{tmp}/m.onnx"], {"spec_of": ("shufflesearch.export", "export_onnx", True, None)},
                  {**spec_fields(), "--batch": arg("spec_of", "batch"), "--opset": arg("spec_of", "opset")}),
    ("latency",): ([], {"on": ("shufflesearch.latency.targets", "latency_on", False, None),
                        "spec_of": ("shufflesearch.latency.measure", "measure_latency", True, None)},
                   {**spec_fields(), "--target": arg("on", "target"), "--backend": arg("spec_of", "backend"),
                    "--threads": arg("spec_of", "threads"), "--runs": arg("spec_of", "runs"),
                    "--warmup": arg("spec_of", "warmup"), "--python": arg("on", "python"),
                    "--ssh-options": arg("on", "ssh_options", " ".join), "--timeout": arg("on", "timeout_s"),
                    "--profile": arg("on", "profile")}),
    ("lut", "build"): (["--out", "{tmp}/t.lut.json"], {"b": ("shufflesearch.latency.lut", "build_lut", True, None)},
                       {"--target": arg("b", "target"), "--profile": arg("b", "profile"),
                        "--resolution": arg("b", "space", lambda s: s.resolution),
                        "--classes": arg("b", "space", lambda s: s.num_classes),
                        "--in-channels": arg("b", "in_channels"), "--stem": arg("b", "stem"),
                        "--threads": arg("b", "threads"), "--runs": arg("b", "runs"), "--rounds": arg("b", "rounds"),
                        "--clock": arg("b", "clock"), "--statistic": arg("b", "statistic"),
                        "--python": arg("b", "python"), "--ssh-options": arg("b", "ssh_options", " ".join),
                        "--timeout": arg("b", "timeout_s")}),
    ("lut", "validate"): (["snapdragon820"], {"v": ("shufflesearch.latency.lut", "validate_lut", True, None)},
                          {"--specs": arg("v", "specs", len), "--seed": arg("v", "seed"), "--runs": arg("v", "runs"),
                           "--rounds": arg("v", "rounds"), "--python": arg("v", "python"),
                           "--ssh-options": arg("v", "ssh_options", " ".join), "--timeout": arg("v", "timeout_s")}),
    ("train",): ([], {"device": ("shufflesearch.accuracy.devices", "resolve_device", False, None),
                      "data": ("shufflesearch.accuracy.datasets", "load_dataset", False, FAKE_DATA),
                      "spec_of": ("shufflesearch.accuracy.trainer", "train_proxy", True, None)},
                 {**{k: v for k, v in spec_fields().items() if k not in ("--resolution", "--classes", "--stem",
                                                                          "--in-channels")},
                  "--resolution": fid("spec_of", "resolution"), "--subset": fid("spec_of", "train_images"),
                  "--epochs": fid("spec_of", "epochs"), "--batch-size": fid("spec_of", "batch_size"),
                  "--time-budget": fid("spec_of", "time_budget_s"), "--precision": fid("spec_of", "precision"),
                  "--scored-on": fid("spec_of", "scored_on"),
                  "--seed": arg("spec_of", "seed"), "--threads": arg("spec_of", "threads"),
                  "--dataset": arg("data", "name"), "--device": arg("device", "name")}),
    ("score",): ([], {"device": ("shufflesearch.accuracy.devices", "resolve_device", False, None),
                      "data": ("shufflesearch.accuracy.datasets", "load_dataset", False, FAKE_DATA),
                      "spec_of": ("shufflesearch.accuracy.zero_cost", "score_on_dataset", True, None)},
                 {**{k: v for k, v in spec_fields().items() if k not in ("--resolution", "--classes", "--stem",
                                                                          "--in-channels")},
                  "--resolution": fid("spec_of", "resolution"), "--batch-size": arg("spec_of", "batch_size"),
                  "--zero-cost": arg("spec_of", "names", ",".join), "--seed": arg("spec_of", "seed"),
                  "--dataset": arg("data", "name"), "--device": arg("device", "name")}),
    ("fidelity",): ([], {"devices": ("shufflesearch.accuracy.devices", "worker_devices", False, None),
                         "data": ("shufflesearch.accuracy.datasets", "load_dataset", False, FAKE_DATA),
                         "f": ("shufflesearch.accuracy.fidelity", "run_fidelity", True, None)},
                    {"--dataset": arg("data", "name"), "--seeds": arg("f", "seeds", lambda s: ",".join(map(str, s))),
                     "--workers": arg("f", "workers"), "--subset": fid("f", "train_images"),
                     "--epochs": fid("f", "epochs"), "--resolution": fid("f", "resolution"),
                     "--scored-on": fid("f", "scored_on"), "--device": arg("f", "device")}),
    ("resolution",): ([], {"devices": ("shufflesearch.accuracy.devices", "worker_devices", False, None),
                           "data": ("shufflesearch.accuracy.datasets", "load_dataset", False, FAKE_DATA),
                           "f": ("shufflesearch.accuracy.resolution", "measure_resolution", True, None)},
                      {"--dataset": arg("data", "name"), "--seeds": arg("f", "seeds", lambda s: ",".join(map(str, s))),
                       "--part": arg("f", "part"), "--workers": arg("f", "run", lambda r: r["workers"]),
                       "--subset": fid("f", "train_images"), "--epochs": fid("f", "epochs"),
                       "--resolution": fid("f", "resolution"), "--scored-on": fid("f", "scored_on"),
                       "--device": arg("f", "run", lambda r: r["device"])}),
    ("finish",): (["studies/demo.toml"], {"f": ("shufflesearch.finish", "finish_winner", True, None)},
                  {"--epochs": arg("f", "epochs"), "--device": arg("f", "device"), "--target": arg("f", "target"),
                   "--resolution": arg("f", "resolution"), "--augment": arg("f", "augment")}),
}  # fmt: skip


def _probe(path, monkeypatch, tmp_path):
    argv, catches, _ = PROBES[path]
    calls = {}
    for key, (module, name, stop, result) in catches.items():
        target = __import__(module, fromlist=[name])
        original = getattr(target, name)

        def fake(*args, _key=key, _original=original, _stop=stop, _result=result, **kwargs):
            bound = inspect.signature(_original).bind(*args, **kwargs)
            bound.apply_defaults()  # the library's own default is the value used for anything not passed
            calls[_key] = dict(bound.arguments)
            if _stop:
                raise Called
            return _original(*args, **kwargs) if _result is None else _result

        monkeypatch.setattr(target, name, fake)
    with pytest.raises(Called), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        main([*path, *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    return calls


def _same(shown: str, used, param) -> bool:
    if isinstance(used, bool):
        return shown == (param.opts[0] if used else param.secondary_opts[0])
    if isinstance(used, (tuple, list)):
        return shown == ",".join(map(str, used))
    if isinstance(used, (int, float)):
        try:
            return float(shown) == used
        except ValueError:
            return False
    return shown == ("none" if used is None else str(used))


@pytest.mark.parametrize("path", list(PROBES), ids=" ".join)
def test_every_default_shown_is_the_one_the_command_uses(path, monkeypatch, tmp_path):
    command, extract = COMMANDS[path], PROBES[path][2]
    calls = _probe(path, monkeypatch, tmp_path)
    checked = set()
    for param in command.params:
        option, shown = param.opts[0], _shown_default(command, param)
        if option not in extract:
            assert shown is None, f"{' '.join(path)} {option} shows [default: {shown}] that no probe checks"
            continue
        used = extract[option](calls)
        if shown is None:  # nothing shown: then nothing may be used either (the issue: --subset showed nothing)
            assert used in (None, ""), f"{' '.join(path)} {option} uses {used!r} and --help shows no default"
        else:
            assert _same(shown, used, param), f"{' '.join(path)} {option}: --help says {shown}, it uses {used!r}"
        checked.add(option)
    assert checked == set(extract), f"probed options that {' '.join(path)} no longer has: {set(extract) - checked}"


def test_train_shows_the_recipe_not_the_spec():
    from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY

    shown = {p.opts[0]: _shown_default(COMMANDS[("train",)], p) for p in COMMANDS[("train",)].params}
    assert shown["--resolution"] == str(DEFAULT_FIDELITY.resolution) != "224"
    assert {shown["--subset"], shown["--epochs"], shown["--batch-size"]} == {
        str(DEFAULT_FIDELITY.train_images),
        str(DEFAULT_FIDELITY.epochs),
        str(DEFAULT_FIDELITY.batch_size),
    }


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_a_default_written_for_an_option_left_none_is_probed(path):
    """An option whose value is None shows a default only through with_default, and a probe checks it."""
    command = COMMANDS[path]
    for param in command.params:
        shown = _shown_default(command, param)
        if param.default is None and shown is not None:
            assert path in PROBES and param.opts[0] in PROBES[path][2], (path, param.opts[0], shown)


def test_the_literal_copies_of_torch_side_names_agree_with_the_library():
    from shufflesearch.accuracy import datasets, devices, resolution, zero_cost
    from shufflesearch.accuracy.recipe import DATASETS
    from shufflesearch.cli import accuracy, complexity, options
    from shufflesearch.cli import resolution as cli_resolution
    from shufflesearch.export import OPSET
    from shufflesearch.latency.emulated.estimate import emulate_spec

    assert DATASETS == datasets.DATASETS
    assert options.DEVICES == devices.DEVICE_NAMES
    assert accuracy.ZERO_COST == zero_cost.ZERO_COST_SCORES
    assert cli_resolution.PARTS == resolution.PARTS
    assert complexity.ONNX_OPSET == OPSET
    runs = next(p for p in COMMANDS[("latency",)].params if p.opts[0] == "--runs")
    emulated = inspect.signature(emulate_spec).parameters["runs"].default
    assert f"arm64-emulated: {emulated} counted runs" in runs.help  # the one default a probe of `local` misses


# -- choices ---------------------------------------------------------------------------------------------
def _choices():
    from shufflesearch.accuracy.recipe import AUGMENTS, DATASETS, PRECISIONS, SPLITS
    from shufflesearch.latency.device_runner import CLOCKS
    from shufflesearch.latency.lut.table import STATISTICS
    from shufflesearch.latency.measure import BACKENDS
    from shufflesearch.spec import STEM_KINDS

    return {"--dataset": DATASETS, "--backend": BACKENDS, "--precision": PRECISIONS, "--augment": AUGMENTS,
            "--stem": STEM_KINDS, "--clock": tuple(CLOCKS), "--statistic": STATISTICS, "component": ("arm64",),
            "--scored-on": SPLITS}  # fmt: skip


FIXED = [(path, p) for path, c in COMMANDS.items() for p in c.params if (p.opts[0] if p.opts else p.name) in
         ("--dataset", "--backend", "--precision", "--augment", "--stem", "--clock", "--statistic", "component",
          "--scored-on")]  # fmt: skip


@pytest.mark.parametrize(("path", "param"), FIXED, ids=[f"{' '.join(p)} {q.opts[0]}" for p, q in FIXED])
def test_fixed_choices_are_listed_completed_and_checked(path, param):
    choices = _choices()[param.opts[0]]
    command = COMMANDS[path]
    ctx = command.make_context(command.name, [], resilient_parsing=True)
    record = param.get_help_record(ctx)[0] if param.param_type_name == "option" else param.metavar
    assert f"<{'|'.join(choices)}>" in record or all(c in param.help for c in choices), record
    assert [c.value for c in param.shell_complete(ctx, "")] == list(choices)
    assert [c.value for c in param.shell_complete(ctx, choices[0][:2])] == [
        c for c in choices if c[:2] == choices[0][:2]
    ]
    bad = [*path, "nonsense-choice"] if param.param_type_name == "argument" else [*path, param.opts[0], "nonsense"]
    code, _, err = run(bad)
    assert code == 2 and err.count("\n") == 1 and "is not one of" in err and all(c in err for c in choices), err


def test_every_command_with_a_fixed_choice_option_has_it_checked():
    names = {p.opts[0] for path, c in COMMANDS.items() for p in c.params if p.opts}
    assert {"--dataset", "--backend", "--precision", "--augment", "--stem", "--clock", "--statistic"} <= names
    assert {(" ".join(p), q.opts[0]) for p, q in FIXED} >= {
        ("train", "--dataset"),
        ("score", "--dataset"),
        ("fidelity", "--dataset"),
        ("evaluate", "--dataset"),
        ("latency", "--backend"),
        ("train", "--precision"),
        ("train", "--scored-on"),
        ("fidelity", "--scored-on"),
        ("finish", "--augment"),
        ("lut build", "--clock"),
        ("lut build", "--statistic"),
        ("analyze", "--stem"),
    }


@pytest.mark.parametrize(("path", "option", "typed", "expected"), [
    (("latency",), "--target", "", ["local", "arm64-emulated", "ssh://"]),
    (("latency",), "--target", "ss", ["ssh://"]),
    (("lut", "build"), "--target", "a", ["arm64-emulated"]),
    (("finish",), "--target", "n", ["none"]),
    (("train",), "--device", "c", ["cpu", "cuda"]),
    (("latency",), "--profile", "snap", ["snapdragon820"]),
    (("latency",), "--lut", "snap", ["snapdragon820"]),
    (("analyze",), "--preset", "shufflenet_v1_x0_5", ["shufflenet_v1_x0_5_g3", "shufflenet_v1_x0_5_g8"]),
    (("analyze",), "--groups", "", ["1", "2", "3", "4", "8"]),
    (("score",), "--zero-cost", "synflow,g", ["synflow,grad_norm"]),
])  # fmt: skip
def test_free_form_options_complete_their_fixed_values(path, option, typed, expected):
    command = COMMANDS[path]
    param = next(p for p in command.params if option in p.opts)
    ctx = command.make_context(command.name, [], resilient_parsing=True)
    assert [c.value for c in param.shell_complete(ctx, typed)] == expected


# -- one name for one thing --------------------------------------------------------------------------------
def test_the_minibatch_is_batch_size_everywhere_and_the_old_score_spelling_still_works(monkeypatch, tmp_path):
    for path in (("train",), ("score",)):
        visible = [p.opts[0] for p in COMMANDS[path].params if not p.hidden]
        assert "--batch-size" in visible and "--batch" not in visible
    PROBES[("score",)] = (["--batch", "8"], *PROBES[("score",)][1:])
    try:
        calls = _probe(("score",), monkeypatch, tmp_path)
    finally:
        PROBES[("score",)] = ([], *PROBES[("score",)][1:])
    assert calls["spec_of"]["batch_size"] == 8


# -- tables at 80 columns ----------------------------------------------------------------------------------
def _numbers(text: str) -> list[str]:
    """The tokens of a cell a reader takes as one value: each holds a digit ('38.5', '12,345', '4,8,4', 'g3')."""
    return [t for t in text.split() if any(ch.isdigit() for ch in t) and len(t) <= 24]


def _tables_at_80(monkeypatch, argv):
    """Run a command at COLUMNS=80: no ellipsis, no line past 80, and every number of every table whole."""
    from shufflesearch.cli import render

    tables, init = [], render.FittedTable.__init__

    def recording(self, columns, cells, title=None):
        tables.append(cells)
        init(self, columns, cells, title)

    monkeypatch.setattr(render.FittedTable, "__init__", recording)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(argv)
    assert code == 0, err
    assert tables, f"{argv} printed no table"
    assert "…" not in out, out
    assert max(map(len, out.splitlines())) <= 80, out
    for cells in tables:
        for token in (t for row in cells for cell in row for t in _numbers(cell)):
            assert token in out, (token, out)
    return out


@pytest.mark.parametrize("argv", [["analyze"], ["analyze", "--layers"], ["table"], ["models"],
                                  ["table", "--groups", "8", "--scales", "2.0", "--resolution", "2048"]])  # fmt: skip
def test_complexity_tables_keep_every_digit_at_80_columns(monkeypatch, argv):
    out = _tables_at_80(monkeypatch, argv)
    assert "137.461" in out or "137.46" in out or "2048" in argv


def test_stored_studies_keep_their_best_top1_at_80_columns(monkeypatch):
    from shufflesearch.search import results

    rows = [{"storage": "sqlite:///studies/a-rather-long-name-for-a-study-file.db", "name": f"demo-{b}M",
             "mode": "per-budget", "window_mflops": [b / 2, b], "complete": 12345, "pruned": 678, "running": 9,
             "waiting": 10, "failed": 11, "best_top1": 0.512345, "best_label": "g8 x0.35 [3,7,3] 224px"}
            for b in (13, 38.5, 143.25)]  # fmt: skip
    monkeypatch.setattr(results, "stored_studies", lambda storage=None: (rows, []))
    out = _tables_at_80(monkeypatch, ["studies", "list"])
    for token in ("51.23", "12,345", "678", "6.5-13", "19.25-38.5", "71.625-143.25"):
        assert token in out, (token, out)


def test_the_report_summary_table_keeps_its_digits_at_80_columns(monkeypatch, tmp_path):
    from shufflesearch.report import study

    row = {"budget": "≤ 143.25 MFLOPs", "kind": "searched best", "name": "trial 1234", "label": "g8 x1.5 [4,8,4] 48px",
           "mflops": 143.079, "params_m": 12.345, "top1_pct": 91.23, "paper_imagenet_top1_pct": 67.6}  # fmt: skip
    result = types.SimpleNamespace(notes=[], summary=[], tables={"best_per_budget": [row] * 3},
                                   out_dir=tmp_path, files=[])  # fmt: skip
    monkeypatch.setattr(study, "report_study", lambda *a, **k: result)
    out = _tables_at_80(monkeypatch, ["report", "studies/demo.toml"])
    for token in ("143.079", "12.345", "91.23", "67.6", "143.25"):
        assert token in out, (token, out)


@settings(max_examples=60, deadline=None)
@given(st.integers(40, 120), st.lists(st.tuples(st.floats(-1e9, 1e9, allow_nan=False), st.integers(-10**9, 10**9),
       st.text("abc_ /xyz", max_size=30)), min_size=1, max_size=5), st.integers(2, 9))  # fmt: skip
def test_no_table_cuts_a_number_at_any_width(width, values, n_columns):
    from rich.console import Console

    from shufflesearch.cli.render import fmt, rich_table

    rows = [{f"column_{i}_of_the_table": (v if i % 3 == 0 else n if i % 3 == 1 else t)
             for i in range(n_columns)} for v, n, t in values]  # fmt: skip
    console = Console(width=width, file=io.StringIO(), highlight=False, emoji=False)
    console.print(rich_table(rows, "A title that is long enough to wrap at a narrow width"))
    out = console.file.getvalue()
    assert "…" not in out and max(map(len, out.splitlines())) <= max(width, 60), out
    for row in rows:
        for value in row.values():
            if not isinstance(value, str):
                assert fmt(value) in out, (fmt(value), out)
