# budgetd: `make run` starts the daemon on config/budgets.yaml; `make test` runs the tests.
# Both need only python3 (3.11+) and make: everything else goes into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= $(CURDIR)/var
# Where `make run` listens (config/budgets.yaml reads it) and `make budgetctl` connects.
DEFAULT_LISTEN := 127.0.0.1:50051
BUDGETD_LISTEN ?= $(DEFAULT_LISTEN)
# Where `make run` serves the dashboard (config/budgets.yaml reads it).
BUDGETD_DASHBOARD_LISTEN ?= 127.0.0.1:8080

.PHONY: install run budgetctl lint test test-clock-ahead bench profile generate check-generated clean

$(STAMP): pyproject.toml client/pyproject.toml
	@echo "installing dependencies into $(VENV) (first run, or after a pyproject.toml changed: a minute or so)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./client -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

# `exec`: budgetd replaces the recipe's shell, so it is make's own child. Make
# passes a SIGTERM on to it and waits for its drain; Ctrl-C reaches it directly;
# and `kill <pid>` of the PID budgetd prints stops it. Without exec the shell in
# between died on SIGTERM and left budgetd running, holding the SQLite file.
run: $(STAMP)
	mkdir -p $(RUN_DIR)
	@exec env BUDGETD_STORE_URL="sqlite://$(RUN_DIR)/budgetd.db" BUDGETD_LISTEN="$(BUDGETD_LISTEN)" \
	  BUDGETD_DASHBOARD_LISTEN="$(BUDGETD_DASHBOARD_LISTEN)" \
	  BUDGETD_STATUS_HINT='make budgetctl ARGS=status$(if $(filter-out $(DEFAULT_LISTEN),$(BUDGETD_LISTEN)), BUDGETD_LISTEN=$(BUDGETD_LISTEN))' \
	  $(BIN)/budgetd --config config/budgets.yaml

# budgetctl against `make run`'s daemon: make budgetctl ARGS="status"
budgetctl: $(STAMP)
	BUDGETD_ADDRESS="$(BUDGETD_LISTEN)" $(BIN)/budgetctl $(ARGS)

# The tests run in parallel (pytest-xdist), three workers per core: most of a
# test's time is spent waiting on the daemons and servers it starts (each on
# free ports of its own). PYTEST_PARALLEL= runs them in one process.
PYTEST_PARALLEL ?= -n $(shell echo $$((3 * $$(nproc 2>/dev/null || echo 1))))
test: $(STAMP) lint check-generated
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# ruff (style and likely bugs) and mypy (types: the client ships py.typed) on
# budgetd/ and client/; either failing fails `make test`.
lint: $(STAMP)
	$(BIN)/ruff check budgetd client
	$(BIN)/mypy

# The suite with the wall clock a year ahead (CLOCK_AHEAD=+400d for another
# offset): no test may depend on a date a real clock passes. The monotonic
# clock stays real, so timeouts and sleeps behave.
CLOCK_AHEAD ?= +365d
test-clock-ahead: $(STAMP)
	LD_PRELOAD="$$($(BIN)/python -c 'import glob, os, libfaketime; print(glob.glob(os.path.join(os.path.dirname(libfaketime.__file__), "vendor/libfaketime/src/libfaketime.so*"))[0])')" \
	  FAKETIME="$(CLOCK_AHEAD)" DONT_FAKE_MONOTONIC=1 $(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Generated code is committed; regenerate after editing proto/, the client's
# _async*.py or tests/e2e/test_async_client.py.
generate: $(STAMP)
	PYTHON=$(BIN)/python scripts/generate_proto.sh
	$(BIN)/python scripts/generate_sync.py

# Fails when the committed generated code differs from a fresh generation: the
# stubs are regenerated and compared with git; the sync client and tests are
# compared without writing (--check also fails on a rewrite rule that is unused).
check-generated: $(STAMP)
	@PYTHON=$(BIN)/python scripts/generate_proto.sh >/dev/null
	@test -z "$$(git status --porcelain -- client/budgetd_client/v1)" \
	  || { git status --short -- client/budgetd_client/v1; \
	       echo "generated stubs are stale: run 'make generate' and commit the result"; exit 1; }
	$(BIN)/python scripts/generate_sync.py --check

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache

# Benchmarks (not tests): budgetd against the bare gRPC floor, side by side.
bench: $(STAMP)
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_headroom.py
	$(BIN)/python bench/bench_tags.py
	$(BIN)/python bench/bench_dashboard.py
	$(BIN)/python bench/bench_reconcile.py

# Where the daemon's time goes under load (py-spy; PROFILE_STORE=redis for Redis).
profile: $(STAMP)
	$(BIN)/python bench/profile.py
