# One-command entry points. `make test` is what CI runs (.ci/run); `make run` is the main job.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup test lint format run params benchmark clean

setup: $(STAMP)

# torch is installed first and alone, pinned: every later install then finds torch 2.13.0 already
# satisfied and cannot pull a CUDA build (see README, "Installing").
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,blender]"
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

params: setup
	$(BIN)/zeroshape-w params

benchmark: setup
	$(BIN)/zeroshape-w benchmark --config small --threads 2

# The main job. Until image-to-mesh reconstruction lands it shows the model: parameters by component
# and the training throughput of the `small` config on this machine.
run: params benchmark

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist build *.egg-info
