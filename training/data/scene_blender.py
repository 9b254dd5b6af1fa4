"""Scenes around the rendered object (Blender side): clutter on the ground, a 3D occluder in front of the
object, and image-based lighting from the HDRIs that ship inside the bpy wheel.

Imported only by `training.data.render_blender`, inside its Blender process. Pass indices of the object-index
pass: 1 is the target object (its pixels are the visible mask), 2 is anything that hides part of the target
in this view (its pixels are the occluder mask), 3 is clutter that hides nothing. Which objects hide the
target is measured per view by casting rays through a grid of the view's pixels against the target's and
each other object's triangles (`hidden_rays`), not guessed from positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET, OCCLUDER, CLUTTER = 1, 2, 3
CONDITIONS = ("clean", "cluttered", "occluded")
RAY_GRID = 64
"""Rays per side of the view when measuring what hides the target (64² = 4096 rays, a few ms)."""
OCCLUDED_RANGE = (0.15, 0.6)
"""Share of the target's silhouette an occluder should hide: enough to matter, little enough that the object
stays recognisable (ZeroShape-W's occluded renders)."""
PUSHES, PUSH_STEP = 6, 0.06
"""An occluder that cuts into the target is moved towards the camera in these steps (normalised units)."""
MAX_CLUTTER_HIDDEN = 0.3
"""Clutter that would hide more of the target than this is left out of that view: clutter is not occlusion."""


@dataclass
class SceneObject:
    """A non-target object of the scene: its Blender object, its BVH in world space, and its footprint."""

    obj: object
    bvh: object
    centre_xy: np.ndarray
    radius_xy: float


def world_vertices(objects) -> np.ndarray:
    """[N, 3] world coordinates of every vertex of the given mesh objects."""
    chunks = []
    for obj in objects:
        count = len(obj.data.vertices)
        local = np.empty(count * 3, dtype=np.float64)
        obj.data.vertices.foreach_get("co", local)
        matrix = np.asarray(obj.matrix_world, dtype=np.float64)
        chunks.append(local.reshape(count, 3) @ matrix[:3, :3].T + matrix[:3, 3])
    return np.concatenate(chunks) if chunks else np.zeros((0, 3))


def hdri_files() -> list[Path]:
    """The CC0 studio-light HDRIs of the bpy wheel (datafiles/studiolights/world/*.exr)."""
    import bpy

    folder = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
    return sorted(Path(folder).glob("*.exr")) if folder else []


def light_with_hdri(bpy, world, rng: np.random.Generator) -> str | None:
    """Light (and show, unless the sky is transparent) the scene with a random HDRI, turned about Z; returns
    its name, or None when the wheel has none."""
    files = hdri_files()
    if not files:
        return None
    path = files[int(rng.integers(len(files)))]
    nodes, links = world.node_tree.nodes, world.node_tree.links
    coordinates = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, float(rng.uniform(0, 2 * math.pi)))
    texture = nodes.new("ShaderNodeTexEnvironment")
    texture.image = bpy.data.images.load(str(path), check_existing=True)
    links.new(coordinates.outputs["Generated"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
    background = nodes["Background"]
    links.new(texture.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = float(rng.uniform(0.6, 1.6))
    return path.stem


def bvh_of(objects) -> object:
    """One BVH tree over the world-space triangles of the given mesh objects."""
    from mathutils.bvhtree import BVHTree

    vertices, polygons, offset = [], [], 0
    for obj in objects:
        matrix = obj.matrix_world
        vertices += [matrix @ vertex.co for vertex in obj.data.vertices]
        polygons += [[offset + index for index in polygon.vertices] for polygon in obj.data.polygons]
        offset += len(obj.data.vertices)
    return BVHTree.FromPolygons(vertices, polygons)


def view_rays(world_to_camera: np.ndarray, K: np.ndarray, size: int, grid: int = RAY_GRID):
    """Origin (3,) and unit directions [grid², 3] in world space through a grid of pixel centres of the view."""
    centres = (np.arange(grid) + 0.5) * size / grid - 0.5
    u, v = np.meshgrid(centres, centres)
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    camera_to_world = np.linalg.inv(world_to_camera)
    directions = (camera_to_world[:3, :3] @ (np.linalg.inv(K) @ pixels)).T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return camera_to_world[:3, 3], directions


def target_distances(target_bvh, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance along each ray to the target's first surface, inf where the ray misses it."""
    from mathutils import Vector

    start = Vector(origin.tolist())
    distances = np.full(len(directions), np.inf)
    for index, direction in enumerate(directions):
        hit = target_bvh.ray_cast(start, Vector(direction.tolist()))
        if hit[0] is not None:
            distances[index] = hit[3]
    return distances


def hidden_rays(other_bvh, origin: np.ndarray, directions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[rays] bool: the rays that meet the target (finite `target` distance) and meet `other` before it."""
    from mathutils import Vector

    hidden = np.zeros(len(directions), dtype=bool)
    start = Vector(origin.tolist())
    for index in np.flatnonzero(np.isfinite(target)):
        hit = other_bvh.ray_cast(start, Vector(directions[index].tolist()), float(target[index]))
        hidden[index] = hit[0] is not None
    return hidden


def share_of_target(hidden: np.ndarray, target: np.ndarray) -> float:
    """Share of the target's rays that `hidden` marks."""
    seen = np.isfinite(target)
    return float(hidden[seen].mean()) if seen.any() else 0.0


def _footprint(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    centre = (vertices[:, :2].min(axis=0) + vertices[:, :2].max(axis=0)) / 2
    return centre, float(np.linalg.norm(vertices[:, :2] - centre, axis=1).max())


def _import_scaled(bpy, path: str, scale: float, turn: float, make_material: Callable):
    """Import a pool mesh (normalised frame), scaled and turned about Z, with a drawn material."""
    bpy.ops.wm.ply_import(filepath=path)
    obj = bpy.context.selected_objects[0]
    obj.scale = (scale, scale, scale)
    obj.rotation_euler = (0.0, 0.0, turn)
    obj.data.materials.append(make_material())
    bpy.context.view_layer.update()
    return obj


def _stand(bpy, obj, floor: float, centre_xy: np.ndarray) -> None:
    """Move `obj` so that it stands on z = floor with its footprint centred at centre_xy."""
    obj.location = (0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    vertices = world_vertices([obj])
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    obj.location = (
        float(centre_xy[0] - (low[0] + high[0]) / 2),
        float(centre_xy[1] - (low[1] + high[1]) / 2),
        float(floor - low[2]),
    )
    bpy.context.view_layer.update()


def add_clutter(
    bpy,
    pool: list[str],
    rng: np.random.Generator,
    target_vertices: np.ndarray,
    make_material: Callable,
) -> list[SceneObject]:
    """2–4 pool objects standing on the target's floor around it (beside and behind, any direction), none
    touching the target or each other. Hidden from rendering until a view shows them."""
    floor = float(target_vertices[:, 2].min())
    target_centre, target_radius = _footprint(target_vertices)
    placed: list[SceneObject] = []
    for _ in range(int(rng.integers(2, 5))):
        obj = _import_scaled(
            bpy,
            pool[int(rng.integers(len(pool)))],
            float(rng.uniform(0.35, 0.9)),
            rng.uniform(0, 2 * math.pi),
            make_material,
        )
        _, radius = _footprint(world_vertices([obj]))
        for _attempt in range(12):
            angle = rng.uniform(0, 2 * math.pi)
            distance = target_radius + radius + rng.uniform(0.05, 0.6)
            centre = target_centre + distance * np.array([math.cos(angle), math.sin(angle)])
            if all(np.linalg.norm(centre - other.centre_xy) > radius + other.radius_xy + 0.02 for other in placed):
                break
        else:
            bpy.data.objects.remove(obj, do_unlink=True)
            continue
        _stand(bpy, obj, floor, centre)
        obj.pass_index = CLUTTER
        obj.hide_render = True
        placed.append(SceneObject(obj, bvh_of([obj]), centre, radius))
    return placed


def add_occluder(bpy, pool: list[str], rng: np.random.Generator, make_material: Callable) -> object:
    """The object that will stand in front of the target in occluded views (placed per view)."""
    obj = _import_scaled(bpy, pool[int(rng.integers(len(pool)))], 1.0, 0.0, make_material)
    obj.hide_render = True
    return obj


def place_occluder(
    bpy,
    occluder,
    rng: np.random.Generator,
    floor: float,
    target_bvh,
    rays: tuple[np.ndarray, np.ndarray],
    target: np.ndarray,
    attempts: int = 12,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Stand the occluder on the floor in front of a visible point of the target, on that point's camera ray,
    so that it hides part of the object: random sizes, turns and sideways offsets are tried until it hides a
    share in OCCLUDED_RANGE without touching the target (else the try closest to the range is kept).

    The point is drawn from the lower half of the target's visible surface: a standing occluder can only
    reach the rays that pass low over the floor. Returns (the rays it hides [rays] bool, footprint centre,
    footprint radius)."""
    origin, directions = rays
    seen = np.flatnonzero(np.isfinite(target))
    points = origin + directions[seen] * target[seen, None]  # [n, 3] visible target points, world
    low_points = points[np.argsort(points[:, 2])[: max(1, len(points) // 3)]]
    low, high = OCCLUDED_RANGE
    best: tuple[float, tuple, np.ndarray | None] | None = None
    placement = None
    for _ in range(attempts):
        point = low_points[int(rng.integers(len(low_points)))]
        towards = origin[:2] - point[:2]
        towards /= max(np.linalg.norm(towards), 1e-9)
        placement = (
            point[:2],
            towards,
            float(rng.uniform(0.6, 1.3)),  # scale
            float(rng.uniform(0, 2 * math.pi)),  # turn
            float(rng.uniform(0.02, 0.15)),  # gap between the point and the occluder's footprint
            float(rng.uniform(-0.5, 0.5)),  # sideways offset, in footprint radii
        )
        hidden = _try_occluder(bpy, occluder, floor, target_bvh, rays, target, *placement)
        share = share_of_target(hidden, target) if hidden is not None else -1.0
        miss = np.inf if share < 0 else 0.0 if low <= share <= high else min(abs(share - low), abs(share - high))
        if best is None or miss < best[0]:
            best = (miss, placement, hidden)
        if miss == 0.0:
            break
    _, kept, hidden = best
    if kept is not placement:  # the occluder stands where the last try put it: move it back to the best one
        hidden = _try_occluder(bpy, occluder, floor, target_bvh, rays, target, *kept)
    if hidden is None:  # every try cut into the target: it stands as the best one left it, labelled as it is
        hidden = hidden_rays(bvh_of([occluder]), origin, directions, target)
    centre, radius = _footprint(world_vertices([occluder]))
    return hidden, centre, radius


def _try_occluder(bpy, occluder, floor, target_bvh, rays, target, point_xy, towards, scale, turn, gap, sideways):
    """Place the occluder as described; the rays of the target it hides, or None if it cuts into the target
    however far it is pushed towards the camera."""
    occluder.scale = (scale, scale, scale)
    occluder.rotation_euler = (0.0, 0.0, turn)
    occluder.location = (0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    _, radius = _footprint(world_vertices([occluder]))
    across = np.array([-towards[1], towards[0]])
    for push in range(PUSHES):  # a target wider above its low point (a bulging pot): step towards the camera
        centre = point_xy + towards * (radius + gap + push * PUSH_STEP) + across * sideways * radius
        _stand(bpy, occluder, floor, centre)
        bvh = bvh_of([occluder])
        if not bvh.overlap(target_bvh):
            break
    else:
        return None
    return hidden_rays(bvh, rays[0], rays[1], target)


def plan_conditions(job: dict, rng: np.random.Generator) -> list[list[str]]:
    """The scene condition of every view, grouped by camera: with `every_condition`, each camera is rendered
    clean, cluttered and occluded (a validation split that compares the three on the same cameras); otherwise
    one view per camera, occluded with probability `occlusion`, cluttered with probability `clutter`."""
    if job.get("every_condition"):
        return [list(CONDITIONS) for _ in range(job["views"])]
    groups = []
    for _ in range(job["views"]):
        draw = rng.random()
        occlusion, clutter = job.get("occlusion", 0.0), job.get("clutter", 0.0)
        groups.append(["occluded" if draw < occlusion else "cluttered" if draw < occlusion + clutter else "clean"])
    return groups


def stage_condition(
    bpy, condition, clutter, occluder, target_bvh, rng, vertices, location, world_to_camera, K, size
) -> dict:
    """Show, hide and label the scene's other objects for one view; returns what camera.json records of it.

    Every shown object that hides part of the target gets the occluder pass index, the others the clutter
    index; clutter that would hide more than MAX_CLUTTER_HIDDEN of the target is left out of the view."""
    for item in clutter:
        item.obj.hide_render = condition == "clean"
    occluder.hide_render = condition != "occluded"
    if condition == "clean":
        return {"hidden_fraction": 0.0}
    rays = view_rays(world_to_camera, K, size)
    target = target_distances(target_bvh, *rays)
    hidden = np.zeros(len(target), dtype=bool)
    if condition == "occluded" and not np.isfinite(target).any():
        # No ray of the grid meets the target (a spear is thinner than the rays' spacing): there is no visible
        # point to stand the occluder in front of, so the view is rendered cluttered, and its camera.json says so.
        occluder.hide_render = True
        condition = "cluttered"
    if condition == "occluded":
        floor = float(vertices[:, 2].min())
        occluder_hidden, centre, radius = place_occluder(bpy, occluder, rng, floor, target_bvh, rays, target)
        occluder.pass_index = OCCLUDER if occluder_hidden.any() else CLUTTER
        hidden |= occluder_hidden
        for item in clutter:  # clutter standing where the occluder stands is left out of this view
            if np.linalg.norm(item.centre_xy - centre) < item.radius_xy + radius:
                item.obj.hide_render = True
    for item in clutter:
        if item.obj.hide_render:
            continue
        item_hidden = hidden_rays(item.bvh, *rays, target)
        if share_of_target(item_hidden, target) > MAX_CLUTTER_HIDDEN:
            item.obj.hide_render = True
            continue
        item.obj.pass_index = OCCLUDER if item_hidden.any() else CLUTTER
        hidden |= item_hidden
    return {"hidden_fraction": round(share_of_target(hidden, target), 4), "scene": condition}
