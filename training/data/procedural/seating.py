"""Seating and beds: chair, stool, bench, sofa, bed."""

from __future__ import annotations

import itertools

import numpy as np
import trimesh

from .primitives import (
    _MEDIUM,
    Parts,
    _box,
    _box_c,
    _chance,
    _corner_legs,
    _cyl,
    _ellipsoid,
    _frustum,
    _int,
    _pick,
    _rod,
    _rotate_z,
    _round_corners,
    _torus,
    _tube,
    _u,
)

# ----------------------------------------------------------------------------------------------------------------
# Seating


def _chair(rng: np.random.Generator) -> Parts:
    """Chair, 0.75-1.05 m tall. Knobs: base (4 legs in 4 styles with optional stretchers / swivel pedestal with a
    5-star or disc foot / tubular sled runners), seat size and thickness, back style (solid panel, vertical slats or
    single splat, ladder rails, upholstered block), back height and tilt, armrests or not."""
    parts: Parts = []
    base = _pick(rng, ("legs", "pedestal", "sled"), (0.6, 0.22, 0.18))
    seat_h = _u(rng, 0.44, 0.52) if base == "pedestal" else _u(rng, 0.42, 0.48)
    w, d, t = _u(rng, 0.40, 0.54), _u(rng, 0.40, 0.52), _u(rng, 0.03, 0.07)
    z_seat = seat_h - t
    parts.append(_box((-w / 2, -d / 2, z_seat), (w / 2, d / 2, seat_h)))
    post = _u(rng, 0.022, 0.04)
    if base == "legs":
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        inset = _u(rng, 0.0, 0.03)
        hx, hy = w / 2 - inset - post / 2, d / 2 - inset - post / 2
        splay = _u(rng, 0.02, 0.05)
        parts += _corner_legs(rng, hx, hy, z_seat + t / 2, style, post, splay)
        if _chance(rng, 0.4) and style != "splayed":
            # Stretchers between front and back legs on both sides, plus one across the front.
            zs = _u(rng, 0.1, 0.22)
            r = post * 0.3
            for sx in (-1, 1):
                parts.append(_rod((sx * hx, -hy, zs), (sx * hx, hy, zs), r, sections=8))
            parts.append(_rod((-hx, -hy, zs + 0.03), (hx, -hy, zs + 0.03), r, sections=8))
    elif base == "pedestal":
        parts += _swivel_base(rng, z_seat + t / 2)
    else:
        tube_r = _u(rng, 0.009, 0.014)
        inset, a, f = _u(rng, 0.01, 0.04), _u(rng, 0.03, 0.07), _u(rng, 0.0, 0.04)
        for sx in (-1, 1):
            x = sx * (w / 2 - inset - tube_r)
            path = [(x, -d / 2 + a, z_seat + t / 2), (x, -d / 2 + a - f, tube_r)]
            path += [(x, d / 2 - a + f, tube_r), (x, d / 2 - a, z_seat + t / 2)]
            parts.append(_tube(_round_corners(path, 0.05), tube_r, (1, 0, 0), sections=8))

    back_h = _u(rng, 0.32, 0.52)
    top = seat_h + back_h
    back_style = _pick(rng, ("panel", "slats", "ladder", "upholstered"))
    back: Parts = []
    px = w / 2 - post / 2
    yb = d / 2 - post / 2
    if back_style == "upholstered":
        bt = _u(rng, 0.04, 0.1)
        back.append(_box((-w / 2, d / 2 - bt, seat_h - t / 2), (w / 2, d / 2, top)))
    else:
        for sx in (-1, 1):
            back.append(_box_c((sx * px, yb, (z_seat + top) / 2), (post, post, top - z_seat)))
        board = _u(rng, 0.012, 0.025)
        if back_style == "panel":
            ph = back_h * _u(rng, 0.3, 0.75)
            back.append(_box((-px, yb - board / 2, top - ph), (px, yb + board / 2, top - 0.005)))
        elif back_style == "slats":
            rail = _u(rng, 0.04, 0.09)
            back.append(_box((-px, yb - board, top - rail), (px, yb + board, top)))
            n = _int(rng, 1, 7)
            span = 2 * px - post
            sw = _u(rng, 0.08, 0.2) if n == 1 else min(_u(rng, 0.015, 0.04), span / (2 * n))
            for x in np.linspace(-span / 2, span / 2, n + 2)[1:-1]:
                back.append(_box((x - sw / 2, yb - board / 2, seat_h - 0.01), (x + sw / 2, yb + board / 2, top - rail)))
        else:
            n, rail = _int(rng, 2, 4), _u(rng, 0.03, 0.07)
            for zr in np.linspace(seat_h + back_h * 0.35, top - rail / 2, n):
                back.append(_box((-px, yb - board / 2, zr - rail / 2), (px, yb + board / 2, zr + rail / 2)))
    tilt = _u(rng, 0.0, 0.2)
    # Lean the back about the seat's rear top edge (towards +Y, away from the front).
    rot = trimesh.transformations.rotation_matrix(-tilt, [1, 0, 0], [0, d / 2, seat_h])
    parts += [m.apply_transform(rot) for m in back]

    if _chance(rng, 0.3):
        arm_z, aw = seat_h + _u(rng, 0.17, 0.25), _u(rng, 0.035, 0.06)
        round_arms = _chance(rng, 0.5)
        for sx in (-1, 1):
            x = sx * (w / 2 - aw / 2 + _u(rng, 0.0, 0.02))
            yf = -d / 2 + _u(rng, 0.02, 0.06)
            parts.append(_box((x - aw / 2, yf - 0.03, arm_z - 0.025), (x + aw / 2, d / 2, arm_z)))
            if round_arms:
                parts.append(_cyl((x, yf), z_seat, arm_z - 0.01, aw * 0.35))
            else:
                parts.append(_box((x - aw / 3, yf - aw / 3, z_seat), (x + aw / 3, yf + aw / 3, arm_z - 0.01)))
    return parts


def _swivel_base(rng: np.random.Generator, z_top: float, star: float = 0.7) -> Parts:
    """Office-chair style column on a 5-star base with casters (probability `star`), or on a flat disc; the column
    reaches `z_top`."""
    parts: Parts = []
    col_r = _u(rng, 0.018, 0.03)
    if _chance(rng, star):
        caster = _u(rng, 0.02, 0.03)
        length, arm_t, arm_w = _u(rng, 0.24, 0.32), _u(rng, 0.025, 0.04), _u(rng, 0.03, 0.05)
        hub = 2 * caster - 0.006
        phase = _u(rng, 0.0, 2 * np.pi / 5)
        for k in range(5):
            angle = phase + 2 * np.pi * k / 5
            arm = _box((0.0, -arm_w / 2, hub), (length, arm_w / 2, hub + arm_t))
            wheel = _ellipsoid((length - caster * 0.6, 0.0, caster), (caster, caster * 0.7, caster))
            parts += [_rotate_z(arm, angle), _rotate_z(wheel, angle)]
        parts.append(_cyl((0, 0), hub, hub + arm_t + 0.02, col_r * 2.2, sections=16))
        z0 = hub
    else:
        radius = _u(rng, 0.2, 0.27)
        h = _u(rng, 0.015, 0.03)
        parts.append(_frustum(radius, radius * _u(rng, 0.6, 0.95), 0.0, h, sections=_MEDIUM))
        z0 = 0.0
    parts.append(_cyl((0, 0), z0, z_top, col_r, sections=16))
    if _chance(rng, 0.6):
        # Gas-lift sleeve: a wider tube around the lower half of the column.
        parts.append(_cyl((0, 0), z0, z0 + (z_top - z0) * 0.55, col_r * 1.5, sections=16))
    return parts


def _stool(rng: np.random.Generator) -> Parts:
    """Stool, 0.4-0.85 m. Knobs: bar or low height, round (optionally cushioned) or square seat, 3-4 straight or
    splayed legs with a footrest ring (bar stools) or stretchers, or a pedestal column on a disc with a ring."""
    parts: Parts = []
    bar = _chance(rng, 0.45)
    seat_h = _u(rng, 0.62, 0.8) if bar else _u(rng, 0.42, 0.5)
    t = _u(rng, 0.03, 0.06)
    round_seat = _chance(rng, 0.65)
    radius = _u(rng, 0.15, 0.21)
    if round_seat:
        parts.append(_frustum(radius, radius, seat_h - t, seat_h, sections=_MEDIUM))
        if _chance(rng, 0.4):
            parts.append(_ellipsoid((0, 0, seat_h), (radius * 0.95, radius * 0.95, _u(rng, 0.02, 0.04)), 2))
    else:
        side = radius * 1.8
        parts.append(_box((-side / 2, -side / 2, seat_h - t), (side / 2, side / 2, seat_h)))
    z_top = seat_h - t / 2
    if bar and _chance(rng, 0.35):
        parts += _swivel_base(rng, z_top, star=0.15)
        if _chance(rng, 0.7):
            zf = _u(rng, 0.25, 0.35)
            ring = _u(rng, 0.14, 0.19)
            parts.append(_torus((0, 0, zf), ring, 0.01))
            for angle in (0.0, np.pi / 2):
                spoke = _rod((-ring, 0, zf), (ring, 0, zf), 0.008, sections=8)
                parts.append(_rotate_z(spoke, angle))
        return parts
    n = _pick(rng, (3, 4), (0.4, 0.6))
    leg_r = _u(rng, 0.012, 0.022)
    top_r = radius * _u(rng, 0.55, 0.8)
    splay = _u(rng, 0.0, 0.09)
    phase = np.pi / 4 if n == 4 else np.pi / 2
    angles = phase + 2 * np.pi * np.arange(n) / n
    for a in angles:
        direction = np.array([np.cos(a), np.sin(a), 0.0])
        top = direction * top_r + [0, 0, z_top]
        foot = direction * (top_r + splay)
        parts.append(_rod(foot, top, leg_r * _u(rng, 0.6, 1.0), leg_r))
    zf = _u(rng, 0.25, 0.35) if bar else _u(rng, 0.12, 0.2)
    ring_r = top_r + splay * (1.0 - zf / z_top)
    if bar:
        parts.append(_torus((0, 0, zf), ring_r, _u(rng, 0.008, 0.012)))
    elif _chance(rng, 0.5):
        corners = [np.array([np.cos(a), np.sin(a), 0.0]) * ring_r + [0, 0, zf] for a in angles]
        for k in range(n):
            parts.append(_rod(corners[k], corners[(k + 1) % n], leg_r * 0.5, sections=8))
    return parts


def _bench(rng: np.random.Generator) -> Parts:
    """Bench, 0.4-1.0 m. Knobs: length and depth, solid or slatted seat, support (4-6 legs, slab ends, or two
    rectangular frames), optional slatted back with optional arms (park bench)."""
    parts: Parts = []
    length, depth = _u(rng, 1.0, 1.8), _u(rng, 0.3, 0.45)
    seat_h, t = _u(rng, 0.42, 0.48), _u(rng, 0.03, 0.06)
    z_seat = seat_h - t
    if _chance(rng, 0.4):
        n = _int(rng, 3, 6)
        gap = _u(rng, 0.005, 0.015)
        edges = np.linspace(-depth / 2, depth / 2, n + 1)
        for a, b in itertools.pairwise(edges):
            parts.append(_box((-length / 2, a + gap / 2, z_seat), (length / 2, b - gap / 2, seat_h)))
        # Cross bearers under the slats keep the slats one connected-looking seat.
        for x in (-length / 2 + 0.1, length / 2 - 0.1):
            parts.append(_box((x - 0.025, -depth / 2, z_seat - 0.04), (x + 0.025, depth / 2, z_seat + 0.005)))
        z_seat -= 0.04
    else:
        parts.append(_box((-length / 2, -depth / 2, z_seat), (length / 2, depth / 2, seat_h)))
    support = _pick(rng, ("legs", "slab", "frame"))
    inset = _u(rng, 0.03, 0.15)
    if support == "legs":
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        thickness = _u(rng, 0.03, 0.05)
        count_x = 3 if length > 1.5 and _chance(rng, 0.5) else 2
        hx, hy = length / 2 - inset, depth / 2 - thickness / 2 - _u(rng, 0.0, 0.03)
        parts += _corner_legs(rng, hx, hy, z_seat + 0.01, style, thickness, _u(rng, 0.02, 0.05), count_x)
    else:
        thick = _u(rng, 0.03, 0.06)
        for sx in (-1, 1):
            x = sx * (length / 2 - inset)
            if support == "slab":
                parts.append(_box((x - thick / 2, -depth / 2, 0.0), (x + thick / 2, depth / 2, z_seat + 0.01)))
            else:
                bar = thick * 0.8
                for sy in (-1, 1):
                    y = sy * (depth / 2 - bar / 2)
                    parts.append(_box((x - bar / 2, y - bar / 2, 0.0), (x + bar / 2, y + bar / 2, z_seat + 0.01)))
                parts.append(_box((x - bar / 2, -depth / 2, 0.0), (x + bar / 2, depth / 2, bar)))
    if _chance(rng, 0.35):
        back_h = _u(rng, 0.3, 0.45)
        post = _u(rng, 0.03, 0.05)
        y = depth / 2 - post / 2
        for sx in (-1, 1):
            x = sx * (length / 2 - inset)
            parts.append(_box_c((x, y, (z_seat + seat_h + back_h) / 2), (post, post, seat_h + back_h - z_seat)))
        for zr in np.linspace(seat_h + 0.08, seat_h + back_h - 0.04, _int(rng, 2, 4)):
            parts.append(_box((-length / 2, y - 0.01, zr - 0.035), (length / 2, y + 0.01, zr + 0.035)))
        if _chance(rng, 0.5):
            arm_z = seat_h + _u(rng, 0.18, 0.25)
            for sx in (-1, 1):
                x = sx * (length / 2 - inset)
                parts.append(_box((x - 0.025, -depth / 2, arm_z - 0.03), (x + 0.025, y, arm_z)))
                parts.append(_box((x - 0.02, -depth / 2 + 0.01, z_seat), (x + 0.02, -depth / 2 + 0.05, arm_z)))
    return parts


def _sofa(rng: np.random.Generator) -> Parts:
    """Sofa, 0.6-1.05 m tall, 1.4-2.4 m wide. Knobs: width/depth, seat and back heights, 1-3 seat cushions, loose
    back cushions or a solid back, arms (box, rolled, or none) and their size, legs (4-6, several styles) or a plinth
    to the floor, optional throw pillows."""
    parts: Parts = []
    w, d = _u(rng, 1.4, 2.4), _u(rng, 0.8, 1.0)
    seat_h, back_top = _u(rng, 0.4, 0.47), _u(rng, 0.72, 0.95)
    leg_h = 0.0 if _chance(rng, 0.25) else _u(rng, 0.04, 0.16)
    cushion = _u(rng, 0.1, 0.16)
    arms = _pick(rng, ("box", "rolled", "none"), (0.5, 0.3, 0.2))
    arm_w = 0.0 if arms == "none" else _u(rng, 0.1, 0.24)
    arm_h = min(_u(rng, 0.55, 0.7), back_top - 0.05)
    xin = w / 2 - arm_w  # inner half-width between the arms
    back_t = _u(rng, 0.15, 0.25)
    z_base = seat_h - cushion
    parts.append(_box((-xin, -d / 2, leg_h), (xin, d / 2, z_base)))
    loose_back = _chance(rng, 0.7)
    frame_top = back_top - (_u(rng, 0.0, 0.12) if loose_back else 0.0)
    parts.append(_box((-w / 2, d / 2 - back_t, leg_h), (w / 2, d / 2, frame_top)))
    n = 1 if w < 1.6 and _chance(rng, 0.5) else _int(rng, 2, 3)
    gap = 0.006
    edges = np.linspace(-xin, xin, n + 1)
    for a, b in itertools.pairwise(edges):
        parts.append(_box((a + gap, -d / 2 + 0.01, z_base - 0.01), (b - gap, d / 2 - back_t + 0.01, seat_h)))
    if loose_back:
        bc = _u(rng, 0.12, 0.2)
        tilt = _u(rng, 0.05, 0.2)
        rot = trimesh.transformations.rotation_matrix(-tilt, [1, 0, 0], [0, d / 2 - back_t, seat_h])
        for a, b in itertools.pairwise(edges):
            cushion_part = _box(
                (a + gap, d / 2 - back_t - bc, seat_h - 0.02), (b - gap, d / 2 - back_t + 0.02, back_top)
            )
            parts.append(cushion_part.apply_transform(rot))
    if arms != "none":
        for sx in (-1, 1):
            x0, x1 = sorted((sx * w / 2, sx * xin))
            if arms == "box":
                parts.append(_box((x0, -d / 2, leg_h), (x1, d / 2, arm_h)))
            else:
                rr = arm_w / 2 * _u(rng, 1.0, 1.25)
                xc = (x0 + x1) / 2
                parts.append(_box((x0, -d / 2, leg_h), (x1, d / 2, arm_h - rr)))
                parts.append(_rod((xc, -d / 2 - 0.01, arm_h - rr), (xc, d / 2, arm_h - rr), rr, sections=16))
    if leg_h > 0:
        style = _pick(rng, ("square", "round", "tapered", "splayed"))
        count_x = 3 if w > 2.0 else 2
        hx, hy = w / 2 - 0.06, d / 2 - 0.06
        parts += _corner_legs(rng, hx, hy, leg_h + 0.01, style, _u(rng, 0.03, 0.06), _u(rng, 0.01, 0.04), count_x)
    if _chance(rng, 0.5):
        for sx in (-1, 1)[: _int(rng, 1, 2)]:
            size = _u(rng, 0.18, 0.24)
            c = (sx * (xin - size * 0.7), d / 2 - back_t - 0.1, seat_h + size * 0.8)
            parts.append(_ellipsoid(c, (size, 0.07, size), 1))
    return parts


def _bed(rng: np.random.Generator) -> Parts:
    """Bed, 0.3-1.5 m tall. Knobs: width (single to king) and length, legs or platform to the floor, frame and
    mattress heights, headboard style (panel, posts, upholstered with rounded top, none) and height, footboard,
    1-2 pillows, duvet or bare mattress."""
    parts: Parts = []
    w = _pick(rng, (0.9, 1.2, 1.4, 1.6, 1.8)) + _u(rng, -0.02, 0.05)
    length = _u(rng, 1.95, 2.15)
    leg_h = 0.0 if _chance(rng, 0.3) else _u(rng, 0.05, 0.25)
    frame_h = _u(rng, 0.12, 0.25)
    frame_top = leg_h + frame_h
    parts.append(_box((-w / 2, -length / 2, leg_h), (w / 2, length / 2, frame_top)))
    inset = _u(rng, 0.0, 0.03)
    mt = _u(rng, 0.15, 0.3)
    mattress_top = frame_top - _u(rng, 0.0, 0.05) + mt
    parts.append(
        _box((-w / 2 + inset, -length / 2 + inset, mattress_top - mt), (w / 2 - inset, length / 2, mattress_top))
    )
    if leg_h > 0:
        style = _pick(rng, ("square", "round", "tapered"))
        parts += _corner_legs(rng, w / 2 - 0.05, length / 2 - 0.05, leg_h + 0.01, style, _u(rng, 0.04, 0.07))
    head = _pick(rng, ("panel", "posts", "upholstered", "none"), (0.35, 0.25, 0.3, 0.1))
    ht = _u(rng, 0.04, 0.1)
    y1 = length / 2 + ht
    if head != "none":
        top = max(mattress_top + _u(rng, 0.3, 0.7), _u(rng, 0.9, 1.35))
        over = _u(rng, 0.0, 0.05)
        if head == "upholstered":
            rr = ht * _u(rng, 0.6, 1.0)
            parts.append(_box((-w / 2 - over, length / 2, 0.0), (w / 2 + over, y1, top - rr)))
            parts.append(
                _rod(
                    (-w / 2 - over, (length / 2 + y1) / 2, top - rr),
                    (w / 2 + over, (length / 2 + y1) / 2, top - rr),
                    rr,
                    sections=16,
                )
            )
        else:
            parts.append(
                _box((-w / 2 - over, length / 2, 0.0 if head == "panel" else frame_top), (w / 2 + over, y1, top))
            )
            if head == "posts":
                post = _u(rng, 0.05, 0.08)
                for sx in (-1, 1):
                    parts.append(
                        _box_c(
                            (sx * (w / 2 + over), length / 2 + ht / 2, (top + 0.05) / 2), (post, post * 1.1, top + 0.05)
                        )
                    )
    if _chance(rng, 0.35):
        ft = mattress_top + _u(rng, -0.1, 0.15)
        parts.append(_box((-w / 2, -length / 2 - ht, 0.0), (w / 2, -length / 2, ft)))
    n = 1 if w < 1.1 else 2
    pw = (w - 2 * inset) / n
    for k in range(n):
        cx = -w / 2 + inset + pw * (k + 0.5)
        rz = _u(rng, 0.05, 0.08)
        parts.append(
            _ellipsoid((cx, length / 2 - 0.3, mattress_top + rz * 0.5), (pw * 0.42, _u(rng, 0.17, 0.22), rz), 1)
        )
    if _chance(rng, 0.6):
        over, drape = _u(rng, 0.02, 0.08), _u(rng, 0.1, 0.25)
        y_end = length / 2 - _u(rng, 0.5, 0.8)
        parts.append(
            _box((-w / 2 - over, -length / 2 - over, mattress_top - drape), (w / 2 + over, y_end, mattress_top + 0.03))
        )
    return parts
