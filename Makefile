# surgewatch: every target does its own set-up first (both scripts are idempotent):
# `setup` what surgewatch needs to run (setup/runtime.sh), `test-setup` adds the test tools
# (tests/setup.sh: servers, podman, compilers, pytest), for the test and bench targets.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ADDOPTS ?=
# tiers present in this checkout (an empty tier is not an error)
TIERS := $(foreach t,unit privileged e2e,$(if $(wildcard tests/$(t)/test_*.py),tests/$(t)))

.PHONY: deb image setup test-setup snapshot test test-unit test-privileged test-e2e bench doctor vm-test clean demo soak fuzz

setup:
	@bash setup/runtime.sh "$(CURDIR)"

test-setup: setup
	@bash tests/setup.sh "$(CURDIR)"

snapshot: setup
	$(VENV)/bin/surgewatch snapshot --duration 10

doctor: setup
	$(VENV)/bin/surgewatch doctor

test: test-setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) $(TIERS)

test-unit: test-setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/unit

test-privileged: test-setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/privileged

test-e2e: test-setup
	$(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/e2e

bench: test-setup
	$(PY) -m tests.bench && $(PY) -m tests.bench.channels

# both production incidents, real HAProxy and nginx in network namespaces (docs/walkthrough.md)
demo: test-setup
	$(PY) -m tests.e2e.demo $(if $(KEEP),--keep $(KEEP))

# long reliability runs (docs/reliability.md): SOAK_MINUTES of mixed load, then 60 s of churn
SOAK_MINUTES ?= 30
soak: test-setup
	@mkdir -p build
	$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) --out build/soak.json
	SURGEWATCH_CHURN_S=60 $(PY) -m pytest -ra -s $(PYTEST_ADDOPTS) tests/privileged/test_rel_churn.py

# the hypothesis targets with 20,000 random examples each (make test runs 200, fixed seed)
FUZZ_EXAMPLES ?= 20000
fuzz: test-setup
	SURGEWATCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SURGEWATCH_FUZZ_RANDOM=1 $(PY) -m pytest -ra $(PYTEST_ADDOPTS) tests/unit/test_rel_fuzz.py tests/unit/test_rel_fuzz_views.py

vm-test:
	@bash vagrant/vm-test.sh

# the Debian package: build/surgewatch_<version>_all.deb (README.md, "Install")
deb:
	@bash debian/make-deb "$(CURDIR)"

# the container image localhost/surgewatch:<version> (docs/deploy/README.md), from the .deb
image:
	@bash debian/make-image "$(CURDIR)"

clean:
	rm -rf $(VENV) build .pytest_cache

# `sudo make install`: the command, its systemd unit, man page and bash completion
# (README.md, "Install"). The command is a link to the venv `make setup` made here, so
# this checkout stays where it is. PREFIX=/opt/surgewatch etc. also rewrites the unit's
# ExecStart; DESTDIR stages into a directory (no daemon-reload then; the last line names
# the staged paths).
PREFIX ?= /usr/local
UNIT_DIR ?= /etc/systemd/system
.PHONY: install
install: setup
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(UNIT_DIR)
	ln -sfn $(CURDIR)/$(VENV)/bin/surgewatch $(DESTDIR)$(PREFIX)/bin/surgewatch
	install -m 0644 docs/surgewatch.8 $(DESTDIR)$(PREFIX)/share/man/man8/surgewatch.8
	_SURGEWATCH_COMPLETE=bash_source $(VENV)/bin/surgewatch > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/surgewatch
	sed 's|/usr/local/|$(PREFIX)/|g' docs/surgewatch.service > $(DESTDIR)$(UNIT_DIR)/surgewatch.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/surgewatch.service $(DESTDIR)$(PREFIX)/share/bash-completion/completions/surgewatch
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed $(DESTDIR)$(PREFIX)/bin/surgewatch, $(DESTDIR)$(UNIT_DIR)/surgewatch.service, $(DESTDIR)$(PREFIX)/share/man/man8/surgewatch.8, $(DESTDIR)$(PREFIX)/share/bash-completion/completions/surgewatch$(if $(DESTDIR),,; start it: systemctl enable --now surgewatch)"
