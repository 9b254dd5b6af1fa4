"""Preview pictures of a mesh file, rendered with Blender's Cycles (CPU) so a person can look at a reconstruction.

Two halves, split by process:

- `render_preview` (plain Python, no Blender) runs ``python -m backend.preview_render MESH OUT.png ...`` in a
  subprocess and turns any failure into a one-line `PreviewError`. The project rule is that the pipeline imports
  without Blender, so this module never imports bpy at module level and nothing imports its bpy code in-process.
- `main` (the subprocess) imports bpy, builds a scene from nothing, frames the mesh automatically and renders it.

The scene: the mesh with a Principled BSDF whose base colour comes from the mesh's first colour attribute (per-vertex
colours of a PLY/GLB) or, without one, a light grey clay; a 50 mm camera at a 3/4 view slightly above the bounding box
centre, far enough that the vertices' bounding sphere fits with a margin; a sun plus a dim uniform sky for light, and a
uniform light grey backdrop seen by the camera so the silhouette reads. Orientation is not assumed (a mesh may be Z-up
or in OpenCV camera axes): the camera only frames the box. Cycles renders on the CPU with a fixed seed and no denoiser,
so a preview is reproducible.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from backend.preview_compose import over_photo, renders_side_by_side, side_by_side

ROOT = Path(__file__).resolve().parents[1]

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl")
"""File types `main` can import (lower case)."""

EXIT_NO_BPY = 3
"""Exit status of `main` when bpy cannot be imported; `render_preview` maps it to an install hint."""

ERROR_PREFIX = "preview_render: error: "
"""Prefix of the one line `main` writes to stderr on failure; Blender may print other lines around it."""

BACKGROUND_GREY = 0.8
"""Linear grey of the backdrop the camera sees. With the Standard view transform it shows as sRGB ≈ 231/255."""

SKY_STRENGTH = 0.35
"""Radiance of the uniform white sky that lights the object (the backdrop the camera sees is separate)."""

CLAY_GREY = (0.6, 0.6, 0.6, 1.0)
"""Linear RGBA base colour of a mesh without a colour attribute."""


LENS_MM = 50.0
SENSOR_MM = 36.0
AZIMUTH_DEG = 35.0
"""Camera azimuth about world Z: 0 is Blender's front view (camera on -Y, looking along +Y); positive turns to +X."""
ELEVATION_DEG = 20.0
"""Camera elevation above the world XY plane through the bounding box centre."""
SUN_AZIMUTH_DEG = AZIMUTH_DEG - 50.0
SUN_ELEVATION_DEG = 55.0
"""The sun shines from the camera's upper left, so the visible side is lit and its shading shows the shape."""
MARGIN = 0.10
"""Fraction of the bounding sphere's radius left free around it in the frame."""
SMOOTH_ANGLE_DEG = 40.0
"""Edges with a dihedral angle above this stay sharp (a box keeps its corners; a marching-cubes surface is smooth)."""


class PreviewError(RuntimeError):
    """A preview could not be rendered. The message is one line and names the mesh file."""


# ---------------------------------------------------------------------------------------------------------------------
# Parent side: plain Python, no Blender.
# ---------------------------------------------------------------------------------------------------------------------


def render_preview(
    mesh_path: str | os.PathLike[str],
    image_path: str | os.PathLike[str],
    *,
    size: int = 512,
    samples: int = 16,
    timeout: float = 120,
    photo_path: str | os.PathLike[str] | None = None,
    views: Sequence[tuple[str, float, float]] | None = None,
) -> Path:
    """Render a preview PNG of a mesh file in a Blender subprocess.

    Args:
        mesh_path: .ply, .obj, .glb, .gltf or .stl file, in any units and orientation.
        image_path: PNG to write (parent folders are created). 8-bit RGB, ``size``×``size`` pixels, or
            (2·``size``)×``size`` with ``photo_path``: the photo letterboxed on grey at left, the render at right.
        size: image side in pixels.
        samples: Cycles samples per pixel (16 is clean enough to judge a shape; 4 for tests).
        timeout: seconds before the subprocess is killed.
        photo_path: optional input photo to show beside the render.
        views: (label, azimuth°, elevation°) of each render, side by side from left to right and labelled (see
            `AZIMUTH_DEG` for the angles); default one unlabelled 3/4 view. A reconstruction in the blender frame
            is seen from its photo's direction at azimuth 0 and the photo's elevation, and from the side at 90.

    Returns:
        ``image_path`` as a resolved Path.

    Raises:
        PreviewError: bpy is missing, the mesh is missing, empty or unreadable, the render failed or timed out.
    """
    mesh = Path(mesh_path).resolve()
    image = Path(image_path).resolve()
    if importlib.util.find_spec("bpy") is None:
        raise PreviewError(
            f"cannot render a preview of {mesh}: bpy is not installed; install the blender extra: make setup"
        )
    if not mesh.is_file():
        raise PreviewError(f"cannot render a preview of {mesh}: no such file")
    command = [sys.executable, "-m", "backend.preview_render", str(mesh), str(image)]
    command += ["--size", str(int(size)), "--samples", str(int(samples))]
    if photo_path is not None:
        command += ["--photo", str(Path(photo_path).resolve())]
    for label, azimuth, elevation in views or ():
        command += ["--view", str(label), repr(float(azimuth)), repr(float(elevation))]

    with tempfile.TemporaryDirectory(prefix="zeroshape-preview-") as resources:
        # Without it, `import bpy` writes extensions/.cache under ~/.config/blender/<version>/.
        env = {**os.environ, "BLENDER_USER_RESOURCES": resources}
        try:
            result = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise PreviewError(f"preview of {mesh} timed out after {timeout:g} s") from None
        except OSError as error:
            raise PreviewError(f"cannot render a preview of {mesh}: cannot start {sys.executable}: {error}") from None

    if result.returncode == EXIT_NO_BPY:
        raise PreviewError(
            f"cannot render a preview of {mesh}: bpy does not import; install the blender extra: make setup"
        )
    if result.returncode != 0 or not image.is_file():
        raise PreviewError(f"preview of {mesh} failed: {_last_error_line(result.stderr, result.returncode, mesh)}")
    return image


def stamp_label(image_path: str | os.PathLike[str], text: str) -> None:
    """Write a caption in a dark band along the bottom of a preview (e.g. to mark an untrained model)."""
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(image_path) as opened:
        image = opened.convert("RGB")
    font = ImageFont.load_default(size=max(12, image.height // 28))
    draw = ImageDraw.Draw(image)
    band = max(18, image.height // 16)
    draw.rectangle((0, image.height - band, image.width, image.height), fill=(40, 40, 40))
    draw.text((8, image.height - band // 2), text, fill=(255, 210, 80), font=font, anchor="lm")
    image.save(image_path)


def _last_error_line(stderr: str, returncode: int, mesh: Path) -> str:
    """The subprocess's own error line if it wrote one, else stderr's last non-empty line, else the exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    ours = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        # `main` names the mesh for people running it by hand; the PreviewError message names it already.
        return ours[-1].removeprefix(f"{mesh}: ")
    if lines:
        return lines[-1]
    return f"exit status {returncode}"


# ---------------------------------------------------------------------------------------------------------------------
# Subprocess side: everything below imports bpy inside functions only.
# ---------------------------------------------------------------------------------------------------------------------


class _MeshError(Exception):
    """The mesh cannot be previewed; reported as one line by `main`."""


def _import_mesh(path: Path) -> list:
    """Import a mesh file into the current (empty) scene; return the new mesh objects (bpy.types.Object)."""
    import bpy

    suffix = path.suffix.lower()
    before = set(bpy.data.objects)
    filepath = str(path)
    # PLY/OBJ/STL coordinates are kept as in the file (forward Y, up Z is the identity; OBJ's default would turn a
    # Y-up file Z-up). glTF is Y-up by specification, and its importer always turns it Z-up. The camera frames either.
    try:
        if suffix == ".ply":
            # Colours as sRGB: a uint8 PLY colour is what a viewer shows, so it must come out the same.
            bpy.ops.wm.ply_import(filepath=filepath, import_colors="SRGB", forward_axis="Y", up_axis="Z")
        elif suffix == ".obj":
            bpy.ops.wm.obj_import(filepath=filepath, forward_axis="Y", up_axis="Z")
        elif suffix in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=filepath)
        elif suffix == ".stl":
            bpy.ops.wm.stl_import(filepath=filepath, forward_axis="Y", up_axis="Z")
        else:
            raise _MeshError(f"unsupported mesh type {suffix!r} (expected one of {', '.join(MESH_SUFFIXES)})")
    except RuntimeError as error:
        # Operators report their errors as RuntimeError("Error: ..."), sometimes over several lines.
        raise _MeshError(f"cannot read the mesh: {' '.join(str(error).split()).removeprefix('Error: ')}") from None
    objects = [obj for obj in bpy.data.objects if obj not in before and obj.type == "MESH"]
    if not objects:
        raise _MeshError("cannot read the mesh: the importer created no mesh object")
    return objects


def _apply_material(objects: list) -> bool:
    """Give every object one Principled BSDF material: base colour from its first colour attribute, else clay.

    Returns whether any object had a colour attribute.
    """
    import bpy

    coloured = False
    for obj in objects:
        mesh = obj.data
        attributes = mesh.color_attributes
        material = bpy.data.materials.new(f"preview_{obj.name}")
        # 5.x: materials always have a node tree (`use_nodes` is deprecated); the default holds a Principled BSDF.
        tree = material.node_tree
        bsdf = next(node for node in tree.nodes if node.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Roughness"].default_value = 0.6
        if len(attributes) > 0:
            coloured = True
            colour = tree.nodes.new("ShaderNodeVertexColor")
            colour.layer_name = attributes[0].name
            tree.links.new(colour.outputs["Color"], bsdf.inputs["Base Color"])
        else:
            bsdf.inputs["Base Color"].default_value = CLAY_GREY
        mesh.materials.clear()
        mesh.materials.append(material)
        # Importers may have set per-face material indices for slots that are now gone.
        mesh.polygons.foreach_set("material_index", [0] * len(mesh.polygons))
        # Smooth shading below the angle: a marching-cubes surface shows no facets, a box keeps its edges.
        mesh.shade_smooth()
        mesh.set_sharp_from_angle(angle=math.radians(SMOOTH_ANGLE_DEG))
    return coloured


def world_vertices(objects: list):
    """All vertices of the objects in world coordinates: float64 array [N, 3]."""
    import numpy as np

    chunks = []
    for obj in objects:
        mesh = obj.data
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(obj.matrix_world, dtype=np.float64)  # [4, 4], row-major as mathutils prints it
        chunks.append(co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
    return np.concatenate(chunks)


def _direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit vector from the target towards a viewer at the given azimuth (see `AZIMUTH_DEG`) and elevation, Z up."""
    azimuth, elevation = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation), math.sin(elevation))


def add_camera(scene, vertices, azimuth_deg: float = AZIMUTH_DEG, elevation_deg: float = ELEVATION_DEG) -> None:
    """Camera at a 3/4 view slightly above the bounding box centre (or the direction given), fitting the vertices'
    bounding sphere; and a sun.

    ``vertices`` is [N, 3] in world units; the bounding sphere is centred on the box centre with the largest vertex
    distance as radius (tighter than the box's half-diagonal).
    """
    import bpy
    import numpy as np
    from mathutils import Vector

    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre = (low + high) / 2
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    radius = max(radius, 1e-6)  # a degenerate (flat or point) mesh still gets a finite camera

    data = bpy.data.cameras.new("preview_camera")
    data.lens = LENS_MM
    data.sensor_width = SENSOR_MM
    data.sensor_fit = "HORIZONTAL"  # the render is square, so horizontal and vertical fields of view agree
    half_fov = math.atan(SENSOR_MM / 2 / LENS_MM)
    # A sphere of radius r is inside a cone of half-angle θ from distance r / sin θ.
    distance = radius * (1 + MARGIN) / math.sin(half_fov)
    direction = Vector(_direction(azimuth_deg, elevation_deg))
    data.clip_start = max(distance - 2 * radius, distance * 1e-3)
    data.clip_end = distance + 2 * radius

    camera = bpy.data.objects.new("preview_camera", data)
    camera.location = Vector(centre.tolist()) + distance * direction
    camera.rotation_mode = "QUATERNION"
    # The camera looks down its -Z axis with +Y up; world +Z stays up in the picture.
    camera.rotation_quaternion = (-direction).to_track_quat("-Z", "Y")
    scene.collection.objects.link(camera)
    scene.camera = camera

    add_sun(scene)


def add_sun(scene) -> None:
    """The preview's sun, from the upper left of a 3/4 view."""
    import bpy
    from mathutils import Vector

    sun_data = bpy.data.lights.new("preview_sun", type="SUN")
    sun_data.energy = 3.0  # W/m²
    sun_data.angle = math.radians(10.0)  # a slightly soft shadow edge
    sun = bpy.data.objects.new("preview_sun", sun_data)
    sun.rotation_mode = "QUATERNION"
    # A sun shines along its -Z axis, i.e. away from the direction it is seen in.
    sun.rotation_quaternion = (-Vector(_direction(SUN_AZIMUTH_DEG, SUN_ELEVATION_DEG))).to_track_quat("-Z", "Y")
    scene.collection.objects.link(sun)


def set_up_render(scene, size: int, samples: int) -> None:
    """Uniform grey world, Cycles CPU without denoising, size×size, opaque 8-bit RGB PNG, Standard view transform."""
    import bpy

    # The camera sees a light grey backdrop, but the object is lit by a dimmer sky: a sky as bright as the backdrop
    # would fill in every shadow and flatten the shading.
    world = bpy.data.worlds.new("preview_world")
    tree = world.node_tree
    backdrop = next(node for node in tree.nodes if node.type == "BACKGROUND")
    backdrop.inputs["Color"].default_value = (BACKGROUND_GREY, BACKGROUND_GREY, BACKGROUND_GREY, 1.0)
    backdrop.inputs["Strength"].default_value = 1.0
    sky = tree.nodes.new("ShaderNodeBackground")
    sky.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    sky.inputs["Strength"].default_value = SKY_STRENGTH
    light_path = tree.nodes.new("ShaderNodeLightPath")
    mix = tree.nodes.new("ShaderNodeMixShader")
    tree.links.new(light_path.outputs["Is Camera Ray"], mix.inputs["Fac"])
    tree.links.new(sky.outputs["Background"], mix.inputs[1])
    tree.links.new(backdrop.outputs["Background"], mix.inputs[2])
    output = next(node for node in tree.nodes if node.type == "OUTPUT_WORLD")
    tree.links.new(mix.outputs["Shader"], output.inputs["Surface"])
    scene.world = world

    render = scene.render
    render.engine = "CYCLES"
    render.resolution_x = render.resolution_y = size
    render.resolution_percentage = 100
    render.film_transparent = False
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    # Denoising off for reproducible pictures (and OIDN may be missing); adaptive sampling off for the same reason.
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = 0
    # Few bounces: plenty for one object under a sun and a uniform sky, and cheaper on concave, self-lit shapes.
    scene.cycles.max_bounces = 4
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 2
    scene.cycles.transmission_bounces = 2
    scene.cycles.transparent_max_bounces = 2
    scene.cycles.caustics_reflective = scene.cycles.caustics_refractive = False
    # One sun and a uniform sky: the light tree has nothing to choose between and costs ≈10% of the render time.
    scene.cycles.use_light_tree = False
    # Standard, not AgX (the 4.x+ default): vertex colours and the grey background come out as stored.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0

    image = render.image_settings
    image.media_type = "IMAGE"  # 5.x: the format enum is split into media type and file format
    image.file_format = "PNG"
    image.color_mode = "RGB"
    image.color_depth = "8"
    image.compression = 15
    render.use_file_extension = False


def _add_match_camera(scene, metadata: dict, size: int) -> None:
    """The camera the reconstruction estimates for its photo (`blender_addon.camera`), rendering the photo's aspect
    with its longer side `size` pixels, onto a transparent film; and the preview's sun."""
    import bpy

    from blender_addon.camera import match_camera

    match = match_camera(metadata)
    data = bpy.data.cameras.new("match_camera")
    data.sensor_fit = match.sensor_fit
    data.sensor_width = data.sensor_height = match.sensor_mm
    data.lens = match.lens_mm
    data.shift_x, data.shift_y = match.shift_x, match.shift_y
    data.clip_start = 1e-3
    camera = bpy.data.objects.new("match_camera", data)
    matrix = camera.matrix_world.copy()
    for i in range(3):
        for j in range(3):
            matrix[i][j] = match.rotation[i, j]
        matrix[i][3] = match.position[i]
    camera.matrix_world = matrix
    scene.collection.objects.link(camera)
    scene.camera = camera
    width, height = match.resolution
    scale = size / max(width, height)
    scene.render.resolution_x, scene.render.resolution_y = round(width * scale), round(height * scale)
    add_sun(scene)


def render_scene(
    mesh_path: Path,
    out_path: Path,
    size: int,
    samples: int,
    match_metadata: dict | None = None,
    direction: tuple[float, float] = (AZIMUTH_DEG, ELEVATION_DEG),
) -> bool:
    """Build the preview scene for ``mesh_path`` and render it to the PNG ``out_path`` (bpy process only).

    ``out_path`` must be a plain file name (no '#', which Blender replaces by the frame number). The camera looks
    from ``direction`` (azimuth°, elevation°). With ``match_metadata`` (a reconstruction's JSON), the mesh is seen
    through the camera it estimates for its photo instead, on a transparent film (RGBA). Returns whether the mesh
    had a colour attribute.
    """
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    objects = _import_mesh(mesh_path)
    faces = sum(len(obj.data.polygons) for obj in objects)
    if faces == 0:
        raise _MeshError("the mesh has no faces")
    coloured = _apply_material(objects)
    # matrix_world is only current after a depsgraph update (glTF imports parent objects to nodes/empties).
    bpy.context.view_layer.update()
    set_up_render(scene, size, samples)
    if match_metadata is None:
        add_camera(scene, world_vertices(objects), *direction)
    else:
        _add_match_camera(scene, match_metadata, size)
        scene.render.film_transparent = True
        scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(out_path)
    bpy.ops.render.render(write_still=True)
    if not out_path.is_file():
        raise _MeshError("Cycles wrote no image")
    return coloured


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m backend.preview_render",
        description="Render a preview PNG of a mesh file with Blender's Cycles (CPU).",
    )
    parser.add_argument("mesh", type=Path, help="mesh file: " + ", ".join(MESH_SUFFIXES))
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (default 16)")
    parser.add_argument("--photo", type=Path, help="input photo to show at the left of the render")
    parser.add_argument(
        "--view",
        nargs=3,
        action="append",
        metavar=("LABEL", "AZIMUTH", "ELEVATION"),
        help="render from this direction (degrees; azimuth 0 looks from -Y, 90 from +X) and caption it; repeatable: "
        "the renders go side by side (default: one 3/4 view)",
    )
    parser.add_argument(
        "--match-photo",
        type=Path,
        metavar="JSON",
        help="with --photo: render through the camera this reconstruction JSON estimates, over the photo (the mesh "
        "must be a PLY or OBJ in the JSON's frame)",
    )
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8")
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    views = []
    for label, azimuth, elevation in args.view or ():
        try:
            views.append((label, float(azimuth), float(elevation)))
        except ValueError:
            parser.error(f"--view {label} {azimuth} {elevation}: the angles must be numbers")
    args.view = views
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the render subprocess; returns the exit status (0, 1 on failure, `EXIT_NO_BPY`)."""
    args = _parse_args(argv)
    mesh_path: Path = args.mesh.resolve()
    out_path: Path = args.out.resolve()
    try:
        import bpy  # noqa: F401  (imported here, not at module level: see the module docstring)
    except ImportError as error:
        print(f"{ERROR_PREFIX}bpy does not import ({error}); install the blender extra: make setup", file=sys.stderr)
        return EXIT_NO_BPY

    try:
        if not mesh_path.is_file():
            raise _MeshError("no such file")
        if args.match_photo is not None and args.photo is None:
            raise _MeshError("--match-photo needs --photo")
        if args.photo is not None and not args.photo.is_file():
            raise _MeshError(f"no such photo: {args.photo}")
        # Render into a private folder under a fixed name, then move: Blender treats '#' and '//' in paths specially,
        # and a reader never sees a half-written preview.
        with tempfile.TemporaryDirectory(prefix="zeroshape-preview-") as tmp:
            rendered = Path(tmp) / "render.png"
            match = json.loads(args.match_photo.read_text()) if args.match_photo else None
            views = args.view if match is None else []
            renders = [Path(tmp) / f"view-{number}.png" for number in range(len(views))]
            for (_, azimuth, elevation), path in zip(views, renders, strict=True):
                render_scene(mesh_path, path, args.size, args.samples, direction=(azimuth, elevation))
            if not views:
                render_scene(mesh_path, rendered, args.size, args.samples, match)
                renders = [rendered]
            out_path.parent.mkdir(parents=True, exist_ok=True)
            staged = Path(tmp) / "out.png"
            labels = [label for label, _, _ in views]
            if match is not None:
                over_photo(args.photo.resolve(), rendered, staged)
            elif args.photo is not None:
                side_by_side(args.photo.resolve(), renders, staged, args.size, labels)
            elif len(renders) > 1:
                renders_side_by_side(renders, staged, args.size, labels)
            else:
                staged = renders[0]
            shutil.move(staged, out_path)
    except _MeshError as error:
        print(f"{ERROR_PREFIX}{mesh_path}: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        # Anything else (a bpy API error, a bad photo) still ends as one readable line for `render_preview`.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{ERROR_PREFIX}{mesh_path}: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
