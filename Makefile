# One command each for the things a developer runs. `make check` is what CI (.ci/run) runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shellfish-dev-installed
# The oldest Python pyproject's requires-python allows, from pyenv or PATH; empty when none runs
# (a pyenv shim on PATH may exist without working, so each candidate is tried).
PYTHON310 ?= $(shell for p in $(HOME)/.pyenv/versions/3.10*/bin/python $$(command -v python3.10); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV310 := .venv310
STAMP310 := $(VENV310)/.shellfish-dev-installed
LINTED := shellfish tests benchmarks

.PHONY: test test-slow test-all test-py310 python310 check lint typecheck bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 first: this exact version is a CPU wheel (a looser pin pulls a CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,export,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow or realmodel"

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Lint, format, types, then the fast tests: one command, the one CI runs.
check: lint typecheck test

# The fast suite on Python 3.10 without the export/bench extras: checks requires-python and that
# tests needing an extra skip (with a reason) instead of failing.
$(STAMP310): pyproject.toml
	@test -n "$(PYTHON310)" || { echo "no Python 3.10 found (PATH or ~/.pyenv)"; exit 1; }
	test -x $(VENV310)/bin/python || $(PYTHON310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q -e '.[dev]'
	touch $(STAMP310)

python310:  # prints the interpreter test-py310 uses (nothing when there is none)
	@echo $(PYTHON310)

test-py310: $(STAMP310)
	$(VENV310)/bin/python -m pytest -q

bench: $(STAMP)
	$(PY) -m shellfish bench

clean-venv:
	rm -rf $(VENV) $(VENV310)
