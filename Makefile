# gradlab: `make repro` runs the whole pipeline, `make test` the test suite, `make test-fast` all but the slow
# end-to-end tests (each sets up first). `make install` installs the pipeline at the exact versions of
# constraints.txt; `make lock` rewrites constraints.txt from the installed .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: install lock repro test test-fast bench lint clean venv-elsewhere

install: $(VENV)/.installed

# A .venv copied or moved here from another folder still runs that folder's code (its scripts' shebangs and
# gradlab's editable install point there) and its .installed stamp looks up to date: recreate it.
VENV_ELSEWHERE := $(shell test -e $(VENV) && { $(BIN)/python tools/venv_is_here.py $(CURDIR) >/dev/null 2>&1 || echo yes; })

$(VENV)/.installed: pyproject.toml constraints.txt $(if $(VENV_ELSEWHERE),venv-elsewhere)
	$(if $(VENV_ELSEWHERE),@echo "$(VENV) was made in another folder (its scripts and gradlab point there): recreating it"; rm -rf $(VENV))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip takes torch (the CPU build: see README) and uv; uv installs the rest, downloads in parallel (~1 min where
	# pip alone took ~6). pip does it all where uv cannot run.
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[pipeline,dev]' \
	  || $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[pipeline,dev]'
	touch $@

venv-elsewhere: ;  # makes .installed out of date when .venv belongs to another folder

lock:  # after a deliberate upgrade in .venv; torch is pinned without its local label (+cpu)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

repro: install
	PATH="$(BIN):$$PATH" $(BIN)/dvc repro

# pytest-xdist workers: most tests wait on subprocesses and servers much of the time, so two workers on two cores
# finish sooner; tests marked `serial` (servers, Ray, signals with deadlines: tests/conftest.py) run alone after.
# Each worker makes its own tiny runs (conftest.TinyRuns).
TEST_WORKERS ?= 2
PYTEST := PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q

test: install
	rc=0; $(PYTEST) -n $(TEST_WORKERS) -m "not serial" || rc=$$?; $(PYTEST) -m serial || rc=$$?; exit $$rc

test-fast: install  # everything but the end-to-end tests marked slow
	rc=0; $(PYTEST) -n $(TEST_WORKERS) -m "not slow and not serial" || rc=$$?; $(PYTEST) -m "serial and not slow" || rc=$$?; exit $$rc

bench: install
	PATH="$(BIN):$$PATH" $(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf results reports mlflow.db mlartifacts .dvc/tmp/exps
