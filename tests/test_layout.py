"""The shape of the house (issue 12): no import circles, small public surfaces, files that fit in a head.

import-linter's layer contracts (pyproject.toml) keep the layers one-way; these catch what a
layer contract cannot: a circle inside one layer, a package without `__all__`, a file that grew.
"""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "shufflesearch"
MAX_LINES = 400
WHOLE_ON_PURPOSE = {"latency/device_runner.py"}  # the script shipped to devices (with environment.py): whole by design


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_package():
    graph = grimp.build_graph("shufflesearch")
    edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("shufflesearch")}
        for m in graph.modules
    }
    assert _circles(edges) == []


def test_every_package_declares_its_public_surface():
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py") if "__all__" not in p.read_text()]
    assert missing == []


def test_files_fit_in_a_head():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(PACKAGE)) not in WHOLE_ON_PURPOSE
    }
    assert long == {}
