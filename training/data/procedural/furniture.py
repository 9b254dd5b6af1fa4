"""Tables and storage: table, desk, cabinet, bookcase, shelf."""

from __future__ import annotations

import itertools

import numpy as np

from .primitives import (
    _MEDIUM,
    _ROUND,
    Parts,
    _box,
    _box_c,
    _chance,
    _corner_legs,
    _cyl,
    _fronts,
    _frustum,
    _int,
    _pick,
    _rod,
    _rotate_z,
    _u,
)

# ----------------------------------------------------------------------------------------------------------------
# Tables and storage


def _table(rng: np.random.Generator) -> Parts:
    """Table, 0.35-0.8 m. Knobs: kind (dining, coffee, side) setting height and size, top shape (rectangle or round)
    and thickness, base (4 legs in 4 styles with optional apron / 3-4 legs under a round top / pedestal column on a
    disc or cross feet / trestle ends with a stretcher), optional lower shelf on low tables."""
    parts: Parts = []
    kind = _pick(rng, ("dining", "coffee", "side"), (0.5, 0.3, 0.2))
    h = {"dining": _u(rng, 0.72, 0.78), "coffee": _u(rng, 0.38, 0.48), "side": _u(rng, 0.5, 0.66)}[kind]
    tt = _u(rng, 0.02, 0.05)
    z_top = h - tt
    shape = _pick(rng, ("rect", "round"), (0.4, 0.6) if kind == "side" else (0.7, 0.3))
    if shape == "rect":
        sizes = {"dining": ((1.0, 2.0), (0.7, 1.0)), "coffee": ((0.8, 1.3), (0.45, 0.7)), "side": ((0.4, 0.6),) * 2}
        (wl, wh), (dl, dh) = sizes[kind]
        w, d = _u(rng, wl, wh), _u(rng, dl, dh)
        parts.append(_box((-w / 2, -d / 2, z_top), (w / 2, d / 2, h)))
        # A single central pedestal only steadies a near-square top.
        base = _pick(rng, ("legs", "trestle", "pedestal") if w < 1.4 * d else ("legs", "trestle"))
        half = (w / 2, d / 2)
    else:
        r = {"dining": _u(rng, 0.45, 0.65), "coffee": _u(rng, 0.35, 0.55), "side": _u(rng, 0.2, 0.3)}[kind]
        parts.append(_frustum(r, r, z_top, h, sections=_ROUND))
        base = _pick(rng, ("legs", "pedestal"))
        half = (r, r)
    if base == "legs":
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        # Small tables get slimmer legs, or their four posts read as slabs.
        thick = _u(rng, 0.03, 0.07) if kind == "dining" else _u(rng, 0.022, 0.05)
        inset = _u(rng, 0.03, 0.12) if kind == "dining" else _u(rng, 0.01, 0.06)
        if shape == "rect":
            hx, hy = half[0] - inset - thick / 2, half[1] - inset - thick / 2
            parts += _corner_legs(rng, hx, hy, z_top + 0.005, style, thick, _u(rng, 0.03, 0.08))
            if style != "splayed" and _chance(rng, 0.6):
                ah = _u(rng, 0.06, 0.11)
                parts.append(_box((-hx, -hy - 0.01, z_top - ah), (hx, -hy + 0.01, z_top + 0.005)))
                parts.append(_box((-hx, hy - 0.01, z_top - ah), (hx, hy + 0.01, z_top + 0.005)))
                parts.append(_box((-hx - 0.01, -hy, z_top - ah), (-hx + 0.01, hy, z_top + 0.005)))
                parts.append(_box((hx - 0.01, -hy, z_top - ah), (hx + 0.01, hy, z_top + 0.005)))
            if kind != "dining" and _chance(rng, 0.4):
                zs = _u(rng, 0.08, 0.2)
                parts.append(_box((-hx, -hy, zs), (hx, hy, zs + 0.02)))
        else:
            n = _pick(rng, (3, 4))
            ring = half[0] * _u(rng, 0.55, 0.8)
            splay = _u(rng, 0.0, 0.08) if style == "splayed" else 0.0
            for k in range(n):
                a = np.pi / 2 + 2 * np.pi * k / n
                u = np.array([np.cos(a), np.sin(a), 0.0])
                parts.append(_rod(u * (ring + splay), u * ring + [0, 0, z_top + 0.005], thick * 0.35, thick / 2))
            if kind != "dining" and _chance(rng, 0.4):
                zs = _u(rng, 0.08, 0.2)
                parts.append(_frustum(ring * 0.95, ring * 0.95, zs, zs + 0.02, sections=_MEDIUM))
    elif base == "pedestal":
        col = _u(rng, 0.035, 0.08)
        parts.append(_frustum(col * _u(rng, 0.8, 1.4), col, 0.0, z_top + 0.005, sections=_MEDIUM))
        foot = min(half) * _u(rng, 0.5, 0.8)
        if _chance(rng, 0.6):
            parts.append(_frustum(foot, foot * _u(rng, 0.5, 0.9), 0.0, _u(rng, 0.02, 0.05), sections=_MEDIUM))
        else:
            fw, fh = _u(rng, 0.04, 0.07), _u(rng, 0.03, 0.06)
            for angle in np.pi / 4 + np.arange(4) * np.pi / 2:
                parts.append(_rotate_z(_box((0.0, -fw / 2, 0.0), (foot, fw / 2, fh)), angle))
    else:
        thick = _u(rng, 0.04, 0.07)
        x = half[0] - _u(rng, 0.1, 0.25)
        ew = half[1] * _u(rng, 0.5, 0.8)
        for sx in (-1, 1):
            parts.append(_box((sx * x - thick / 2, -ew / 2, 0.0), (sx * x + thick / 2, ew / 2, z_top + 0.005)))
            parts.append(_box((sx * x - thick, -half[1] * 0.85, 0.0), (sx * x + thick, half[1] * 0.85, 0.05)))
        zs = _u(rng, 0.15, 0.4) * h
        parts.append(_box((-x, -0.02, zs), (x, 0.02, zs + 0.08)))
    return parts


def _desk(rng: np.random.Generator) -> Parts:
    """Desk, 0.7-1.6 m. Knobs: width/depth/height, base (4 legs in 4 styles / one or two drawer pedestals with 2-4
    drawers / side panels with a modesty panel), handle style, optional centre drawer, optional hutch with shelves."""
    parts: Parts = []
    w, d, h = _u(rng, 1.0, 1.7), _u(rng, 0.5, 0.8), _u(rng, 0.72, 0.78)
    tt = _u(rng, 0.02, 0.04)
    z_top = h - tt
    parts.append(_box((-w / 2, -d / 2, z_top), (w / 2, d / 2, h)))
    base = _pick(rng, ("legs", "pedestal", "double", "panels"))
    handle = _pick(rng, ("knob", "bar", "none"))
    pw = _u(rng, 0.35, 0.45)
    inset = _u(rng, 0.0, 0.03)
    y_front = -d / 2 + inset + 0.02
    if base in ("pedestal", "double"):
        sides = (1,) if base == "pedestal" else (-1, 1)
        side = _pick(rng, (-1, 1))
        for s in sides:
            sx = s * side
            x0, x1 = sorted((sx * (w / 2 - inset), sx * (w / 2 - inset - pw)))
            z0 = _u(rng, 0.0, 0.08)
            parts.append(_box((x0, y_front, z0), (x1, d / 2 - inset, z_top + 0.005)))
            if z0 > 0:
                parts.append(_box((x0 + 0.02, y_front + 0.02, 0.0), (x1 - 0.02, d / 2 - inset - 0.02, z0 + 0.005)))
            parts += _fronts(rng, x0, x1, z0 + 0.01, z_top - 0.01, y_front, _int(rng, 2, 4), "drawer", handle)
        if base == "pedestal":
            # The free end stands on a side panel or two legs.
            x = -side * (w / 2 - inset - 0.02)
            if _chance(rng, 0.5):
                parts.append(_box((x - 0.02, -d / 2 + inset, 0.0), (x + 0.02, d / 2 - inset, z_top + 0.005)))
            else:
                for y in (-d / 2 + inset + 0.03, d / 2 - inset - 0.03):
                    parts.append(_box_c((x, y, z_top / 2 + 0.0025), (0.04, 0.04, z_top + 0.005)))
    elif base == "legs":
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        thick = _u(rng, 0.03, 0.06)
        parts += _corner_legs(rng, w / 2 - inset - thick, d / 2 - inset - thick, z_top + 0.005, style, thick, 0.04)
    else:
        thick = _u(rng, 0.02, 0.05)
        for sx in (-1, 1):
            x = sx * (w / 2 - inset - thick / 2)
            parts.append(_box((x - thick / 2, -d / 2 + inset, 0.0), (x + thick / 2, d / 2 - inset, z_top + 0.005)))
    if base != "legs" or _chance(rng, 0.3):
        # Modesty panel at the back, between the supports.
        mz = _u(rng, 0.25, 0.5)
        parts.append(
            _box(
                (-w / 2 + inset + 0.02, d / 2 - inset - 0.04, mz),
                (w / 2 - inset - 0.02, d / 2 - inset - 0.02, z_top + 0.005),
            )
        )
    if base != "double" and _chance(rng, 0.4):
        cw = _u(rng, 0.4, 0.6)
        parts.append(_box((-cw / 2, -d / 2 + 0.03, z_top - 0.1), (cw / 2, d / 2 - 0.05, z_top + 0.005)))
        parts += _fronts(rng, -cw / 2, cw / 2, z_top - 0.1, z_top, -d / 2 + 0.03, 1, "drawer", handle)
    if _chance(rng, 0.25):
        # Hutch: side panels, a top and one or two shelves standing on the back of the desk top.
        hh = _u(rng, 0.35, 0.8)
        hd = _u(rng, 0.2, 0.3)
        bt = 0.02
        y0 = d / 2 - hd
        for sx in (-1, 1):
            x = sx * (w / 2 - bt / 2)
            parts.append(_box((x - bt / 2, y0, h - 0.002), (x + bt / 2, d / 2, h + hh)))
        for zs in np.linspace(h + hh - bt, h + hh * 0.45, _int(rng, 1, 2)):
            parts.append(_box((-w / 2, y0, zs), (w / 2, d / 2, zs + bt)))
        parts.append(_box((-w / 2, d / 2 - 0.01, h - 0.002), (w / 2, d / 2, h + hh)))
    return parts


def _cabinet(rng: np.random.Generator) -> Parts:
    """Cabinet, 0.45-2.0 m. Knobs: width/depth/height (sideboard to wardrobe), front layout (drawers in 1-2 columns,
    1-2 doors, drawers over doors), handle style (knob, bar, none), base (plinth, short legs, none), top overhang."""
    parts: Parts = []
    w, d, h = _u(rng, 0.4, 1.2), _u(rng, 0.35, 0.6), _u(rng, 0.5, 1.9)
    base = _pick(rng, ("plinth", "legs", "none"))
    base_h = 0.0 if base == "none" else _u(rng, 0.05, 0.18)
    over = _u(rng, 0.0, 0.03) if _chance(rng, 0.5) else 0.0
    top_t = _u(rng, 0.015, 0.035)
    body_top = h - top_t
    parts.append(_box((-w / 2, -d / 2, base_h), (w / 2, d / 2, body_top + 0.002)))
    parts.append(_box((-w / 2 - over, -d / 2 - over - 0.02, body_top), (w / 2 + over, d / 2, h)))
    if base == "plinth":
        parts.append(_box((-w / 2 + 0.03, -d / 2 + 0.04, 0.0), (w / 2 - 0.03, d / 2 - 0.02, base_h + 0.005)))
    elif base == "legs":
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        parts += _corner_legs(rng, w / 2 - 0.04, d / 2 - 0.04, base_h + 0.005, style, _u(rng, 0.03, 0.05), 0.03)
    handle = _pick(rng, ("knob", "bar", "none"))
    layout = _pick(rng, ("drawers", "doors", "mixed"))
    yf = -d / 2
    z0, z1 = base_h + 0.005, body_top - 0.005
    if layout == "drawers":
        columns = 2 if w > 0.8 and _chance(rng, 0.6) else 1
        count = max(2, min(8, round((z1 - z0) / _u(rng, 0.15, 0.3))))
        edges = np.linspace(-w / 2, w / 2, columns + 1)
        for a, b in itertools.pairwise(edges):
            parts += _fronts(rng, a, b, z0, z1, yf, count, "drawer", handle)
    elif layout == "doors":
        parts += _fronts(rng, -w / 2, w / 2, z0, z1, yf, 1 if w < 0.6 else 2, "door", handle)
    else:
        split = z1 - _u(rng, 0.15, 0.4) * min(1.0, z1 - z0)
        columns = 2 if w > 0.7 else 1
        edges = np.linspace(-w / 2, w / 2, columns + 1)
        for a, b in itertools.pairwise(edges):
            parts += _fronts(rng, a, b, split, z1, yf, 1, "drawer", handle)
        parts += _fronts(rng, -w / 2, w / 2, z0, split, yf, 1 if w < 0.6 else 2, "door", handle)
    return parts


def _books(rng: np.random.Generator, x0: float, x1: float, z: float, room: float, y_front: float, depth: float):
    """A run of upright books (boxes) standing on a shelf at height `z`, filling part of [x0, x1]."""
    parts: Parts = []
    x = x0 + _u(rng, 0.0, 0.05)
    end = x0 + (x1 - x0) * _u(rng, 0.4, 0.95)
    while len(parts) < 40:
        bw = _u(rng, 0.015, 0.045)
        if x + bw > end:
            break
        bh = min(room - 0.01, room * _u(rng, 0.55, 0.9))
        bd = depth * _u(rng, 0.6, 0.9)
        y = y_front + _u(rng, 0.01, 0.03)
        parts.append(_box((x, y, z - 0.001), (x + bw, y + bd, z + bh)))
        x += bw + (_u(rng, 0.02, 0.08) if _chance(rng, 0.08) else 0.001)
    return parts


def _bookcase(rng: np.random.Generator) -> Parts:
    """Bookcase, 0.8-2.2 m. Knobs: width/depth/height, board thickness, shelf count (2-7, from the shelf spacing),
    middle divider on wide cases, back panel or open back, plinth height, top overhang, books on some shelves."""
    parts: Parts = []
    w, d, h = _u(rng, 0.6, 1.2), _u(rng, 0.25, 0.4), _u(rng, 0.9, 2.1)
    bt = _u(rng, 0.015, 0.03)
    plinth = _u(rng, 0.0, 0.1)
    over = _u(rng, 0.0, 0.03) if _chance(rng, 0.4) else 0.0
    for sx in (-1, 1):
        parts.append(
            _box((sx * w / 2 - bt / 2 * (1 + sx), -d / 2, 0.0), (sx * w / 2 + bt / 2 * (1 - sx), d / 2, h - bt))
        )
    parts.append(_box((-w / 2 - over, -d / 2 - over, h - bt), (w / 2 + over, d / 2, h)))
    if plinth > 0:
        parts.append(_box((-w / 2, -d / 2 + 0.02, 0.0), (w / 2, d / 2, plinth)))
    back = _chance(rng, 0.7)
    if back:
        parts.append(_box((-w / 2, d / 2 - 0.008, plinth), (w / 2, d / 2, h - bt)))
    spacing = _u(rng, 0.25, 0.4)
    count = max(1, min(6, round((h - plinth - bt) / spacing) - 1))
    levels = np.linspace(plinth, h - bt, count + 2)  # boards from the bottom one to the top's underside
    for z in levels[:-1]:
        parts.append(_box((-w / 2 + bt, -d / 2, z), (w / 2 - bt, d / 2 - (0.008 if back else 0.0), z + bt)))
    divider = w > 0.9 and _chance(rng, 0.5)
    if divider:
        parts.append(_box((-bt / 2, -d / 2, plinth), (bt / 2, d / 2, h - bt)))
    columns = [(-w / 2 + bt, -bt / 2), (bt / 2, w / 2 - bt)] if divider else [(-w / 2 + bt, w / 2 - bt)]
    fill = _u(rng, 0.3, 0.9)
    for z_lo, z_hi in itertools.pairwise(levels):
        for x0, x1 in columns:
            if _chance(rng, fill):
                parts += _books(rng, x0, x1, z_lo + bt, z_hi - z_lo - bt, -d / 2, d - 0.02)
    return parts


def _shelf(rng: np.random.Generator) -> Parts:
    """Open shelving unit (étagère), 0.5-1.9 m. Knobs: width/depth/height, 3-6 boards, corner posts (round or
    square) or side ladders, X bracing at the back, a few boxes and jars standing on some boards."""
    parts: Parts = []
    w, d, h = _u(rng, 0.5, 1.2), _u(rng, 0.25, 0.45), _u(rng, 0.6, 1.8)
    boards = max(3, min(6, round(h / _u(rng, 0.3, 0.45)) + 1))
    bt = _u(rng, 0.015, 0.03)
    post = _u(rng, 0.02, 0.04)
    style = _pick(rng, ("round", "square", "ladder"))
    hx, hy = w / 2 - post / 2, d / 2 - post / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            if style == "round":
                parts.append(_cyl((sx * hx, sy * hy), 0.0, h, post / 2))
            else:
                parts.append(_box_c((sx * hx, sy * hy, h / 2), (post, post, h)))
    z_first = _u(rng, 0.03, 0.15)
    levels = np.linspace(z_first, h - bt, boards)
    for z in levels:
        parts.append(_box((-w / 2, -d / 2, z), (w / 2, d / 2, z + bt)))
    if style == "ladder":
        for sx in (-1, 1):
            for z in np.linspace(z_first + 0.15, h - 0.15, max(2, boards)):
                parts.append(_rod((sx * hx, -hy, z), (sx * hx, hy, z), post * 0.3, sections=8))
    if _chance(rng, 0.4):
        # X bracing across the back.
        r = _u(rng, 0.004, 0.008)
        parts.append(_rod((-hx, hy, z_first), (hx, hy, h - bt), r, sections=8))
        parts.append(_rod((hx, hy, z_first), (-hx, hy, h - bt), r, sections=8))
    for z_lo, z_hi in itertools.pairwise(levels):
        if not _chance(rng, 0.5):
            continue
        room = z_hi - z_lo - bt
        for _ in range(_int(rng, 1, 3)):
            x = _u(rng, -w / 2 + 0.08, w / 2 - 0.08)
            size = _u(rng, 0.05, min(0.15, d * 0.8))
            ih = min(room - 0.01, _u(rng, 0.05, 0.3))
            if _chance(rng, 0.5):
                parts.append(
                    _box((x - size / 2, -size / 2, z_lo + bt - 0.001), (x + size / 2, size / 2, z_lo + bt + ih))
                )
            else:
                parts.append(
                    _frustum(size / 2, size / 2 * _u(rng, 0.6, 1.1), z_lo + bt - 0.001, z_lo + bt + ih, (x, 0.0), 16)
                )
    return parts
