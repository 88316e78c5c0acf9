# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Development defaults for `make run` only; production reads real values from the environment.
DEV_ENV := DEBUG=1

.PHONY: install run serve migrate seed test lint format fakellm clean

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

run: seed
	$(DEV_ENV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

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
