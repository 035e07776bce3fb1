# gradlab: `make repro` runs the whole pipeline, `make test` the test suite (both set up first).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: install repro test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

repro: install
	PATH="$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q

bench: install
	PATH="$(BIN):$$PATH" $(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf results reports mlflow.db mlartifacts .dvc/tmp/exps
