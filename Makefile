# Two entry points for a fresh machine: `make demo` and `make test`.
# Every target installs what it needs itself; nothing relies on hand-installed tools.
#
# What is installed is recorded in stamps, one per set, so that nothing is installed twice:
# `make demo` installs the package with the `demo` extra (its runtime dependencies and an
# ASGI server) and the npm packages the page needs; `make test` adds the `dev` extra and
# the npm packages the tests need. The stamps of a larger set vouch for the smaller ones.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
DEMO := $(VENV)/.demo-stamp
CLUSTER := $(VENV)/.cluster-stamp
DEV := $(VENV)/.dev-stamp
BENCH := $(VENV)/.bench-stamp
NODE_DEMO := node_modules/.demo-stamp
NODE_DEV := node_modules/.dev-stamp
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: demo cluster-demo test test-stress lint typecheck docs dist pytest bench soak deps \
	clean redis-server node browser-deps

# ------------------------------------------------------------------ installing

$(PY):
	@echo "rooms: creating $(VENV)"
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
		$(APT_INSTALL) python3-venv && $(PYTHON) -m venv $(VENV); }

# `-e`: the checkout is the package (a path entry, which type checkers follow too).
$(DEMO): pyproject.toml | $(PY)
	@echo "rooms: installing the package and the demo's dependencies"
	@$(PIP) -e '.[demo]'
	@touch $@

$(CLUSTER): pyproject.toml | $(PY)
	@echo "rooms: installing the package, the demo's dependencies and the Redis client"
	@$(PIP) -e '.[demo,redis]'
	@touch $@ $(DEMO)

$(DEV): pyproject.toml | $(PY)
	@echo "rooms: installing the package and the development tools"
	@$(PIP) -e '.[dev]'
	@touch $@ $(CLUSTER) $(DEMO)

$(BENCH): pyproject.toml | $(PY)
	@echo "rooms: installing the package, the development tools and the benchmarks' tools"
	@$(PIP) -e '.[bench]'
	@touch $@ $(DEV) $(CLUSTER) $(DEMO)

node:
	@command -v npm >/dev/null || { echo "rooms: installing Node"; $(APT_INSTALL) nodejs npm; }

# The page needs socket.io-client alone; the tests need the dev dependencies too (Node's
# reference server, puppeteer-core). `npm ci` starts from an empty node_modules each time.
$(NODE_DEMO): package.json package-lock.json | node
	@echo "rooms: installing the JavaScript client (npm ci --omit=dev)"
	@npm ci --omit=dev --no-audit --no-fund --loglevel=error
	@touch $@

$(NODE_DEV): package.json package-lock.json | node
	@echo "rooms: installing the JavaScript clients and test tools (npm ci)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@ $(NODE_DEMO)

redis-server:
	@command -v redis-server >/dev/null || { $(APT_INSTALL) redis-server; }

# Debian's chromium for tests/browser (driven by puppeteer-core, which `npm ci` installs).
browser-deps:
	@command -v chromium >/dev/null || { $(APT_INSTALL) chromium; }

deps: $(DEV) $(NODE_DEV)

# ------------------------------------------------------------------ running

demo: $(DEMO) $(NODE_DEMO)
	$(PY) -m uvicorn examples.chat.app:app --host 127.0.0.1 --port 8000

# The chat example as a cluster: Redis and three processes (see examples/cluster/run.py).
cluster-demo: $(CLUSTER) $(NODE_DEMO) redis-server
	$(PY) -m examples.cluster.run

# ------------------------------------------------------------------ checking

lint: $(DEV)
	$(VENV)/bin/ruff check rooms tests examples benchmarks
	$(VENV)/bin/ruff format --check rooms tests examples benchmarks

typecheck: $(DEV)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict examples

# The docs site into site/, every warning an error (mkdocs.yml says strict).
# NO_MKDOCS_2_WARNING: Material's notice about MkDocs' future, printed on every build.
docs: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# A wheel and an sdist into dist/, as PyPI would take them.
dist: $(DEV)
	rm -rf dist
	$(PY) -m build --outdir dist
	$(VENV)/bin/twine check --strict dist/*

pytest: deps redis-server browser-deps
	$(PY) -m pytest -q

test: lint typecheck docs pytest

# `make test`'s pytest while a CPU hog per core (at normal priority, no nice) keeps the machine
# busy: the suite must not depend on timing it does not control (DESIGN §7). The hogs end with
# the recipe however it ends (the EXIT trap; INT and TERM exit through it).
test-stress: deps redis-server browser-deps
	@hogs=""; trap 'kill $$hogs 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	for core in $$(seq $$(getconf _NPROCESSORS_ONLN)); do \
		$(PY) -c 'while True: pass' & hogs="$$hogs $$!"; \
	done; \
	echo "CPU hogs:$$hogs"; \
	$(PY) -m pytest -q

bench: $(BENCH) $(NODE_DEV) redis-server
	$(PY) benchmarks/run.py

# Memory follows connections: RSS through churn, a slow consumer and an attachment flood.
soak: $(BENCH) $(NODE_DEV)
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) node_modules site dist
