"""The add-on's settings (per scene), preferences (per user) and window-manager state shown in the panel (bpy)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .protocol import DEFAULT_ADDRESS, is_loopback
from .texture_bake import TEXTURE_SIZES

PACKAGE = __package__


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon else None


def make_client(context=None):
    """A client for the backend in the preferences. BackendError when it may not or cannot be used: Blender's
    online access is off and the address is not on this computer, or a key file cannot be read."""
    from .client import BackendError, Client, CurveKeys

    prefs = preferences(context)
    address = prefs.address if prefs else DEFAULT_ADDRESS
    if not bpy.app.online_access and not is_loopback(address):
        raise BackendError(
            f"{address} is on another computer, and Blender's online access is off: turn on Preferences → System → "
            "Network → Allow Online Access, or use a backend on this computer (tcp://127.0.0.1:5557)"
        )
    curve = None
    if prefs and prefs.use_auth:
        curve = CurveKeys.from_files(
            bpy.path.abspath(prefs.server_public_key), bpy.path.abspath(prefs.client_secret_key)
        )
    heartbeat = prefs.heartbeat_timeout if prefs else 10.0
    return Client(address, curve=curve, heartbeat_timeout_s=heartbeat)


RESOLUTIONS = [
    ("64", "Draft (64)", "Fast preview"),
    ("128", "Standard (128)", "Good balance"),
    ("256", "Fine (256)", "More detail, slower"),
]


class ZeroShapeSettings(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Image",
        items=[
            ("FILE", "File", "An image file on disk"),
            ("DATABLOCK", "Blend Image", "An image already in this .blend (saved on disk)"),
            ("EDITOR", "Image Editor", "The image open in an Image Editor"),
        ],
        default="FILE",
    )
    filepath: StringProperty(name="Photo", subtype="FILE_PATH")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    mask_filepath: StringProperty(
        name="Mask",
        description="Optional: the object's mask, an image of the photo's size, white (or opaque) on the object "
        "(e.g. the mask of an earlier reconstruction, edited); empty: found from the photo",
        subtype="FILE_PATH",
    )
    use_alpha: BoolProperty(
        name="Use alpha",
        description="Take a cut-out photo's transparency as the object's outline (off: the model finds the object)",
        default=True,
    )
    shape: EnumProperty(
        name="Shape",
        description="How the body is made from the object's outline",
        items=[
            ("INFLATE", "Inflate", "A round body inflated from the object's outline (fast, follows the mask)"),
            (
                "BODY",
                "Body",
                "The inflated body tilted and thickened as the model estimates from the outline (fast, follows the "
                "mask; better for photos taken from above)",
            ),
            ("LEARNED", "Learned", "The model's learned shape, carved by the outline"),
        ],
        default="INFLATE",
    )
    category: StringProperty(
        name="Category",
        description='What the object is, e.g. "chair"; "object" for no category; empty: Auto, the model chooses',
    )
    upright: BoolProperty(
        name="Upright",
        description="Stand the mesh on the ground the model sees in the photo (off: tilted by the camera's view)",
        default=True,
    )
    resolution: EnumProperty(name="Detail", items=RESOLUTIONS, default="128")
    color: BoolProperty(name="Colour from photo", default=True)
    match_photo: BoolProperty(name="Match photo", description="Add a camera that sees the mesh as the photo did")
    use_box: BoolProperty(
        name="Object box", description="Reconstruct the object inside this box of the photo (instead of finding it)"
    )
    box: FloatVectorProperty(
        name="Box",
        description="x0, y0, x1, y1 in the photo's pixels, from its top-left corner",
        size=4,
        min=0.0,
        default=(0.0, 0.0, 0.0, 0.0),
    )
    limit_faces: BoolProperty(name="Face budget", description="Decimate the mesh to at most this many faces")
    max_faces: IntProperty(name="Faces", default=20_000, min=100, max=10_000_000)
    real_height: FloatProperty(
        name="Height",
        description="The object's real height: the mesh is scaled to it (0: leave it 1 unit tall)",
        default=0.0,
        min=0.0,
        soft_max=10.0,
        unit="LENGTH",
    )
    bake_texture: BoolProperty(
        name="Bake texture",
        description="Bake the colours into a UV-mapped image texture on import, so FBX, glTF and game engines keep "
        "them (vertex colours do not survive most exports)",
        default=False,
    )
    texture_size: EnumProperty(
        name="Texture",
        description="Side of the baked texture in pixels",
        items=[(str(size), f"{size} px", f"A {size}×{size} texture") for size in TEXTURE_SIZES],
        default="1024",
    )
    batch_folder: StringProperty(name="Folder", subtype="DIR_PATH")


class ZeroShapePreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    address: StringProperty(name="Backend address", default=DEFAULT_ADDRESS)
    ping_timeout: FloatProperty(name="Connect timeout (s)", default=0.5, min=0.1, max=30)
    heartbeat_timeout: FloatProperty(name="Give up after silence (s)", default=10.0, min=2, max=600)
    use_auth: BoolProperty(name="CurveZMQ keys", description="For a backend started with --auth (e.g. remote)")
    server_public_key: StringProperty(name="Server public key", subtype="FILE_PATH")
    client_secret_key: StringProperty(name="Your secret key", subtype="FILE_PATH")
    backend_python: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="The project's .venv/bin/python, to start a local backend",
    )
    backend_arguments: StringProperty(name="Extra arguments", default="")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "address")
        row = layout.row()
        row.prop(self, "ping_timeout")
        row.prop(self, "heartbeat_timeout")
        layout.prop(self, "use_auth")
        if self.use_auth:
            layout.prop(self, "server_public_key")
            layout.prop(self, "client_secret_key")
        box = layout.box()
        box.label(text="Local backend")
        box.prop(self, "backend_python")
        box.prop(self, "backend_arguments")
        row = box.row()
        row.operator("zeroshape.start_backend")
        row.operator("zeroshape.stop_backend")


WM_PROPERTIES = {  # runtime state the panel shows: not saved with the .blend
    "zeroshape_running": BoolProperty(default=False),
    "zeroshape_progress": FloatProperty(default=0.0, min=0.0, max=1.0),
    "zeroshape_stage": StringProperty(),
    "zeroshape_status": StringProperty(),
    "zeroshape_last_error": StringProperty(),
    "zeroshape_batch_text": StringProperty(),
    "zeroshape_backend": StringProperty(),
}


def register() -> None:
    bpy.types.Scene.zeroshape = PointerProperty(type=ZeroShapeSettings)
    for name, prop in WM_PROPERTIES.items():
        setattr(bpy.types.WindowManager, name, prop)


def unregister() -> None:
    for name in WM_PROPERTIES:
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.zeroshape
