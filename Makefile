# Two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BIND ?= 127.0.0.1:8000
WORKERS ?= 2
# pytest processes of `make test` (pytest-xdist; each test file runs whole in one of them);
# TEST_JOBS=0 runs the suite in make's own pytest process
TEST_JOBS ?= 2

.PHONY: setup bytecode run test lint format bench bench-ops bench-console soak stress chaos docs clean

$(STAMP): requirements.txt pyproject.toml examples/notes/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	# the example endpoint module: its tests are part of the suite
	$(BIN)/python -m pip install --quiet --no-deps -e examples/notes
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# An editable install compiles none of our own modules, and where PYTHONDONTWRITEBYTECODE
# is set no run ever writes them: every start would compile the platform again (~0.3 s).
bytecode:
	$(BIN)/python -m compileall -q src examples/notes/tenantry_notes

# The venv alone (what README's quickstart starts with).
setup: $(STAMP)

run: $(STAMP) bytecode
	$(BIN)/python scripts/demo_setup.py $(BIND)
	$(BIN)/tenantry serve --bind $(BIND) --workers $(WORKERS)

test: $(STAMP) bytecode lint docs
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff format --check src tests scripts bench examples
	$(BIN)/ruff check src tests scripts bench examples

format: $(STAMP)
	$(BIN)/ruff format src tests scripts bench examples
	$(BIN)/ruff check --fix src tests scripts bench examples

# SERVING=sync runs every server (bare Flask too) with gunicorn's sync defaults instead.
bench: $(STAMP) bytecode
	$(BIN)/python -m bench.run $(if $(SERVING),--serving $(SERVING))

# Backup, verify, restore, clone and delete of a tenant with 1 GiB of files and 10 000
# users; PG=1 runs it on PostgreSQL.
bench-ops: $(STAMP)
	$(BIN)/python -m bench.operations $(if $(PG),--postgres)

# The operator console and platform API with 1 000 tenants: each page's time.
bench-console: $(STAMP)
	$(BIN)/python -m bench.console

soak: $(STAMP)
	$(BIN)/python -m bench.soak

# The attacks of resource isolation against a real `tenantry serve`; BASELINE=<git rev>
# runs them first against older code, for comparison; ADMIN=1 serves the console too,
# an operator using it all along.
stress: $(STAMP)
	$(BIN)/python -m bench.stress $(if $(BASELINE),--baseline $(BASELINE)) $(if $(ADMIN),--admin)

# Faults under steady traffic: restarts this machine's PostgreSQL and Redis, fills a
# small tmpfs (root), stops a proxy in front of moto's S3 server.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

# The documentation site from docs/ into site/ (mkdocs.yml); a broken link fails it.
# NO_MKDOCS_2_WARNING quiets mkdocs-material's banner about its successor (not a warning).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info examples/*/*.egg-info site
