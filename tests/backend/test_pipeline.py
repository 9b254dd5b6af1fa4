"""Photo → mesh pipeline and the `reconstruct` command, on a tiny model.

The occupancy of an untrained network is arbitrary, so most tests replace `ZeroShapeW.query` with an
analytic sphere: everything else (loading, locating, cropping, encoding, meshing, colour, frames, files)
is the real code path.
"""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from backend.cli import main
from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW
from backend.pipeline import EmptyMeshError, ReconstructOptions, Reconstructor
from backend.preprocess import load_photo


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    image = (rng.random((120, 160, 3)) * 60 + 150).astype(np.uint8)
    image[30:90, 50:110] = [200, 40, 40]
    path = folder / "mug.jpg"
    Image.fromarray(image).save(path)
    return path


def test_reconstruct_camera_frame(checkpoint, photo_path, sphere_model):
    reconstructor = Reconstructor(checkpoint, device="cpu")
    assert reconstructor.untrained
    stages = []
    result = reconstructor.reconstruct(
        load_photo(photo_path),
        ReconstructOptions(resolution=64, frame="camera"),
        progress=lambda stage, fraction: stages.append((stage, fraction)),
    )
    mesh = result.to_trimesh()
    assert mesh.is_watertight
    assert len(mesh.faces) > 1000
    radii = np.linalg.norm(result.vertices, axis=1)
    assert np.abs(radii - 0.9).max() < 0.03
    assert result.colors.shape == (len(result.vertices), 4)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    assert stages[-1] == ("done", 1.0)

    meta = result.metadata
    assert meta["frame"] == "camera"
    assert np.allclose(meta["frame_transform"], np.eye(4))
    assert meta["camera"]["image_size_px"] == 64
    assert meta["camera"]["focal_length_px"] == pytest.approx(1.3875 * 64, rel=1e-4)
    assert meta["queries"] < meta["dense_grid_queries"]
    assert meta["model"]["config"] == "tiny"
    assert len(meta["model"]["sha256"]) == 64
    assert {"preprocess", "encode", "occupancy_and_meshing", "color"} <= set(meta["timings_s"])


def test_reconstruct_blender_frame(checkpoint, photo_path, sphere_model):
    result = Reconstructor(checkpoint, device="cpu").reconstruct(
        load_photo(photo_path), ReconstructOptions(resolution=32, frame="blender", color=False)
    )
    low, high = result.vertices.min(axis=0), result.vertices.max(axis=0)
    assert low[2] == pytest.approx(0.0, abs=1e-6)
    assert high[2] - low[2] == pytest.approx(1.0, abs=1e-6)
    assert (low[:2] + high[:2]) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert result.colors is None
    assert result.to_trimesh().volume > 0  # the axis change kept the faces outward


@pytest.fixture(scope="module")
def tilted_mug_checkpoint(tmp_path_factory):
    """A tiny model whose heads say, for any photo: the camera looks 40° down, and this is a mug."""
    torch.manual_seed(1)
    model = ZeroShapeW(get_config("tiny"))
    head = model.scene_head
    with torch.no_grad():
        angle = np.radians(40.0)
        head.gravity.bias.copy_(torch.tensor([0.0, np.cos(angle), np.sin(angle)]) - head.prior)
        model.category_head.category.bias[model.config.text.categories.index("mug")] = 6.0
    path = tmp_path_factory.mktemp("tilted") / "tilted-mug.safetensors"
    return save_checkpoint(model, path, provenance={"untrained": True})


def test_blender_frame_stands_the_object_on_the_predicted_ground(tilted_mug_checkpoint, photo_path, sphere_model):
    from backend.frames import CAMERA_TO_BLENDER_AXES

    reconstructor = Reconstructor(tilted_mug_checkpoint, device="cpu")
    photo = load_photo(photo_path)
    upright = reconstructor.reconstruct(photo, ReconstructOptions(resolution=32, color=False))
    meta = upright.metadata
    assert meta["up"]["source"] == "gravity head"
    assert meta["up"]["elevation_deg"] == pytest.approx(40.0, abs=0.01)
    # The matrix maps the predicted gravity to Blender's −Z and keeps the view direction in the YZ plane.
    rotation = np.asarray(meta["frame_transform"])[:3, :3]
    rotation /= np.cbrt(np.linalg.det(rotation))
    gravity = np.asarray(meta["up"]["gravity_camera"])
    assert rotation @ gravity == pytest.approx([0.0, 0.0, -1.0], abs=1e-5)
    assert (rotation @ [0.0, 0.0, 1.0])[0] == pytest.approx(0.0, abs=1e-6)
    # The auto category followed the confident head.
    assert meta["category"] == "mug"
    assert meta["category_requested"] == "auto"
    assert meta["category_predicted"]["name"] == "mug"
    assert meta["category_predicted"]["probability"] > 0.9

    tilted = reconstructor.reconstruct(photo, ReconstructOptions(resolution=32, color=False, upright=False))
    rotation = np.asarray(tilted.metadata["frame_transform"])[:3, :3]
    rotation /= np.cbrt(np.linalg.det(rotation))
    assert rotation == pytest.approx(CAMERA_TO_BLENDER_AXES, abs=1e-6)
    assert tilted.metadata["up"]["source"] == "camera (upright off)"
    assert tilted.metadata["up"]["elevation_deg"] == pytest.approx(40.0, abs=0.01)
    # A category the user names is used as given.
    named = reconstructor.reconstruct(photo, ReconstructOptions(resolution=32, color=False, category="chair"))
    assert named.metadata["category"] == "chair"


def test_user_box_overrides_the_automatic_crop(checkpoint, photo_path, sphere_model):
    result = Reconstructor(checkpoint, device="cpu").reconstruct(
        load_photo(photo_path), ReconstructOptions(resolution=32, box=(50, 30, 110, 90))
    )
    x0, y0, x1, y1 = result.metadata["camera"]["crop_box_photo_px"]
    assert (x0 + x1) / 2 == pytest.approx(80)
    assert (y0 + y1) / 2 == pytest.approx(60)
    assert x1 - x0 == pytest.approx(60 * 1.2)


def test_a_downscaled_photo_reports_its_camera_in_the_file_pixels(checkpoint, photo_path, sphere_model, tmp_path):
    # The same photo at 20× (3200 × 2400): decoded at 2048 wide, it must report the same camera in its own
    # pixels as the small one does in its, times 20, and take the user's box in its own pixels.
    small = load_photo(photo_path)
    big_path = tmp_path / "mug-20x.png"
    Image.open(photo_path).resize((3200, 2400), Image.Resampling.BICUBIC).save(big_path)
    big = load_photo(big_path)
    assert big.scale < 1
    assert big.size_in_file == (3200, 2400)
    reconstructor = Reconstructor(checkpoint, device="cpu")
    options = ReconstructOptions(resolution=32, frame="camera", color=False)
    small_camera = reconstructor.reconstruct(small, dataclasses.replace(options, box=(50, 30, 110, 90))).metadata[
        "camera"
    ]
    big_camera = reconstructor.reconstruct(big, dataclasses.replace(options, box=(1000, 600, 2200, 1800))).metadata[
        "camera"
    ]
    assert big_camera["photo_size_px"] == [3200, 2400]
    assert big_camera["crop_box_photo_px"] == pytest.approx([20 * v for v in small_camera["crop_box_photo_px"]])
    assert big_camera["focal_length_photo_px"] == pytest.approx(20 * small_camera["focal_length_photo_px"], rel=0.05)
    for small_value, big_value in zip(
        small_camera["principal_point_photo_px"], big_camera["principal_point_photo_px"], strict=True
    ):
        assert (big_value + 0.5) == pytest.approx(20 * (small_value + 0.5), rel=0.02)


@pytest.mark.parametrize(
    ("box", "reason"),
    [((0, 0, 1e15, 1e15), "4 times"), ((500, 500, 600, 600), "outside"), ((80, 30, 50, 90), "x0 < x1")],
)
def test_a_box_that_cannot_be_cropped_is_a_clear_error(checkpoint, photo_path, sphere_model, box, reason):
    with pytest.raises(ValueError, match=reason):
        Reconstructor(checkpoint, device="cpu").reconstruct(
            load_photo(photo_path), ReconstructOptions(resolution=32, box=box)
        )


def test_a_blank_photo_is_reconstructed_with_a_warning(checkpoint, tmp_path, sphere_model, photo_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), (128, 128, 128)).save(blank)
    reconstructor = Reconstructor(checkpoint, device="cpu")
    warnings = reconstructor.reconstruct(load_photo(blank), ReconstructOptions(resolution=32)).metadata["warnings"]
    assert len(warnings) == 1
    assert "flat colour" in warnings[0]
    photo = load_photo(photo_path)
    assert reconstructor.reconstruct(photo, ReconstructOptions(resolution=32)).metadata["warnings"] == []


def test_alpha_channel_is_used_as_the_object_mask(checkpoint, tmp_path, sphere_model):
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[20:60, 30:70] = [10, 200, 10, 255]
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    result = Reconstructor(checkpoint, device="cpu").reconstruct(load_photo(path), ReconstructOptions(resolution=32))
    x0, y0, x1, y1 = result.metadata["camera"]["crop_box_photo_px"]
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((50, 40))
    assert x1 - x0 == pytest.approx(40 * 1.2)


def test_empty_field_is_a_clear_error(checkpoint, photo_path, monkeypatch):
    monkeypatch.setattr(ZeroShapeW, "query", lambda self, points, latent: torch.full(points.shape[:2], -5.0))
    options = ReconstructOptions(resolution=32, shape="learned")
    with pytest.raises(EmptyMeshError, match=r"mug\.jpg: the model found no object surface"):
        Reconstructor(checkpoint, device="cpu").reconstruct(load_photo(photo_path), options)


@pytest.mark.parametrize("shape", ["inflate", "learned"])
def test_untrained_network_end_to_end(checkpoint, photo_path, shape):
    """No monkeypatching: the real network's masks and occupancy, whatever they are, mesh or fail cleanly."""
    reconstructor = Reconstructor(checkpoint, device="cpu")
    try:
        result = reconstructor.reconstruct(load_photo(photo_path), ReconstructOptions(resolution=32, shape=shape))
    except EmptyMeshError:
        return
    assert result.to_trimesh().is_watertight


def write_bad_inputs(folder):
    """The four bad inputs of the issue, without allocating a 20000² image."""
    good = folder / "good.jpg"
    Image.fromarray((np.random.default_rng(1).random((80, 80, 3)) * 255).astype(np.uint8)).save(good)
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image\n")

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    side = 20000
    compressor = zlib.compressobj()
    row = b"\x00" * (1 + side // 8)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    (folder / "huge.png").write_bytes(png)
    return good


def test_cli_reports_each_bad_input_in_one_line_and_still_does_the_good_ones(
    checkpoint, photo_path, tmp_path, sphere_model, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    write_bad_inputs(folder)
    out = tmp_path / "out"
    inputs = [str(folder / n) for n in ("truncated.jpg", "empty.jpg", "notes.png", "huge.png")]
    options = ["-o", str(out), "--checkpoint", str(checkpoint), "--device", "cpu", "--resolution", "32"]
    code = main(["reconstruct", *inputs, str(photo_path), str(folder / "good.jpg"), *options, "--frame", "camera"])
    assert code == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("zeroshape-w: error: ")]
    assert len(error_lines) == 4
    for name, reason in [
        ("truncated.jpg", "damaged or truncated"),
        ("empty.jpg", "empty"),
        ("notes.png", "not an image file"),
        ("huge.png", "too large"),
    ]:
        assert any(name in line and reason in line for line in error_lines), (name, error_lines)
    assert "Traceback" not in err
    assert "4 of 6 inputs failed" in err
    for stem in ("mug", "good"):
        mesh = trimesh.load(out / f"{stem}.glb", force="mesh")
        assert mesh.is_watertight
        assert len(mesh.faces) > 0
        assert json.loads((out / f"{stem}.json").read_text())["format"] == "glb"


@pytest.mark.parametrize("file_format", ["glb", "obj", "ply", "stl"])
def test_cli_formats(checkpoint, photo_path, tmp_path, sphere_model, file_format):
    options = ["--checkpoint", str(checkpoint), "--resolution", "32", "--format", file_format, "-q"]
    code = main(["reconstruct", str(photo_path), "-o", str(tmp_path), *options])
    assert code == 0
    loaded = trimesh.load(tmp_path / f"mug.{file_format}", force="mesh")
    assert len(loaded.faces) > 0
    if file_format in ("glb", "ply"):
        assert loaded.visual.kind == "vertex"
    assert (tmp_path / "mug.json").is_file()


@pytest.mark.parametrize(("file_format", "up_axis"), [("glb", 1), ("obj", 1), ("ply", 2), ("stl", 2)])
def test_blender_frame_files_stand_upright_in_their_format(
    checkpoint, photo_path, tmp_path, sphere_model, file_format, up_axis
):
    """glTF is Y-up by its specification and OBJ by custom (Blender's importers turn both to Z up): a `blender`
    frame mesh rests on the ground along the format's up axis (once, a GLB opened in Blender lay on its back)."""
    options = ["--checkpoint", str(checkpoint), "--resolution", "32", "--format", file_format, "-q"]
    assert main(["reconstruct", str(photo_path), "-o", str(tmp_path), *options]) == 0
    vertices = np.asarray(trimesh.load(tmp_path / f"mug.{file_format}", force="mesh").vertices)
    assert vertices[:, up_axis].min() == pytest.approx(0.0, abs=1e-4)  # standing on the ground
    assert vertices[:, up_axis].max() == pytest.approx(1.0, abs=1e-4)  # one unit tall
    metadata = json.loads((tmp_path / "mug.json").read_text())
    expected = np.eye(4) if up_axis == 2 else np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(metadata["file_transform"], expected)


def test_cli_accepts_folders_and_globs_and_names_outputs_uniquely(checkpoint, photo_path, tmp_path, sphere_model):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for folder in (a, b):
        (folder / "mug.jpg").write_bytes(photo_path.read_bytes())
    (a / "readme.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"
    options = ["-o", str(out), "--checkpoint", str(checkpoint), "--resolution", "32", "--format", "stl", "-q"]
    code = main(["reconstruct", str(a), str(tmp_path / "b" / "*.jpg"), *options])
    assert code == 0
    written = ["mug-2-mask.png", "mug-2.json", "mug-2.stl", "mug-mask.png", "mug.json", "mug.stl"]
    assert sorted(p.name for p in out.iterdir()) == written


def test_cli_pattern_matching_nothing_fails(checkpoint, tmp_path, capsys):
    code = main(["reconstruct", str(tmp_path / "*.jpg"), "-o", str(tmp_path), "--checkpoint", str(checkpoint)])
    assert code == 1
    assert "the pattern matches no file" in capsys.readouterr().err


def test_cli_rejects_a_bad_resolution(checkpoint, photo_path, tmp_path, capsys):
    code = main(["reconstruct", str(photo_path), "-o", str(tmp_path), "--resolution", "100"])
    assert code == 2
    assert "power of two" in capsys.readouterr().err


def test_bf16_autocast_keeps_the_mesh(checkpoint, photo_path):
    """The real (untrained) network in bf16 gives nearly the same occupancy grid as in fp32."""
    reconstructor = Reconstructor(checkpoint, device="cpu")
    photo = load_photo(photo_path)
    results = {}
    for precision in ("fp32", "bf16"):
        try:
            results[precision] = reconstructor.reconstruct(
                photo, ReconstructOptions(resolution=32, precision=precision, color=False, frame="camera")
            )
        except EmptyMeshError:
            pytest.skip("this random network has no surface for the photo")
    a, b = results["fp32"].to_trimesh(), results["bf16"].to_trimesh()
    assert abs(a.volume - b.volume) <= 0.1 * abs(a.volume)


def test_fp16_on_cpu_is_refused(checkpoint, photo_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        Reconstructor(checkpoint, device="cpu").reconstruct(
            load_photo(photo_path), ReconstructOptions(resolution=32, precision="fp16")
        )


def test_checkpoint_occupancy_level_moves_the_surface(tmp_path, photo_path, sphere_model):
    """The surface is extracted at the checkpoint's own level: logit 20·(0.9 − r) = −4 at r = 1.1."""
    import dataclasses

    torch.manual_seed(0)
    model = ZeroShapeW(get_config("tiny"))
    model.preprocess = dataclasses.replace(model.preprocess, occupancy_level=-4.0)
    path = save_checkpoint(model, tmp_path / "level.safetensors")
    mask = np.zeros((120, 160), np.float32)  # this random network sees no object: the mug's mask is given
    mask[30:90, 50:110] = 1.0
    result = Reconstructor(path, device="cpu").reconstruct(
        load_photo(photo_path), ReconstructOptions(resolution=64, frame="camera", shape="learned"), mask=mask
    )
    radii = np.linalg.norm(result.vertices, axis=1)
    assert np.abs(radii - 1.1).max() < 0.03


def star_cutout(path, size=(400, 320)):
    """An RGBA photo of a five-pointed star cut-out (alpha: the star), and its mask."""
    width, height = size
    rows, columns = np.mgrid[0:height, 0:width]
    angle = np.arctan2(rows - height / 2, columns - width / 2)
    phase = np.abs(((angle * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2
    mask = np.hypot(rows - height / 2, columns - width / 2) <= 50 + 80 * phase
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = [230, 190, 40]
    rgba[..., 3] = mask * 255
    Image.fromarray(rgba).save(path)
    return mask


def test_the_outline_of_a_star_shaped_cutout_comes_back(tmp_path):
    """With the bundled model (the tiny test model's 64-pixel input is too coarse for a star's points)."""
    from backend.silhouette import photo_outline_iou

    mask = star_cutout(tmp_path / "star.png")
    reconstructor = Reconstructor(device="cpu")
    for frame in ("camera", "blender"):
        result = reconstructor.reconstruct(load_photo(tmp_path / "star.png"), ReconstructOptions(frame=frame))
        assert result.metadata["mask_source"] == "alpha"
        assert result.metadata["shape"] == "inflate"
        assert result.metadata["network_queries"] == 0
        assert result.to_trimesh().is_watertight
        assert photo_outline_iou(result.vertices, result.faces, result.metadata, mask) >= 0.95


def test_a_given_mask_replaces_the_alpha_and_is_written_beside_the_mesh(checkpoint, tmp_path, photo_path):
    from backend.silhouette import photo_outline_iou

    mask = np.zeros((120, 160), np.uint8)
    mask[30:90, 50:110] = 255
    Image.fromarray(mask).save(tmp_path / "mug-mask-edited.png")
    out = tmp_path / "out"
    code = main(
        ["reconstruct", str(photo_path), "-o", str(out), "--checkpoint", str(checkpoint), "--resolution", "64", "-q",
         "--mask", str(tmp_path / "mug-mask-edited.png"), "--format", "ply"]
    )  # fmt: skip
    assert code == 0
    metadata = json.loads((out / "mug.json").read_text())
    assert metadata["mask_source"] == "user"
    assert metadata["mask_file"] == "mug-mask.png"
    written = np.asarray(Image.open(out / "mug-mask.png"))
    assert (written == mask).all()
    mesh = trimesh.load(out / "mug.ply", process=False)
    # The tiny model sees 64 pixels, so the 60-pixel square's outline is good to about a photo pixel (the bundled
    # model's 224-pixel input is what test_the_outline_of_a_star_shaped_cutout_comes_back holds to 0.95).
    assert photo_outline_iou(mesh.vertices, mesh.faces, metadata, mask > 0) >= 0.9


def test_a_mask_of_the_wrong_size_is_one_clear_line(checkpoint, tmp_path, photo_path, capsys):
    Image.fromarray(np.full((50, 60), 255, np.uint8)).save(tmp_path / "small.png")
    code = main(["reconstruct", str(photo_path), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                 "--mask", str(tmp_path / "small.png")])  # fmt: skip
    assert code == 1
    error = capsys.readouterr().err
    assert "small.png is 60×50 pixels but the photo is 160×120" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out" / "mug.glb").exists()


def test_a_mask_is_for_one_photo(checkpoint, tmp_path, photo_path, capsys):
    Image.fromarray(np.full((120, 160), 255, np.uint8)).save(tmp_path / "m.png")
    (tmp_path / "other.jpg").write_bytes(photo_path.read_bytes())
    code = main(["reconstruct", str(photo_path), str(tmp_path / "other.jpg"), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(checkpoint), "--mask", str(tmp_path / "m.png")])  # fmt: skip
    assert code == 2
    assert "--mask belongs to one photo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("paint", "message"),
    [
        (lambda m: None, "the mask is empty"),
        (lambda m: m.__setitem__((slice(50, 53), slice(50, 53)), 255), "only 9 pixels"),
        (lambda m: m.__setitem__((slice(None), slice(None)), 255), "looks inverted"),
    ],
    ids=["empty", "a few pixels", "inverted"],
)
def test_bad_given_masks_are_one_clear_line(checkpoint, tmp_path, photo_path, capsys, paint, message):
    mask = np.zeros((120, 160), np.uint8)
    paint(mask)
    Image.fromarray(mask).save(tmp_path / "m.png")
    code = main(["reconstruct", str(photo_path), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                 "--mask", str(tmp_path / "m.png")])  # fmt: skip
    assert code == 1
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error


def reconstruct_two_part_cutout(checkpoint, folder, **options):
    """A 100² cut-out whose alpha has two parts, a 40² red square and a 20² blue one, reconstructed at 32."""
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[20:60, 20:60] = [200, 40, 40, 255]
    rgba[70:90, 70:90] = [40, 40, 200, 255]
    Image.fromarray(rgba).save(folder / "two.png")
    return Reconstructor(checkpoint, device="cpu").reconstruct(
        load_photo(folder / "two.png"), ReconstructOptions(resolution=32, **options)
    )


def test_an_alpha_of_several_parts_keeps_the_largest_with_a_warning(checkpoint, tmp_path):
    result = reconstruct_two_part_cutout(checkpoint, tmp_path)
    assert result.metadata["mask_source"] == "alpha"
    assert any("2 separate parts; kept the largest" in w for w in result.metadata["warnings"])
    assert result.mask[40, 40]
    assert not result.mask[80, 80]


def test_ignore_alpha_lets_the_model_find_the_object(checkpoint, tmp_path):
    mask = star_cutout(tmp_path / "star.png")
    result = Reconstructor(checkpoint, device="cpu").reconstruct(
        load_photo(tmp_path / "star.png"), ReconstructOptions(resolution=32, use_alpha=False)
    )
    assert result.metadata["mask_source"] == "network+grabcut"
    assert (result.mask != mask).any()


def test_of_several_parts_the_one_in_the_users_box_is_kept(checkpoint, tmp_path):
    result = reconstruct_two_part_cutout(checkpoint, tmp_path, box=(65, 65, 95, 95))
    assert result.mask[80, 80]
    assert not result.mask[40, 40]
    assert any("the one the object's box points at" in w for w in result.metadata["warnings"])


def test_an_alpha_that_is_no_object_mask_falls_back_to_the_model_with_a_warning(checkpoint, tmp_path):
    rgba = np.full((100, 100, 4), 255, np.uint8)
    rgba[:4, :4, 3] = 0  # rounded corners, say: transparent, but no outline
    Image.fromarray(rgba).save(tmp_path / "corners.png")
    result = Reconstructor(checkpoint, device="cpu").reconstruct(
        load_photo(tmp_path / "corners.png"), ReconstructOptions(resolution=32)
    )
    assert result.metadata["mask_source"] == "network+grabcut"
    assert any(
        "alpha channel covers" in w and "using the model's mask instead" in w for w in result.metadata["warnings"]
    )


def test_body_follows_the_body_head_and_inflate_ignores_it(tmp_path):
    """A model whose (constant) body head tilts the body and thins its front: `body` reports and builds that body,
    `inflate` the round one; both keep the cut-out's outline."""
    import math

    from backend.silhouette import photo_outline_iou

    torch.manual_seed(1)
    model = ZeroShapeW(dataclasses.replace(get_config("small"), body_head="constant"))
    with torch.no_grad():
        model.body_head.out[-1].bias.copy_(torch.tensor([0.0, -0.8, math.log(0.3), 0.0]))
    path = save_checkpoint(model, tmp_path / "body.safetensors")
    mask = star_cutout(tmp_path / "star.png")
    reconstructor = Reconstructor(checkpoint=path, device="cpu")
    meshes = {}
    for shape in ("body", "inflate"):
        result = reconstructor.reconstruct(
            load_photo(tmp_path / "star.png"), ReconstructOptions(shape=shape, frame="camera")
        )
        assert photo_outline_iou(result.vertices, result.faces, result.metadata, mask) >= 0.93
        meshes[shape] = result
    body = meshes["body"].metadata["body"]
    assert body["front"] == pytest.approx(0.3, rel=1e-3)
    assert body["tilt"] == pytest.approx([0.0, -0.8], abs=1e-3)
    assert "body" not in meshes["inflate"].metadata
    depth = {shape: np.ptp(result.vertices[:, 2]) for shape, result in meshes.items()}
    assert depth["body"] > 1.3 * depth["inflate"]  # tilted 0.8 px per row across a 260-row star: far deeper


def test_a_missing_bundled_model_is_an_error_that_says_how_to_restore_it(tmp_path, monkeypatch):
    import backend.pipeline as pipeline

    monkeypatch.setattr(pipeline, "BUNDLED_CHECKPOINT", pipeline.REPO_ROOT / "backend/weights/missing.safetensors")
    monkeypatch.setattr(pipeline, "UNTRAINED_CHECKPOINT", tmp_path / "untrained-small.safetensors")
    with pytest.raises(FileNotFoundError, match=r"git checkout -- backend/weights/missing\.safetensors.*--checkpoint"):
        pipeline.default_checkpoint()
    (tmp_path / "untrained-small.safetensors").write_bytes(b"")
    assert pipeline.default_checkpoint() == tmp_path / "untrained-small.safetensors"
