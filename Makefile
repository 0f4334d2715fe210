# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

## make run: the service on its embedded defaults (SQLite in instance/, no Redis, console provider)
run: $(STAMP)
	$(BIN)/recpo db upgrade
	$(BIN)/recpo demo
	exec $(BIN)/recpo serve

## make test: lint and the whole test suite on real PostgreSQL and Redis (started if missing)
test: $(STAMP)
	scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make bench: the benchmarks in bench/, each printing JSON lines (needs PostgreSQL, like make test)
bench: $(STAMP)
	scripts/test.sh --bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
