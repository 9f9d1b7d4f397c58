# The two commands the README opens with: `make chat` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
FUZZ_SECONDS ?= 30

.PHONY: chat test lint typecheck unit fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

chat: $(STAMP)
	$(BIN)/streamcore chat

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy streamcore

unit: $(STAMP)
	$(BIN)/pytest

fuzz: $(STAMP)
	$(BIN)/python fuzz/run_all.py --seconds $(FUZZ_SECONDS)

bench: $(STAMP)
	$(BIN)/python bench/sse_decode.py
	$(BIN)/python bench/framing_decode.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/tokens_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
