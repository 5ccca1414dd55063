# One command to run the demo, one to run the tests; both set up .venv from pyproject.toml first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo run test lint test-store-versions bench bench-peer mutation clean

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

test: lint test-store-versions
	$(BIN)/python -m pytest

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
	$(LOWEST)/bin/pip install -q --disable-pip-version-check --no-deps "sqlalchemy==$(SQLALCHEMY_LOWEST)"
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
	test -x $(MUTATION)/bin/mutmut || ($(PYTHON) -m venv $(MUTATION) && $(MUTATION)/bin/pip install -q "mutmut==3.8.1")
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(MUTATION)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/faasinfer-venv.pth"
	rm -rf mutants
	$(MUTATION)/bin/mutmut run --max-children 2
	$(MUTATION)/bin/mutmut results

clean:
	rm -rf .faasinfer .pytest_cache .mypy_cache .ruff_cache
