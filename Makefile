# servescope: the two commands of the README, plus helpers for developers.
#   make demo   set up .venv (if missing or out of date) and run the end-to-end demo
#   make test   set up .venv and run the linter, the type checker (mypy) and every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := export,load,analysis,dev

.PHONY: demo test lint format proto venv clean bench bench-protocols bench-peers perf-analyzer

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
	$(BIN)/mypy
	bash deploy/prometheus/ensure-prometheus.sh
	bash deploy/perf_analyzer/ensure-perf-analyzer.sh $(VENV)
	$(BIN)/python -m pytest

# NVIDIA perf_analyzer into $(VENV)/lib/perf_analyzer/ (docs/loadtest.md "perf_analyzer"); make test does it too.
perf-analyzer: $(STAMP)
	bash deploy/perf_analyzer/ensure-perf-analyzer.sh $(VENV)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the committed protocol modules from proto/*.proto.
proto: $(STAMP)
	$(BIN)/python proto/generate.py

# The exported models the benchmarks serve (the demo's, reused when present).
models/sentiment_fp32/metadata.json: | $(STAMP)
	$(BIN)/servescope export --dataset synthetic --epochs 3 --train-samples 10000 --test-samples 2000 \
		--output models --force

# Served vs in-process throughput and latency, batching on and off (about 80 s).
bench: $(STAMP) models/sentiment_fp32/metadata.json
	$(BIN)/python benchmarks/serve_bench.py --model-repository models

# Per-request cost of unary gRPC, streaming gRPC and REST on one server, side by side (about 90 s).
bench-protocols: $(STAMP) models/sentiment_fp32/metadata.json
	$(BIN)/python benchmarks/protocol_bench.py --model-repository models

# servescope vs Triton (PyTriton) vs MLServer on the same model; peer venvs are made on first use.
bench-peers: $(STAMP) models/sentiment_fp32/metadata.json
	$(BIN)/python benchmarks/peers/run.py --model-repository models

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
