"""The README's Blender picture, made by the add-on itself in real Blender (bpy):

    python -m training.addon_figure -o docs/images/addon.jpg [--photo examples/bear.png]

It builds the add-on's zip, starts `zeroshape-w serve` with the bundled model on a free loopback port, and in a
fresh bpy process installs the zip as Blender's preferences would, sets the panel (the photo, Match Photo on) and
presses Reconstruct from Image. The picture shows, left to right: the panel as its `draw()` lays it out after the
import (`training.panel_capture`), the mesh through the camera Match Photo added, over the photo (Cycles), and the
mesh where it landed in the scene, from a 3/4 view (Cycles). About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_MODULE = "bl_ext.user_default.zeroshape_w"
SIZE = 512
"""Pixels of the rendered pictures' longer side."""


def make_figure(photo: Path, out: Path, samples: int = 32) -> tuple[Path, dict]:
    """Run the add-on against a live backend and write the three-part picture to `out` (JPEG or PNG). Returns the
    picture's path and what the Blender side saw: the panel's rows and text, the status line, the scene's objects."""
    import build_addon

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (package,) = build_addon.build(work / "dist")
        with BundledBackend(work) as address:
            command = [sys.executable, "-m", "training.addon_figure", "--inside", str(package), address]
            command += [str(photo.resolve()), str(work), str(samples)]
            env = dict(os.environ, BLENDER_USER_RESOURCES=str(work / "blender"), HF_HUB_OFFLINE="1")
            result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"the Blender side failed:\n{result.stderr[-3000:]}")
        report = json.loads(result.stdout.strip().splitlines()[-1])
        return _compose(photo, work, report, out), report


class BundledBackend:
    """`zeroshape-w serve` with the bundled model on a free loopback port, for the length of a `with` block."""

    def __init__(self, folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
        command = [sys.executable, "-m", "backend", "serve", "--address", self.address, "--device", "cpu"]
        command += ["--token-file", str(folder / "token")]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def __enter__(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if "ready on" in line:
                return self.address
            if self.process.poll() is not None:
                raise RuntimeError(f"the backend exited: {self.process.stderr.read()[-2000:]}")
        raise RuntimeError("the backend did not become ready in 120 s")

    def __exit__(self, *_) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _compose(photo: Path, work: Path, report: dict, out: Path) -> Path:
    """[panel | mesh over the photo | the scene] at one height, with a caption over each."""
    from PIL import Image, ImageDraw, ImageFont

    from training.panel_capture import Row, Widget, draw_panel

    rows = [Row([Widget(**w) for w in row["widgets"]], row["indent"]) for row in report["panel"]]
    for widget in (w for row in rows for w in row.widgets if w.kind == "field" and w.text == "Photo"):
        widget.value = Path(str(widget.value)).name  # the file, not this machine's folders
    panel = draw_panel(rows, width=440)
    source = Image.open(photo).convert("RGBA")
    source = Image.alpha_composite(Image.new("RGBA", source.size, (255, 255, 255, 255)), source)  # cut-outs on white
    overlay = Image.open(work / "through-camera.png").convert("RGBA")
    overlay.putalpha(overlay.getchannel("A").point(lambda a: a * 3 // 4))  # the photo shows through the clay
    under = source.resize(overlay.size, Image.Resampling.LANCZOS)
    through_camera = Image.alpha_composite(under, overlay).convert("RGB")
    scene = Image.open(work / "scene.png").convert("RGB")
    height = SIZE
    parts = [
        ("1  The panel", panel),
        ("2  Through the Match Photo camera", through_camera),
        ("3  In the scene", scene),
    ]
    font = ImageFont.load_default(size=18)
    caption, gap = 30, 8
    scaled = [(text, _fit_height(image, height, keep_pixels=image is panel)) for text, image in parts]
    width = sum(image.width for _, image in scaled) + gap * (len(scaled) - 1)
    canvas = Image.new("RGB", (width, height + caption), (255, 255, 255))
    draw, x = ImageDraw.Draw(canvas), 0
    for text, image in scaled:
        canvas.paste(image, (x, caption))
        draw.text((x + 4, caption / 2), text, fill=(20, 20, 20), font=font, anchor="lm")
        x += image.width + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, quality=88) if out.suffix.lower() in (".jpg", ".jpeg") else canvas.save(out)
    return out


def _fit_height(image, height: int, keep_pixels: bool = False):
    """`image` scaled to `height`; with `keep_pixels` (the panel: its text stays sharp) padded below instead, in its
    own background colour, unless it is taller."""
    from PIL import Image

    if keep_pixels and image.height <= height:
        canvas = Image.new("RGB", (image.width, height), image.getpixel((0, image.height - 1)))
        canvas.paste(image, (0, 0))
        return canvas
    return image.resize((round(image.width * height / image.height), height), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------------------- inside Blender (bpy)
def inside_blender(package: str, address: str, photo: str, work: str, samples: int) -> dict:
    """Install the add-on, reconstruct `photo` with Match Photo on, capture the panel and render two views."""
    import importlib

    import bpy

    from backend.preview_render import add_camera, add_sun, set_up_render, world_vertices
    from training.panel_capture import capture_panel, rows_as_text

    for obj in list(bpy.data.objects):  # the startup scene's cube, light and camera: an artist's empty scene
        bpy.data.objects.remove(obj)
    bpy.ops.extensions.package_install_files(filepath=package, repo="user_default", enable_on_install=True)
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    panel = importlib.import_module(f"{ADDON_MODULE}.panel")
    bpy.context.preferences.addons[ADDON_MODULE].preferences.address = address
    settings = bpy.context.scene.zeroshape
    settings.filepath, settings.match_photo = photo, True
    jobs.watch_backend()  # what the add-on's timer does every few seconds: the panel's Backend line
    jobs.STATE.backend_check.join(timeout=30)
    bpy.ops.zeroshape.reconstruct()
    deadline = time.monotonic() + 300
    while jobs.STATE.job is not None and time.monotonic() < deadline:  # timers do not tick without a window
        jobs.tick()
        time.sleep(0.05)
    bpy.ops.zeroshape.check_backend()  # the panel's Backend line, as the artist's click on its refresh button sets it
    rows = capture_panel(panel.ZEROSHAPE_PT_panel, bpy.context)

    scene = bpy.context.scene
    meshes = [obj for obj in scene.objects if obj.type == "MESH"]
    camera = scene.camera
    width, height = scene.render.resolution_x, scene.render.resolution_y
    set_up_render(scene, SIZE, samples)  # the previews' grey world, Cycles settings and colour management
    scale = SIZE / max(width, height)
    scene.render.resolution_x, scene.render.resolution_y = round(width * scale), round(height * scale)
    scene.camera = camera
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    add_sun(scene)
    clay = bpy.data.materials.new("clay")  # one colour, so the mesh's outline and shading show over the photo
    clay.diffuse_color = (0.8, 0.45, 0.3, 1.0)
    clay.use_nodes = True
    clay.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.45, 0.3, 1.0)
    bpy.context.view_layer.material_override = clay
    _render(scene, Path(work) / "through-camera.png")
    bpy.context.view_layer.material_override = None

    for obj in [o for o in scene.objects if o.type == "LIGHT"]:
        bpy.data.objects.remove(obj)
    scene.render.film_transparent = False
    scene.render.image_settings.color_mode = "RGB"
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    add_camera(scene, world_vertices(meshes), 35.0, 20.0)  # a 3/4 view from the photo's side, and a sun
    _render(scene, Path(work) / "scene.png")
    return {
        "panel": [{"indent": r.indent, "widgets": [vars(w) for w in r.widgets]} for r in rows],
        "panel_text": rows_as_text(rows),
        "status": bpy.context.window_manager.zeroshape_status,
        "objects": sorted(obj.name for obj in scene.objects),
    }


def _render(scene, path: Path) -> None:
    import bpy

    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    if not path.is_file():
        raise RuntimeError(f"Cycles wrote no {path.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.addon_figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/images/addon.jpg"), help="%(default)s")
    parser.add_argument("--photo", type=Path, default=REPO_ROOT / "examples" / "bear.png", help="the photo")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel (default 32)")
    parser.add_argument(
        "--inside", nargs=5, metavar=("ZIP", "ADDRESS", "PHOTO", "WORK", "SAMPLES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.inside:
        package, address, photo, work, samples = args.inside
        print(json.dumps(inside_blender(package, address, photo, work, int(samples))))
        return 0
    out, report = make_figure(args.photo, args.output, args.samples)
    print("\n".join(["the panel:", *report["panel_text"], f"wrote {out}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
