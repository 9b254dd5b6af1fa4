"""Building blocks of the procedural objects: random draws, closed primitive solids (boxes, cylinders, lathe
solids, tubes, tori, ellipsoids), hollow vessels and furniture parts (drawer fronts, handles, legs)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import trimesh

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
