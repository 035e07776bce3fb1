# gradlab: `make repro` runs the whole pipeline, `make test` the test suite, `make test-fast` all but the slow
# end-to-end tests (each sets up first).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: install repro test test-fast bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

repro: install
	PATH="$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q

test-fast: install  # everything but the end-to-end tests marked slow
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

bench: install
	PATH="$(BIN):$$PATH" $(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf results reports mlflow.db mlartifacts .dvc/tmp/exps
