# Two commands do all set-up on a fresh clone (see README):
#   make run    the main job: the examples in recordings.d/ against the emulator
#   make test   the whole test suite
# `make test-fast` is the quick local selection (no slow, e2e, postgres or reliability test).
# `make check` runs every static check (ruff, import-linter, mypy --strict) and the tests.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast check lint typecheck bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the daemon (`orchestrator run`) on the examples against the built-in
# emulator with the embedded SQLite store (state in .demo/); it shows a start, a live
# layout change and a stop, then runs until Ctrl-C, which ends it with status 0 (the
# script takes the terminal's Ctrl-C from make: see scripts/demo.py). DEMO_ARGS passes
# options to the script, e.g. `make run DEMO_ARGS="--step 5"`.
run: $(STAMP)
	@$(PY) scripts/demo.py $(DEMO_ARGS)

# The whole suite on pytest-xdist workers. Most tests wait (on a child process, a
# window, a resync, a 60 s token) rather than compute, so more workers than the CI
# machine's 2 cores keep both busy: a full run with 5 workers left the cores idle half
# the time (vmstat), and the rollover modules hold a worker each for minutes while
# using almost no CPU. WORKERS=7 is about 13 % faster than 5 on clean clones, 9 no
# faster than 7 (README, "Running the tests"). --dist loadscope runs each test module
# on one worker, in file order (its module fixtures are built once; a figures test
# follows the test it reports on);
# --no-loadscope-reorder hands the modules out longest first, as tests/conftest.py
# sorts them. Each worker starts its own throwaway PostgreSQL cluster when it first
# needs one.
WORKERS ?= 7
XDIST   := -n $(WORKERS) --dist loadscope --no-loadscope-reorder

# pytest exits 5 when it collected no test: that is a failure here too,
# reported with a clear message instead of a silent green run.
# The Debian packages the browser and alert-rule tests need (chromium, prometheus's
# promtool): installed when missing and run as root (CI); otherwise those tests skip.
system-deps:
	@sh scripts/system-deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The quick selection for local work: what needs no child process, no PostgreSQL and
# no long wait (the markers are described in pyproject.toml). CI runs `make test`.
FAST := not slow and not e2e and not postgres and not reliability

test-fast: $(STAMP)
	$(PY) -m pytest -m "$(FAST)" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check orchestrator tests benchmarks scripts
	$(PY) -m ruff format --check orchestrator tests benchmarks scripts
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy orchestrator

check: lint typecheck test

# The speed targets (README, "Benchmarks"); results are recorded by hand in
# benchmarks/results-*.md with the date and machine.
bench: $(STAMP)
	$(PY) benchmarks/validate_bench.py
	$(PY) benchmarks/validate_bench.py --per-file 1
	$(PY) benchmarks/ratelimit_bench.py
	$(PY) benchmarks/daemon_load_bench.py
	$(PY) benchmarks/daemon_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
