"""Procedural everyday objects (furniture, tableware, lamps) for synthetic training data.

Each category has a builder that draws its proportions and styles from a `numpy.random.Generator`, so a category
covers real within-class variety (leg styles, shelf counts, profile curvature...) instead of one template.

Conventions for every mesh returned by `make_object` / `build`:

* units are metres, with realistic sizes (a chair is ~0.8-1.0 m tall, a mug ~0.1 m);
* Z is up, the object rests on z = 0 (its lowest vertex has z == 0) and its bounding box is centred on x = y = 0;
* the "front" (seat edge of a chair, drawer fronts, doors, the open side of a bookcase) faces −Y;
* the mesh is a plain concatenation of closed, outward-oriented parts (boxes, cylinders, cones, capsules, tori,
  ellipsoids, swept tubes and lathe solids). Parts may overlap: the occupancy labeller uses generalised winding
  numbers, which treat a union of overlapping closed parts correctly, so no boolean operations are needed. Every
  connected component of the result is watertight;
* vessels (mugs, bowls, vases, open bottles, lamp shades) are hollow: their lathe profile runs up the outer wall, over
  the lip and back down the inner wall, so the revolved surface is still closed but encloses a cavity;
* face counts stay modest (at most `MAX_FACES`): revolutions use 24-32 sections and thin rods 8-12.

`procedural_specs` names a reproducible set of objects; `build(spec)` always returns byte-identical vertices for the
same spec, because every random draw comes from `numpy.random.default_rng(spec.seed)`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from backend.model.config import DEFAULT_CATEGORIES

from .furniture import _bookcase, _cabinet, _desk, _shelf, _table
from .lamps import _lamp
from .primitives import MAX_FACES, Parts
from .seating import _bed, _bench, _chair, _sofa, _stool
from .tableware import _bottle, _bowl, _mug, _vase

__all__ = ["CATEGORIES", "MAX_FACES", "ObjectSpec", "build", "make_object", "procedural_specs"]

# ----------------------------------------------------------------------------------------------------------------
# Public API

_BUILDERS: dict[str, Callable[[np.random.Generator], Parts]] = {
    "chair": _chair,
    "table": _table,
    "sofa": _sofa,
    "bed": _bed,
    "bookcase": _bookcase,
    "desk": _desk,
    "cabinet": _cabinet,
    "lamp": _lamp,
    "mug": _mug,
    "bottle": _bottle,
    "vase": _vase,
    "bowl": _bowl,
    "stool": _stool,
    "bench": _bench,
    "shelf": _shelf,
}

CATEGORIES: tuple[str, ...] = tuple(c for c in DEFAULT_CATEGORIES if c in _BUILDERS)
"""Every category `make_object` can build, in the model's category table order (one list for both)."""
if not set(_BUILDERS) <= set(DEFAULT_CATEGORIES):
    raise ImportError(
        "procedural builders for categories the model's table lacks (add them to "
        f"backend.model.config.DEFAULT_CATEGORIES): {sorted(set(_BUILDERS) - set(DEFAULT_CATEGORIES))}"
    )


def _check_category(category: str) -> None:
    if category not in _BUILDERS:
        raise ValueError(f"unknown procedural category {category!r}; choose one of {list(CATEGORIES)}")


def _assemble(parts: Parts) -> trimesh.Trimesh:
    """Concatenate closed parts without merging vertices (each part stays its own watertight component), then move
    the result so it rests on z = 0 with its bounding box centred on x = y = 0."""
    vertices, faces, offset = [], [], 0
    for part in parts:
        vertices.append(np.asarray(part.vertices, dtype=np.float64))
        faces.append(np.asarray(part.faces, dtype=np.int64) + offset)
        offset += len(part.vertices)
    v = np.vstack(vertices)
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = v - np.array([(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, lo[2]])
    return trimesh.Trimesh(vertices=v, faces=np.vstack(faces), process=False)


def make_object(category: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """One random instance of `category`, in metres: Z up, resting on z = 0, bbox centred on x = y = 0, front −Y.

    Raises ValueError for an unknown category.
    """
    _check_category(category)
    return _assemble(_BUILDERS[category](rng))


@dataclass(frozen=True)
class ObjectSpec:
    """A reproducible procedural object: `build(spec)` always returns the same mesh."""

    object_id: str
    """Stable name, e.g. "procedural-chair-0003" (category and index within the category)."""
    category: str
    seed: int
    """Seed of `numpy.random.default_rng` for this object's builder."""


def procedural_specs(per_category: int, seed: int = 0, categories: Sequence[str] = CATEGORIES) -> list[ObjectSpec]:
    """`per_category` specs for each category, in category order then index order.

    Object seeds come from `numpy.random.SeedSequence([seed, crc32(category), index])`, so a category's objects do not
    change when categories are added, removed or reordered, and growing `per_category` only appends objects. Ids name
    category and index only: sets drawn with different `seed`s reuse the same ids, so keep them apart.
    """
    if per_category < 0:
        raise ValueError(f"per_category must be >= 0, got {per_category}")
    for category in categories:
        _check_category(category)
    specs = []
    for category in categories:
        key = zlib.crc32(category.encode("utf-8"))
        for index in range(per_category):
            state = np.random.SeedSequence([seed, key, index]).generate_state(1, dtype=np.uint64)[0]
            specs.append(ObjectSpec(f"procedural-{category}-{index:04d}", category, int(state)))
    return specs


def build(spec: ObjectSpec) -> trimesh.Trimesh:
    """The mesh of `spec` (metres, conventions of `make_object`); identical on every call."""
    return make_object(spec.category, np.random.default_rng(spec.seed))
