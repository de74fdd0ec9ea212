# surgewatch: every target does its own set-up first (vagrant/provision.sh is idempotent).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ADDOPTS ?=
# tiers present in this checkout (an empty tier is not an error)
TIERS := $(foreach t,unit privileged e2e,$(if $(wildcard tests/$(t)/test_*.py),tests/$(t)))

.PHONY: setup snapshot test test-unit test-privileged test-e2e bench doctor vm-test clean demo soak fuzz

setup:
	@bash vagrant/provision.sh "$(CURDIR)"

snapshot: setup
	$(VENV)/bin/surgewatch snapshot --duration 10

doctor: setup
	$(VENV)/bin/surgewatch doctor

test: setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) $(TIERS)

test-unit: setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/unit

test-privileged: setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/privileged

test-e2e: setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/e2e

bench: setup
	$(PY) -m tests.bench

# both production incidents, real HAProxy and nginx in network namespaces (docs/walkthrough.md)
demo: setup
	$(PY) -m tests.e2e.demo $(if $(KEEP),--keep $(KEEP))

# long reliability runs (docs/reliability.md): SOAK_MINUTES of mixed load, then 60 s of churn
SOAK_MINUTES ?= 30
soak: setup
	@mkdir -p build
	$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) --out build/soak.json
	SURGEWATCH_CHURN_S=60 $(PY) -m pytest -ra -s $(PYTEST_ADDOPTS) tests/privileged/test_rel_churn.py

# the hypothesis targets with 20,000 random examples each (make test runs 200, fixed seed)
FUZZ_EXAMPLES ?= 20000
fuzz: setup
	SURGEWATCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SURGEWATCH_FUZZ_RANDOM=1 $(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/unit/test_rel_fuzz.py

vm-test:
	@bash vagrant/vm-test.sh

clean:
	rm -rf $(VENV) build .pytest_cache
