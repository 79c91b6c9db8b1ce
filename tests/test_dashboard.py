"""optuna-dashboard reads our studies (issue 15): a real dashboard server on loopback, asked through its JSON API.

The studies are searched for real (queue, sampler, SQLite) with a stand-in evaluator, so
what the dashboard shows is what a search stores: the objectives by name, parameters a
person can read beside the sampled ones (groups, depths and `width`, the position among the
widths that fit: the spec's scale and the share of the budget it spends are user attributes), and each trial's constraints in the list the
dashboard reads. In CI (CI=true) a missing optuna-dashboard fails the test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from servers import free_port

from shufflesearch.search.objective import latency_table, predicted_latency
from shufflesearch.search.queue import run_worker
from shufflesearch.search.study_file import load_study

pytestmark = pytest.mark.slow

SPACE = "[space]\ngroups = [1, 3, 8]\nscale = [0.1, 1.0]\nrepeats = [[1, 3], [2, 4], [1, 3]]\n"
SAMPLED = {"groups", "repeats2", "repeats3", "repeats4", "width"}


def require_dashboard() -> None:
    if importlib.util.find_spec("optuna_dashboard") is not None:
        return
    why = "optuna-dashboard is not installed (pip install -e '.[dev]')"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run this test")
    pytest.skip(why)


@contextlib.contextmanager
def dashboard(storage_url: str):
    """`optuna-dashboard URL` on a free loopback port, as a user starts it; yields a GET that returns JSON."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("optuna-dashboard")), storage_url, "--host", "127.0.0.1",
               "--port", str(port), "--server", "wsgiref", "--quiet"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"optuna-dashboard did not start: {server.communicate()[0][-2000:]}")
                time.sleep(0.2)
        yield get
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


def search(tmp_path, name: str, text: str):
    """A study searched to the end with a stand-in evaluator: wider nets score higher, latency is the table's."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"[study]\nname = '{name}'\ntrials = 8\nenqueue_presets = true\nsampler = 'random'\n{text}{SPACE}")
    config = load_study(path)
    table = latency_table(config)
    run_worker(config, config.default_storage(), 8,
               lambda spec, report: {"top1": 0.3 + spec.scale / 2, **predicted_latency(table, spec)})  # fmt: skip
    return config


def study_detail(get, study_name: str) -> dict:
    (summary,) = [s for s in get("/api/studies")["study_summaries"] if s["study_name"] == study_name]
    return get(f"/api/studies/{summary['study_id']}")


def values(attrs: list[dict]) -> dict:
    return {a["key"]: a["value"] for a in attrs}


@pytest.mark.parametrize(
    ("text", "window", "names", "directions", "constraints"),
    [
        ("[budget]\nmflops = [40]\nmin_fraction = 0.5\n", "dash-40M", ["top1"], ["maximize"],
         ["mflops_over_budget", "mflops_under_minimum"]),
        ("mode = 'pareto'\npruner = 'none'\n[budget]\nlatency_ms = [20]\n[objective]\nsecond = 'latency'\n"
         "lut = 'snapdragon820'\n", "dash", ["top1", "latency_ms"], ["maximize", "minimize"],
         ["mflops_over_budget", "mflops_under_minimum", "latency_ms_over_budget", "latency_ms_under_minimum"]),
    ],
    ids=["per-budget", "pareto-latency"],
)  # fmt: skip
def test_the_dashboard_shows_named_objectives_readable_parameters_and_constraints(
    tmp_path, text, window, names, directions, constraints
):
    require_dashboard()
    config = search(tmp_path, "dash", text)
    stored = optuna.load_study(study_name=window, storage=config.default_storage())
    by_number = {t.number: t for t in stored.get_trials()}
    with dashboard(config.default_storage()) as get:
        detail = study_detail(get, window)
        importances = get(f"/api/studies/{stored._study_id}/param_importances")["param_importances"]

    assert detail["objective_names"] == names and detail["directions"] == directions
    assert json.loads(values(detail["user_attrs"])["constraint_names"]) == constraints
    space = {p["name"]: p["distribution"] for p in detail["union_search_space"]}
    assert set(space) == SAMPLED and (space["width"]["low"], space["width"]["high"]) == (0.0, 1.0)
    low = config.min_fraction if "mflops" in text else 10 / 150

    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(complete) >= 4
    for trial in complete:
        attrs, params = values(trial["user_attrs"]), {p["name"]: p["param_external_value"] for p in trial["params"]}
        assert set(params) == SAMPLED
        spec = json.loads(attrs["spec"])
        assert float(attrs["scale"]) == spec["scale"] and f"x{spec['scale']:g}" in attrs["label"]
        used = float(attrs["budget_used"])
        assert low - 1e-9 <= used <= 1.0  # the share it spends of its budget: never more than all of it
        if "mflops" in text:
            assert used == pytest.approx(float(attrs["mflops"]) / 40, rel=1e-3)
        # The list the dashboard reads is Optuna 5's named constraints, in the study's order: all met.
        frozen = by_number[trial["number"]]
        assert trial["constraints"] == [frozen.constraints[name] for name in constraints]
        assert max(trial["constraints"]) <= 0
        assert len(trial["values"]) == len(names)
    infeasible = [t for t in detail["trials"] if t["state"] == "Pruned" and t["constraints"]]
    assert all(max(t["constraints"]) > 0 for t in infeasible)  # a trial with no width in the budget says so

    # Parameter importance is over the sampled parameters, for every objective (the report's is over readable ones).
    assert len(importances) == len(names)
    for per_objective in importances:
        assert per_objective and {i["name"] for i in per_objective} <= SAMPLED
