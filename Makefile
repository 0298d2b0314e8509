# One command each for the things a developer runs. `make test` is what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shellfish-dev-installed

.PHONY: test test-slow test-all check lint typecheck bench clean-venv

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
	$(VENV)/bin/ruff check shellfish tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(STAMP)
	$(PY) -m shellfish bench

clean-venv:
	rm -rf $(VENV)
