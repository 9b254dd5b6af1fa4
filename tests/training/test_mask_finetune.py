"""Fine-tuning the mask head on photo cut-outs: only the backbone and the mask head move, the run resumes."""

from __future__ import annotations

import json

import torch

from backend.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW
from tests.training.stamp_fixtures import make_stamps
from training.mask_finetune import MaskFinetuneOptions, finetune_mask


def tiny_start(folder, provenance=None) -> tuple:
    """(a random tiny checkpoint, a stand-in stamps folder) in `folder`."""
    make_stamps(folder / "stamps")
    torch.manual_seed(0)
    init = save_checkpoint(ZeroShapeW(get_config("tiny")), folder / "init.safetensors", provenance=provenance)
    return init, folder / "stamps"


def changed_parts(before_path, after_path) -> set[str]:
    before, after = load_checkpoint(before_path).state_dict(), load_checkpoint(after_path).state_dict()
    return {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}


def test_a_short_run_moves_the_mask_head_and_backbone_only_and_resumes(tmp_path):
    init, root = tiny_start(tmp_path)
    options = MaskFinetuneOptions(
        init=init, out=tmp_path / "run", steps=2, batch_size=2, stamps=root, checkpoint_every=1, log_every=1
    )
    path = finetune_mask(options)
    assert changed_parts(init, path) == {"backbone", "visible_mask_head"}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert {"mask", "keep_depth", "keep_focal", "keep_occluder"} <= set(log[0])
    assert read_header(path)["provenance"]["step"] == 2

    # The same command with more steps continues from step 2, not from the start.
    resumed = finetune_mask(MaskFinetuneOptions(**{**options.__dict__, "steps": 3}))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    assert resumed == path


def test_a_frozen_backbone_trains_the_mask_head_alone(tmp_path):
    init, root = tiny_start(tmp_path)
    options = MaskFinetuneOptions(
        init=init, out=tmp_path / "run", steps=1, batch_size=2, stamps=root, backbone_rate_scale=0.0
    )
    assert changed_parts(init, finetune_mask(options)) == {"visible_mask_head"}


def test_a_release_is_float16_and_carries_both_provenances(tmp_path):
    from safetensors import safe_open

    from training.mask_finetune import release_mask_checkpoint

    init, root = tiny_start(tmp_path, provenance={"run": "8"})
    options = MaskFinetuneOptions(init=init, out=tmp_path / "run", steps=1, batch_size=2, stamps=root)
    released = release_mask_checkpoint(finetune_mask(options), tmp_path / "release.safetensors")
    provenance = read_header(released)["provenance"]
    assert provenance["stored_as"] == "float16"
    assert provenance["warm_start_provenance"] == {"run": "8"}
    assert provenance["step"] == 1
    with safe_open(str(released), "pt") as tensors:
        key = next(k for k in tensors.keys() if k.startswith("visible_mask_head"))  # noqa: SIM118 (not a dict)
        assert tensors.get_tensor(key).dtype == torch.float16
    trained, shipped = load_checkpoint(tmp_path / "run" / "model.safetensors"), load_checkpoint(released)
    weight = "visible_mask_head.conv2.weight"
    assert torch.allclose(trained.state_dict()[weight], shipped.state_dict()[weight], atol=1e-3)
