"""Device and arithmetic choice, shared by the pipeline and training."""

from __future__ import annotations

import pytest
import torch

from backend.device import autocast, autocast_dtype, resolve_device


def test_cuda_request_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_precisions_map_to_autocast():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) is None  # training's default: plain fp32 on the CPU
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype("int8", cpu)
    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", cpu):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast("fp32", cpu):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
