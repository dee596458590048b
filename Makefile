# The two commands of the contract: `make up` (set up and run everything) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := node_modules/.bin/buf

.PHONY: help up down status test lint unit integration gen gen-check buf-lint buf-breaking stack-up train eval bench openapi envoy-config clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "==> creating the virtualenv in $(VENV) and installing Rased (a few minutes the first time)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,stack,train]'
	@touch $@

$(BUF): package.json package-lock.json
	@echo "==> installing the buf CLI from npm"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

up: $(STAMP) ## Install everything, start the local stack and the Rased services
	@$(BIN)/rased stack up

stack-up: $(STAMP) ## Start only the servers (Redis, PostgreSQL, Kafka, Cassandra, Triton)
	@$(BIN)/rased stack up --servers-only

down: ## Stop what `make up` started
	@if [ -x $(BIN)/rased ]; then $(BIN)/rased stack down; else echo "nothing installed"; fi

status: $(STAMP) ## Show each server's health
	@$(BIN)/rased stack status

gen: $(STAMP) ## Generate the Python code of the contracts into src/
	@$(BIN)/python scripts/protogen.py

gen-check: $(STAMP)
	@$(BIN)/python scripts/protogen.py --check
	@$(BIN)/python -m rased.gateway.openapi --check
	@$(BIN)/python -m rased.gateway.envoy_config --check

buf-lint: $(BUF)
	@echo "==> buf lint"
	@$(BUF) lint

buf-breaking: $(BUF)
	@echo "==> buf breaking"
	@scripts/buf_breaking.sh $(BUF)

lint: $(STAMP) buf-lint buf-breaking gen-check ## ruff, mypy --strict, buf lint/breaking, generated code current
	@echo "==> ruff"
	@$(BIN)/ruff check src tests scripts bench
	@$(BIN)/ruff format --check src tests scripts bench
	@echo "==> mypy --strict"
	@$(BIN)/mypy

unit: $(STAMP) ## Fast tests without servers
	@$(BIN)/pytest tests/unit

integration: $(STAMP) ## Tests against the real servers (started if not running)
	@$(BIN)/pytest tests/integration

test: lint ## The whole suite: lint, types, contracts, unit and integration tests
	@echo "==> pytest"
	@$(BIN)/pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; \
	  exit $$rc

bench: $(STAMP) ## Benchmarks, ingestion then pipeline (needs make stack-up); figures go to docs/benchmarks.md
	@$(BIN)/python bench/ingest.py run
	@$(BIN)/python bench/pipeline.py run

openapi: $(STAMP) ## Write docs/openapi.json from the contracts
	@$(BIN)/python -m rased.gateway.openapi

envoy-config: $(STAMP) ## Write gateway/envoy/ (config and descriptor set) from the contracts
	@$(BIN)/python -m rased.gateway.envoy_config

DATA ?= ../shared/data

train: $(STAMP) ## Train the models (seeded) and export them to model_repository/
	@$(BIN)/python -m rased.training

eval: $(STAMP) ## Evaluate the models on the held-out split of the shared data
	@$(BIN)/rased-eval bot --csv $(DATA)/delbot_mouse/train.csv.gz --held-out-split 42
	@$(BIN)/rased-eval takeover --train $(DATA)/balabit/training_files \
	  --test $(DATA)/balabit/test_files_labelled --labels $(DATA)/balabit/labels.csv
	@# bot_detection's false alarms on real people at desktop work (sessions never fitted).
	@$(BIN)/rased-eval bot-people --dir $(DATA)/balabit/test_files_labelled
	@# bot_detection on the generator's SDK-like sessions (a seed training never uses).
	@$(BIN)/rased-eval bot-sessions
	@# Real typists (IIITBh-Big, 12 people x 150 repetitions): the CMU protocol halved.
	@$(BIN)/rased-eval keystroke --csv data/iiitbh_keystroke/IIITBh-Big.csv.gz \
	  --train-reps 75 --test-reps 75
	@# The CMU benchmark itself when given (CMU_CSV=path/DSL-StrongPasswordData.csv): it is
	@# neither in the shared data nor shipped (no licence stated).
	@if [ -n "$(CMU_CSV)" ]; then $(BIN)/rased-eval keystroke --csv "$(CMU_CSV)"; \
	  else echo "keystroke: CMU benchmark skipped (make eval CMU_CSV=FILE runs it)"; fi
	@# Generated typing in the CMU format (seeded, 51 subjects).
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/python -m rased.training.synthetic_sessions cmu --subjects 51 --seed 42 \
	    --out "$$tmp/cmu_keystroke.csv.gz" >/dev/null && \
	  $(BIN)/rased-eval keystroke --csv "$$tmp/cmu_keystroke.csv.gz"
	@# Needs Triton (make stack-up): CPU latency per transaction, rows from held-out sessions.
	@$(BIN)/rased-eval latency --target $${RASED_STACK_HOST:-127.0.0.1}:$${RASED_STACK_TRITON_GRPC_PORT:-8001} \
	  --csv $(DATA)/delbot_mouse/train.csv.gz --held-out-split 42

clean: down ## Stop everything and delete the local stack's data
	rm -rf .stack
