"""Shape from the object's silhouette: its visual cone, and a round body inflated inside it.

From one photo the outline is the one exact piece of 3D information: everything on the camera ray of a
background pixel is empty, so the object lies inside the visual cone of its mask (Laurentini 1994). Two uses:

* `carve`: any occupancy field (the learned decoder's) intersected with the cone, so the mesh's outline through
  the estimated camera never leaves the mask; points far outside the cone are answered without calling the field.
* `inflation_field`: a body with no network at all. Every pixel of the mask gets a half-thickness from its
  distance to the outline with a circular profile, h = sqrt(d·(2R − d)), where R is the radius of the largest disc
  inside the mask that covers the pixel (a disc becomes a sphere, a bar a round rod, a thin handle a thin tube);
  the body is mirrored about one depth plane (Teddy, Igarashi et al. 1999; see docs/ARCHITECTURE.md).

Both are fields in *pixel units* (positive inside, about one unit per pixel of distance, continuous), so marching
cubes gives smooth surfaces rather than voxel steps, and `backend.mesh` meshes them like any other field. Points
are in the model's normalised frame (OpenCV camera axes): camera point = point · scale + centroid, and pixel
coordinates are those of the network input, with pixel centres at integers (the convention of K).
Where an occluder hides the object the cone is not carved: the body may continue behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SUPERSAMPLE = 2
"""The outline's signed distance is computed on a grid this much finer than the mask, from the mask's bilinear
interpolation: the outline is then smooth to a fraction of a pixel instead of following pixel edges."""
RADIUS_LEVELS = 16
"""Disc radii tried when finding each pixel's largest covering disc (more: finer thickness steps, slower)."""
CONE_MARGIN_PX = 1.0
"""The cone is dilated by this much, so rounding at the outline does not eat the mesh's rim."""
SKIP_DISTANCE_PX = 3.0
"""`carve` answers points this far outside the cone without calling the field."""


@dataclass(frozen=True)
class ViewCamera:
    """The estimated camera of the network input and the similarity into the model's normalised frame."""

    K: np.ndarray
    """[3, 3] intrinsics in pixels of the network input."""
    centroid: np.ndarray
    """[3] camera coordinates of the normalised frame's origin (units of the depth map)."""
    scale: float
    """Camera units per normalised unit."""

    @classmethod
    def of_latent(cls, latent, index: int = 0) -> ViewCamera:
        """The estimated camera of image `index` of a `backend.model.zeroshape.Latent`."""
        return cls(
            K=latent.intrinsics[index].double().cpu().numpy(),
            centroid=latent.normalisation.centroid[index].double().cpu().numpy(),
            scale=float(latent.normalisation.scale[index]),
        )

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points [N, 3] in the normalised frame → (pixel coordinates [N, 2] as (u, v), camera z [N])."""
        camera = points.astype(np.float64) * self.scale + self.centroid
        z = camera[:, 2]
        safe = np.where(z > 1e-9, z, 1e-9)
        x, y = camera[:, 0] / safe, camera[:, 1] / safe
        K = self.K
        u = K[0, 0] * x + K[0, 1] * y + K[0, 2]
        v = K[1, 1] * y + K[1, 2]
        return np.stack([u, v], axis=1), z

    @property
    def centre_pixel(self) -> tuple[float, float]:
        """(u, v) of the normalised frame's origin: where a tilted mirror plane has depth z0."""
        uv, _ = self.project(np.zeros((1, 3)))
        return float(uv[0, 0]), float(uv[0, 1])


def signed_distance(mask: np.ndarray, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Signed distance to the outline, in pixels, positive inside.

    Args:
        mask: [H, W] float in [0, 1] (coverage or probability; 0.5 is the outline) or bool.
    Returns:
        [H, W] float32 at the mask's pixel centres, computed on a `supersample`× finer grid.
    """
    mask = np.asarray(mask, dtype=np.float32)
    height, width = mask.shape
    # Fine pixel centre F ↔ coarse coordinate (F + 0.5) / s − 0.5.
    rows = (np.arange(height * supersample) + 0.5) / supersample - 0.5
    cols = (np.arange(width * supersample) + 0.5) / supersample - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    fine = ndimage.map_coordinates(mask, grid, order=1, mode="nearest") >= 0.5
    inside = ndimage.distance_transform_edt(fine) - 0.5
    outside = ndimage.distance_transform_edt(~fine) - 0.5
    distance = np.where(fine, inside, -outside) / supersample
    # Back to the coarse pixel centres: the fine pixels nearest each centre, averaged.
    return distance.reshape(height, supersample, width, supersample).mean(axis=(1, 3)).astype(np.float32)


def covering_radius(inside: np.ndarray, distance: np.ndarray, levels: int = RADIUS_LEVELS) -> np.ndarray:
    """For each pixel, the radius (pixels) of the largest disc inside the mask that covers it.

    A disc of radius r centred on q lies in the mask when distance(q) ≥ r; pixel p is covered by one when p is
    within r of such a centre. Radii are tried at `levels` steps up to the largest; the result is smoothed so
    the body's thickness has no steps where one disc size hands over to the next.

    Args:
        inside: [H, W] bool; distance: [H, W] signed distance to the outline (pixels).
    Returns:
        [H, W] float32, at least `distance` inside the mask (0 outside).
    """
    largest = float(distance.max())
    radius = np.zeros(distance.shape, np.float32)
    if largest <= 0:
        return radius
    for level in np.linspace(largest / levels, largest, levels):
        centres = distance >= level - 1e-6
        reach = ndimage.distance_transform_edt(~centres)
        radius[reach <= level] = level
    radius = ndimage.gaussian_filter(radius, sigma=max(1.0, largest / levels))
    return np.where(inside, np.maximum(radius, distance), 0.0).astype(np.float32)


SCALE_RANGE = (0.05, 4.0)
"""The front and back scales a body may have (a flat card seen face-on, a deep rod seen end-on): fits are clipped
to it, and so are the body head's estimates."""
TILT_RANGE = 3.0
"""Fitted tilts are clipped to ±this (depth pixels per pixel: a plane turned 72° from the camera); steeper fits
come from a handful of cells on a thin object and say nothing."""


@dataclass(frozen=True)
class Thickness:
    """How far the body reaches in front of and behind its mirror plane, as multiples of the round profile's
    half-thickness h = sqrt(d(2R − d)): (1, 1) is the round inflation; a flat object seen face-on wants both
    small, a cup seen from above a front smaller than its back. A learned estimate comes from
    `backend.thickness`."""

    front: float = 1.0
    back: float = 1.0
    tilt: tuple[float, float] = (0.0, 0.0)
    """The mirror plane's slope (∂depth/∂u, ∂depth/∂v), depth pixels per image pixel: (0, 0) faces the camera; an
    object standing on the ground and seen from above has its top farther away than its bottom (∂/∂v < 0)."""

    def __post_init__(self) -> None:
        if not (self.front > 0 and self.back > 0):
            raise ValueError(f"thickness scales must be positive, got front {self.front}, back {self.back}")

    @classmethod
    def from_body(cls, body) -> Thickness:
        """From one row of a body head's output (`Latent.body[i]`: tilt_u, tilt_v, log front, log back)."""
        tilt_u, tilt_v, log_front, log_back = (float(x) for x in body)
        clip = lambda x: float(np.clip(x, *np.log(SCALE_RANGE)))  # noqa: E731
        return cls(float(np.exp(clip(log_front))), float(np.exp(clip(log_back))), (tilt_u, tilt_v))

    def plane_offset(self, u: np.ndarray, v: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
        """The mirror plane's depth (pixels) at pixel coordinates (u, v) relative to its depth at `centre`."""
        return self.tilt[0] * (u - centre[0]) + self.tilt[1] * (v - centre[1])


ROUND = Thickness()


@dataclass(frozen=True)
class SilhouetteMaps:
    """What the fields sample, on the network input's pixels."""

    distance: np.ndarray
    """[H, W] float32: signed distance (pixels) to the outline of the body's region, positive inside."""
    radius: np.ndarray
    """[H, W] float32: the largest covering disc's radius (pixels, ≥ 1); outside the region, that of the nearest
    pixel inside it, so the field stays continuous across the outline."""
    cone: np.ndarray
    """[H, W] float32: signed distance (pixels) to the outline of the cone's section (mask ∪ occluder)."""


def silhouette_maps(mask: np.ndarray, occluder: np.ndarray | None = None) -> SilhouetteMaps:
    """The maps of one view.

    Args:
        mask: [H, W] float in [0, 1] or bool: the visible object.
        occluder: optional [H, W] bool: pixels where something in front hides the object. The cone keeps them;
            the body may reach into those near the object (as far as half the object's largest inscribed radius),
            because the object may continue behind its occluder.
    """
    mask = np.asarray(mask, dtype=np.float32)
    inside = mask >= 0.5
    region = mask
    cone_section = mask
    if occluder is not None and occluder.any():
        occluder = np.asarray(occluder, bool) & ~inside
        reach = 0.5 * float(ndimage.distance_transform_edt(inside).max())
        near = ndimage.distance_transform_edt(~inside) <= reach
        region = np.maximum(mask, (occluder & near).astype(np.float32))
        cone_section = np.maximum(mask, occluder.astype(np.float32))
    distance = signed_distance(region)
    region_inside = distance > 0
    radius = covering_radius(region_inside, distance)
    if region_inside.any():
        nearest = ndimage.distance_transform_edt(~region_inside, return_distances=False, return_indices=True)
        radius = radius[nearest[0], nearest[1]]
    radius = np.maximum(radius, 1.0).astype(np.float32)
    cone = signed_distance(cone_section) if cone_section is not region else distance
    return SilhouetteMaps(distance=distance, radius=radius, cone=cone)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of image [H, W] at pixel coordinates uv [N, 2], clamped to the image."""
    height, width = image.shape
    u = np.clip(uv[:, 0], 0, width - 1)
    v = np.clip(uv[:, 1], 0, height - 1)
    return ndimage.map_coordinates(image, [v, u], order=1, mode="nearest")


def _sample(distance: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """A signed-distance map [H, W] at pixel coordinates uv [N, 2]; beyond the image, the border's value minus the
    distance beyond it, so the distance keeps falling off the edge."""
    height, width = distance.shape
    beyond = np.hypot(uv[:, 0] - np.clip(uv[:, 0], 0, width - 1), uv[:, 1] - np.clip(uv[:, 1], 0, height - 1))
    return _bilinear(distance, uv) - beyond


def half_thickness(maps: SilhouetteMaps) -> np.ndarray:
    """[H, W] float32: the inflated body's half-thickness in pixels, sqrt(d·(2R − d)); 0 outside its region."""
    distance = np.maximum(maps.distance, 0.0)
    return np.sqrt(np.clip(distance * (2.0 * maps.radius - distance), 0.0, None)).astype(np.float32)


def inflation_camera(
    maps: SilhouetteMaps, camera: ViewCamera, radius: float = 1.0, thickness: Thickness = ROUND
) -> ViewCamera:
    """The camera with a normalisation that fits the inflated body: the same centroid (the body's mirror plane
    passes through it), and a scale that puts the body within the ball of `radius` (normalised units), wherever
    the predicted depth put the visible surface. Falls back to `camera` for an empty region."""
    inside = maps.distance > 0
    if not inside.any():
        return camera
    rows, columns = np.nonzero(inside)
    z0 = float(camera.centroid[2])
    K = camera.K
    y = (rows - K[1, 2]) / K[1, 1] * z0
    x = (columns - K[0, 2] - K[0, 1] * y / z0) / K[0, 0] * z0
    units_per_pixel = z0 / float(np.sqrt(K[0, 0] * K[1, 1]))
    plane = np.abs(thickness.plane_offset(columns, rows, camera.centre_pixel)) * units_per_pixel
    profile = half_thickness(maps)[rows, columns] * units_per_pixel
    thickness = profile * max(thickness.front, thickness.back) + plane
    lateral = np.hypot(x - camera.centroid[0], y - camera.centroid[1])
    # A point behind the mirror plane sits further out along its ray: 1 + thickness / z0 allows for it.
    reach = float(np.max(np.hypot(lateral * (1.0 + thickness / z0), thickness)))
    return ViewCamera(K=camera.K, centroid=camera.centroid, scale=max(reach / radius, 1e-6))


def front_surface(
    maps: SilhouetteMaps, camera: ViewCamera, thickness: Thickness = ROUND
) -> tuple[np.ndarray, np.ndarray]:
    """The inflated body's surface facing the camera, as the visible shape: (points [3, H, W] in the normalised
    frame, zero outside; visible [H, W] bool)."""
    visible = maps.distance > 0
    height, width = visible.shape
    z0 = float(camera.centroid[2])
    focal = float(np.sqrt(camera.K[0, 0] * camera.K[1, 1]))
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    depth_px = thickness.plane_offset(u, v, camera.centre_pixel) - thickness.front * half_thickness(maps)
    z = np.maximum(z0 + depth_px * z0 / focal, 1e-6)
    K = camera.K
    y = (v - K[1, 2]) / K[1, 1] * z
    x = (u - K[0, 2] - K[0, 1] * y / z) / K[0, 0] * z
    points = (np.stack([x, y, z]) - camera.centroid[:, None, None]) / camera.scale
    return np.where(visible[None], points, 0.0).astype(np.float32), visible


def inflation_field(
    maps: SilhouetteMaps, camera: ViewCamera, depth_plane: float | None = None, thickness: Thickness = ROUND
):
    """The inflated body as a field: points [N, 3] (normalised frame) → values [N] in pixels, inside > 0.

    depth_plane: camera z of the body's mirror plane (default: the normalised frame's origin, the centroid of the
    visible surface). A point's depth offset is turned into pixels at that depth (z0 / f units per pixel), so the
    body is as thick, in pixels, as its silhouette is wide, times `thickness` in front of the plane and behind it.
    """
    z0 = float(camera.centroid[2] if depth_plane is None else depth_plane)
    focal = float(np.sqrt(camera.K[0, 0] * camera.K[1, 1]))
    pixels_per_unit = focal / max(z0, 1e-9)
    centre = camera.centre_pixel

    def field(points: np.ndarray) -> np.ndarray:
        uv, z = camera.project(points)
        distance = _sample(maps.distance, uv)
        radius = _bilinear(maps.radius, uv)
        offset = (z - z0) * pixels_per_unit - thickness.plane_offset(uv[:, 0], uv[:, 1], centre)
        offset = offset / np.where(offset > 0, thickness.back, thickness.front)
        # Inside when |offset| < h = sqrt(d(2R − d)). Written as (h² − offset²) / 2R rather than h − |offset|: the
        # two share their zero set, but this one changes by about one per pixel across the rim too (for a
        # sphere it is its signed distance, to first order), where h is vertical; marching cubes' linear
        # interpolation then puts the outline where it is instead of up to a pixel outside it.
        values = (distance * (2.0 * radius - distance) - offset**2) / (2.0 * radius)
        return np.where(z > 1e-9, values, -1e3).astype(np.float32)

    return field


@dataclass(frozen=True)
class InflatedBody:
    """A body inflated from a silhouette, ready to mesh: `backend.mesh.extract_mesh(field, level=0, band=band)`."""

    camera: ViewCamera
    """The view's camera with the normalisation that fits the body (`inflation_camera`): mesh vertices are in it."""
    field: object
    """points [N, 3] → values [N] (pixels, inside > 0)."""
    band: float
    """The refinement band (pixels) for coarse-to-fine extraction: about a coarse cell, so thin parts are found."""


def inflate(
    maps: SilhouetteMaps,
    camera: ViewCamera,
    half_extent: float,
    coarse_cells: int = 32,
    thickness: Thickness = ROUND,
) -> InflatedBody:
    """The inflated body of `maps` seen by `camera` (its K and centroid; the scale is refitted so the body fills
    nine tenths of the query box [-half_extent, half_extent]³: the grid's cells are spent on the body), as thick
    as `thickness` says."""
    fitted = inflation_camera(maps, camera, radius=0.9 * half_extent, thickness=thickness)
    focal = float(np.sqrt(fitted.K[0, 0] * fitted.K[1, 1]))
    cell = 2 * half_extent / coarse_cells * fitted.scale * focal / max(float(fitted.centroid[2]), 1e-9)
    # The field's slope across the front and back surfaces falls with the scale: widen the band as much.
    band = max(2.0, 1.5 * cell) / min(1.0, thickness.front, thickness.back)
    field = inflation_field(maps, fitted, thickness=thickness)
    return InflatedBody(camera=fitted, field=field, band=band)


def carve(field, maps: SilhouetteMaps, camera: ViewCamera, level: float = 0.0, logits_per_pixel: float = 1.0):
    """`field` (points [N, 3] → values, inside > `level`) intersected with the visual cone.

    Returns a field with its surface at 0: min(field − level, logits_per_pixel · (cone distance + margin)). Points
    more than SKIP_DISTANCE_PX outside the cone never reach `field`. The wrapped function counts the points it
    sent on in its `queried` attribute.
    """

    def carved(points: np.ndarray) -> np.ndarray:
        uv, z = camera.project(points)
        cone = (_sample(maps.cone, uv) + CONE_MARGIN_PX) * logits_per_pixel
        cone = np.where(z > 1e-9, cone, -1e3)
        values = cone.astype(np.float32)
        near = cone > -SKIP_DISTANCE_PX * logits_per_pixel
        if near.any():
            inner = np.asarray(field(points[near]), dtype=np.float32).reshape(-1) - level
            values[near] = np.minimum(inner, values[near])
            carved.queried += int(near.sum())
        return values

    carved.queried = 0
    return carved


def outline_iou(mesh_vertices: np.ndarray, mesh_faces: np.ndarray, camera: ViewCamera, mask: np.ndarray) -> float:
    """IoU of the mesh's filled silhouette through `camera` with a mask [H, W] (bool or ≥ 0.5), on the mask's
    pixels: each triangle is drawn filled into the image."""
    if not len(mesh_faces):
        return _silhouette_iou(np.zeros((0, 3, 2)), mask)
    uv, z = camera.project(mesh_vertices)
    front = z[mesh_faces].min(axis=1) > 1e-9
    # Pillow's pixel (i, j) spans [i, i + 1) × [j, j + 1); ours is centred on (i, j): shift by half a pixel.
    return _silhouette_iou(uv[mesh_faces[front]] + 0.5, mask)


def photo_outline_iou(vertices: np.ndarray, faces: np.ndarray, metadata: dict, mask: np.ndarray) -> float:
    """IoU of a reconstruction's outline, seen through the camera its metadata reports (the add-on's match camera,
    `blender_addon.camera`), with the object's mask on the photo file's pixels: the measure of "the mesh matches
    the photo's outline".

    Args:
        vertices: [V, 3] as written, in the metadata's frame; faces: [F, 3].
        metadata: the reconstruction's metadata (its JSON).
        mask: [H, W] on the photo file's pixels (bool or ≥ 0.5).
    """
    from blender_addon.camera import match_camera, project

    triangles = project(match_camera(metadata), vertices)[np.asarray(faces)]
    # Continuous photo pixels from the top-left corner: Pillow's convention already.
    return _silhouette_iou(triangles[~np.isnan(triangles).any(axis=(1, 2))], mask)


def _silhouette_iou(triangles: np.ndarray, mask: np.ndarray) -> float:
    """IoU of filled triangles [F, 3, 2] (Pillow's pixel coordinates) with a mask [H, W] (bool or ≥ 0.5)."""
    from PIL import Image, ImageDraw

    mask = np.asarray(mask) >= 0.5
    height, width = mask.shape
    drawn = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(drawn)
    for triangle in triangles:
        draw.polygon([tuple(p) for p in triangle], fill=1)
    silhouette = np.asarray(drawn, bool)
    union = (silhouette | mask).sum()
    return float((silhouette & mask).sum() / union) if union else 1.0
