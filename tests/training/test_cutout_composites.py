"""Real-photo training images for the mask head: framed like `reconstruct`, the target where the stamp is."""

from __future__ import annotations

import numpy as np
import pytest

from backend.model.config import default_preprocess, get_config
from tests.training.stamp_fixtures import make_stamps
from training.cutout_composites import CutoutComposites, hdri_paths, read_hdri


@pytest.fixture(scope="module")
def composites(tmp_path_factory):
    root = tmp_path_factory.mktemp("stamps")
    chosen = make_stamps(root)
    return CutoutComposites(default_preprocess(get_config("small")), root), chosen


def test_only_training_stamps_that_are_photos_are_used(composites):
    made, chosen = composites
    assert made.names == chosen["train"]  # not the benchmark's, not the held-out ones, not the drawing


def test_samples_are_deterministic_images_with_the_stamp_as_target(composites):
    made, _ = composites
    for seed in range(6):
        image, mask = made.sample(np.random.default_rng(seed))
        assert image.shape == (3, 224, 224)
        assert image.dtype == np.float32
        assert mask.shape == (1, 224, 224)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert 0.005 < mask.mean() < 0.9
        again, again_mask = made.sample(np.random.default_rng(seed))
        assert (again == image).all()
        assert (again_mask == mask).all()
        # The stamps are orange-red noise: inside the mask the image is red-dominant on average.
        red, blue = image[0][mask[0] > 0].mean(), image[2][mask[0] > 0].mean()
        assert red > blue + 0.2


@pytest.mark.skipif(not hdri_paths(), reason="bpy's HDRIs are not installed")
def test_hdris_read_as_tone_mapped_images():
    image = read_hdri(hdri_paths()[0])
    assert image.ndim == 3
    assert image.shape[2] == 3
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    assert 0.1 < image.mean() < 0.9
