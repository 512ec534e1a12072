# Two commands for a fresh machine: `make run` (set up, then run the example on embedded
# defaults: SQLite + local-memory cache) and `make test` (install test deps, run the whole suite).

PYTHON ?= python3
VENV ?= .venv
DJANGO ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
EXAMPLE := $(BIN)/python example_project/manage.py
PORT ?= 8000

.PHONY: run test lint check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(if $(DJANGO),"Django$(DJANGO)")
	touch $(STAMP)

# `make run` needs only the app (and the Redis client, for REDIS_URL): no compiler, no browser.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[redis]' $(if $(DJANGO),"Django$(DJANGO)")
	touch $(RUN_STAMP)

## Set up the example shop and serve it: migrate, create a catalogue, list the warmers, create the
## demo staff login, then runserver, which warms its own cache at start and on schedule. With
## REDIS_URL set, `warm_cache` first fills the shared Redis; without it the cache is LocMem, one per
## process, so a `warm_cache` run would fill a copy that is gone when the command exits.
## `PORT=8001 make run` serves on another port.
run: $(RUN_STAMP)
	$(EXAMPLE) migrate --noinput
	$(EXAMPLE) generate_catalogue
	$(if $(REDIS_URL),EXAMPLE_LOG_LEVEL=WARNING $(EXAMPLE) warm_cache)
	$(EXAMPLE) warm_cache --list
	$(EXAMPLE) ensure_demo_staff
	@echo
	@echo "Shop:  http://127.0.0.1:$(PORT)/"
	@echo "Admin: http://127.0.0.1:$(PORT)/admin/ (log in with the staff login above)"
	@echo "The server warms its own cache at start, then on schedule. Stop it with Ctrl+C."
	@echo
	$(EXAMPLE) runserver 127.0.0.1:$(PORT)

## Install what the tests need and run the whole suite.
test: $(STAMP)
	$(BIN)/python -c 'import django, sys; print(f"Python {sys.version.split()[0]}, Django {django.__version__}")'
	$(BIN)/python -m pytest --cov=django_cachewarmers --cov-report=term:skip-covered --cov-fail-under=90; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a broken suite" >&2; exit 1; fi; \
	exit $$status

## ruff, mypy, the import layering (lint-imports: contracts in pyproject.toml), Django's system
## checks and the migrations check.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_cachewarmers tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m django check --settings=tests.settings --pythonpath=.
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings --pythonpath=.

## Every benchmark, side by side in one run; the table also goes to docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks --write docs/benchmarks.md

clean:
	rm -rf .venv .venv-* build *.egg-info example_project/db.sqlite3
