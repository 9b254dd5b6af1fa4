"""Putting reconstructions into the Blender scene (bpy). Meshes arrive in Blender's frame (Z-up, facing -Y,
resting on z = 0, unit height): the server converts them, so nothing here changes axes."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from .camera import match_camera

COLLECTION_NAME = "ZeroShape"
MATERIAL_NAME = "ZeroShape Vertex Colour"
COLOR_ATTRIBUTE = "Col"


def reconstruction_collection(scene) -> bpy.types.Collection:
    collection = bpy.data.collections.get(COLLECTION_NAME)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION_NAME)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def vertex_colour_material() -> bpy.types.Material:
    """A material whose base colour is the mesh's colour attribute, so vertex colours show when rendered."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        return material
    material = bpy.data.materials.new(MATERIAL_NAME)
    tree = material.node_tree
    principled = next(node for node in tree.nodes if node.type == "BSDF_PRINCIPLED")
    attribute = tree.nodes.new("ShaderNodeVertexColor")
    attribute.layer_name = COLOR_ATTRIBUTE
    attribute.location = (principled.location.x - 300, principled.location.y)
    tree.links.new(attribute.outputs["Color"], principled.inputs["Base Color"])
    principled.inputs["Roughness"].default_value = 0.8
    return material


def import_mesh(
    context,
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None,
    location=None,
) -> bpy.types.Object:
    """Create a mesh object from arrays in bulk (`foreach_set`, no temporary files), placed at `location`
    (default: the 3D cursor), in the "ZeroShape" collection, selected and active.

    Args:
        vertices: [V, 3] float32; faces: [F, 3] integer; colors: [V, 4] uint8 RGBA or None.
    """
    obj = bpy.data.objects.new(name, new_mesh(name, vertices, faces, colors))
    reconstruction_collection(context.scene).objects.link(obj)
    obj.location = context.scene.cursor.location.copy() if location is None else location
    _select_only(context, obj)
    return obj


def replace_mesh(context, obj, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None):
    """Give a reconstruction its new mesh (arrays as in `import_mesh`), keeping the object: its name, place,
    scale and everything that refers to it. The old mesh goes when nothing else uses it."""
    old = obj.data
    obj.data = new_mesh(old.name, vertices, faces, colors)
    if old.users == 0:
        bpy.data.meshes.remove(old)
    _select_only(context, obj)
    return obj


def new_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> bpy.types.Mesh:
    """A mesh datablock from arrays in bulk, with the vertex-colour material (arrays as in `import_mesh`)."""
    mesh = bpy.data.meshes.new(name)
    vertex_count, face_count = len(vertices), len(faces)
    mesh.vertices.add(vertex_count)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(face_count * 3)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(face_count)
    mesh.polygons.foreach_set("loop_start", np.arange(0, face_count * 3, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(face_count, 3, dtype=np.int32))
    if colors is not None:
        attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
        # BYTE_COLOR stores sRGB bytes; foreach_set("color_srgb") takes them as floats in [0, 1].
        attribute.data.foreach_set("color_srgb", (np.asarray(colors, dtype=np.float32) / 255.0).ravel())
        mesh.color_attributes.active_color = attribute
    # No mesh.validate(): it costs more than everything else together (0.17 s at 200k faces), and the
    # protocol has already checked every face index against the vertex count.
    mesh.update(calc_edges=True)
    mesh.shade_smooth()
    mesh.materials.append(vertex_colour_material())
    return mesh


def _select_only(context, obj) -> None:
    """`obj` selected and active, in object mode."""
    if context.view_layer.objects.active is not None and context.view_layer.objects.active.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for other in context.view_layer.objects.selected:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def load_mask_image(name: str, png: bytes, replace=None) -> bpy.types.Image:
    """The mask a reconstruction was built from (a PNG's bytes, the photo's size) as an image named `name` (made
    unique by Blender), packed into the .blend. `replace`: the object's previous mask image, replaced everywhere it
    is used (e.g. in an Image Editor, which then shows the mask the new mesh was built from) and removed."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="zeroshape-") as scratch:
        path = Path(scratch) / "mask.png"
        path.write_bytes(png)
        image = bpy.data.images.load(str(path))
        image.pack()  # the file goes with the folder: the pixels live in the .blend
    image.colorspace_settings.name = "Non-Color"  # data, not a colour: painted values are sent as they are
    if replace is not None:
        replace.user_remap(image)
        bpy.data.images.remove(replace)
    image.name = name
    image.filepath_raw = f"//{bpy.path.clean_name(name)}.png"  # where Unpack would write it, not the gone folder
    return image


def push_undo(message: str) -> None:
    """One undo step per imported object (imports happen from a timer, outside any operator's own step)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


def add_match_camera(context, obj, metadata: dict) -> None:
    """A camera posed and focused as the model's estimate of the photo's camera, with the photo behind, made the
    scene's camera with the photo's render size, so the mesh lines up with the photo through it."""
    import mathutils

    match = match_camera(metadata)
    camera_data = bpy.data.cameras.new(f"{obj.name} camera")
    camera_data.sensor_fit = match.sensor_fit
    camera_data.sensor_width = camera_data.sensor_height = match.sensor_mm
    camera_data.lens = match.lens_mm
    camera_data.shift_x, camera_data.shift_y = match.shift_x, match.shift_y
    camera = bpy.data.objects.new(f"{obj.name} camera", camera_data)
    matrix = mathutils.Matrix.Identity(4)
    for i in range(3):
        for j in range(3):
            matrix[i][j] = match.rotation[i, j]
        matrix[i][3] = match.position[i]
    context.view_layer.update()  # obj.matrix_world follows its new location only once the view layer is updated
    camera.matrix_world = obj.matrix_world @ matrix
    reconstruction_collection(context.scene).objects.link(camera)
    scene = context.scene
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = match.resolution
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    photo_path = metadata.get("blender_photo")
    if photo_path and Path(photo_path).is_file():
        image = bpy.data.images.load(photo_path, check_existing=True)
        background = camera_data.background_images.new()
        background.image = image
        background.frame_method = "FIT"
        camera_data.show_background_images = True
