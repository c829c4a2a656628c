# The two commands: `make run` serves the API; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app
# Hypothesis's example database and caches live in the venv, not the checkout.
export HYPOTHESIS_STORAGE_DIRECTORY := $(CURDIR)/$(VENV)/hypothesis

.PHONY: run test test-fast lint install install-dev tools migrate compile-app bench bench-webhooks fuzz clean

# A stamp per requirements file: reinstall only when it changed.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The workers run with Python's -OO (uwsgi.ini: optimize): compile the
# bytecode they load (bin/compile-optimized), for the installed packages here
# and for the app's own modules each time it is served or tested.
COMPILE_OPTIMIZED = bin/compile-optimized $(BIN)/python

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Once for all the packages installed here: the development ones too, when
# they are (their stamp is a prerequisite only where it exists).
$(VENV)/.compiled: $(VENV)/.installed $(wildcard $(VENV)/.installed-dev) bin/compile-optimized
	$(COMPILE_OPTIMIZED) $(VENV)/lib
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

compile-app: install
	@$(COMPILE_OPTIMIZED)

install: $(VENV)/.compiled

install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask db upgrade

# uwsgi --ini uwsgi.ini, with its start-up banner folded into one
# "serving on" line (deploy/dev_server.py says which lines and why).
run: migrate compile-app
	@$(BIN)/python deploy/dev_server.py

# Nginx (Debian package, only when missing; never started as a service) and
# newman (pinned in postman/package.json, into postman/node_modules) for tests/live.
tools:
	bash deploy/install-tools.sh

test: install-dev tools lint compile-app
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (pinned in requirements-dev.txt, configured in pyproject.toml): lint and formatting.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The in-process tests on SQLite only, in two processes (pytest-xdist):
# nothing from tests/live (no uWSGI, Nginx, worker or newman) or tests/fuzz (so
# no schemathesis plugin either), no PostgreSQL-only case; the Redis-backed cases
# run when Redis is there and skip, with the reason, when not. Each xdist worker
# has its own run id (scratch databases, Redis keys, buckets). Nothing is written
# into the checkout: compiled bytecode (pytest's rewritten tests included) is
# kept in $(VENV)/pycache, where the next run finds it.
test-fast: install-dev
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache TEST_BACKENDS=sqlite \
		$(BIN)/python -m pytest -n 2 -p no:schemathesis -m "not live and not postgres" \
		--ignore=tests/live --ignore=tests/fuzz -p no:cacheprovider -q $(PYTEST_ARGS)

# Deeper fuzzing than `make test` does: new random cases each run, for FUZZ_MAX_TIME seconds.
# Replay a failure with `FUZZ_SEED=<the seed it printed> make fuzz`.
FUZZ_MAX_EXAMPLES ?= 1000
FUZZ_MAX_TIME ?= 600
FUZZ_SEED ?= random
fuzz: install-dev
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_MAX_TIME=$(FUZZ_MAX_TIME) FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/python -m pytest tests/fuzz -s

# Not part of `make test`: wrk against the real server and a bare Flask app, then the
# mixed run (readers beside a hostile client, through Nginx and straight to uWSGI),
# then the filtered lists at 200,000 items on PostgreSQL; each writes its section
# of bench/RESULTS.md.
# The benchmarks' servers run in a virtualenv of production's requirements alone:
# worker memory is one of the figures, and the development requirements add
# modules the workers would import (cryptography, through PyJWT). The scripts
# themselves run in $(VENV).
BENCH_VENV ?= $(CURDIR)/.venv-bench
$(BENCH_VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(BENCH_VENV)/.compiled: $(BENCH_VENV)/.installed bin/compile-optimized
	bin/compile-optimized $(BENCH_VENV)/bin/python $(BENCH_VENV)/lib
	touch $@

bench bench-webhooks: export BENCH_VENV := $(BENCH_VENV)

bench: install-dev tools compile-app $(BENCH_VENV)/.compiled
	bench/install-wrk.sh
	$(BIN)/python bench/run.py
	$(BIN)/python bench/floor.py
	$(BIN)/python bench/front_door.py
	$(BIN)/python bench/image_bench.py
	$(BIN)/python bench/mixed.py
	$(BIN)/python bench/filters.py

# Not part of `make test` either: the API with and without one subscribed webhook
# endpoint; writes the "Webhooks" section of bench/RESULTS.md.
bench-webhooks: install-dev compile-app $(BENCH_VENV)/.compiled
	bench/install-wrk.sh
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache postman/node_modules
