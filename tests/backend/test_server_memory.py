"""The per-job memory budget (docs/SERVER.md, "Limits"): no input under the message limit lifts a job's peak
resident memory by more than JOB_BUDGET_MB on the CPU at resolution 128, with the bundled model. Measured by the
server itself (the kernel's high-water mark, reset before each job), on real processes over loopback."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from backend.pipeline import BUNDLED_CHECKPOINT
from blender_addon.client import Client, JobFailedError
from blender_addon.protocol import ReconstructOptions

from .test_server import PHOTO, ServerProcess

JOB_BUDGET_MB = 300
"""The budget docs/SERVER.md states."""


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A JPEG file whose frame header (SOF0/1/2) says width × height, whatever its data holds."""
    out, i = bytearray(data), 2
    while i < len(out):
        marker, length = out[i + 1], struct.unpack(">H", out[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no frame header")


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression="tiff_deflate")
    return buffer.getvalue()


def crafted_files() -> dict[str, bytes]:
    """Issue 41's files (small JPEGs whose headers claim 64000 × 1000: CMYK, RGB, progressive; real ones of that size)
    and the largest images of each full-decode kind (24 MP: RGBA, 16-bit, CMYK)."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 240, 3), dtype=np.uint8))
    x = np.linspace(0, 255, 64000)[None, :].repeat(1000, 0)
    y = np.linspace(0, 255, 1000)[:, None].repeat(64000, 1)
    wide = Image.fromarray(np.stack([x, y, np.full_like(x, 90)], -1).astype(np.uint8))
    gradient = np.stack([x[:, :5990][:1].repeat(4000, 0)] * 3, -1).astype(np.uint8)
    return {
        "24 MP RGBA PNG": png(Image.fromarray(gradient).convert("RGBA")),
        "24 MP 16-bit PNG": png(Image.fromarray(gradient[..., 0].astype(np.uint16) * 257)),
        "24 MP CMYK TIFF": tiff(Image.fromarray(gradient).convert("CMYK")),
        "lying CMYK": claiming(jpeg(noise.convert("CMYK"), quality=90), 64000, 1000),
        "lying RGB": claiming(jpeg(noise, quality=90), 64000, 1000),
        "lying progressive": claiming(jpeg(noise, quality=90, progressive=True), 64000, 1000),
        "real 64000x1000 RGB": jpeg(wide, quality=90),
        "real 64000x1000 CMYK": jpeg(wide.convert("CMYK"), quality=90),
        "real 64000x1000 progressive": jpeg(wide, quality=90, progressive=True),
    }


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory):
    process = ServerProcess(BUNDLED_CHECKPOINT, tmp_path_factory.mktemp("memory")).wait_ready(timeout=120)
    yield process
    process.stop()


def test_no_crafted_jpeg_lifts_a_job_over_the_budget(bundled_server, capsys):
    client = Client(bundled_server.address)
    options = ReconstructOptions(resolution=128)
    outcomes, rises = {}, {}
    for name, data in {"examples/coffee.jpg": PHOTO.read_bytes(), **crafted_files()}.items():
        try:
            client.reconstruct(data, options)
            outcomes[name] = "mesh"
        except JobFailedError as error:
            outcomes[name] = error.code
        rises[name] = client.info()["metrics"]["memory_mb"]["job_peak_rise_last"]
    with capsys.disabled():
        for name in rises:
            print(f"\n  {name}: {outcomes[name]}, job peak rise {rises[name]} MB", end="")
    assert outcomes["examples/coffee.jpg"] == "mesh"
    for name in ("lying CMYK", "lying RGB", "lying progressive"):
        assert outcomes[name] == "bad_image", name  # once: a mesh, after 486-732 MB
    assert outcomes["real 64000x1000 progressive"] == "bad_image"  # 185 MB of coefficients, whatever the scale
    assert max(rises.values()) <= JOB_BUDGET_MB, rises  # once: 945 and 1,189 MB for the real ones
