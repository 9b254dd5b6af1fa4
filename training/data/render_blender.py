"""The Blender side of the synthetic-data renderer: `python -m training.data.render_blender JOB.json`.

Runs in its own process (one per shard) and imports bpy; nothing else in the project imports it. For each
object of the job it builds a scene from nothing, gives the object a random appearance, and renders views
with Cycles on the CPU: RGB, depth (camera z) and the object's mask, cropped square around the object and
resized to the output size, with the intrinsics adjusted to the crop. Conventions written per view:

    rgb.png      8-bit RGB, output_size²
    depth.npy    float32 [S, S], camera z in the object's normalised frame units, 0 where there is no object
    mask.png     8-bit, 255 where the object is visible
    camera.json  K (3×3, pixels of the crop), world_to_camera (4×4, OpenCV axes: x right, y down, z forward),
                 focal_mm, sensor_mm, elevation_deg, azimuth_deg

The object is already normalised by the caller (bounding box centred at the origin, largest half-extent 0.5,
Z-up), so "world" is the object's normalised frame, the one its occupancy samples use.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import layout
from .render import DEFAULT_ELEVATION_DEG
from .scene_blender import (
    OCCLUDER,
    TARGET,
    add_clutter,
    add_occluder,
    bvh_of,
    light_with_hdri,
    plan_conditions,
    stage_condition,
    world_vertices,
)

# Appearance vocabulary of ZeroShape-W's data synthesis ("a [color] [material] [object]").
COLOURS = {
    "red": (0.6, 0.05, 0.04),
    "orange": (0.8, 0.3, 0.05),
    "yellow": (0.8, 0.65, 0.1),
    "green": (0.1, 0.4, 0.1),
    "blue": (0.05, 0.15, 0.6),
    "purple": (0.3, 0.1, 0.45),
    "pink": (0.85, 0.45, 0.55),
    "brown": (0.3, 0.15, 0.06),
    "black": (0.02, 0.02, 0.02),
    "white": (0.85, 0.85, 0.82),
    "gray": (0.35, 0.35, 0.35),
    "none": None,
}
MATERIALS = ("metal", "wood", "plastic", "ceramic", "stone", "rubber", "leather", "none")


def _material(bpy, name: str, colour, kind: str, rng: np.random.Generator):
    material = bpy.data.materials.new(name)
    tree = material.node_tree
    bsdf = next(node for node in tree.nodes if node.type == "BSDF_PRINCIPLED")
    base = colour if colour is not None else tuple(rng.uniform(0.1, 0.8, 3))
    bsdf.inputs["Base Color"].default_value = (*base, 1.0)
    roughness = {"metal": 0.25, "plastic": 0.35, "ceramic": 0.15, "rubber": 0.9, "leather": 0.6}.get(kind, 0.6)
    bsdf.inputs["Roughness"].default_value = float(np.clip(roughness + rng.normal(0, 0.05), 0.02, 1.0))
    if kind == "metal":
        bsdf.inputs["Metallic"].default_value = 1.0
    if kind in ("wood", "stone", "leather"):
        # A procedural texture modulates the base colour: wood grain (waves), stone (noise), leather (voronoi).
        texture = tree.nodes.new(
            {"wood": "ShaderNodeTexWave", "stone": "ShaderNodeTexNoise", "leather": "ShaderNodeTexVoronoi"}[kind]
        )
        texture.inputs["Scale"].default_value = float(rng.uniform(3, 12) if kind != "leather" else rng.uniform(40, 90))
        mix = tree.nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MULTIPLY"
        mix.inputs["Factor"].default_value = 0.6
        mix.inputs[6].default_value = (*base, 1.0)
        output = texture.outputs["Color"] if "Color" in texture.outputs else texture.outputs[0]
        tree.links.new(output, mix.inputs[7])
        tree.links.new(mix.outputs[2], bsdf.inputs["Base Color"])
    return material


def _look_at(location: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Blender camera rotation (columns: right, up, back) looking from `location` at `target`, Z up."""
    forward = target - location
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, -forward], axis=1)


def _read_exr_channel(bpy, path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path))
    image.colorspace_settings.is_data = True
    width, height = image.size
    buffer = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    bpy.data.images.remove(image)
    return buffer.reshape(height, width, 4)[::-1, :, 0].copy()  # Blender's rows start at the bottom


def _frame_intrinsics(focal_mm: float, frame_size: int) -> np.ndarray:
    """K (pixels) of a square frame of `frame_size` pixels on a 35 mm sensor; pixel centres at integer
    coordinates (OpenCV, ZeroShape), so the optical axis is at (size − 1) / 2."""
    focal_px = focal_mm / 35.0 * frame_size
    centre = (frame_size - 1) / 2
    return np.array([[focal_px, 0.0, centre], [0.0, focal_px, centre], [0.0, 0.0, 1.0]])


def _crop_box(vertices: np.ndarray, world_to_camera: np.ndarray, K: np.ndarray, margin: float) -> tuple[float, ...]:
    """Square (x0, y0, side) around the projected object, in pixel-edge units of K's frame (a pixel centred at
    u covers [u, u + 1) there); side = margin × the longer side of the object's box.

    Args:
        vertices: [N, 3] world points of the object; world_to_camera: 4×4 to OpenCV camera axes.
    """
    camera = vertices @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    pixels = camera[:, :2] / camera[:, 2:3] * K[[0, 1], [0, 1]] + K[:2, 2] + 0.5
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    side = float((high - low).max()) * margin
    centre = (low + high) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def _crop_intrinsics(K: np.ndarray, box: tuple[float, ...], size: int) -> np.ndarray:
    """K of the square `box` (x0, y0, side in pixel-edge units) resampled to size × size pixels."""
    x0, y0, side = box
    scale = size / side
    cropped = K.copy()
    cropped[0, 2] = (K[0, 2] + 0.5 - x0) * scale - 0.5
    cropped[1, 2] = (K[1, 2] + 0.5 - y0) * scale - 0.5
    cropped[:2, :2] *= scale
    return cropped


def _aim_camera(camera, camera_data, pose: np.ndarray, K: np.ndarray, size: int) -> None:
    """Place the Blender camera at `pose` (Blender axes) with the pinhole K of a size × size render.

    Blender's optical axis meets the image at its centre plus `shift` (in units of the image side; +x right,
    +y up), and its focal length in pixels is lens / sensor width × image width."""
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.sensor_width = 35.0
    camera_data.lens = float(K[0, 0] / size * 35.0)
    camera_data.shift_x = float(((size - 1) / 2 - K[0, 2]) / size)
    camera_data.shift_y = float((K[1, 2] - (size - 1) / 2) / size)
    camera.matrix_world = _matrix(pose)


def _background_photos() -> list[np.ndarray]:
    """Real photographs available offline: scikit-image's colour sample images."""
    from skimage import data

    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    return [getattr(data, name)()[..., :3] for name in names]


_PHOTOS: list[np.ndarray] = []


def _over_photo(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Composite a render with a transparent sky over a random square crop of a photograph."""
    from PIL import Image

    if not _PHOTOS:
        _PHOTOS.extend(_background_photos())
    photo = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
    height, width = photo.shape[:2]
    side = int(rng.integers(min(height, width) // 2, min(height, width) + 1))
    y0, x0 = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    size = rgba.shape[0]
    background = np.asarray(Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side]).resize((size, size)))
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * alpha + background * (1 - alpha)).round().astype(np.uint8)


def _procedural_sky(world, rng: np.random.Generator) -> None:
    """Replace the plain sky colour by a random procedural texture (noise, voronoi, waves or checker) between
    two random colours, seen through the view direction so it behaves as a distant backdrop."""
    nodes, links = world.node_tree.nodes, world.node_tree.links
    coordinates = nodes.new("ShaderNodeTexCoord")
    kind = str(rng.choice(("ShaderNodeTexNoise", "ShaderNodeTexVoronoi", "ShaderNodeTexWave", "ShaderNodeTexChecker")))
    texture = nodes.new(kind)
    texture.inputs["Scale"].default_value = float(rng.uniform(2, 25))
    links.new(coordinates.outputs["Generated"], texture.inputs["Vector"])
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (*rng.uniform(0.05, 1.0, 3), 1.0)
    ramp.color_ramp.elements[1].color = (*rng.uniform(0.05, 1.0, 3), 1.0)
    factor = texture.outputs["Fac"] if "Fac" in texture.outputs else texture.outputs["Distance"]
    links.new(factor, ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], nodes["Background"].inputs["Color"])


def _import_textured(bpy, textured: dict) -> list:
    """Import the asset with its own materials, in the object's normalised frame; [] when it cannot be used.

    `textured`: {"path", "format" ("gltf" or "obj"), "matrix": 4×4 from Blender's import axes to the normalised
    frame}. The geometry must match the normalised mesh the labels come from (bounding box centred, longest
    side 1, within 1%); otherwise the object falls back to a drawn appearance rather than mislabel the render.
    """
    before = set(bpy.data.objects)
    try:
        if textured["format"] == "gltf":
            bpy.ops.import_scene.gltf(filepath=textured["path"])
        else:  # OBJ read in its raw axes: the matrix turns it upright
            bpy.ops.wm.obj_import(filepath=textured["path"], forward_axis="Y", up_axis="Z")
    except RuntimeError as error:
        print(f"own appearance unavailable ({error}); drawing one", file=sys.stderr)
        return []
    new = [obj for obj in bpy.data.objects if obj not in before]
    meshes = [obj for obj in new if obj.type == "MESH"]
    worlds = {obj.name: np.asarray(obj.matrix_world, dtype=np.float64) for obj in meshes}
    matrix = np.asarray(textured["matrix"], dtype=np.float64)
    for obj in new:  # lights and cameras of the file must not change the scene's randomised lighting
        if obj.type != "MESH":
            bpy.data.objects.remove(obj, do_unlink=True)
    for obj in meshes:
        obj.parent = None
        obj.matrix_world = _matrix(matrix @ worlds[obj.name])
    if not meshes:
        return []
    vertices = world_vertices(meshes)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    if np.abs((low + high) / 2).max() > 0.01 or abs(float((high - low).max()) - 1.0) > 0.01:
        for obj in meshes:
            bpy.data.objects.remove(obj, do_unlink=True)
        print("own appearance: the imported geometry does not match the normalised mesh; drawing one", file=sys.stderr)
        return []
    return meshes


def _matrix(array: np.ndarray):
    import mathutils

    return mathutils.Matrix([[float(v) for v in row] for row in array])


def render_object(bpy, job: dict, item: dict, out: Path) -> None:
    """Render every view of one object into out/view_XXX/."""

    rng = np.random.default_rng(item["seed"])
    # Scenes draw from a stream of their own: with clutter, occlusion and HDRIs switched off, `rng` is consumed
    # exactly as before they existed, so older datasets (the first validation split) render identically.
    scene_rng = np.random.default_rng([item["seed"], 7])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    conditions = plan_conditions(job, scene_rng)
    pool = job.get("clutter_pool") or []
    if not pool:
        conditions = [["clean"] * len(group) for group in conditions]
    with_scene = any(condition != "clean" for group in conditions for condition in group)

    rendered_objects, appearance = [], {}
    textured = item.get("textured")
    if textured and rng.random() < job.get("own_appearance", 0.5):
        rendered_objects = _import_textured(bpy, textured)
        if rendered_objects:
            appearance = {"colour": "own", "material": "own"}
    if not rendered_objects:
        bpy.ops.wm.ply_import(filepath=item["mesh"])
        obj = bpy.context.selected_objects[0]
        colour_name = str(rng.choice(list(COLOURS)))
        kind = str(rng.choice(MATERIALS))
        obj.data.materials.append(_material(bpy, "object", COLOURS[colour_name], kind, rng))
        for polygon in obj.data.polygons:
            polygon.use_smooth = False
        rendered_objects, appearance = [obj], {"colour": colour_name, "material": kind}
    for obj in rendered_objects:
        obj.pass_index = 1  # the mask is Cycles' object-index pass == 1
    vertices = world_vertices(rendered_objects)  # [N, 3]: the floor height here, every view's crop below
    floor = float(vertices[:, 2].min())

    # Backgrounds: a photograph (the sky rendered transparent and the photo composited behind it; ZeroShape-W
    # outpaints backgrounds with a diffusion model, unavailable offline), a procedural texture, or a plain sky.
    photo_background = job.get("photo_backgrounds", 0.3) > rng.random()
    if rng.random() < 0.6 or with_scene:  # a ground plane catches the object's shadow (and carries clutter)
        bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, floor))
        ground = bpy.context.active_object
        # In front of a photo the ground only darkens it where the shadow falls.
        ground.is_shadow_catcher = photo_background
        ground_kind = str(rng.choice(("none", "wood", "stone")))
        ground.data.materials.append(_material(bpy, "ground", tuple(rng.uniform(0.2, 0.9, 3)), ground_kind, rng))
    world = bpy.data.worlds.new("world")
    scene.world = world
    # Cycles' default importance map for the sky is 1024 wide and rebuilt for every render: it doubled the
    # time of a 224² view. A distant, smooth backdrop needs far less (measured: 1.21 → 0.56 s per view).
    world.cycles.sampling_method = "MANUAL"
    world.cycles.sample_map_resolution = 64
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*rng.uniform(0.2, 1.0, 3), 1.0)
    background.inputs["Strength"].default_value = float(rng.uniform(0.3, 1.2))
    textured_sky = not photo_background and rng.random() < 0.5
    if textured_sky:
        _procedural_sky(world, rng)
    hdri = light_with_hdri(bpy, world, scene_rng) if scene_rng.random() < job.get("hdri", 0.0) else None
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun_data.energy = float(rng.uniform(1.5, 5.0))
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (float(rng.uniform(0.1, 1.0)), 0.0, float(rng.uniform(0, 2 * math.pi)))
    scene.collection.objects.link(sun)
    appearance["background"] = "photo" if photo_background else ("texture" if textured_sky else "sky")
    if hdri:
        appearance["background"] = "photo" if photo_background else "hdri"
    appearance["lighting"] = f"hdri:{hdri}" if hdri else "sun and sky"

    def drawn_material():
        return _material(
            bpy, "drawn", COLOURS[str(scene_rng.choice(list(COLOURS)))], str(scene_rng.choice(MATERIALS)), scene_rng
        )

    clutter, occluder, target_bvh = [], None, None
    if with_scene:
        clutter = add_clutter(bpy, pool, scene_rng, vertices, drawn_material)
        occluder = add_occluder(bpy, pool, scene_rng, drawn_material)
        target_bvh = bvh_of(rendered_objects)

    camera_data = bpy.data.cameras.new("camera")
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.sensor_width = 35.0
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera

    r = scene.render
    r.engine = "CYCLES"
    r.film_transparent = photo_background
    r.image_settings.color_mode = "RGBA" if photo_background else "RGB"
    scene.cycles.device = "CPU"
    scene.cycles.samples = job["samples"]
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = int(rng.integers(1 << 30))
    scene.view_settings.view_transform = "Standard"
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_object_index = True
    tree = bpy.data.node_groups.new("passes", "CompositorNodeTree")
    scene.compositing_node_group = tree
    layers = tree.nodes.new("CompositorNodeRLayers")
    file_output = tree.nodes.new("CompositorNodeOutputFile")
    file_output.format.media_type = "IMAGE"
    file_output.format.file_format = "OPEN_EXR"
    file_output.format.color_depth = "32"
    file_output.format.color_mode = "BW"
    for name in ("Depth", "Object Index"):
        file_output.file_output_items.new("FLOAT", name)
        tree.links.new(layers.outputs[name], file_output.inputs[name])

    out_size = job["output_size"]
    lowest_deg, highest_deg = job.get("elevation_deg", DEFAULT_ELEVATION_DEG)
    r.resolution_x = r.resolution_y = out_size
    view = -1
    for group in conditions:
        focal_mm = float(rng.uniform(30, 70))
        elevation = math.radians(rng.uniform(lowest_deg, highest_deg))
        azimuth = float(rng.uniform(0, 2 * math.pi))
        target = rng.normal(0, 0.05, 3)
        # Distance: the object's bounding sphere (radius ≤ √3/2) fills 45–85% of the frame.
        half_fov = math.atan(35.0 / (2 * focal_mm))
        distance = 0.87 / math.sin(half_fov) / rng.uniform(0.45, 0.85)
        direction = np.array([math.cos(elevation) * math.sin(azimuth), -math.cos(elevation) * math.cos(azimuth)])
        location = target + distance * np.array([direction[0], direction[1], math.sin(elevation)])
        rotation = _look_at(location, target)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, location
        # World (object frame, Blender axes) → OpenCV camera: invert the pose, then flip y and z.
        world_to_camera = np.diag([1.0, -1.0, -1.0, 1.0]) @ np.linalg.inv(pose)

        # The paper renders the whole frame and crops a square around the object. The crop is computed here
        # from the projected vertices instead (the silhouette's box is the box of its vertices), and the camera
        # renders only that square, straight at the output size: the same image and K, at a third of the
        # pixels of a full frame (Cycles' time is proportional to pixels × samples).
        K_frame = _frame_intrinsics(focal_mm, out_size)
        box = _crop_box(vertices, world_to_camera, K_frame, float(rng.uniform(1.1, 1.4)))
        K_crop = _crop_intrinsics(K_frame, box, out_size)
        _aim_camera(camera, camera_data, pose, K_crop, out_size)
        for condition in group:
            view += 1
            staging = (
                stage_condition(
                    bpy,
                    condition,
                    clutter,
                    occluder,
                    target_bvh,
                    scene_rng,
                    vertices,
                    location,
                    world_to_camera,
                    K_crop,
                    out_size,
                )
                if with_scene
                else {}
            )
            render_view(
                bpy,
                scene,
                file_output,
                rng,
                layout.view_folder(out, view),
                photo_background,
                {
                    "K": K_crop.tolist(),
                    "world_to_camera": world_to_camera.tolist(),
                    "focal_mm": focal_mm,
                    "sensor_mm": 35.0,
                    "elevation_deg": math.degrees(elevation),
                    "azimuth_deg": math.degrees(azimuth),
                    **appearance,
                    "scene": condition,
                    **staging,
                },
            )


def render_view(bpy, scene, file_output, rng, view_dir: Path, photo_background: bool, camera_info: dict) -> None:
    """Render the scene as staged into view_dir: rgb.png, depth.npy, mask.png, occluder.png (scenes only),
    camera.json. A view where the target left the frame is skipped."""
    from PIL import Image

    r = scene.render
    with tempfile.TemporaryDirectory() as scratch:
        file_output.directory = scratch
        file_output.file_name = "pass_"
        r.filepath = str(Path(scratch) / "rgb.png")
        bpy.ops.render.render(write_still=True)
        rendered = Image.open(r.filepath)
        rgb = np.asarray(rendered.convert("RGB"))
        if photo_background:
            rgb = _over_photo(np.asarray(rendered.convert("RGBA")), rng)
        depth = _read_exr_channel(bpy, next(Path(scratch).glob("pass_Depth*.exr")))
        index = _read_exr_channel(bpy, next(Path(scratch).glob("pass_Object Index*.exr")))

    mask = np.abs(index - TARGET) < 0.5
    occluding = np.abs(index - OCCLUDER) < 0.5
    depth = np.where(mask, depth, 0.0).astype(np.float32)
    if not mask.any():
        return  # the object left the frame (or is hidden): skip the view rather than write an empty one

    view_dir.mkdir(parents=True, exist_ok=True)
    layout.write_view(view_dir, rgb, depth, mask, occluding if camera_info["scene"] != "clean" else None, camera_info)


def main(argv: list[str] | None = None) -> int:
    import bpy

    job_path = Path((argv or sys.argv[1:])[0])
    job = json.loads(job_path.read_text())
    for item in job["objects"]:
        out = Path(item["out"])
        render_object(bpy, job, item, out)
        layout.mark_done(out)  # written last: a folder without it is an interrupted object
        print(f"rendered {item['object_id']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
