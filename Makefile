# opsat — two commands do everything: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES := intake sla feedback risk appraisal
# service name -> its folder under services/ and its console script opsat-<name>
SERVICE_DIR_intake := intake
SERVICE_DIR_sla := sla_monitor
SERVICE_DIR_feedback := feedback
SERVICE_DIR_risk := risk
SERVICE_DIR_appraisal := appraisal
INFRA := deploy/local/infra.sh
LOCAL := deploy/local/services.sh
PYTHON ?= python3
# Python's own default: compiled modules are cached. With caching off (some shells export this), every service,
# worker and CLI process the tests start compiled its imports again: 3.1 s against 1.2 s for one import of a service.
unexport PYTHONDONTWRITEBYTECODE
TOOLS := deploy/tools/tools.sh
# The server-side deployment tests join `make test` once their tools are in the cache (make test-deploy).
DEPLOY_TESTS = $$($(TOOLS) cached || echo --ignore=tests/deploy)

.PHONY: install lint infra run stop status test test-unit test-integration test-faults test-contract \
	test-deploy tools tools-helm generate compose-env bench bench-scale docs demo clean help

help:
	@echo "make run    install, start Kafka + PostgreSQL + every service, print where they listen"
	@echo "make test   install, start what the tests need, run every test"
	@echo "make stop   stop the services and the local Kafka + PostgreSQL"
	@echo "make demo   load a demo month into the services make run started (DEMO_ARGS='--requests 500')"
	@echo "make bench  run the benchmarks (results in bench/results/)"
	@echo "make bench-scale [SCALE=1]  a year of operation loaded, the same figures beside an empty store"
	@echo "make test-faults  the fault-injection suite at full length (about 6 minutes)"
	@echo "make test-deploy  build helm, promtool, etcd, kube-apiserver (once) and validate deploy/ against them"
	@echo "make generate     regenerate docker-compose.yml and the Grafana dashboards from the service list"
	@echo "make compose-env  write .local/compose.env (random passwords) for docker compose --env-file"

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

# A realistic month through the public APIs of the services `make run` started; repeating it adds nothing.
DEMO_ARGS ?=
demo: install
	$(PY) -m tools.demo_month $(DEMO_ARGS)

stop:
	@-$(LOCAL) down $(SERVICES)
	@$(INFRA) down

status:
	@-$(INFRA) status
	@-$(LOCAL) status $(SERVICES)

test: install lint infra tools-helm
	$(VENV)/bin/pytest $(DEPLOY_TESTS)

lint: install
	$(VENV)/bin/ruff check libs services tests bench tools

test-unit: install tools-helm
	$(VENV)/bin/pytest tests/unit

test-integration: install infra
	$(VENV)/bin/pytest tests/integration tests/e2e

# Every fault at incident-drill length; `make test` runs the same suite in its quick form.
test-faults: install infra
	OPSAT_FAULTS=full $(VENV)/bin/pytest -s tests/faults

# Every service's OpenAPI contract with more generated cases than `make test` (minutes each, not one).
test-contract: install infra
	$(VENV)/bin/pytest -s $$(ls tests/integration/*/test_*openapi_contract.py) --contract-examples 50 --contract-stateful

# Helm renders the chart in the offline deployment tests; built from its Go module once.
tools-helm:
	@$(TOOLS) build helm

tools:
	@$(TOOLS) build

# The chart rendered against a real kube-apiserver (dry run), and promtool over the alerts.
test-deploy: install tools
	$(VENV)/bin/pytest tests/unit/deploy tests/deploy

# docker-compose.yml and the dashboards follow the services in deploy/k8s/opsat/values.yaml.
generate: install
	$(PY) deploy/tools/compose.py
	$(PY) deploy/tools/dashboards.py

compose-env: .local/compose.env
.local/compose.env:
	@deploy/compose/env.sh $@

bench: install infra
	$(PY) bench/run.py

# A year of operation (1,000,000 requests, 10,000,000 events) against an empty store, side by side;
# SCALE=0.1 for a tenth. Loading a year takes minutes and about 10 GB of disk.
SCALE ?= 1
bench-scale: install infra
	$(PY) bench/scale.py --scale $(SCALE)

# The event contracts other systems consume, committed so they can be read without running anything.
docs: install
	$(foreach s,$(SERVICES),$(VENV)/bin/opsat-$(s) asyncapi > docs/events/$(s).asyncapi.json;)

clean: stop
	rm -rf .local $(VENV)
