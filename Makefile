# One entry point per task. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit bench proto clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/verify_bench.py
	$(BIN)/python bench/grpc_bench.py
	$(BIN)/python bench/load_bench.py
	$(BIN)/python bench/payments_bench.py
	$(BIN)/python bench/screening_bench.py

# The whole story on a fresh hub (temporary PKI, SQLite), ending with "ledger verified".
demo: $(STAMP)
	$(BIN)/settlement demo

# Regenerate settlement/v1/ from proto/settlement/v1/*.proto (tests fail when stale).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
