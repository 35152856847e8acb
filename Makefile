# Everyday tasks. Each runs in the project's virtualenv (.venv), created and installed on first use and again when
# pyproject.toml changes. The tests use TEST_DATABASE_URL's PostgreSQL when it is set, else an embedded one.

VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: lint format test-fast test bench

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# What CI checks before the tests (.ci/run).
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Unit and integration tests without the broker or the slow ones: about a minute.
test-fast: $(INSTALLED)
	$(BIN)/pytest -q -m "not kafka and not slow" tests/unit tests/integration

# The README's test command: every test, the tansu broker and the worker processes included.
test: $(INSTALLED)
	$(BIN)/pytest

# Every benchmark, then bench/RESULTS.md (a few minutes on two cores).
bench: $(INSTALLED)
	$(BIN)/python -m bench.run_all
