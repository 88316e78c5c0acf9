# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Development defaults for `make run` only; production reads real values from the environment.
DEV_ENV := DEBUG=1

.PHONY: install run serve worker migrate seed test lint format fakellm clean

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

# The web server in the foreground, a worker beside it; Ctrl-C stops both (the worker lets
# running executions finish first; press Ctrl-C twice to leave them to the next worker).
run: seed
	@$(DEV_ENV) $(BIN)/python manage.py worker & worker=$$!; \
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

test: lint
	$(BIN)/python -m pytest

fakellm: install
	$(BIN)/python -m agents.fakellm --port 9100

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
