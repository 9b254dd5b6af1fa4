"""The sidebar panel and the Add-menu entry (bpy)."""

from __future__ import annotations

import bpy

from .backend_status import capability_line, model_notes
from .jobs import STATE, mask_image, saved_batch
from .operators import (
    ZEROSHAPE_OT_bake_texture,
    ZEROSHAPE_OT_batch_import,
    ZEROSHAPE_OT_batch_resume,
    ZEROSHAPE_OT_cancel,
    ZEROSHAPE_OT_cancel_after_current,
    ZEROSHAPE_OT_check_backend,
    ZEROSHAPE_OT_edit_mask,
    ZEROSHAPE_OT_export_fbx,
    ZEROSHAPE_OT_reconstruct,
    ZEROSHAPE_OT_reconstruct_again,
)


def _switch_and_value(layout, settings, switch: str, value: str) -> None:
    """One row: a check box and the value it turns on (greyed out while it is off)."""
    row = layout.row()
    row.prop(settings, switch)
    sub = row.row()
    sub.enabled = getattr(settings, switch)
    sub.prop(settings, value, text="")


class ZEROSHAPE_PT_panel(bpy.types.Panel):
    bl_label = "ZeroShape-W"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ZeroShape"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.zeroshape
        wm = context.window_manager
        capabilities = (STATE.backend_info or {}).get("capabilities")
        notes = model_notes(capabilities)  # what the loaded model cannot do: those switches are greyed out
        row = layout.row()
        row.label(text=f"Backend: {wm.zeroshape_backend or 'not checked'}")
        row.operator(ZEROSHAPE_OT_check_backend.bl_idname, text="", icon="FILE_REFRESH")
        if capabilities:
            layout.label(text=capability_line(capabilities))
        layout.prop(settings, "source", expand=True)
        if settings.source == "FILE":
            layout.prop(settings, "filepath")
        elif settings.source == "DATABLOCK":
            layout.prop(settings, "image")
        layout.prop(settings, "mask_filepath", placeholder="From the photo")
        row = layout.row()
        row.prop(settings, "shape", expand=True)
        row.prop(settings, "use_alpha")
        _note(layout, notes, "body", settings.shape == "BODY")
        layout.prop(settings, "category", placeholder="Auto")
        _note(layout, notes, "category", not settings.category.strip() or settings.category.strip() == "auto")
        layout.prop(settings, "resolution")
        row = layout.row()
        row.prop(settings, "color")
        row.prop(settings, "match_photo")
        row = layout.row()
        row.enabled = "upright" not in notes
        row.prop(settings, "upright")
        _note(layout, notes, "upright", True)
        _switch_and_value(layout, settings, "bake_texture", "texture_size")
        _switch_and_value(layout, settings, "limit_faces", "max_faces")
        layout.prop(settings, "real_height")
        _switch_and_value(layout, settings, "use_box", "box")
        layout.operator(ZEROSHAPE_OT_reconstruct.bl_idname, icon="MESH_MONKEY")
        row = layout.row()
        row.operator(ZEROSHAPE_OT_bake_texture.bl_idname, icon="TEXTURE")
        row.operator(ZEROSHAPE_OT_export_fbx.bl_idname, icon="EXPORT")
        mask = mask_image(context.active_object)
        if mask is not None:  # the selected reconstruction's mask: paint it, then make the mesh again from it
            box = layout.box()
            box.label(text=f"Mask: {mask.name}", icon="IMAGE_DATA")
            row = box.row()
            row.operator(ZEROSHAPE_OT_edit_mask.bl_idname, icon="BRUSH_DATA")
            row.operator(ZEROSHAPE_OT_reconstruct_again.bl_idname, icon="FILE_REFRESH")
        if wm.zeroshape_running:
            layout.progress(factor=wm.zeroshape_progress, type="BAR", text=wm.zeroshape_stage or "working")
            if STATE.batch is not None:
                layout.label(text=wm.zeroshape_batch_text)
                layout.operator(ZEROSHAPE_OT_cancel_after_current.bl_idname)
            layout.operator(ZEROSHAPE_OT_cancel.bl_idname, icon="CANCEL")
        _draw_batch(layout.box(), settings)
        if wm.zeroshape_status:
            layout.label(
                text=wm.zeroshape_status, icon="ERROR" if wm.zeroshape_status == wm.zeroshape_last_error else "INFO"
            )


def _note(layout, notes: dict[str, str], switch: str, relevant: bool) -> None:
    """The loaded model's limit for one switch, under it, while the switch is set to something it cannot honour."""
    if switch in notes and relevant:
        layout.label(text=notes[switch], icon="INFO")


def _draw_batch(box, settings) -> None:
    """The Batch box: the folder, Batch Import and Resume, and what a saved batch holds (or why Resume is off)."""
    box.label(text="Batch")
    box.prop(settings, "batch_folder")
    row = box.row()
    row.operator(ZEROSHAPE_OT_batch_import.bl_idname)
    row.operator(ZEROSHAPE_OT_batch_resume.bl_idname)
    saved = saved_batch() if STATE.batch is None else None
    if saved is not None:
        left, total = saved
        box.label(text=f"saved batch: {left} of {total} photo(s) left" if left else "the last batch is finished")


def menu_add(self, context):
    self.layout.operator(ZEROSHAPE_OT_reconstruct.bl_idname, icon="MESH_MONKEY")
