# Two commands for a fresh machine: `make run` (set up, then run the example on embedded
# defaults: SQLite + local-memory cache) and `make test` (install test deps, run the whole suite).

PYTHON ?= python3
VENV ?= .venv
DJANGO ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := $(BIN)/python example_project/manage.py

.PHONY: run test lint check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(if $(DJANGO),"Django$(DJANGO)")
	touch $(STAMP)

## Set up the example shop and run it: migrate, create a catalogue, warm every warmer, list them.
run: $(STAMP)
	$(EXAMPLE) migrate --noinput
	$(EXAMPLE) generate_catalogue
	$(EXAMPLE) warm_cache
	$(EXAMPLE) warm_cache --list

## Install what the tests need and run the whole suite.
test: $(STAMP)
	$(BIN)/python -c 'import django, sys; print(f"Python {sys.version.split()[0]}, Django {django.__version__}")'
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a broken suite" >&2; exit 1; fi; \
	exit $$status

## ruff, mypy, Django's system checks and the migrations check.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_cachewarmers tests benchmarks
	$(BIN)/python -m django check --settings=tests.settings --pythonpath=.
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings --pythonpath=.

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf .venv .venv-* build *.egg-info example_project/db.sqlite3
