"""The backend's tests share one random tiny checkpoint, written once."""

from __future__ import annotations

import pytest
import torch

from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    # A random tiny network has a surface for the coffee photo about half the time; seed 1 does (seed 0 stopped
    # having one when the tiny decoder gained pixel-aligned layers). These tests check the code, not the shape.
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    return save_checkpoint(ZeroShapeW(get_config("tiny")), path, provenance={"untrained": True})
