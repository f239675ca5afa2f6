# servescope: the two commands of the README, plus helpers for developers.
#   make demo   set up .venv (if missing or out of date) and run the end-to-end demo
#   make test   set up .venv and run the linter and every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := export,load,analysis,dev

.PHONY: demo test lint format proto venv clean bench bench-peers

# The stamp is newer than pyproject.toml when the environment is current; otherwise (re)install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing servescope and its dependencies into $(VENV) (about a minute)..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/servescope demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash deploy/prometheus/ensure-prometheus.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the committed protocol modules from proto/*.proto.
proto: $(STAMP)
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
