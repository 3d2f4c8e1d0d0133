# budgetd: `make run` starts the daemon on config/budgets.yaml; `make test` runs the tests.
# Both need only python3 (3.11+) and make: everything else goes into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR := $(CURDIR)/var

.PHONY: install run test test-clock-ahead bench profile generate check-generated clean

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./client -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p $(RUN_DIR)
	BUDGETD_STORE_URL="sqlite://$(RUN_DIR)/budgetd.db" $(BIN)/budgetd --config config/budgets.yaml

test: $(STAMP) check-generated
	$(BIN)/pytest $(PYTEST_ARGS)

# The suite with the wall clock a year ahead (CLOCK_AHEAD=+400d for another
# offset): no test may depend on a date a real clock passes. The monotonic
# clock stays real, so timeouts and sleeps behave.
CLOCK_AHEAD ?= +365d
test-clock-ahead: $(STAMP)
	LD_PRELOAD="$$($(BIN)/python -c 'import glob, os, libfaketime; print(glob.glob(os.path.join(os.path.dirname(libfaketime.__file__), "vendor/libfaketime/src/libfaketime.so*"))[0])')" \
	  FAKETIME="$(CLOCK_AHEAD)" DONT_FAKE_MONOTONIC=1 $(BIN)/pytest $(PYTEST_ARGS)

# Generated code is committed; regenerate after editing proto/ or _async.py.
generate: $(STAMP)
	PYTHON=$(BIN)/python scripts/generate_proto.sh
	$(BIN)/python scripts/generate_sync.py

# Fails when the committed generated code differs from a fresh generation.
check-generated: generate
	@git diff --exit-code --stat -- client/budgetd_client/v1 client/budgetd_client/_sync.py client/budgetd_client/_sync_wrap.py \
	  || { echo "generated code is stale: run 'make generate' and commit the result"; exit 1; }

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache

# Benchmarks (not tests): budgetd against the bare gRPC floor, side by side.
bench: $(STAMP)
	$(BIN)/python bench/bench.py

# Where the daemon's time goes under load (py-spy; PROFILE_STORE=redis for Redis).
profile: $(STAMP)
	$(BIN)/python bench/profile.py
