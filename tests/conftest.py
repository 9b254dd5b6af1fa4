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
