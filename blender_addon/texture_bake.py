"""Baking a reconstruction's vertex colours into a UV-mapped image texture (bpy).

Vertex colours are lost or mishandled on the way out of Blender: FBX keeps them but its importers do not wire them
into the material, and game engines expect an image texture. Baking gives the mesh a UV map, an image holding the
same colours and a material that reads that image, which every exporter carries. The colour attribute is removed
afterwards: glTF multiplies the base colour texture by a mesh's vertex colours, so keeping both would darken the
colours in every glTF viewer.
"""

from __future__ import annotations

from contextlib import contextmanager

import bpy

from .scene import COLOR_ATTRIBUTE

UV_MAP = "ZeroShape UV"
BAKED_MATERIAL_SUFFIX = " baked"
TEXTURE_SIZES = (512, 1024, 2048, 4096)
ISLAND_MARGIN = 0.003
"""Space between UV islands, as a fraction of the texture (Smart UV Project's unit)."""
BLEED_PX = 8
"""Pixels each island's colours are extended past its edge, so mipmaps and bilinear filtering do not pull in the
black background at seams."""


def bake_vertex_colours(context, obj, size: int = 1024) -> bpy.types.Image:
    """Give `obj` a UV map and a packed `size`² sRGB image of its vertex colours, and a material of its own that
    shows that image. Returns the image.

    ValueError (with what to do) when the object has no colours or is not a mesh. The scene's render engine and
    sampling are restored afterwards; the object's former material is kept in the file (other objects share it).
    """
    if obj is None or obj.type != "MESH":
        raise ValueError("select a mesh to bake (a ZeroShape reconstruction)")
    if size not in TEXTURE_SIZES:
        raise ValueError(f"texture size must be one of {', '.join(map(str, TEXTURE_SIZES))}")
    mesh = obj.data
    attribute = mesh.color_attributes.get(COLOR_ATTRIBUTE)
    if attribute is None:
        baked = any(slot.material and slot.material.name.endswith(BAKED_MATERIAL_SUFFIX) for slot in obj.material_slots)
        if baked:
            raise ValueError(f"{obj.name} is already baked; to bake at another size, undo the bake or reconstruct it")
        raise ValueError(f"{obj.name} has no colours to bake: reconstruct it with 'Colour from photo' on")
    if not mesh.polygons:
        raise ValueError(f"{obj.name} has no faces to bake")
    _unwrap(context, obj)
    image = bpy.data.images.new(f"{obj.name} colour", size, size, alpha=False)
    image.colorspace_settings.name = "sRGB"
    material = _baking_material(obj, image)
    with _cycles_for_baking(context.scene), _only_selected(context, obj):
        bpy.ops.object.bake(type="DIFFUSE", pass_filter={"COLOR"}, margin=BLEED_PX, use_clear=True)
    _show_image(material, image)
    image.pack()  # the pixels live in the .blend: nothing to lose when the file moves
    for attribute in list(mesh.color_attributes):
        mesh.color_attributes.remove(attribute)
    return image


def _unwrap(context, obj) -> None:
    """A fresh UV map made by Smart UV Project (angle-based islands, packed into the unit square)."""
    mesh = obj.data
    uv = mesh.uv_layers.get(UV_MAP) or mesh.uv_layers.new(name=UV_MAP)
    mesh.uv_layers.active = uv
    uv.active_render = True
    with _only_selected(context, obj):
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            bpy.ops.mesh.select_all(action="SELECT")
            bpy.ops.uv.smart_project(angle_limit=1.15, island_margin=ISLAND_MARGIN, scale_to_bounds=False)
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")


def _baking_material(obj, image) -> bpy.types.Material:
    """The object's own copy of its vertex-colour material, with an (unlinked, active) image node to bake into."""
    source = obj.active_material
    if source is None or not source.use_nodes:
        raise ValueError(f"{obj.name} has no node material showing its colours; reconstruct it again")
    material = source.copy()
    material.name = obj.name + BAKED_MATERIAL_SUFFIX
    nodes = material.node_tree.nodes
    node = nodes.new("ShaderNodeTexImage")
    node.name = "ZeroShape Baked Colour"
    node.image = image
    node.location = (-600, 300)
    nodes.active = node
    if len(obj.material_slots) == 0:
        obj.data.materials.append(material)
    for slot in obj.material_slots:
        slot.material = material
    return material


def _show_image(material, image) -> None:
    """Wire the baked image into the base colour in place of the colour attribute."""
    tree = material.node_tree
    principled = next(node for node in tree.nodes if node.type == "BSDF_PRINCIPLED")
    texture = next(node for node in tree.nodes if node.type == "TEX_IMAGE" and node.image == image)
    for node in [node for node in tree.nodes if node.type == "VERTEX_COLOR"]:
        tree.nodes.remove(node)
    tree.links.new(texture.outputs["Color"], principled.inputs["Base Color"])


@contextmanager
def _cycles_for_baking(scene):
    """Cycles on the CPU with one sample (a colour pass needs no more) and no dither, restored afterwards."""
    render = scene.render
    saved = (render.engine, scene.cycles.samples, scene.cycles.device, render.dither_intensity)
    render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    render.dither_intensity = 0.0  # noise added when writing 8-bit pixels: the colours should be exact
    try:
        yield
    finally:
        render.engine, scene.cycles.samples, scene.cycles.device, render.dither_intensity = saved


@contextmanager
def _only_selected(context, obj):
    """`obj` selected and active alone (what the edit-mode and bake operators act on), the selection restored."""
    view_layer = context.view_layer
    selected = [other for other in view_layer.objects if other.select_get()]
    active = view_layer.objects.active
    if active is not None and active.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for other in selected:
        other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    try:
        yield
    finally:
        obj.select_set(False)
        for other in selected:
            if other.name in view_layer.objects:
                other.select_set(True)
        view_layer.objects.active = active if active is None or active.name in view_layer.objects else obj
