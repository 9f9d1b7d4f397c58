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

# mypy --strict over the whole `streamcore` package as it installs: adapters/ and cli/
# are mapped into it by package-dir, which mypy cannot follow from the repo root, so
# a tree of symlinks gives it the installed layout.
TYPETREE := build/typetree
typecheck: $(STAMP)
	$(BIN)/mypy streamcore
	rm -rf $(TYPETREE) && mkdir -p $(TYPETREE)/streamcore
	ln -s $(CURDIR)/streamcore/* $(TYPETREE)/streamcore/
	ln -s $(CURDIR)/adapters $(TYPETREE)/streamcore/adapters
	ln -s $(CURDIR)/cli $(TYPETREE)/streamcore/cli
	cd $(TYPETREE) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p streamcore

unit: $(STAMP)
	$(BIN)/pytest

fuzz: $(STAMP)
	$(BIN)/python fuzz/run_all.py --seconds $(FUZZ_SECONDS)

bench: $(STAMP)
	$(BIN)/python bench/sse_decode.py
	$(BIN)/python bench/framing_decode.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/tokens_bench.py
	$(BIN)/python bench/transport_bench.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
