"""Test-wide settings: offline, deterministic, small thread pool."""

import os

# Set before anything imports huggingface_hub (through open_clip): an accidental download fails at once
# instead of retrying for most of a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def sphere_model(monkeypatch):
    """The shape stage of `backend.pipeline` made an analytic sphere of radius 0.9 in the model's normalised frame,
    whichever shape is asked for: the decoder's occupancy, the inflated body (keeping the model's camera) and the
    cone's carving. Everything around it (loading, locating, cropping, encoding, masks, meshing, colour, frames,
    files) is the real code path; the shapes themselves are tested in tests/backend/test_silhouette.py."""
    import backend.pipeline
    from backend.model.zeroshape import ZeroShapeW
    from backend.silhouette import InflatedBody

    def sphere(points):
        return 20.0 * (0.9 - (points**2).sum(-1) ** 0.5)

    monkeypatch.setattr(ZeroShapeW, "query", lambda self, points, latent: sphere(points))
    monkeypatch.setattr(
        backend.pipeline, "inflate", lambda maps, camera, half_extent, **_: InflatedBody(camera, sphere, 2.0)
    )
    monkeypatch.setattr(backend.pipeline, "carve", lambda field, maps, camera, level: lambda p: field(p) - level)
