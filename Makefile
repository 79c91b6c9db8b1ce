# Everything a fresh Debian machine needs, from two commands: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_CPU ?= 2.13.0

.PHONY: setup system demo test lint bench

setup: system $(STAMP)

system:
	@scripts/install-system-deps

# torch first, pinned to the CPU release we test: pyproject's range (torch>=2.5, so a user's own
# CUDA build is kept) is then met, and pip does not go looking for the newest CUDA build.
# Order-only on `system`: the Debian packages (python3-venv among them) come first, without
# forcing a reinstall of the venv every time.
$(STAMP): pyproject.toml | system
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: $(PYTHON) is $$($(PYTHON) -V 2>&1); shufflesearch needs Python 3.11+ (Debian 12 has it)," \
	    "or name another: make demo PYTHON=python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==$(TORCH_CPU)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded defaults: analyze, a small budget-constrained search stored in
# studies/demo.db (re-running continues it), and its report in reports/demo/index.html.
demo: setup
	$(BIN)/shufflesearch analyze --groups 8 --scale 0.5
	$(BIN)/shufflesearch table --groups 1,2,3,4,8 --scales 0.25,0.5,1.0 --out reports/complexity.md
	$(BIN)/shufflesearch search studies/demo.toml --workers 2
	$(BIN)/shufflesearch report studies/demo.toml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/bench_complexity.py
