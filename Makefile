# The two commands of the README: `make repro` (set up, then run the pipeline) and
# `make test` (set up, then run the tests). Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test test-fast restore

setup: $(VENV)/.installed

# requirements.txt pins every package exactly, dependencies included, so pip needs no resolver
# (--no-deps); byte-compiling on every core afterwards is faster than pip's one file at a time
# (compileall's exit status counts files that are not meant to compile, such as templates).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-compile -r requirements.txt
	-$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

repro: setup
	dvc repro

test: setup
	python -m pytest

# The inner loop: every test that runs no stage, DVC or git process (under a minute).
test-fast: setup
	python -m pytest -m "not slow"

# After an interrupted or failed `dvc repro` / `dvc exp run`: DVC removes a stage's outputs before
# running it, and `dvc exp run -S` leaves its params in params.yaml. This brings back the last
# committed params, dvc.lock and metrics (git) and every output (DVC's cache).
restore: setup
	git checkout HEAD -- params.yaml dvc.lock metrics
	dvc checkout --force
