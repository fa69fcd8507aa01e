# Two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BIND ?= 127.0.0.1:8000
WORKERS ?= 2

.PHONY: run test lint format bench soak clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/demo_setup.py $(BIND)
	$(BIN)/tenantry serve --bind $(BIND) --workers $(WORKERS)

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/ruff check src tests scripts

format: $(STAMP)
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

bench: $(STAMP)
	@echo "no benchmarks yet (they arrive with the scale issue)"

soak: $(STAMP)
	@echo "no soak yet (it arrives with the scale issue)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
