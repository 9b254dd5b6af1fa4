"""Asset names map onto the model's one category list."""

from __future__ import annotations

import pytest

from backend.model.config import AGNOSTIC_PROMPT, DEFAULT_CATEGORIES
from training.data.categories import KEYWORDS, PHRASES, category_for_name


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("Chair with cushion", "chair"),
        ("Winchester armchair", "chair"),
        ("Oak table", "table"),
        ("Table fan", "appliance"),
        ("Table tennis bat", AGNOSTIC_PROMPT),
        ("Large fridge", "appliance"),
        ("Siamese cat", "animal"),
        ("animal_lioness", "animal"),
        ("Hot dog", "food"),
        ("Teddy bear", "toy"),
        ("Sitting female", "person"),
        ("Ford Focus", "vehicle"),
        ("Spider plant", "plant"),
        ("Coffee cup", "mug"),
        ("Bar stool", "stool"),
        ("Vertical shelves", "shelf"),
        ("Scissors", AGNOSTIC_PROMPT),
        ("Catalogue", AGNOSTIC_PROMPT),  # whole words only: no "cat" in it
    ],
)
def test_names_map_to_categories(name, category):
    assert category_for_name(name) == category


def test_every_rule_names_a_category_of_the_table():
    assert {category for category, _ in KEYWORDS} | set(PHRASES.values()) <= set(DEFAULT_CATEGORIES)
    assert DEFAULT_CATEGORIES[0] == AGNOSTIC_PROMPT
    assert len(set(DEFAULT_CATEGORIES)) == len(DEFAULT_CATEGORIES)
