# One-command entry points. `make test` is what CI runs (.ci/run); `make run` is the main job.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup test lint format run params benchmark clean

setup: $(STAMP)

# torch is installed first and alone, pinned: every later install then finds torch 2.13.0 already
# satisfied and cannot pull a CUDA build (see docs/INSTALL.md).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,blender,data]"
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

# Photo → mesh with the bundled model, each stage timed (docs/BENCHMARKS.md); training throughput is
# `zeroshape-w benchmark-train`.
benchmark: setup
	$(BIN)/zeroshape-w benchmark --config small --threads 2

# The main job: reconstruct the example photos with the default checkpoint, a mesh, its JSON, the object mask it
# was built from (NAME-mask.png) and a preview picture (the photo beside Cycles renders of the mesh from the photo's
# direction and from the side) for each, in out/examples/, and all previews in one picture,
# out/examples-overview.png (the README shows it); then each mesh through the camera it estimates for its photo,
# over the photo (out/match-photo-overview.png, in docs/BLENDER_ADDON.md).
run: setup
	$(BIN)/zeroshape-w reconstruct examples/*.jpg examples/*.png -o out/examples --preview
	$(BIN)/python -m training.figures grid $$(ls out/examples/*.png | grep -v -- '-mask\.png$$') \
	  -o out/examples-overview.png --columns 2
	$(BIN)/zeroshape-w reconstruct examples/*.jpg examples/*.png -o out/match-photo --format ply --quiet
	for photo in examples/*.jpg examples/*.png; do name=$$(basename $${photo%.*}); \
	  $(BIN)/python -m backend.preview_render out/match-photo/$$name.ply out/match-photo/$$name-overlay.png \
	    --photo $$photo --match-photo out/match-photo/$$name.json --size 512 || exit 1; done
	$(BIN)/python -m training.figures grid out/match-photo/*-overlay.png -o out/match-photo-overview.png --columns 3

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist build *.egg-info
