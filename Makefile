# opsat — two commands do everything: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES := intake sla
# service name -> its folder under services/ and its console script opsat-<name>
SERVICE_DIR_intake := intake
SERVICE_DIR_sla := sla_monitor
INFRA := deploy/local/infra.sh
LOCAL := deploy/local/services.sh
PYTHON ?= python3

.PHONY: install lint infra run stop status test test-unit test-integration bench docs clean help

help:
	@echo "make run    install, start Kafka + PostgreSQL + every service, print where they listen"
	@echo "make test   install, start what the tests need, run every test"
	@echo "make stop   stop the services and the local Kafka + PostgreSQL"
	@echo "make bench  run the benchmarks (results in bench/results/)"

# One virtualenv for the monorepo; every package editable, versions pinned by constraints.txt.
install: $(VENV)/.installed
$(VENV)/.installed: constraints.txt libs/common/pyproject.toml $(foreach s,$(SERVICES),services/$(SERVICE_DIR_$(s))/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	@$(PY) -m pip install -q --disable-pip-version-check "$$(grep '^uv==' constraints.txt)"
	$(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e 'libs/common[testing]' \
		$(foreach s,$(SERVICES),-e services/$(SERVICE_DIR_$(s)))
	@touch $@

infra:
	@$(INFRA) up

run: install infra
	@$(LOCAL) up $(SERVICES)

stop:
	@-$(LOCAL) down $(SERVICES)
	@$(INFRA) down

status:
	@-$(INFRA) status
	@-$(LOCAL) status $(SERVICES)

test: install lint infra
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check libs services tests bench

test-unit: install
	$(VENV)/bin/pytest tests/unit

test-integration: install infra
	$(VENV)/bin/pytest tests/integration tests/e2e

bench: install infra
	$(PY) bench/run.py

# The event contracts other systems consume, committed so they can be read without running anything.
docs: install
	$(foreach s,$(SERVICES),$(VENV)/bin/opsat-$(s) asyncapi > docs/events/$(s).asyncapi.json;)

clean: stop
	rm -rf .local $(VENV)
