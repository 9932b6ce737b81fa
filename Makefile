# Parley: `make run` starts everything on this machine, `make test` runs the whole suite.
PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# torch is installed first and pinned: a CPU build (an unpinned one pulls gigabytes of CUDA). Pass e.g.
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" where PyPI's default wheel is a CUDA one.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: run test install lint format down bench bench-quick

$(PY):
	$(PYTHON_BIN) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m knowledge.onnx_export
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(PY) manage.py up

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test module to a process: each has its own database
# and Redis database on the same embedded servers. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

down: install
	$(PY) manage.py down

bench: install
	$(PY) -m bench.run

bench-quick: install
	$(PY) -m bench.run --quick
