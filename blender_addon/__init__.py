"""ZeroShape-W for Blender: the add-on package.

Installs both as a Blender 4.2+ extension (`blender_manifest.toml`) and as a legacy add-on (`bl_info`).
Modules that need Blender import `bpy` inside `register()`, so the rest of this package (the wire
protocol, the client) imports in plain Python for the backend and the tests.
"""

bl_info = {
    "name": "ZeroShape-W",
    "description": "Reconstruct a 3D mesh from a single photo",
    "author": "ZeroShape-W for Blender developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 13),
    "location": "View3D > Sidebar > ZeroShape",
    "category": "Import-Export",
}


def register() -> None:
    # Imported here, not at module level: `blender_addon.protocol` and `.client` must import without Blender.
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
