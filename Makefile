# Two entry points for a fresh machine: `make demo` and `make test`.
# Every target installs what it needs itself; nothing relies on hand-installed tools.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
NODE_STAMP := node_modules/.deps-stamp

.PHONY: demo cluster-demo test test-stress lint typecheck pytest bench soak deps clean redis-server

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

redis-server:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

deps: $(STAMP) $(NODE_STAMP)

demo: deps
	$(PY) -m uvicorn examples.chat.app:app --host 127.0.0.1 --port 8000

# The chat example as a cluster: Redis and three processes (see examples/cluster/run.py).
cluster-demo: deps redis-server
	$(PY) -m examples.cluster.run

lint: $(STAMP)
	$(VENV)/bin/ruff check rooms tests examples benchmarks
	$(VENV)/bin/ruff format --check rooms tests examples benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict examples

pytest: deps redis-server
	$(PY) -m pytest -q

test: lint typecheck pytest

# `make test`'s pytest while a CPU hog per core (at normal priority, no nice) keeps the machine
# busy: the suite must not depend on timing it does not control (DESIGN §7). The hogs end with
# the recipe however it ends (the EXIT trap; INT and TERM exit through it).
test-stress: deps redis-server
	@hogs=""; trap 'kill $$hogs 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	for core in $$(seq $$(getconf _NPROCESSORS_ONLN)); do \
		$(PY) -c 'while True: pass' & hogs="$$hogs $$!"; \
	done; \
	echo "CPU hogs:$$hogs"; \
	$(PY) -m pytest -q

bench: deps redis-server
	$(PY) benchmarks/run.py

# Memory follows connections: RSS through churn, a slow consumer and an attachment flood.
soak: deps
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) node_modules
