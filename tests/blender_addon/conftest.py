"""The add-on's zip and a live backend, built once for every test that drives the add-on in real bpy."""

from __future__ import annotations

import pytest
import torch

import build_addon
from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW

from ..backend.test_server import ServerProcess


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory):
    (package,) = build_addon.build(tmp_path_factory.mktemp("dist"))
    return package


@pytest.fixture(scope="session")
def backend(tmp_path_factory):
    # Seed 1: a random tiny network that has a surface for the example photos (see tests/backend/test_server.py).
    # It has no gravity, category or body head.
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("backend")
    checkpoint = save_checkpoint(ZeroShapeW(get_config("tiny")), folder / "tiny.safetensors")
    process = ServerProcess(checkpoint, folder).wait_ready()
    yield process
    process.stop()
