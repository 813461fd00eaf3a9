# limen — two commands do everything: `make run` and `make test`. See README.md.
SHELL := /bin/bash
# The venv is made from Debian's own CPython when there is one: the interpreter a Debian host runs limen with
# (README, "Install it"), built with profile-guided optimisation and LTO. A plain source build that may come
# first on PATH (pyenv's) spent 5-9 % more CPU on the unit tier and per console. PYTHON=... chooses another
# one; after a change of interpreter, `make clean` lets the venv be made again.
PYTHON ?= $(or $(wildcard /usr/bin/python3),python3)
VENV := .venv
BIN := $(VENV)/bin
LIMEN := $(BIN)/limen
HOST ?= 127.0.0.1
PORT ?= 8080
export LIMEN_ISO_DIR ?= /var/lib/limen/isos
PYTEST_ARGS ?=

.PHONY: install host venv web bytecode dist run demo-vm test test-unit test-postgresql test-postgresql-run lint bench bench-stats bench-smoke bench-hosts bench-replicas cluster cluster-down clean

install: host venv web bytecode

host:
	@bash scripts/setup-host.sh

# The venv is rebuilt only when the lock file or pyproject changes.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	@$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# limen (and the bench's processes) compiled once here and read by every process after: Python reads
# __pycache__ even where PYTHONDONTWRITEBYTECODE stops it writing there (this machine's environment sets it),
# and without it every `limen` server started from the checkout compiled all it imports again (~0.1–0.15 s a
# start; the integration and e2e tiers start many), as did the first `make test-unit`. A module changed later
# is compiled again in memory, as before. The tests are collected once for the same reason: pytest keeps each
# test module with its asserts rewritten in __pycache__ (where writing is allowed), ~1 s of a first
# `make test-unit`'s collection otherwise.
bytecode: venv
	@$(BIN)/python -m compileall -q -j0 src bench >/dev/null
	@env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q --collect-only -p no:cacheprovider tests >/dev/null

# npm ci when the lock changed, then the libraries of web/assets.toml are copied into the package
# (src/limen/web/npm), noVNC also joined into one module by esbuild: limen serves them from there, in the
# checkout as from an installed wheel.
web:
	@if [ -f web/package-lock.json ]; then \
	  if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	    (cd web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); \
	  fi; \
	fi
	@$(PYTHON) scripts/bundle_web_assets.py >/dev/null

# dist/limen-<version>.tar.gz and dist/limen-<version>-py3-none-any.whl: the whole product (web UI, noVNC,
# Swagger UI, uPlot, migrations); `pip install dist/limen-*.whl` on a host needs nothing else of the checkout.
dist: venv web
	@rm -rf dist
	@$(BIN)/python -m build --outdir dist . >/dev/null
	@ls dist

demo-vm: install
	@$(LIMEN) vm show demo >/dev/null 2>&1 || $(LIMEN) vm create demo --vcpus 1 --memory 128 --iso limen-grub-demo.iso >/dev/null
	@echo "demo VM 'demo' is defined (boots the GRUB demo ISO)"

run: demo-vm
	@$(LIMEN) user ensure-admin
	@echo "limen: open http://$(HOST):$(PORT)/ (API docs: http://$(HOST):$(PORT)/api/docs); stop with Ctrl-C"
	@$(LIMEN) serve --host $(HOST) --port $(PORT)

# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: compiling limen and rewriting the tests'
# asserts anew costs ~2 s of every run. One process collects, then forks workers that take a test file at a
# time (its module-scoped apps made once): tests/support/forked_workers.py. Two workers more than the cores:
# the tier's tests wait nearly as long as they compute (~12 s beside ~16 s of CPU in one process: the linger and
# deadline tests, the forked-workers tests' own pytest runs, threads), and a core left idle while one waits
# was ~7 % of the wall time on 2 cores with 2 workers against 3, and ~1.4 s of 10.7 with 3 against 4 (the
# workers' part: a replay on 2 cores of each test's CPU and waiting measured in one process; 5 workers would
# give 0.6 s more).
# UNIT_WORKERS=0 runs it in one process. `python -m` puts this directory on sys.path for the -p plugin. The
# tests' temporary files (~2,000 SQLite databases) live in memory (/dev/shm) when it is there: on a disk each
# commit's and checkpoint's fsync waits for it, which a busy disk makes seconds of the run.
# The order a fresh clone (CI's) hands test files out in, the longest first: seconds per test from a full run,
# refreshed by hand now and then (python -m tests.support.forked_workers
# .pytest_cache/v/forked_workers/test_durations tests/forked_durations.json keeps the tests of 0.05 s or more,
# the shorter ones counted in each file's longest); this machine's own last run, in pytest's cache, comes first. A file counts as long as
# the tests a pass takes of it: the PostgreSQL pass leaves some out. Figures per file, which the two passes
# overwrote in turn, counted a 170-second file as 19 s and handed it out late. Without any, a fresh clone hands
# out the files with the most tests first, whatever their length.
FORKED_DURATIONS := tests/forked_durations.json
UNIT_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 2 )))
UNIT_TMPDIR ?= $(if $(wildcard /dev/shm),/dev/shm,$(or $(TMPDIR),/tmp))
UNIT_PYTEST := env -u PYTHONDONTWRITEBYTECODE TMPDIR=$(UNIT_TMPDIR) $(BIN)/python -m pytest -q tests/unit \
  -p tests.support.forked_workers --forked-workers $(UNIT_WORKERS) --forked-durations $(FORKED_DURATIONS)
test-unit: venv
	@$(UNIT_PYTEST) $(PYTEST_ARGS)

# Three pytest processes: the unit tier, then the integration and e2e tiers on SQLite files, then those
# tiers again with every limen on PostgreSQL (test-postgresql). libvirt's test:///default driver and its event
# thread are process-wide, and the integration tests' libvirt faults (a daemon cut away, stalled, restarted)
# must not reach the unit tier. Exit code 5 (no test selected, e.g. by -k) is not a failure of any of them.
# The slow tiers list their slowest tests: a CI run's log says where its hour goes.
# Each slow tier runs in SLOW_WORKERS forked workers (3 by default), a test file at a time, as the unit tier: much
# of their time is waiting (a guest booting, a deadline a test provokes, Chromium drawing), and 3 workers on 2
# cores halved each tier's wall time (SQLite 23.9 -> 11.5 min, PostgreSQL 18.3 -> 9.5). The tests marked
# runs_quiet (a 1-second promise: a revocation ending a console, an event pushed, a console freed) run after
# the others, two at a time: at the load 3 workers make (6-9 on 2 cores) they missed their bound by up to 0.9 s.
# Those marked runs_alone (the system-wide VM cap and the snapshot kill, which count what the whole host holds;
# 500 slow clients, a storm of their own) run last, in one worker. SLOW_WORKERS=0 runs a tier in one process
# (~45 min for both).
SLOWEST ?= --durations=25
SLOW_WORKERS ?= 3
SLOW_PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -p tests.support.forked_workers \
  --forked-workers $(SLOW_WORKERS) --forked-durations $(FORKED_DURATIONS)
test: install
	@$(UNIT_PYTEST) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; \
	$(SLOW_PYTEST) -q $(SLOWEST) tests/integration tests/e2e $(PYTEST_ARGS); rc=$$?; \
	[ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc
	@$(MAKE) --no-print-directory test-postgresql-run

# The integration and e2e tiers again with every limen on PostgreSQL (a throw-away cluster of Debian's
# postgresql package, a database per test) instead of SQLite files: tests/support/databases.py. The tests
# that start a PostgreSQL of their own whatever the run (replicas, the cluster, PostgreSQL's backup and
# sign-in throttle) ran in the SQLite pass already and are not repeated; nor are those marked
# same_on_any_database, which would only run the same again: the benchmarks' smoke runs, the consoles'
# transport tests (bytes, keys, paste and clipboard into real guests, the serial tab) and the browser's tests of
# how pages are served (TLS, what a page fetches, the console page's error paths), whose database work, sign-in,
# ticket and the session's row, every other console test does on both, and what lives in libvirt or in files
# (media, disks, snapshots, the ISO library), whose database work is an action's audit row and a quota check
# that the lifecycle, crash and quota tests run on both. Each forked worker starts its own cluster.
OWN_POSTGRESQL := test_replicas test_cluster test_backup_postgres test_auth_throttle_postgres test_database_down_postgres
test-postgresql: install test-postgresql-run
test-postgresql-run:
	@LIMEN_TEST_DATABASE=postgresql $(SLOW_PYTEST) -q $(SLOWEST) tests/integration tests/e2e \
	  $(foreach name,$(OWN_POSTGRESQL),--ignore=tests/integration/$(name).py) -m 'not same_on_any_database' \
	  $(PYTEST_ARGS); rc=$$?; \
	[ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

lint: venv
	@$(BIN)/ruff check src tests bench scripts
	@$(BIN)/mypy

# The full benchmark: raw TCP, websockify and limen side by side (minutes). `make test` runs its smoke.
bench: install
	@$(BIN)/python -m bench.run --out bench/out/results.json
bench-browser: venv ; @PYTHONPATH=. $(BIN)/python -m bench.browser_click_to_live --runs 10 --warm --out bench/out/browser.json

# The resource sampler with 50 running VMs (libvirt's test driver): CPU % of one core, memory per VM (~4 min).
bench-stats: venv
	@$(BIN)/python -m bench.stats_sampler --out bench/out/stats_sampler.json

# The merged VM list with 1, 10 and 100 simulated hosts (libvirt's test driver, 50 VMs each) and 5 hung ones (~3 min).
bench-hosts: venv
	@PYTHONPATH=. $(BIN)/python -m bench.hosts_simulation --out bench/out/hosts.json

# Consoles per second through HAProxy with one replica behind it, then two, on PostgreSQL and Redis (~2 min).
bench-replicas: venv
	@PYTHONPATH=. $(BIN)/python -m bench.replica_consoles --out bench/out/replicas.json

# A whole cluster on this machine, loopback only (as root): two libvirt hosts (scripts/extra-host.sh on
# 127.0.1.1 and 127.0.1.2), PostgreSQL, Redis, two replicas, HAProxy; a running demo VM on each host.
# It prints the URL and an admin's sign-in and writes .cluster/cluster.json; `make cluster-down` removes it.
cluster: install
	@PYTHONPATH=. $(BIN)/python scripts/cluster.py up --dir .cluster

cluster-down:
	@PYTHONPATH=. $(BIN)/python scripts/cluster.py down --dir .cluster

clean:
	rm -rf $(VENV) web/node_modules .pytest_cache .mypy_cache .ruff_cache test-artifacts
