"""The CPU fallback for torchvision's compiled ops: imports work, and NMS keeps torchvision's contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend._torchvision_compat import _nms, ensure_torchvision

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torchvision():
    ensure_torchvision()
    import torchvision

    return torchvision


def test_imports_work_in_a_fresh_interpreter():
    # A fresh process, so that the order "ensure, then import" is really what is tested (in this process the
    # packages may already have been imported by other tests).
    code = (
        "from backend._torchvision_compat import ensure_torchvision\n"
        "first = ensure_torchvision()\n"
        "import torchvision, timm, open_clip\n"
        "import torch\n"
        "assert hasattr(torch.ops.torchvision, 'nms')\n"
        "second = ensure_torchvision()\n"
        "assert first == second, (first, second)\n"
        "boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])\n"
        "kept = torchvision.ops.nms(boxes, torch.tensor([0.2, 0.9]), 0.5)\n"
        "assert kept.tolist() == [1], kept\n"
        "print('ok', first)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_imports_work_in_this_process(torchvision):
    import open_clip
    import timm

    assert hasattr(torchvision.ops, "nms")
    assert hasattr(timm, "create_model")
    assert hasattr(open_clip, "get_tokenizer")


def test_ensure_twice_is_harmless(torchvision):
    first = ensure_torchvision()
    second = ensure_torchvision()
    assert first == second
    assert isinstance(first, bool)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    assert torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]


# Boxes (x1, y1, x2, y2) and scores, chosen so every IoU below is exact in binary floating point:
#   0: [0, 0, 10, 10]    score 0.90, area 100
#   1: [1, 1, 11, 11]    score 0.80, IoU with 0 = 81 / 119 ≈ 0.68 → suppressed by 0 at 0.5
#   2: [20, 20, 30, 30]  score 0.95, disjoint from all → kept, and first (highest score)
#   3: [0, 0, 10, 5]     score 0.70, IoU with 0 = 50 / 100 = 0.5 exactly → kept at threshold 0.5 (needs IoU > 0.5)
#   4: [21, 21, 29, 29]  score 0.60, IoU with 2 = 64 / 100 = 0.64 → suppressed by 2
BOXES = [
    [0.0, 0.0, 10.0, 10.0],
    [1.0, 1.0, 11.0, 11.0],
    [20.0, 20.0, 30.0, 30.0],
    [0.0, 0.0, 10.0, 5.0],
    [21.0, 21.0, 29.0, 29.0],
]
SCORES = [0.90, 0.80, 0.95, 0.70, 0.60]


@pytest.mark.parametrize("implementation", ["torchvision", "private"])
@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (0.5, [2, 0, 3]),  # IoU exactly at the threshold is kept
        (0.49, [2, 0]),  # just below 0.5: box 3 is now suppressed by box 0
        (0.65, [2, 0, 3, 4]),  # 0.68 > 0.65 still suppresses 1; 0.64 ≤ 0.65 keeps 4
        (0.7, [2, 0, 1, 3, 4]),  # nothing overlaps by more than 0.68
        (0.0, [2, 0]),  # any overlap suppresses
    ],
)
def test_nms_hand_made_boxes(torchvision, implementation, threshold, expected):
    boxes = torch.tensor(BOXES)
    scores = torch.tensor(SCORES)
    nms = torchvision.ops.nms if implementation == "torchvision" else _nms
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64
    assert kept.tolist() == expected


@pytest.mark.parametrize("implementation", ["torchvision", "private"])
def test_nms_of_no_boxes_is_an_empty_int64_tensor(torchvision, implementation):
    nms = torchvision.ops.nms if implementation == "torchvision" else _nms
    kept = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert kept.dtype == torch.int64
    assert kept.shape == (0,)


def test_nms_keeps_a_single_box(torchvision):
    kept = torchvision.ops.nms(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.1]), 0.5)
    assert kept.tolist() == [0]


def test_batched_nms_only_suppresses_within_a_class(torchvision):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])

    different = torchvision.ops.batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5)
    assert different.tolist() == [0, 1, 2]

    same = torchvision.ops.batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
    assert same.tolist() == [0, 2]

    all_same = torchvision.ops.batched_nms(boxes, scores, torch.tensor([3, 3, 3]), 0.5)
    assert all_same.tolist() == [0]


def iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def brute_force_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Greedy NMS written from the definition: all pairwise IoUs, then keep in score order."""
    box_list = boxes.double().tolist()
    n = len(box_list)
    overlaps = [[iou(box_list[i], box_list[j]) for j in range(n)] for i in range(n)]
    keep: list[int] = []
    for i in sorted(range(n), key=lambda k: -float(scores[k])):
        if all(overlaps[i][k] <= threshold for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
def test_private_nms_matches_a_brute_force_reference(torchvision, threshold):
    generator = torch.Generator().manual_seed(7)
    corners = torch.rand(200, 2, generator=generator) * 40
    sizes = torch.rand(200, 2, generator=generator) * 20 + 5
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(200, generator=generator)

    expected = brute_force_nms(boxes, scores, threshold)

    # The random boxes overlap enough for the comparison to mean something.
    assert 10 < len(expected) < 195
    assert _nms(boxes, scores, threshold).tolist() == expected
    assert torchvision.ops.nms(boxes, scores, threshold).tolist() == expected
