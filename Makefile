# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run serve worker migrate seed test lint typecheck format fakellm clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Development settings with secrets of this checkout (DEBUG=1, SECRET_KEY ...), which
# manage.py reads: every documented `python manage.py ...` command works after `make run`.
# Git-ignored, never overwritten (delete it for new secrets), never read by tests.
.env: | $(VENV)/.installed
	$(BIN)/python platform/dev_env.py

install: $(VENV)/.installed .env

migrate: install
	$(BIN)/python manage.py migrate_schemas --verbosity 0

seed: migrate
	$(BIN)/python manage.py seed_demo --port $(PORT)

# The web server in the foreground, a worker beside it, started again if it ever dies
# (platform/supervise.sh). Ctrl-C stops both: the worker lets running executions finish
# first; press Ctrl-C twice to leave them to the next worker.
run: seed
	@sh platform/supervise.sh $(BIN)/python manage.py worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# A worker alone (background executions, sweeper); run as many as you like, on any machine.
worker: migrate
	$(BIN)/python manage.py worker

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with django-stubs over the application packages (settings: config/mypy_settings.py,
# which names a database without reaching one; configuration in pyproject.toml).
typecheck: install
	$(BIN)/mypy agents tenants config workflow_bridge

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The console's browser test drives Debian's chromium; install it when we can (root + apt),
# otherwise that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian package) for the browser test"; \
	    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "chromium install failed: the browser test will be skipped"; \
	  else echo "no chromium and no root: the browser test will be skipped"; fi; }

test: lint typecheck browser
	$(BIN)/python -m pytest

fakellm: install
	$(BIN)/python -m agents.fakellm --port 9100

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
.PHONY: bench
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)
