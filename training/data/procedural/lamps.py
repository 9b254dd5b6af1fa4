"""Lamps: table, floor and arc lamps with their shades."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from .primitives import (
    _MEDIUM,
    Parts,
    _box,
    _chance,
    _cyl,
    _ellipsoid,
    _frustum,
    _lathe,
    _pick,
    _rod,
    _tube,
    _u,
)

# ----------------------------------------------------------------------------------------------------------------
# Lamps


def _shade(rng: np.random.Generator, z0: float, radius: float, height: float, shape: str | None = None) -> Parts:
    """Lamp shade with its bottom at z0: a hollow cone frustum, drum or dome (open underneath), plus the bulb and a
    spider of thin rods holding the shade to the centre. `shape` is drawn at random unless given."""
    shape = shape or _pick(rng, ("cone", "drum", "dome"))
    t = _u(rng, 0.003, 0.006)
    parts: Parts = []
    if shape == "dome":
        angles = np.linspace(0.0, np.pi / 2, 9)[:-1]  # the crown point is added on the axis explicitly
        k = _u(rng, 1.0, 1.6)  # >1 squares the dome off (wider shoulders at the same height)
        outer = np.stack([radius * np.cos(angles) ** (1 / k), z0 + height * np.sin(angles)], 1)
        inner = np.stack([(radius - t) * np.cos(angles) ** (1 / k), z0 + (height - t) * np.sin(angles)], 1)
        parts.append(_lathe([(0.0, z0 + height), *outer[::-1], *inner, (0.0, z0 + height - t)], _MEDIUM))
        top_r = 0.0
    else:
        top_r = radius if shape == "drum" else radius * _u(rng, 0.5, 0.85)
        loop = [(radius, z0), (top_r, z0 + height), (top_r - t, z0 + height), (radius - t, z0), (radius, z0)]
        parts.append(_lathe(loop, _MEDIUM))
    bulb_z = z0 + height * 0.45
    parts.append(_ellipsoid((0.0, 0.0, bulb_z), (0.03, 0.03, 0.04), 1))
    if top_r > 0:
        # Spider: rods from the bulb holder to the shade's top rim hold the open shade visibly in place.
        zt = z0 + height - 0.005
        for a in np.arange(3) * 2 * np.pi / 3 + np.pi / 2:
            rim = (np.cos(a) * (top_r - t / 2), np.sin(a) * (top_r - t / 2), zt)
            parts.append(_rod((0.0, 0.0, zt), rim, 0.0025, sections=6))
        parts.append(_cyl((0, 0), bulb_z, zt + 0.005, 0.008))
    return parts


def _lamp(rng: np.random.Generator) -> Parts:
    """Lamp, 0.28-2.0 m. Knobs: kind (table, floor, arc), base (disc or square block), body (thin stem, column,
    ginger-jar lathe) and its height, shade shape (cone, drum, dome) and size, arc height and reach."""
    parts: Parts = []
    kind = _pick(rng, ("table", "floor", "arc"), (0.55, 0.3, 0.15))
    if kind == "arc":
        base = _u(rng, 0.14, 0.2)
        bh = _u(rng, 0.03, 0.08)
        if _chance(rng, 0.5):
            parts.append(_box((-base, -base, 0.0), (base, base, bh)))
        else:
            parts.append(_frustum(base, base * 0.9, 0.0, bh, sections=_MEDIUM))
        reach, top = _u(rng, 0.8, 1.4), _u(rng, 1.5, 1.95)
        tube_r = _u(rng, 0.008, 0.014)
        a = np.linspace(0.0, np.pi / 2, 14)
        # Quarter ellipse: straight up from the base, bending over to hang the shade `reach` away in +X.
        path = np.stack([reach * (1 - np.cos(a)), np.zeros_like(a), bh + (top - bh) * np.sin(a)], 1)
        path = np.vstack([[0.0, 0.0, bh - 0.01], path[1:], [reach + 0.06, 0.0, top - 0.04]])
        parts.append(_tube(path, tube_r, (0, 1, 0), sections=8))
        radius = _u(rng, 0.15, 0.25)
        height = radius * _u(rng, 0.5, 0.8)
        shade = _shade(rng, 0.0, radius, height, "dome")
        parts += [m.apply_translation([reach + 0.06, 0.0, top - 0.04 - height]) for m in shade]
        return parts
    floor = kind == "floor"
    base_r = _u(rng, 0.12, 0.2) if floor else _u(rng, 0.06, 0.12)
    bh = _u(rng, 0.02, 0.04)
    body = "stem" if floor else _pick(rng, ("stem", "jar", "column"))
    stem_top = _u(rng, 1.15, 1.55) if floor else _u(rng, 0.25, 0.45)
    if _chance(rng, 0.6):
        parts.append(_frustum(base_r, base_r * _u(rng, 0.7, 1.0), 0.0, bh, sections=_MEDIUM))
    else:
        parts.append(_box((-base_r, -base_r, 0.0), (base_r, base_r, bh)))
    if body == "stem":
        parts.append(_cyl((0, 0), bh - 0.002, stem_top, _u(rng, 0.007, 0.016)))
    elif body == "column":
        parts.append(_cyl((0, 0), bh - 0.002, stem_top, _u(rng, 0.02, 0.045), sections=16))
    else:
        # Ginger-jar body: a smooth solid lathe from a few random radii.
        zs = bh + (stem_top - 0.03 - bh) * np.array([0.0, 0.3, 0.65, 1.0])
        rs = np.array([_u(rng, 0.04, 0.07), _u(rng, 0.07, 0.12), _u(rng, 0.05, 0.11), _u(rng, 0.015, 0.03)])
        zz = np.linspace(zs[0], zs[-1], 12)
        rr = PchipInterpolator(zs, rs)(zz)
        parts.append(_lathe([(0.0, zs[0] - 0.002), *np.stack([rr, zz], 1), (0.0, zz[-1])], _MEDIUM))
        parts.append(_cyl((0, 0), zz[-1] - 0.005, stem_top, 0.008))
    # A table lamp's shade scales with its body (diameter ~0.6-1.0 × body height), a floor lamp's does not.
    radius = _u(rng, 0.17, 0.25) if floor else float(np.clip(stem_top * _u(rng, 0.3, 0.5), 0.09, 0.2))
    height = radius * _u(rng, 0.7, 1.3)
    parts += _shade(rng, stem_top - height * _u(rng, 0.3, 0.5), radius, height)
    return parts
