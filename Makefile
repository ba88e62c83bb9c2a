# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files make re-runs instant while pyproject.toml is unchanged.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

# Real Node.js clients (the `openai` package) that tests run against the gateway.
NODE_CLIENTS := tests/node/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

run: $(VENV)/.installed
	$(BIN)/sluice serve

services:
	./scripts/services.sh
	./scripts/browser.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Two workers for the suites that only wait on servers and browsers, then the
# timing-sensitive ones (marked `serial` in tests/conftest.py) alone. PYTEST_ARGS
# narrows both runs (-k, a file); an empty selection is not a failure.
unit: $(VENV)/.installed-test $(NODE_CLIENTS) services
	$(BIN)/pytest -n 2 --dist loadfile -m "not benchmark and not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -m "serial and not benchmark" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: lint typecheck unit

bench: $(VENV)/.installed
	$(BIN)/sluice bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
