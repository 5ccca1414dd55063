# One command to run the demo, one to run the tests; both set up .venv from pyproject.toml first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo run test lint bench bench-peer mutation clean

# Everything: the system, the tests' and benches' tools. `make demo` and `make run` install only the system.
setup: $(VENV)/.installed

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[runtime]'
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/pip install -e '.[dev]'
	touch $@

# The local simulation on embedded defaults, uploading the demo photos and printing their top-k.
# Uses torchvision's pretrained weights for INFER_MODEL when they can be had (cache or download); otherwise
# says so in one line and uses the packaged EfficientNet-Lite0 (ImageNet weights shipped in a package).
demo: $(VENV)/.runtime
	$(BIN)/python -m runtime.local --demo

# The local simulation, serving until Ctrl-C.
run: $(VENV)/.runtime
	$(BIN)/python -m runtime.local

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions runtime client bench

test: lint
	$(BIN)/python -m pytest

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
	test -x $(MUTATION)/bin/mutmut || ($(PYTHON) -m venv $(MUTATION) && $(MUTATION)/bin/pip install -q "mutmut==3.8.1")
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(MUTATION)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/faasinfer-venv.pth"
	rm -rf mutants
	$(MUTATION)/bin/mutmut run --max-children 2
	$(MUTATION)/bin/mutmut results

clean:
	rm -rf .faasinfer .pytest_cache .mypy_cache .ruff_cache
