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

import itertools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.interpolate import PchipInterpolator

from backend.model.config import DEFAULT_CATEGORIES

MAX_FACES = 5000
"""Upper bound on faces per object; the builders' parameter ranges are chosen to stay below it."""

_ROUND = 32  # sections of small lathe objects (mugs, vases), whose silhouette is mostly curve
_MEDIUM = 24  # sections of larger round parts (table tops, lamp shades)
_THIN = 10  # sections of legs, rods and handles: they cover few pixels

Vec = Sequence[float]
Parts = list[trimesh.Trimesh]


# ----------------------------------------------------------------------------------------------------------------
# Random helpers


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    """One element of `options` (optionally weighted); indexes a Python sequence so strings stay `str`."""
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    return options[int(rng.choice(len(options), p=p))]


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (both inclusive)."""
    return int(rng.integers(lo, hi + 1))


# ----------------------------------------------------------------------------------------------------------------
# Closed primitives (all lengths in metres)


def _box(lo: Vec, hi: Vec) -> trimesh.Trimesh:
    """Axis-aligned box between corners `lo` and `hi`."""
    return trimesh.creation.box(bounds=np.array([lo, hi], dtype=np.float64))


def _box_c(center: Vec, extents: Vec) -> trimesh.Trimesh:
    """Axis-aligned box of size `extents` centred on `center`."""
    c, e = np.asarray(center, dtype=np.float64), np.asarray(extents, dtype=np.float64) / 2.0
    return _box(c - e, c + e)


def _lathe(profile: Sequence[Vec] | np.ndarray, sections: int = _ROUND) -> trimesh.Trimesh:
    """Solid of revolution about Z from a 2D (radius, z) profile.

    The profile either starts and ends on the axis (radius 0) or is a closed loop (first point == last point); both
    revolve to a closed surface. Its direction is fixed here (counter-clockwise in the (r, z) plane) so the normals
    face outwards whichever way a builder listed the points.
    """
    pts = np.asarray(profile, dtype=np.float64)
    ring = pts[:-1] if np.allclose(pts[0], pts[-1]) else pts
    r, z = ring[:, 0], ring[:, 1]
    signed_area = 0.5 * float(np.sum(r * np.roll(z, -1) - np.roll(r, -1) * z))
    if signed_area < 0:
        pts = pts[::-1]
    return trimesh.creation.revolve(pts, sections=sections)


def _frustum(r0: float, r1: float, z0: float, z1: float, xy: Vec = (0.0, 0.0), sections: int = _MEDIUM):
    """Vertical truncated cone (or cylinder when r0 == r1) from z0 (radius r0) to z1 (radius r1)."""
    mesh = _lathe([(0.0, z0), (r0, z0), (r1, z1), (0.0, z1)], sections)
    return mesh.apply_translation([xy[0], xy[1], 0.0])


def _cyl(xy: Vec, z0: float, z1: float, radius: float, sections: int = _THIN) -> trimesh.Trimesh:
    """Vertical cylinder centred on `xy` between heights z0 and z1."""
    transform = trimesh.transformations.translation_matrix([xy[0], xy[1], (z0 + z1) / 2.0])
    return trimesh.creation.cylinder(radius=radius, height=z1 - z0, sections=sections, transform=transform)


def _rod(p0: Vec, p1: Vec, r0: float, r1: float | None = None, sections: int = _THIN) -> trimesh.Trimesh:
    """Cylinder (or tapered cone frustum when `r1` is given) from point p0 (radius r0) to p1 (radius r1)."""
    a, b = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    if r1 is None:
        return trimesh.creation.cylinder(radius=r0, segment=np.stack([a, b]), sections=sections)
    axis = b - a
    length = float(np.linalg.norm(axis))
    mesh = _lathe([(0.0, 0.0), (r0, 0.0), (r1, length), (0.0, length)], sections)
    transform = trimesh.transformations.translation_matrix(a) @ trimesh.geometry.align_vectors([0, 0, 1], axis)
    return mesh.apply_transform(transform)


def _ellipsoid(center: Vec, radii: Vec, subdivisions: int = 1) -> trimesh.Trimesh:
    """Ellipsoid from a scaled icosphere (80 faces at subdivision 1, 320 at 2): cushions, pillows, knobs, bulbs."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    mesh.apply_transform(np.diag([radii[0], radii[1], radii[2], 1.0]))
    return mesh.apply_translation(center)


def _torus(center: Vec, major: float, minor: float, sections: int = _MEDIUM) -> trimesh.Trimesh:
    """Horizontal ring (axis Z) around `center`: footrests, lamp-base rims."""
    transform = trimesh.transformations.translation_matrix(center)
    return trimesh.creation.torus(major, minor, major_sections=sections, minor_sections=8, transform=transform)


def _tube(path: Sequence[Vec] | np.ndarray, radius: float, plane_normal: Vec, sections: int = _THIN):
    """Closed tube of circular cross-section swept along a planar polyline, with flat end caps.

    Used for bent parts the stock primitives lack: mug handles (a partial torus or a D shape), sled-chair runners,
    arc-lamp arms. Because the path lies in the plane with normal `plane_normal`, that normal is a twist-free frame
    axis at every point; the other axis is tangent × normal.
    """
    path = np.asarray(path, dtype=np.float64)
    n = len(path)
    normal = np.asarray(plane_normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    side = np.cross(tangent, normal)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    angles = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    ring = np.cos(angles)[None, :, None] * side[:, None, :] + np.sin(angles)[None, :, None] * normal[None, None, :]
    vertices = (path[:, None, :] + radius * ring).reshape(-1, 3)
    vertices = np.vstack([vertices, path[0], path[-1]])
    i = np.arange(n - 1)[:, None] * sections
    j = np.arange(sections)[None, :]
    j1 = (j + 1) % sections
    a, b, c, d = i + j, i + sections + j, i + sections + j1, i + j1
    faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    start, end = n * sections, n * sections + 1
    ring0 = np.arange(sections)
    ring1 = (n - 1) * sections + ring0
    # Caps traverse their ring opposite to the adjacent side faces, so the surface is consistently wound.
    faces.append(np.stack([np.full(sections, start), ring0, np.roll(ring0, -1)], -1))
    faces.append(np.stack([np.full(sections, end), np.roll(ring1, -1), ring1], -1))
    # side × normal = −tangent at every point, so each ring runs the same way round the path and the side faces
    # above are outward for any path direction (the tests check every part's volume is positive).
    return trimesh.Trimesh(vertices=vertices, faces=np.vstack(faces), process=False)


def _round_corners(points: Sequence[Vec], radius: float, steps: int = 4) -> np.ndarray:
    """Polyline with each interior corner replaced by a quadratic Bézier of about `radius` (bent tubing look)."""
    pts = np.asarray(points, dtype=np.float64)
    out = [pts[0]]
    for a, b, c in zip(pts[:-2], pts[1:-1], pts[2:], strict=True):
        # 0.45 of a segment at most, so neighbouring corners never meet and no path point repeats.
        d1 = min(radius, 0.45 * float(np.linalg.norm(a - b)))
        d2 = min(radius, 0.45 * float(np.linalg.norm(c - b)))
        p0 = b + (a - b) / np.linalg.norm(a - b) * d1
        p2 = b + (c - b) / np.linalg.norm(c - b) * d2
        for s in np.linspace(0.0, 1.0, steps + 1):
            out.append((1 - s) ** 2 * p0 + 2 * (1 - s) * s * b + s**2 * p2)
    out.append(pts[-1])
    return np.asarray(out)


def _rotate_z(mesh: trimesh.Trimesh, angle: float) -> trimesh.Trimesh:
    return mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, [0, 0, 1]))


# ----------------------------------------------------------------------------------------------------------------
# Vessel profiles


def _offset_inward(curve: np.ndarray, distance: float) -> np.ndarray:
    """Offset a (radius, z) wall curve, listed bottom to top, by `distance` towards the axis along its normals."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    # The left normal of an upward-travelling wall, (-dz, dr), points towards the axis (and up on a flat bottom).
    return curve + distance * np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _vessel(
    base: Sequence[Vec], wall: np.ndarray, thickness: float, floor: float, sections: int = _ROUND
) -> trimesh.Trimesh:
    """Hollow lathe solid: base points, then the outer `wall` curve up to the rim, a rounded lip, and the inner wall
    (the outer one offset by `thickness`) back down to a floor at height `floor`, closing on the axis.

    `base` starts on the axis (e.g. [(0, 0)], or a foot-ring recess) and joins the first point of `wall`; `wall` must
    rise monotonically in z. All values in metres.
    """
    wall = np.asarray(wall, dtype=np.float64)
    rim_r, top = wall[-1]
    inner = _offset_inward(wall, thickness)
    # np.interp needs increasing z; a tight curve can make the offset fold back slightly, which this flattens.
    inner_z = np.maximum.accumulate(inner[:, 1])
    levels = inner_z[(inner_z > floor + 1e-4) & (inner_z < top - 1e-4)]
    levels = np.unique(np.concatenate([[floor], levels, [top]]))
    inner_r = np.interp(levels, inner_z, inner[:, 0])
    inner_r = np.maximum(inner_r, 0.25 * thickness)
    lip_r0 = inner_r[-1]
    # Rounded lip: a half circle joining the outer and inner rim points.
    centre, half = (rim_r + lip_r0) / 2.0, (rim_r - lip_r0) / 2.0
    lip = [(centre + half * np.cos(a), top + half * np.sin(a)) for a in np.linspace(0, np.pi, 5)[1:-1]]
    profile = [*base, *wall, *lip, *np.stack([inner_r, levels], 1)[::-1], (0.0, floor)]
    return _lathe(profile, sections)


# ----------------------------------------------------------------------------------------------------------------
# Shared furniture pieces


def _handle(rng: np.random.Generator, style: str, x: float, y_front: float, z: float, width: float, vertical: bool):
    """A pull centred at (x, z) on a drawer/door whose front face is at `y_front`, sunk slightly into the front."""
    if style == "knob":
        r = _u(rng, 0.01, 0.016)
        return [_ellipsoid((x, y_front - r * 0.8, z), (r, r, r))]
    if style == "bar":
        length = min(width * _u(rng, 0.3, 0.6), 0.3)
        size = (0.012, 0.02, length) if vertical else (length, 0.02, 0.012)
        return [_box_c((x, y_front - 0.008, z), size)]
    return []  # "none": push-to-open fronts


def _fronts(
    rng: np.random.Generator,
    x0: float,
    x1: float,
    z0: float,
    z1: float,
    y_front: float,
    count: int,
    kind: str,
    handle: str,
) -> Parts:
    """`count` drawer fronts stacked in z ("drawer") or doors side by side in x ("door") filling a face of a carcass.

    Fronts are 20 mm panels standing 18 mm proud of the carcass face at `y_front` (the other 2 mm overlap it), with
    3 mm gaps between them, plus a handle each.
    """
    parts: Parts = []
    gap, depth = 0.003, 0.018
    if kind == "drawer":
        edges = np.linspace(z0, z1, count + 1)
        for a, b in itertools.pairwise(edges):
            parts.append(_box((x0 + gap, y_front - depth, a + gap), (x1 - gap, y_front + 0.002, b - gap)))
            zh = b - min(0.06, (b - a) * 0.35) if (b - a) > 0.25 else (a + b) / 2.0
            parts += _handle(rng, handle, (x0 + x1) / 2.0, y_front - depth, zh, x1 - x0, vertical=False)
    else:
        edges = np.linspace(x0, x1, count + 1)
        for k, (a, b) in enumerate(itertools.pairwise(edges)):
            parts.append(_box((a + gap, y_front - depth, z0 + gap), (b - gap, y_front + 0.002, z1 - gap)))
            # Handles sit near the meeting edge of a pair of doors, near the free edge of a single one.
            toward_right = count == 1 or k == 0
            xh = b - 0.04 if toward_right else a + 0.04
            zh = z1 - min(0.12, (z1 - z0) * 0.3) if z1 - z0 > 0.5 else (z0 + z1) / 2.0
            parts += _handle(rng, handle, xh, y_front - depth, zh, z1 - z0, vertical=True)
    return parts


def _corner_legs(
    rng: np.random.Generator,
    half_x: float,
    half_y: float,
    z_top: float,
    style: str,
    thickness: float,
    splay: float = 0.0,
    count_x: int = 2,
) -> Parts:
    """Legs under the corners of a rectangle (±half_x, ±half_y are leg centres) from the floor to `z_top`.

    style: "square" (box), "round" (cylinder), "tapered" (cone frustum, thinner at the floor) or "splayed" (tapered
    and leaning outwards by `splay` metres at the floor). `count_x` > 2 adds middle legs along x (long sofas).
    """
    parts: Parts = []
    taper = _u(rng, 0.5, 0.8)
    for x in np.linspace(-half_x, half_x, count_x):
        for y in (-half_y, half_y):
            sx, sy = np.sign(x), np.sign(y)
            if style == "square":
                parts.append(_box_c((x, y, z_top / 2.0), (thickness, thickness, z_top)))
            elif style == "round":
                parts.append(_cyl((x, y), 0.0, z_top, thickness / 2.0))
            else:
                lean = splay if style == "splayed" else 0.0
                foot = (x + sx * lean, y + sy * lean, 0.0)
                parts.append(_rod(foot, (x, y, z_top), thickness / 2.0 * taper, thickness / 2.0))
    return parts


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
