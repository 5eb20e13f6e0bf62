# Lintas: the two commands are `make up` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Never let uv download a Python: the machine's python3 (3.11+) is the interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3
UV_VERSION := 0.13.8
# uv from the PATH, else the project's own copy (tools/install_uv.py: no pip, so an
# OS-managed python3 (PEP 668) is fine).
UV := $(shell command -v uv 2>/dev/null || echo "$(CURDIR)/.lintas/tools/bin/uv")
PACKAGES := lintas_shared lintas_intake lintas_referral lintas_notify lintas_console lintas_tools lintas_deploy lintas_faults lintas_bench

.PHONY: help install up down status test lint typecheck format provision browser clean faults bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install uv if missing (into .lintas/tools), then the workspace from uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 tools/install_uv.py --version $(UV_VERSION) \
		--dest .lintas/tools --cache .lintas/cache/uv
	@$(UV) sync --frozen --quiet

provision: install ## fetch the Kafka jars and build FerretDB (cached under .lintas/cache)
	@$(UV) run lintas-stack provision

up: install ## start Kafka, FerretDB and the three services with demo data
	@$(UV) run lintas up

down: ## stop everything `make up` started
	@if [ -d .venv ]; then $(UV) run --frozen lintas down; else echo "nothing to stop"; fi

status: install ## show which Lintas processes are running
	@$(UV) run lintas status

lint: install ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: install ## mypy --strict over every package
	$(UV) run mypy $(addprefix -p ,$(PACKAGES))

format: install ## apply ruff formatting and safe fixes
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

# Debian's Chromium for the browser tests (Playwright drives it; never `playwright install`).
browser: ## install Debian's chromium for the browser tests, if it is missing
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then \
		echo "browser tests use $$(command -v chromium || echo /usr/bin/chromium)"; \
	else \
		sudo=""; \
		if [ "$$(id -u)" != 0 ]; then \
			if command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
			else echo "chromium is missing and installing it needs root (or sudo): apt-get install -y chromium" >&2; exit 1; fi; \
		fi; \
		echo "installing Debian's chromium for the browser tests: $${sudo:+$$sudo }apt-get install -y chromium"; \
		if ! $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; then \
			echo "apt-get install failed: running apt-get update, then installing again"; \
			$$sudo apt-get update && \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		fi; \
	fi

test: lint typecheck browser ## lint, typecheck, then unit, integration, browser and end-to-end tests
	$(UV) run pytest

faults: install ## fault injection: kills, restarts, rewind, poison; checks lost = duplicates = 0 (FAULTS_ARGS=...)
	$(UV) run python -m lintas_faults $(FAULTS_ARGS)

bench: install ## load, baselines, memory, import and profiles on fresh servers (ports 24000-24199); BENCH_ARGS=--quick
	@$(UV) run python -m lintas_bench $(BENCH_ARGS)

clean: down ## stop everything and delete local state (.lintas/)
	rm -rf .lintas
