# mailstack tasks. The two that do everything on a fresh machine:
#   make up    - bring the dev stack up (local file:// backend, no Pulumi Cloud account)
#   make test  - install what the tests need and run them (unit, components, contract, policy)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
PYTEST_ARGS ?=

.PHONY: venv deps test lint up preview bench verify dns e2e qr clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard policy/requirements.txt)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		$(if $(wildcard policy/requirements.txt),-r policy/requirements.txt)
	@touch $@

deps:
	@bash tools/install-debian-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv deps lint
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

up: venv
	$(BIN)/python -m tools.up --stack $(STACK)

preview: venv
	$(BIN)/python -m tools.up --stack $(STACK) --preview

bench: venv
	$(BIN)/python -m tools.bench

verify: venv
	$(BIN)/python -m tools.verify --stack $(STACK) $(VERIFY_ARGS)

dns: venv
	$(BIN)/python -m tools.dns --stack $(STACK) $(DNS_ARGS)

e2e: venv
	$(BIN)/python -m pytest tests/e2e -m e2e -v -rs $(PYTEST_ARGS)

qr: venv
	$(BIN)/python -m tools.qr $(PEER) --stack $(STACK)

# Backups (README "Backups"): run now, list, restore a domain, prove the newest snapshots restore.
.PHONY: backup snapshots restore restore-drill
BACKUPS := $(BIN)/python -m tools.backups --stack $(STACK)

backup: venv
	$(BACKUPS) backup $(if $(DOMAIN),--domain $(DOMAIN))

snapshots: venv
	$(BACKUPS) snapshots

restore: venv
	@test -n "$(DOMAIN)" || { echo "usage: make restore DOMAIN=example.org [SNAPSHOT=latest] [FORCE=1]"; exit 2; }
	$(BACKUPS) restore --domain $(DOMAIN) --snapshot $(or $(SNAPSHOT),latest) $(if $(filter 1,$(FORCE)),--force)

restore-drill: venv
	$(BACKUPS) drill $(if $(DOMAIN),--domain $(DOMAIN))

clean-venv:
	rm -rf $(VENV)
