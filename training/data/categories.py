"""Asset names → the model's category names (`backend.model.config.DEFAULT_CATEGORIES`).

Asset catalogues name things their own way ("Winchester armchair", "Large fridge", "Siamese cat"); the
model's prompt table has one fixed list. Every asset source maps through `category_for_name`, so a source
can never invent a category the table lacks (tests check each source against the table), and what is not
recognised is trained under the category-agnostic prompt "object".
"""

from __future__ import annotations

import re

from backend.model.config import AGNOSTIC_PROMPT, DEFAULT_CATEGORIES

KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Checked in this order, so the more specific families come first ("chair" before "table": a
    # "table tennis bat" is not a table either, hence the exclusions below).
    ("toy", ("toy", "teddy", "rocking horse", "puzzle", "rubik", "xylophone", "car model", "seesaw")),
    (
        "animal",
        (
            "horse",
            "deer",
            "chicken",
            "cat",
            "dog",
            "bulldog",
            "cow",
            "sheep",
            "pig",
            "goat",
            "bird",
            "fish",
            "camel",
            "elephant",
            "lion",
            "wolf",
            "bear",
            "boar",
            "rabbit",
            "fox",
            "duck",
            "goose",
            "whale",
            "shark",
            "dolphin",
            "zebra",
            "giraffe",
            "rhino",
            "hippo",
            "crocodile",
            "tiger",
            "ox",
            "donkey",
            "mule",
            "mammoth",
            "walrus",
            "penguin",
            "seal",
            "hawk",
            "eagle",
            "peacock",
            "ostrich",
            "muskox",
            "gazelle",
            "antelope",
            "ibex",
            "bison",
            "buffalo",
            "tortoise",
            "turtle",
            "crab",
            "croc",
            "auroch",
            "cattle",
            "zebu",
            "wildebeest",
            "mastiff",
            "wolfhound",
            "pony",
            "piglet",
            "tuna",
            "seagull",
            "crow",
            "hippopotamus",
            "animal",
        ),
    ),
    ("person", ("man", "woman", "male", "female", "girl", "boy", "person", "people", "character", "snowman")),
    (
        "vehicle",
        (
            "car",
            "truck",
            "bike",
            "motorbike",
            "bicycle",
            "biplane",
            "plane",
            "boat",
            "rowboat",
            "ford",
            "chevrolet",
            "fork lift",
            "tractor",
            "bus",
            "van",
            "wheelbarrow",
            "wheelchair",
            "cart",
            "wagon",
            "ship",
        ),
    ),
    (
        "plant",
        (
            "plant",
            "cactus",
            "orchid",
            "tulip",
            "lily",
            "yucca",
            "bamboo",
            "tree",
            "flower",
            "bush",
            "spathiphyllum",
            "succulent",
            "fern",
            "palm",
        ),
    ),
    (
        "food",
        ("bread", "butter", "hamburger", "hot dog", "cup cake", "cake", "banana", "fruit", "milk", "cheese", "pizza"),
    ),
    (
        "appliance",
        (
            "fridge",
            "refrigerator",
            "oven",
            "stove",
            "cooktop",
            "microwave",
            "washing machine",
            "boiler",
            "range hood",
            "hood",
            "dishwasher",
            "blender",
            "mixer",
            "coffee brewer",
            "tv",
            "television",
            "radiator",
            "fan",
            "radio",
            "speaker",
            "laptop",
            "treadmill",
        ),
    ),
    ("stool", ("stool",)),
    ("bench", ("bench",)),
    ("sofa", ("sofa", "couch")),
    ("chair", ("chair", "armchair", "seat", "deck chair", "pool lounge")),
    ("bed", ("bed",)),
    ("bookcase", ("bookcase",)),
    ("desk", ("desk", "workbench")),
    ("shelf", ("shelf", "shelves")),
    (
        "cabinet",
        ("cabinet", "cupboard", "wardrobe", "dresser", "drawers", "chest", "locker", "safe", "vanity", "island"),
    ),
    ("lamp", ("lamp", "lantern", "light")),
    ("table", ("table",)),
    ("mug", ("mug", "coffee cup", "cup")),
    ("bottle", ("bottle", "flacon", "extinguisher")),
    ("vase", ("vase",)),
    ("bowl", ("bowl",)),
)
PHRASES: dict[str, str] = {
    "table tennis": AGNOSTIC_PROMPT,
    "tennis racket": AGNOSTIC_PROMPT,
    "football table": AGNOSTIC_PROMPT,
    "table fan": "appliance",
    "ceiling fan": "appliance",
    "hanging light": "lamp",
    "coffee table": "table",
    "hot dog": "food",
    "roasted chicken": "food",
    "apples": "food",
    "clothes horse": AGNOSTIC_PROMPT,
    "dog house": AGNOSTIC_PROMPT,
    "woman shoes": AGNOSTIC_PROMPT,
    "island bath": AGNOSTIC_PROMPT,
    "desk lamp": "lamp",
    "vase lamp": "lamp",
    "television cabinet": "cabinet",
    "tv stand": "cabinet",
    "chest freezer": "appliance",
    "coffee machine": "appliance",
    "coffee maker": "appliance",
    "air conditioning": "appliance",
    "seat leon": "vehicle",
}
"""Names that contain a category's word but are something else (a table fan is not a table); checked first."""


def category_for_name(name: str) -> str:
    """The model category of an asset called `name` (any case); "object" when nothing matches.

    Matches whole words: "Chair with cushion" → chair, "Oak table" → table, "Scissors" → object."""
    text = " " + re.sub(r"[^a-z0-9]+", " ", name.lower()).strip() + " "
    for phrase, category in PHRASES.items():
        if " " + phrase + " " in text:
            return category
    for category, words in KEYWORDS:
        if any(" " + word + " " in text or " " + word + "s " in text for word in words):
            return category
    return AGNOSTIC_PROMPT


_unknown = ({category for category, _ in KEYWORDS} | set(PHRASES.values())) - set(DEFAULT_CATEGORIES)
if _unknown:
    raise ImportError(f"name rules for categories the model's table lacks: {sorted(_unknown)}")
