"""The add-on's Blender side, registered as one: settings and preferences (`properties`), jobs and the timer
(`jobs`), operators (`operators`), the panel (`panel`); the camera maths (`camera`) needs no Blender.
"""

from __future__ import annotations

import atexit

import bpy

from . import properties
from .jobs import STATE, after_file_load, stop_local_backend, tick, watch_backend
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
    ZEROSHAPE_OT_start_backend,
    ZEROSHAPE_OT_stop_backend,
)
from .panel import ZEROSHAPE_PT_panel, menu_add
from .properties import ZeroShapePreferences, ZeroShapeSettings

CLASSES = (
    ZeroShapeSettings,
    ZeroShapePreferences,
    ZEROSHAPE_OT_reconstruct,
    ZEROSHAPE_OT_reconstruct_again,
    ZEROSHAPE_OT_edit_mask,
    ZEROSHAPE_OT_check_backend,
    ZEROSHAPE_OT_bake_texture,
    ZEROSHAPE_OT_export_fbx,
    ZEROSHAPE_OT_cancel,
    ZEROSHAPE_OT_cancel_after_current,
    ZEROSHAPE_OT_batch_import,
    ZEROSHAPE_OT_batch_resume,
    ZEROSHAPE_OT_start_backend,
    ZEROSHAPE_OT_stop_backend,
    ZEROSHAPE_PT_panel,
)

_KEYMAPS: list = []


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    bpy.app.handlers.load_post.append(after_file_load)
    bpy.app.timers.register(watch_backend, first_interval=1.0, persistent=True)
    atexit.register(stop_local_backend)  # Blender finalises Python when it quits: the backend goes with it
    bpy.types.VIEW3D_MT_add.append(menu_add)
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is not None:  # None in background mode
        keymap = keyconfig.keymaps.new(name="3D View", space_type="VIEW_3D")
        _KEYMAPS.append((keymap, keymap.keymap_items.new(ZEROSHAPE_OT_cancel.bl_idname, "ESC", "PRESS")))


def unregister() -> None:
    for keymap, item in _KEYMAPS:
        keymap.keymap_items.remove(item)
    _KEYMAPS.clear()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if bpy.app.timers.is_registered(watch_backend):
        bpy.app.timers.unregister(watch_backend)
    if after_file_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(after_file_load)
    if STATE.job is not None:
        STATE.job.cancel()
    stop_local_backend()  # a backend this Blender started does not outlive the add-on
    atexit.unregister(stop_local_backend)
    bpy.types.VIEW3D_MT_add.remove(menu_add)
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
