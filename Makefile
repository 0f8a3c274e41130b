# phenoface: two commands.
#   make demo   run the workflow on a small embedded demo (portraits shipped in registry packages)
#   make test   ruff check and format --check, snakefmt --check, snakemake --lint, Debian's chromium (apt-get) and pytest
#   make mutation   mutation testing of the result-deciding modules (slow; not part of make test)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test venv lint browser clean-demo mutation

venv: $(STAMP)

# Create or refresh the virtual environment from the pinned lock.
$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $@

demo/config.yaml: $(STAMP) workflow/tools/make_demo_sheets.py
	$(BIN)/python workflow/tools/make_demo_sheets.py demo

demo: $(STAMP) demo/config.yaml
	$(BIN)/snakemake -s $(CURDIR)/Snakefile -d demo --configfile demo/config.yaml --cores $(CORES)
	$(BIN)/snakemake -s $(CURDIR)/Snakefile -d demo --configfile demo/config.yaml --report report.html
	@echo "demo results in demo/results, report in demo/report.html"

lint: $(STAMP) demo/config.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake -s $(CURDIR)/Snakefile -d demo --configfile demo/config.yaml --lint

# Debian's Chromium for the report's browser test (tests/integration/test_report_browser.py).
# Playwright (pinned in requirements.lock) drives it; nothing downloads a browser of its own.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || { echo "could not install chromium: the browser test will fail in CI and skip here"; test -z "$$CI"; }

# Two pytest workers (pytest-xdist), each taking whole test files (module-scoped studies are built
# once): the workflow tests leave cores idle between jobs, so two at a time fill the machine.
TEST_WORKERS ?= 2
test: lint browser
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# Each module's mutants run against that module's unit tests only (bench/mutation.py,
# scores in bench/README.md, equivalent mutants in bench/mutation_equivalents/). MODULES=stats audit ... picks some.
MODULES ?=
mutation: $(STAMP)
	nice -n 10 $(BIN)/python bench/mutation.py $(MODULES)

clean-demo:
	rm -rf demo
