# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Development defaults for `make run` only; production reads real values from the environment.
DEV_ENV := DEBUG=1

.PHONY: install run serve worker migrate seed test lint format fakellm clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

migrate: install
	$(DEV_ENV) $(BIN)/python manage.py migrate_schemas --verbosity 0

seed: migrate
	$(DEV_ENV) $(BIN)/python manage.py seed_demo --port $(PORT)

# The web server in the foreground, a worker beside it, started again if it ever dies
# (platform/supervise.sh). Ctrl-C stops both: the worker lets running executions finish
# first; press Ctrl-C twice to leave them to the next worker.
run: seed
	@$(DEV_ENV) sh platform/supervise.sh $(BIN)/python manage.py worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(DEV_ENV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# A worker alone (background executions, sweeper); run as many as you like, on any machine.
worker: migrate
	$(DEV_ENV) $(BIN)/python manage.py worker

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

test: lint browser
	$(BIN)/python -m pytest

fakellm: install
	$(BIN)/python -m agents.fakellm --port 9100

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
.PHONY: bench
bench: install ; $(BIN)/python bench/run.py $(BENCH_ARGS)
