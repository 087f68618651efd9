# memoracle: two commands for a newcomer — `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TYPED  := spec impl proofs memoracle

.PHONY: run test typecheck contracts pytest bench proofs coverage clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: set up and run the default campaign over every system
run: $(STAMP)
	$(BIN)/memoracle check

## test: type-check, check the specs' contracts with CrossHair, run the test suite
test: typecheck contracts pytest

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(TYPED)

contracts: $(STAMP)
	$(BIN)/memoracle contracts

pytest: $(STAMP)
	$(BIN)/pytest -n auto

bench: $(STAMP)
	$(BIN)/python -m benchmarks

proofs: $(STAMP)
	$(BIN)/memoracle proofs

## coverage: branch coverage of impl/ by the campaigns of memoracle check (not the tests)
coverage: $(STAMP)
	$(BIN)/python -m benchmarks.coverage

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .hypothesis bench-results.json
