# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Newest releases of the older openai majors, for the compatibility runs.
OPENAI_1 ?= 1.109.1
OPENAI_2 ?= 2.54.0

.PHONY: demo test unit integration lint typecheck pytest compat prices-newest coexist-venvs sdk-suite sdk-suite-compat bench bench-micro bench-compare bench-instructions check-instructions bench-outage bench-soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Every install takes the CI pins (.ci/constraints.txt): the price data at a known version.
CONSTRAINTS := .ci/constraints.txt

$(VENV)/.dev-installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

demo: $(VENV)/.dev-installed
	$(BIN)/llmmeter demo

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# On PYTEST_WORKERS processes (pytest-xdist); tests marked `alone` run by themselves
# (tests/conftest.py). PYTEST_WORKERS=0 runs everything in this one process.
PYTEST_WORKERS ?= 2

pytest: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

test: lint typecheck pytest

# The fast half of the suite (no processes, real servers or load), to run while working.
unit: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests/unit

# The other half: processes, real Prometheus and Phoenix, load (docs/testing.md).
integration: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests/integration

# The suite against the newest openai 1.x and 2.x, each in its own virtualenv.
.venv-openai%/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv .venv-openai$*
	.venv-openai$*/bin/python -m pip install -q --upgrade pip
	.venv-openai$*/bin/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]" "openai==$(OPENAI_$*)"
	touch $@

# (The coexistence test runs in build/coexist/'s own virtualenvs whatever runs pytest: once,
# in `make test`, is enough.)
COMPAT_PYTEST := -m pytest -q -n $(PYTEST_WORKERS) --ignore=tests/integration/test_other_instrumentations.py

compat: .venv-openai1/.installed .venv-openai2/.installed
	.venv-openai1/bin/python $(COMPAT_PYTEST)
	.venv-openai2/bin/python $(COMPAT_PYTEST)

# The pricing tests (rates, costs on spans, providers, the CLI's printed figures) against the
# newest genai-prices that pyproject's range admits, in its own virtualenv without the pins.
PRICES_TESTS := tests/unit/test_pricing.py tests/unit/test_pricing_recordings.py \
	tests/unit/test_providers.py tests/unit/test_cli.py tests/unit/test_cli_policy.py
PRICES_NEWEST := .venv-prices-newest

$(PRICES_NEWEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PRICES_NEWEST)
	$(PRICES_NEWEST)/bin/python -m pip install -q --upgrade pip
	$(PRICES_NEWEST)/bin/python -m pip install -q -e ".[dev]"
	touch $@

prices-newest: $(PRICES_NEWEST)/.installed
	$(PRICES_NEWEST)/bin/python -m pip install -q --upgrade "$$($(PRICES_NEWEST)/bin/python -c \
		'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(next(d for d in deps if d.startswith("genai-prices")))')"
	$(PRICES_NEWEST)/bin/python -c 'import genai_prices; print("genai-prices", genai_prices.__version__)'
	$(PRICES_NEWEST)/bin/python -m pytest -q $(PRICES_TESTS)

# The other OpenAI instrumentations, each in its own virtualenv under build/coexist/ (pinned in
# tests/coexist/requirements/), for tests/integration/test_other_instrumentations.py.
coexist-venvs:
	bash tests/coexist/setup.sh

# The openai SDK's own test suite, from the installed version's sdist, run plain, with llmmeter
# instrumented, and strict; fails if a test passes plain and not instrumented (docs/reliability.md).
# SDK_SUITE_ARGS passes options to tests/sdk_suite/run.py, e.g. "-n 0" or "-- tests/test_client.py".
sdk-suite: $(VENV)/.dev-installed
	$(BIN)/python tests/sdk_suite/run.py $(SDK_SUITE_ARGS)

# The same against the newest openai 1.x and 2.x, in the compatibility virtualenvs.
sdk-suite-compat: .venv-openai1/.installed .venv-openai2/.installed
	.venv-openai1/bin/python tests/sdk_suite/run.py $(SDK_SUITE_ARGS)
	.venv-openai2/bin/python tests/sdk_suite/run.py $(SDK_SUITE_ARGS)

# The full benchmark (docs/performance.md): prints the tables and records them in the docs.
bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench.py --write-docs docs/performance.md

# The focused scripts: pricing against genai-prices' own computation, policy decisions,
# how fast `llmmeter report` reads a file.
bench-micro: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/pricing.py
	$(BIN)/python benchmarks/policy.py
	$(BIN)/python benchmarks/readers.py

# llmmeter against the other OpenAI instrumentations, each in its own virtualenv under
# build/bench-compare/ (optional: ~15 min, ~600 MB; docs/performance-compare.md).
bench-compare: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/compare.py $(COMPARE_ARGS)

# Instructions per call under valgrind's callgrind, for llmmeter, the floor and the other
# instrumentations (their virtualenvs as bench-compare builds them), and start-up; recorded in
# docs/performance.md (~40 min on 2 cores). INSTRUCTIONS_ARGS, e.g. "--only main --cases chat".
bench-instructions: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/instructions.py --write-docs docs/performance.md $(INSTRUCTIONS_ARGS)

# CI: fails when llmmeter's instructions over bare grow more than 5 % against the floor's
# (benchmarks/instructions.json; `benchmarks/instructions.py --check --update` rewrites it).
check-instructions: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/instructions.py --check

# Call latency while the OTLP endpoint is down, hanging or erroring (docs/reliability.md).
bench-outage: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/outage.py

# Memory over 100,000 calls, streams abandoned included (docs/reliability.md).
bench-soak: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .venv-openai1 .venv-openai2 $(PRICES_NEWEST) build/bench-compare build/coexist build/sdk-suite .mypy_cache .pytest_cache .ruff_cache
