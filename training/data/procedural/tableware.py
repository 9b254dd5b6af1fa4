"""Tableware: mug, bottle, vase, bowl (hollow lathe solids)."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from .primitives import (
    _MEDIUM,
    _ROUND,
    Parts,
    _chance,
    _frustum,
    _lathe,
    _pick,
    _tube,
    _u,
    _vessel,
)

# ----------------------------------------------------------------------------------------------------------------
# Tableware


def _mug(rng: np.random.Generator) -> Parts:
    """Mug, 0.07-0.13 m. Knobs: radius, height, wall and floor thickness, wall profile (straight, tapered either way,
    barrel, tulip), bottom chamfer, handle (partial torus ring or D shape; its reach, height span and thickness)."""
    radius, height = _u(rng, 0.035, 0.05), _u(rng, 0.075, 0.115)
    wall_t, floor = _u(rng, 0.0035, 0.006), _u(rng, 0.006, 0.012)
    style = _pick(rng, ("straight", "tapered", "barrel", "tulip"))
    u = np.linspace(0.0, 1.0, 9)
    if style == "straight":
        r = np.full_like(u, radius)
    elif style == "tapered":
        r = radius * (1.0 + _u(rng, -0.15, 0.25) * u)
    elif style == "barrel":
        r = radius + _u(rng, 0.003, 0.01) * np.sin(np.pi * u)
    else:
        a = _u(rng, 0.75, 0.9)
        r = radius * (a + (1 - a) * u**2)
    chamfer = _u(rng, 0.001, 0.006)
    z = np.concatenate([[0.0], chamfer + (height - chamfer) * u])
    r = np.concatenate([[r[0] - chamfer], r])
    wall = np.stack([r, z], 1)
    parts: Parts = [_vessel([(0.0, 0.0)], wall, wall_t, floor)]

    def body_r(zq: float) -> float:
        return float(np.interp(zq, z, r))

    z1, z2 = height * _u(rng, 0.15, 0.3), height * _u(rng, 0.7, 0.85)
    thick = _u(rng, 0.004, 0.007)
    s = np.linspace(0.0, 1.0, 17)
    if _chance(rng, 0.5):
        # Partial torus: a circular arc through both attachment points (mid-wall, so a tapered wall still holds both
        # ends), bulging out from their chord by `reach`; a reach beyond half the chord makes a C of over half a circle.
        p1 = np.array([body_r(z1) - wall_t / 2, z1])
        p2 = np.array([body_r(z2) - wall_t / 2, z2])
        half = float(np.linalg.norm(p2 - p1)) / 2
        along = (p2 - p1) / (2 * half)
        out = np.array([along[1], -along[0]])  # chord normal pointing away from the axis
        reach = _u(rng, 0.6, 1.3) * half
        arc_r = (half**2 + reach**2) / (2 * reach)
        sweep = np.arctan2(half, arc_r - reach)
        angles = np.linspace(-sweep, sweep, 17)[:, None]
        centre = (p1 + p2) / 2 + out * (reach - arc_r)
        rz = centre + arc_r * (np.cos(angles) * out + np.sin(angles) * along)
        path = np.stack([rz[:, 0], np.zeros(len(rz)), rz[:, 1]], 1)
    else:
        # D shape: leaves the wall horizontally, squarer where `gamma` is small.
        reach, gamma = _u(rng, 0.02, 0.035), _u(rng, 0.45, 1.0)
        zz = z1 + (z2 - z1) * (1 - np.cos(np.pi * s)) / 2
        xx = np.array([body_r(v) for v in zz]) - wall_t / 2 + reach * np.sin(np.pi * s) ** gamma
        path = np.stack([xx, np.zeros_like(xx), zz], 1)
    parts.append(_tube(path, thick, (0, 1, 0), sections=10))
    return parts


def _bottle(rng: np.random.Generator) -> Parts:
    """Bottle, 0.15-0.47 m. Knobs: body radius, height and taper, shoulder height and shape (round, conical,
    S-curve), neck radius and length, lip bead, screw cap or open mouth (a short hollow in the neck)."""
    radius, body_h = _u(rng, 0.025, 0.05), _u(rng, 0.1, 0.25)
    taper = _u(rng, 0.9, 1.05)
    neck_r = min(_u(rng, 0.009, 0.018), radius * 0.6)
    shoulder_h = _u(rng, 0.02, 0.08)
    neck_len = _u(rng, 0.015, 0.12)
    chamfer = _u(rng, 0.002, 0.008)
    pts = [(0.0, 0.0), (radius - chamfer, 0.0), (radius, chamfer), (radius * taper, body_h)]
    shape = _pick(rng, ("round", "conical", "s-curve"))
    s = np.linspace(0.0, 1.0, 9)[1:]
    if shape == "round":
        f = np.cos(np.pi / 2 * s)
    elif shape == "conical":
        f = 1 - s
    else:
        f = (1 + np.cos(np.pi * s)) / 2
    top_body = radius * taper
    pts += [(neck_r + (top_body - neck_r) * fi, body_h + shoulder_h * si) for fi, si in zip(f, s, strict=True)]
    neck_top = body_h + shoulder_h + neck_len
    lip = _u(rng, 0.0, 0.004)
    lip_h = _u(rng, 0.004, 0.01)
    pts += [(neck_r, neck_top - lip_h), (neck_r + lip, neck_top - lip_h + 0.001), (neck_r + lip, neck_top - 0.001)]
    parts: Parts = []
    if _chance(rng, 0.55):
        pts += [(neck_r, neck_top), (0.0, neck_top)]
        cap_r = neck_r + lip + _u(rng, 0.001, 0.004)
        cap_h = _u(rng, 0.01, 0.025)
        parts.append(_frustum(cap_r, cap_r, neck_top - cap_h * 0.6, neck_top + cap_h * 0.4, sections=_MEDIUM))
    else:
        # Open mouth: the profile turns down into the neck, so the bottle has a visible opening.
        inner = neck_r * _u(rng, 0.6, 0.8)
        depth = min(neck_len * 0.9 + lip_h, neck_top - body_h * 0.5)
        pts += [(neck_r, neck_top), (inner, neck_top), (inner, neck_top - depth), (0.0, neck_top - depth)]
    parts.append(_lathe(pts, _ROUND))
    return parts


def _vase(rng: np.random.Generator) -> Parts:
    """Vase, 0.15-0.52 m, hollow. Knobs: height, style (amphora, cylinder, trumpet, bulb) setting random radii at
    base, belly, neck and lip and the heights of belly and neck (curvature comes from a smooth monotone spline
    through them), wall and floor thickness."""
    h = _u(rng, 0.15, 0.5)
    wall_t = _u(rng, 0.003, 0.006)
    style = _pick(rng, ("amphora", "cylinder", "trumpet", "bulb"))
    if style == "amphora":
        radii = [_u(rng, 0.12, 0.25), _u(rng, 0.22, 0.35), _u(rng, 0.08, 0.16), _u(rng, 0.12, 0.25)]
        heights = [_u(rng, 0.3, 0.55), _u(rng, 0.7, 0.88)]
    elif style == "cylinder":
        base = _u(rng, 0.12, 0.22)
        radii = [base * _u(rng, 0.9, 1.1) for _ in range(4)]
        heights = [_u(rng, 0.3, 0.5), _u(rng, 0.6, 0.85)]
    elif style == "trumpet":
        radii = [_u(rng, 0.12, 0.2), _u(rng, 0.06, 0.1), _u(rng, 0.08, 0.12), _u(rng, 0.2, 0.35)]
        heights = [_u(rng, 0.2, 0.45), _u(rng, 0.55, 0.75)]
    else:
        radii = [_u(rng, 0.15, 0.25), _u(rng, 0.3, 0.45), _u(rng, 0.06, 0.1), _u(rng, 0.07, 0.14)]
        heights = [_u(rng, 0.25, 0.45), _u(rng, 0.75, 0.9)]
    zs = np.array([0.0, heights[0], heights[1], 1.0]) * h
    # Radii scale with height, but never so small that the neck closes up or so large the vase looks like a bowl.
    rs = np.clip(np.array(radii) * h, wall_t + 0.012, 0.16)
    z = np.linspace(0.0, h, 18)
    r = PchipInterpolator(zs, rs)(z)
    # A 3 mm chamfer at the foot, then the spline.
    wall = np.vstack([[r[0] - 0.003, 0.0], [r[0], 0.003], np.stack([r, z], 1)[1:]])
    return [_vessel([(0.0, 0.0)], wall, wall_t, max(wall_t * 1.5, _u(rng, 0.006, 0.015)))]


def _bowl(rng: np.random.Generator) -> Parts:
    """Bowl, 0.03-0.16 m tall, hollow. Knobs: rim radius, depth ratio (flat serving bowl to deep), wall curvature
    (superellipse exponent: conical to round), flat-bottom radius, optional foot ring, wall thickness."""
    rim = _u(rng, 0.06, 0.16)
    h = max(0.03, rim * _u(rng, 0.3, 0.9))
    k = _pick(rng, (_u(rng, 1.0, 1.3), _u(rng, 1.6, 2.6)))
    rb = rim * _u(rng, 0.3, 0.55)
    t = _u(rng, 0.003, 0.007)
    theta = np.linspace(0.0, np.pi / 2, 12)
    fh = _u(rng, 0.004, 0.012) if _chance(rng, 0.5) else 0.0
    wall = np.stack([rb + (rim - rb) * np.sin(theta) ** (2 / k), fh + (h - fh) * (1 - np.cos(theta) ** (2 / k))], 1)
    if fh > 0:
        # Foot ring: the bowl body starts at fh on a ring of width `ft` whose outer edge is the flat bottom's rim.
        ft = _u(rng, 0.004, 0.01)
        base = [(0.0, fh), (rb - ft, fh), (rb - ft, 0.0), (rb, 0.0)]
    else:
        base = [(0.0, 0.0)]
    return [_vessel(base, wall, t, fh + t)]
