# vocproj: `make test` and `make report` on a fresh machine; each creates .venv on first use.
PROFILE ?= sample
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test lint lab clean

# The venv is (re)installed only when pyproject.toml changed since the last install.
$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

test: $(INSTALLED) lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lab: $(INSTALLED)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf runs/
