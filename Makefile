# One command to run the demo, one to serve, one to run the tests; each sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The dev tools that pin their own versions of what the runtime uses (aws-sam-cli pins click and boto3, its SAM
# translator pydantic) live in a venv of their own, so installing them never changes what `make run` runs on;
# the tests call them there (tests/conftest.py).
TOOLS ?= .venv-tools
PORT ?= 8000
# Quiet: errors only (with -q alone, pip still warns once per package that an extra index lacks, and the build
# backend's deprecation notices pass through).
PIP := pip install -qq --disable-pip-version-check

# PyTorch only builds engines here (infer runs on ONNX Runtime): on a machine without an NVIDIA GPU its CPU-only
# build (~0.7 GB installed; not measured here) instead of PyPI's, which brings CUDA libraries (5.4 GB installed,
# measured here: torch 1.2, nvidia-* 3.3, triton 0.9). Its index unreachable (as on this project's machine): PyPI's.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
define TORCH_CPU_FIRST
if command -v nvidia-smi > /dev/null; then :; \
elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; \
then $(BIN)/$(PIP) --index-url $(TORCH_CPU_INDEX) torch==2.14.1 torchvision==0.29.1; \
else echo "PyTorch's CPU-only index cannot be reached: installing PyPI's build (5.4 GB with CUDA libraries)"; fi
endef

.PHONY: setup demo run test test-fast lint test-store-versions bench bench-peer mutation clean

# Everything: the system, the tests' and benches' tools. `make demo` and `make run` install only the system.
setup: $(VENV)/.installed $(TOOLS)/.installed

$(VENV)/.runtime: pyproject.toml
	@echo "installing the runtime into $(VENV) (the first time only; a few minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/$(PIP) --upgrade pip
	@$(TORCH_CPU_FIRST)
	@$(BIN)/$(PIP) -e '.[runtime]'
	@touch $@

$(VENV)/.installed: $(VENV)/.runtime pyproject.toml
	@echo "installing the test tools into $(VENV)"
	@$(BIN)/$(PIP) -e '.[dev]'
	@touch $@

# pyproject's dependency group `tools` (pip >= 25.1 installs a group without the project).
$(TOOLS)/.installed: pyproject.toml
	@echo "installing the build tools into $(TOOLS)"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/$(PIP) --upgrade pip
	@$(TOOLS)/bin/$(PIP) --group tools
	@touch $@

# The local simulation on embedded defaults: classifies the demo photos, prints their top-k and what to do next,
# then stops. Takes the next free port when PORT (8000) is taken.
demo: $(VENV)/.runtime
	$(BIN)/python -m runtime.local --demo --port $(PORT)

# The local simulation, serving on PORT (8000) until Ctrl-C. A command without shell syntax: make runs it directly,
# so Ctrl-C reaches the runtime as it would from the terminal.
run: $(VENV)/.runtime
	$(BIN)/python -m runtime.local --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions runtime tools client bench

# The fast tier first (in-process, on every core: under a minute), then the tests that start services, stacks
# or build steps (some take minutes: the bench smoke runs, `sam build`), in two processes, each test file whole
# in one of them (its module fixtures start once).
test: lint test-store-versions
	$(BIN)/python -m pytest -m "not integration" -n auto
	$(BIN)/python -m pytest -m integration -n 2 --dist loadfile -v

test-fast: setup
	$(BIN)/python -m pytest -m "not integration" -n auto

# The store's contract and adapter tests on the lowest SQLAlchemy the project admits (pyproject: sqlalchemy>=LOWEST)
# and on the highest (.venv holds the newest release inside the pinned range). The lowest lives in its own venv
# that sees .venv's packages behind its own SQLAlchemy.
SQLALCHEMY_LOWEST := 2.0.11
LOWEST := .venv-sqlalchemy-lowest
STORE_TESTS := tests/functions/common/store
SITE = $$($(1)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
test-store-versions: setup
	test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	rm -f "$(call SITE,$(LOWEST))/faasinfer-venv.pth"
	$(LOWEST)/bin/$(PIP) --no-deps "sqlalchemy==$(SQLALCHEMY_LOWEST)"
	echo "$(call SITE,$(BIN)/..)" > "$(call SITE,$(LOWEST))/faasinfer-venv.pth"
	for venv in $(LOWEST) $(VENV); do \
		$$venv/bin/python -c "import sqlalchemy, databases; print('store tests on SQLAlchemy', sqlalchemy.__version__, 'databases', databases.__version__)" && \
		$$venv/bin/python -m pytest -q -p no:cacheprovider $(STORE_TESTS) || exit 1; \
	done
	$(LOWEST)/bin/python -c "import sqlalchemy, sys; sys.exit(sqlalchemy.__version__ != '$(SQLALCHEMY_LOWEST)')"

bench: setup
	$(BIN)/python -m bench.run_all

# The same plus the TorchServe peer (installs the bench extra; needs Java 17).
bench-peer: setup
	$(BIN)/pip install -e '.[bench]'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run_all --peer

# Mutation testing of the pure modules with their fast tests (pyproject's [tool.mutmut]; ~2 min). mutmut 3.8
# needs a newer click than aws-sam-cli pins, so it lives in its own venv that sees .venv's packages behind its own.
MUTATION := .venv-mutation
mutation: setup
	test -x $(MUTATION)/bin/mutmut || ($(PYTHON) -m venv $(MUTATION) && $(MUTATION)/bin/$(PIP) "mutmut==3.8.1")
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(MUTATION)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/faasinfer-venv.pth"
	rm -rf mutants
	$(MUTATION)/bin/mutmut run --max-children 2
	$(MUTATION)/bin/mutmut results

clean:
	rm -rf .faasinfer .pytest_cache .mypy_cache .ruff_cache
