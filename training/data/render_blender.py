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


def _crop(array: np.ndarray, box: tuple[int, int, int], size: int, order: str) -> np.ndarray:
    """Square crop (x0, y0, side) of an [H, W] or [H, W, C] array (zero outside), resized to size²."""
    from PIL import Image

    x0, y0, side = box
    height, width = array.shape[:2]
    canvas = np.zeros((side, side, *array.shape[2:]), dtype=array.dtype)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(width, x0 + side), min(height, y0 + side)
    canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    if order == "nearest":  # depth and mask: no blending across the silhouette
        index = (np.arange(size) + 0.5) * side / size
        index = np.minimum(index.astype(int), side - 1)
        return canvas[index][:, index]
    image = Image.fromarray(canvas)
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


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


def render_object(bpy, job: dict, item: dict, out: Path) -> None:
    """Render every view of one object into out/view_XXX/."""
    import mathutils
    from PIL import Image

    rng = np.random.default_rng(item["seed"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    render_size, out_size = job["render_size"], job["output_size"]

    bpy.ops.wm.ply_import(filepath=item["mesh"])
    obj = bpy.context.selected_objects[0]
    obj.pass_index = 1
    colour_name = str(rng.choice(list(COLOURS)))
    kind = str(rng.choice(MATERIALS))
    obj.data.materials.append(_material(bpy, "object", COLOURS[colour_name], kind, rng))
    for polygon in obj.data.polygons:
        polygon.use_smooth = False

    # Some renders go in front of a photograph: the sky is then rendered transparent and the photo
    # composited behind it (ZeroShape-W outpaints backgrounds with a diffusion model, unavailable offline).
    photo_background = job.get("photo_backgrounds", 0.3) > rng.random()
    if rng.random() < 0.6:  # a ground plane catches the object's shadow
        bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, float(obj.bound_box[0][2])))
        ground = bpy.context.active_object
        # In front of a photo the ground only darkens it where the shadow falls.
        ground.is_shadow_catcher = photo_background
        ground.data.materials.append(_material(bpy, "ground", tuple(rng.uniform(0.2, 0.9, 3)), "none", rng))
    world = bpy.data.worlds.new("world")
    scene.world = world
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*rng.uniform(0.2, 1.0, 3), 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = float(rng.uniform(0.3, 1.2))
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun_data.energy = float(rng.uniform(1.5, 5.0))
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (float(rng.uniform(0.1, 1.0)), 0.0, float(rng.uniform(0, 2 * math.pi)))
    scene.collection.objects.link(sun)

    camera_data = bpy.data.cameras.new("camera")
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.sensor_width = 35.0
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera

    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x = r.resolution_y = render_size
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

    for view in range(job["views"]):
        focal_mm = float(rng.uniform(30, 70))
        elevation = math.radians(rng.uniform(5, 65))
        azimuth = float(rng.uniform(0, 2 * math.pi))
        target = rng.normal(0, 0.05, 3)
        # Distance: the object's bounding sphere (radius ≤ √3/2) fills 45–85% of the frame.
        half_fov = math.atan(35.0 / (2 * focal_mm))
        distance = 0.87 / math.sin(half_fov) / rng.uniform(0.45, 0.85)
        direction = np.array([math.cos(elevation) * math.sin(azimuth), -math.cos(elevation) * math.cos(azimuth)])
        location = target + distance * np.array([direction[0], direction[1], math.sin(elevation)])
        rotation = _look_at(location, target)
        camera_data.lens = focal_mm
        matrix = mathutils.Matrix.Identity(4)
        for i in range(3):
            for j in range(3):
                matrix[i][j] = float(rotation[i, j])
            matrix[i][3] = float(location[i])
        camera.matrix_world = matrix

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

        mask = np.abs(index - 1.0) < 0.5
        depth = np.where(mask, depth, 0.0).astype(np.float32)
        focal_px = focal_mm / 35.0 * render_size
        # Pixel centres at integer coordinates (OpenCV, ZeroShape): the optical axis is at (W - 1) / 2.
        centre = (render_size - 1) / 2
        K = np.array([[focal_px, 0, centre], [0, focal_px, centre], [0, 0, 1.0]])
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            continue  # the object left the frame: skip the view rather than write an empty one
        x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        side = math.ceil(max(x1 - x0, y1 - y0) * float(rng.uniform(1.1, 1.4)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = (round(float(cx) - side / 2), round(float(cy) - side / 2), side)
        scale = out_size / side
        K_crop = K.copy()
        K_crop[0, 2] = (K[0, 2] - box[0] + 0.5) * scale - 0.5
        K_crop[1, 2] = (K[1, 2] - box[1] + 0.5) * scale - 0.5
        K_crop[:2, :2] *= scale

        # World (object frame, Blender axes) → OpenCV camera: invert the pose, then flip y and z.
        world_to_blender_camera = np.linalg.inv(np.asarray(camera.matrix_world))
        world_to_camera = np.diag([1.0, -1.0, -1.0, 1.0]) @ world_to_blender_camera

        view_dir = out / f"view_{view:03d}"
        view_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_crop(rgb, box, out_size, "lanczos")).save(view_dir / "rgb.png")
        np.save(view_dir / "depth.npy", _crop(depth, box, out_size, "nearest"))
        Image.fromarray(_crop(mask.astype(np.uint8) * 255, box, out_size, "nearest")).save(view_dir / "mask.png")
        camera_info = {
            "K": K_crop.tolist(),
            "world_to_camera": world_to_camera.tolist(),
            "focal_mm": focal_mm,
            "sensor_mm": 35.0,
            "elevation_deg": math.degrees(elevation),
            "azimuth_deg": math.degrees(azimuth),
            "colour": colour_name,
            "material": kind,
            "background": "photo" if photo_background else "sky",
        }
        (view_dir / "camera.json").write_text(json.dumps(camera_info, indent=1))


def main(argv: list[str] | None = None) -> int:
    import bpy

    job_path = Path((argv or sys.argv[1:])[0])
    job = json.loads(job_path.read_text())
    for item in job["objects"]:
        out = Path(item["out"])
        render_object(bpy, job, item, out)
        (out / "DONE").write_text("ok")  # written last: a folder without it is an interrupted object
        print(f"rendered {item['object_id']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
