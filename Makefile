# The single entry point. `make demo` and `make test` set everything up first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test lint bench bench-quick clean

setup: $(STAMP) data

# Re-installs only when the pins or the package metadata change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST from Debian's dataset-fashion-mnist, installed only when missing.
data:
	@if [ -n "$$LTZOO_DATA" ] || [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] || [ -f $(FMNIST_DIR)/train-images-idx3-ubyte ]; then \
		echo "Fashion-MNIST: found"; \
	else \
		echo "Fashion-MNIST: installing dataset-fashion-mnist"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

demo: setup
	$(PY) -m ltzoo demo

# Two workers, one per core of the 2-core budget; each test file stays on one worker (its fixtures are built once).
TEST_WORKERS ?= 2

test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ruff at the line length pyproject.toml declares: lint rules and the formatter's check (no file is changed).
lint: setup
	$(VENV)/bin/ruff check ltzoo tests benchmarks export
	$(VENV)/bin/ruff format --check ltzoo tests benchmarks export

bench: setup
	$(PY) -m benchmarks.run

bench-quick: setup
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf runs exports .pytest_cache
