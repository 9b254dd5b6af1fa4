# One-command entry points. `make test` is what CI runs (.ci/run); `make run` is the main job.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Until the trained default model ships in backend/weights/, setup makes a clearly labelled UNTRAINED
# checkpoint (random weights, not committed) so the main job runs end to end.
UNTRAINED := weights/untrained-small.safetensors
export HF_HUB_OFFLINE := 1

.PHONY: setup test lint format run params benchmark clean

setup: $(STAMP) $(UNTRAINED)

# torch is installed first and alone, pinned: every later install then finds torch 2.13.0 already
# satisfied and cannot pull a CUDA build (see README, "Installing").
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,blender,data]"
	touch $(STAMP)

$(UNTRAINED): $(STAMP)
	$(BIN)/zeroshape-w init-checkpoint --config small -o $@

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

# The main job: reconstruct the example photos with the default checkpoint, a mesh, its JSON and a
# preview picture (photo beside a Cycles render of the mesh) for each, in out/examples/.
run: setup
	$(BIN)/zeroshape-w reconstruct examples/*.jpg -o out/examples --preview

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist build *.egg-info
