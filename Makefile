# The two commands of the README: `make repro` (set up, then run the pipeline) and
# `make test` (set up, then run the tests). Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test test-fast restore

setup: $(VENV)/.installed

# requirements.txt pins every package exactly, dependencies included, so the installer needs no
# resolver (--no-deps). uv (itself pinned) installs and byte-compiles the same pins in about
# half of pip's time (docs/performance.md); pip's find-links (a local torch wheel, say) are
# handed to it, since uv reads no pip configuration. Where uv cannot be installed, pip does it.
UV := uv==0.13.9
FIND_LINKS = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --no-deps $(FIND_LINKS:%=--find-links %)
PIP_INSTALL := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if $(PIP_INSTALL) $(UV) > /dev/null 2>&1; then \
	  $(UV_INSTALL) --compile-bytecode -r requirements.txt && \
	  $(UV_INSTALL) --no-build-isolation -e .; \
	else \
	  $(PIP_INSTALL) --no-compile -r requirements.txt && \
	  { $(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true; } && \
	  $(PIP_INSTALL) --no-build-isolation -e .; \
	fi
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
