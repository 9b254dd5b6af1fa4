"""Unit tests of the wire protocol (blender_addon/protocol.py): round trips, strict validation, fuzzing.

Pure functions only: no sockets, no Blender, no model. `pickle` is imported here only to build hostile
payloads; tests/test_layout.py forbids it in the packages, not in tests/.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import re

import numpy as np
import pytest

from blender_addon import protocol
from blender_addon.protocol import (
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    REQUEST_OPS,
    RESPONSE_TYPES,
    ProtocolError,
    ReconstructOptions,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    result_arrays,
    result_mask,
    result_payload,
    split_envelope,
)

RID = "req-1"
IMAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) + b"\x00"  # opaque: never decoded here
FULL_OPTIONS = ReconstructOptions(
    resolution=256,
    category="chaise longue \u2013 \u00e9t\u00e9",
    frame="camera",
    color=False,
    box=(10.5, 20.0, 300.25, 400.0),
    max_faces=50_000,
    precision="bf16",
    deadline_s=90.5,
    largest_component=False,
    upright=False,
    shape="learned",
    refine_mask=False,
    use_alpha=False,
    return_mask=True,
)
MASK = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"mask" * 40  # opaque too: the server decodes it, not the protocol


# ---------------------------------------------------------------------------------------------- helpers
def header(fields: dict) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def request_body(op: str = "ping", *payload: bytes, **extra) -> list[bytes]:
    return [header({"v": 1, "id": RID, "op": op, **extra}), *payload]


def reconstruct_body(options: dict, *payload: bytes) -> list[bytes]:
    return request_body("reconstruct", *(payload or (IMAGE,)), options=options)


def response_body(kind: str, *payload: bytes, **fields) -> list[bytes]:
    return [header({"v": 1, "id": RID, "type": kind, **fields}), *payload]


def refused(decode, body: list[bytes], code: str, request_id: str | None = RID) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(body)
    assert info.value.code == code, str(info.value)
    assert info.value.request_id == request_id
    assert str(info.value)  # a human-readable message goes with every code
    return info.value


def mesh(vertex_count: int, face_count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(vertex_count, 3)).astype(np.float32)
    faces = rng.integers(0, max(vertex_count, 1), size=(face_count, 3), dtype=np.uint32)
    colors = rng.integers(0, 256, size=(vertex_count, 4), dtype=np.uint8)
    return vertices, faces, colors


def result_body(vertices, faces, colors) -> list[bytes]:
    fields, frames = result_payload(vertices, faces, colors)
    return encode_response(Response(RID, "result", fields, frames))[1:]


# ------------------------------------------------------------------------------------------ round trips
REQUESTS = [
    Request("ping-1", "ping"),
    Request("info.2", "info"),
    Request("0123456789abcdef0123456789abcdef", "reconstruct", FULL_OPTIONS.to_json(), [IMAGE]),
    Request("recon:default", "reconstruct", ReconstructOptions().to_json(), [b"\x00"]),
    Request("recon:with-mask", "reconstruct", FULL_OPTIONS.to_json(), [IMAGE, MASK]),
    Request("cancel_3", "cancel", {"target": "0123456789abcdef0123456789abcdef"}),
    Request("shutdown-4", "shutdown", {"token": "s3cr3t token with spaces \u00e9"}),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.request_id)
def test_request_round_trip(request_):
    frames = encode_request(request_)
    assert frames[0] == b""
    head = json.loads(frames[1])
    assert head == {"v": PROTOCOL_VERSION, "id": request_.request_id, "op": request_.op, "options": request_.options}
    envelope, body = split_envelope(frames)
    assert envelope == []
    decoded = decode_request(body)
    assert isinstance(decoded, Request)
    assert decoded == request_
    assert decoded.payload == request_.payload
    assert all(type(frame) is bytes for frame in decoded.payload)
    if request_.op == "reconstruct":
        assert ReconstructOptions.from_json(decoded.options, decoded.request_id) == ReconstructOptions.from_json(
            request_.options
        )


def test_every_request_op_is_covered():
    assert {r.op for r in REQUESTS} == set(REQUEST_OPS)


def test_reconstruct_request_carries_full_options_exactly():
    frames = encode_request(Request(RID, "reconstruct", FULL_OPTIONS.to_json(), [IMAGE]))
    decoded = decode_request(split_envelope(frames)[1])
    assert decoded.payload == [IMAGE]
    options = ReconstructOptions.from_json(decoded.options, decoded.request_id)
    assert options == FULL_OPTIONS
    assert options.box == (10.5, 20.0, 300.25, 400.0)
    assert options.max_faces == 50_000
    assert options.deadline_s == 90.5


@pytest.mark.parametrize(
    "envelope",
    [[b"\x00\x6b\x8b\x45\x67"], [b"broker-hop", b"client-identity"], [b"a" * 255, b"\x00", b"\xff"]],
    ids=["one-routing-frame", "two-routing-frames", "three-routing-frames"],
)
def test_split_envelope_with_routing_frames(envelope):
    request = Request(RID, "reconstruct", FULL_OPTIONS.to_json(), [IMAGE])
    frames = [*envelope, *encode_request(request)]
    got_envelope, body = split_envelope(frames)
    assert got_envelope == envelope
    assert len(body) == 2
    assert decode_request(body) == request


def test_split_envelope_splits_at_the_first_empty_frame_only():
    # An empty *payload* frame after the delimiter (a result with 0 vertices) must stay in the body.
    frames = [b"id", b"", b"header", b"", b""]
    assert split_envelope(frames) == ([b"id"], [b"header", b"", b""])


RESPONSES = [
    Response(RID, "pong"),
    Response(RID, "info", {"info": {"model": "small", "versions": {"protocol": 1}, "untrained": False}}),
    Response(RID, "accepted", {"queue_position": 3}),
    Response(RID, "busy", {"message": "the queue is full"}),
    Response(RID, "progress", {"stage": "decoding", "fraction": 0.25}),
    Response(RID, "cancelled", {"code": "cancelled", "message": "cancelled by the client"}),
    Response(RID, "error", {"code": "bad_options", "message": "resolution \u2260 power of two"}),
    Response(RID, "ok", {"message": "shutting down"}),
]


@pytest.mark.parametrize("response", RESPONSES, ids=lambda r: r.type)
@pytest.mark.parametrize("envelope", [[], [b"router-id"]], ids=["no-envelope", "routed"])
def test_response_round_trip(response, envelope):
    frames = [*envelope, *encode_response(response)]
    got_envelope, body = split_envelope(frames)
    assert got_envelope == envelope
    decoded = decode_response(body)
    assert decoded == response
    assert "v" not in decoded.fields
    assert "id" not in decoded.fields
    assert "type" not in decoded.fields


def test_every_response_type_is_covered():
    assert {r.type for r in RESPONSES} | {"result"} == set(RESPONSE_TYPES)


def _assert_bit_exact(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    assert got.dtype == np.dtype(dtype)
    assert got.shape == want.shape
    assert got.flags.c_contiguous
    assert got.tobytes() == np.ascontiguousarray(want, dtype=dtype).tobytes()


@pytest.mark.parametrize("with_colors", [True, False], ids=["colours", "no-colours"])
@pytest.mark.parametrize("envelope", [[], [b"router-id"]], ids=["no-envelope", "routed"])
def test_result_round_trip_is_bit_exact(with_colors, envelope):
    vertices, faces, colors = mesh(97, 190, seed=7)
    # Values a lossy path (float64 → text → float32, or a byte swap) would not reproduce exactly.
    vertices[0] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]
    vertices[1] = [np.inf, -np.inf, np.float32(0.1)]
    vertices[2] = np.frombuffer(b"\x01\x00\xc0\x7f" * 3, dtype="<f4")  # a NaN with a payload
    faces[0] = [0, 96, 95]
    if not with_colors:
        colors = None
    fields, frames = result_payload(vertices, faces, colors)
    assert fields == {"vertex_count": 97, "face_count": 190, "has_colors": with_colors}
    assert len(frames) == (3 if with_colors else 2)
    fields["metadata"] = {"seconds": 1.5, "resolution": 128}

    wire = [*envelope, *encode_response(Response(RID, "result", fields, frames))]
    got_envelope, body = split_envelope(wire)
    assert got_envelope == envelope
    response = decode_response(body)
    assert response.type == "result"
    assert response.fields == fields
    got_vertices, got_faces, got_colors = result_arrays(response)
    _assert_bit_exact(got_vertices, vertices, "<f4")
    _assert_bit_exact(got_faces, faces, "<u4")
    if with_colors:
        _assert_bit_exact(got_colors, colors, "u1")
    else:
        assert got_colors is None


def test_empty_result_round_trips_through_the_envelope():
    # 0 vertices and 0 faces: the payload frames are b"", which must not be taken for the delimiter.
    vertices, faces, colors = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32), np.zeros((0, 4), np.uint8)
    fields, frames = result_payload(vertices, faces, colors)
    wire = [b"router-id", *encode_response(Response(RID, "result", fields, frames))]
    envelope, body = split_envelope(wire)
    assert envelope == [b"router-id"]
    got_vertices, got_faces, got_colors = result_arrays(decode_response(body))
    assert got_vertices.shape == (0, 3)
    assert got_faces.shape == (0, 3)
    assert got_colors.shape == (0, 4)


def test_result_payload_converts_to_little_endian_wire_types():
    vertices, faces, colors = mesh(10, 12, seed=3)
    big_endian = vertices.astype(">f4")
    fortran_faces = np.asfortranarray(faces.astype(np.int64))
    fields, frames = result_payload(big_endian, fortran_faces, colors.astype(np.int32))
    assert frames[0] == vertices.astype("<f4").tobytes()
    assert frames[1] == faces.astype("<u4").tobytes()
    assert frames[2] == colors.tobytes()
    got_vertices, got_faces, got_colors = result_arrays(decode_response(result_body(big_endian, fortran_faces, colors)))
    np.testing.assert_array_equal(got_vertices, vertices)
    np.testing.assert_array_equal(got_faces, faces)
    np.testing.assert_array_equal(got_colors, colors)
    assert fields["vertex_count"] == 10
    assert fields["face_count"] == 12


def test_encoders_refuse_non_finite_numbers():
    # What a receiver would refuse must not be sent: allow_nan=False on the sending side.
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_request(Request(RID, "reconstruct", {"deadline_s": float("nan")}, [IMAGE]))
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_response(Response(RID, "progress", {"stage": "x", "fraction": float("inf")}))


# --------------------------------------------------------------------------------- envelope and header
@pytest.mark.parametrize("frames", [[], [b"router-id"], [b"router-id", b'{"v":1}'], [b'{"v":1,"id":"a","op":"ping"}']])
def test_missing_delimiter(frames):
    refused(split_envelope, frames, "bad_envelope", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
def test_empty_body(decode):
    refused(decode, [], "bad_frames", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"hello",
        b'{"v":1,"id":"req-1","op":"ping"',
        b'{"v":1,"id":"req-1","op":"ping"}}',
        b"{'v':1,'id':'req-1','op':'ping'}",
        b'{"v":1,"id":"req-1","op":"ping",}',
        b"[" * 50_000,
    ],
    ids=["empty", "brace", "word", "truncated", "trailing", "single-quotes", "trailing-comma", "deep-nesting"],
)
def test_header_not_json(decode, raw):
    refused(decode, [raw], "bad_header", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"v":1,"id":"req-1","op":"ping"}]', b"42", b"1.5", b'"ping"', b"null", b"true"]
)
def test_header_json_but_not_an_object(decode, raw):
    refused(decode, [raw], "bad_header", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize(
    "raw",
    [
        b'{"v":1,"id":"req-1","op":"ping","options":{"x":"\xff"}}',
        b'{"v":1,"id":"req-1","op":"ping","options":{"x":"\xc3"}}',  # truncated 2-byte sequence
        b'{"v":1,"id":"req-1","op":"ping","options":{"x":"\xed\xa0\x80"}}',  # UTF-8-encoded surrogate
        '{"v":1,"id":"req-1","op":"ping"}'.encode("utf-16"),
    ],
    ids=["ff", "truncated-sequence", "surrogate", "utf-16"],
)
def test_header_invalid_utf8(decode, raw):
    refused(decode, [raw], "bad_header", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_header_nan_and_infinity_constants(decode, constant):
    raw = b'{"v":1,"id":"req-1","op":"reconstruct","type":"progress","options":{"deadline_s":' + constant + b"}}"
    refused(decode, [raw, IMAGE], "bad_header", None)
    raw = b'{"v":1,"id":"req-1","op":"ping","type":"pong","x":[1,' + constant + b"]}"
    refused(decode, [raw], "bad_header", None)


def _padded_shutdown_header(size: int) -> bytes:
    base = header({"v": 1, "id": RID, "op": "shutdown", "options": {"token": ""}})
    raw = header({"v": 1, "id": RID, "op": "shutdown", "options": {"token": "t" * (size - len(base))}})
    assert len(raw) == size
    return raw


def test_header_size_limit():
    at_limit = decode_request([_padded_shutdown_header(MAX_HEADER_BYTES)])
    assert set(at_limit.options["token"]) == {"t"}
    assert len(at_limit.options["token"]) > MAX_HEADER_BYTES - 100
    refused(decode_request, [_padded_shutdown_header(MAX_HEADER_BYTES + 1)], "header_too_large", None)
    refused(decode_response, [_padded_shutdown_header(MAX_HEADER_BYTES + 1)], "header_too_large", None)
    # The limit is checked on bytes before parsing: even junk over the limit says header_too_large.
    refused(decode_request, [b"\xff" * (MAX_HEADER_BYTES + 1)], "header_too_large", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize("version", [0, 2, -1, "1", "v1", None, [1], {"v": 1}, 1.5], ids=repr)
def test_wrong_version(decode, version):
    refused(decode, [header({"v": version, "id": RID, "op": "ping", "type": "pong"})], "bad_version")


@pytest.mark.parametrize("decode", [decode_request, decode_response])
def test_missing_version(decode):
    refused(decode, [header({"id": RID, "op": "ping", "type": "pong"})], "bad_version")
    # Without a readable id the error cannot name the request.
    refused(decode, [header({"id": 7, "op": "ping", "type": "pong"})], "bad_version", None)


@pytest.mark.parametrize("version", [True, 1.0], ids=repr)
def test_version_must_be_the_integer_one(version):
    refused(decode_request, [header({"v": version, "id": RID, "op": "ping"})], "bad_version")


@pytest.mark.parametrize("decode", [decode_request, decode_response])
def test_missing_id(decode):
    refused(decode, [header({"v": 1, "op": "ping", "type": "pong"})], "bad_id", None)


@pytest.mark.parametrize("decode", [decode_request, decode_response])
@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "has space",
        "a/b",
        "a\\b",
        "semi;colon",
        "\u00e9t\u00e9",
        "\u0000",
        "tab\tinside",
        "\nleading-newline",
        "x" * 65,
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        5,
        1.5,
        True,
        None,
        ["req-1"],
        {"id": "req-1"},
    ],
    ids=repr,
)
def test_bad_id(decode, request_id):
    refused(decode, [header({"v": 1, "id": request_id, "op": "ping", "type": "pong"})], "bad_id", None)


@pytest.mark.parametrize("field", ["id", "target"])
def test_id_with_trailing_newline_is_refused(field):
    if field == "id":
        body = [header({"v": 1, "id": "abc\n", "op": "ping"})]
        refused(decode_request, body, "bad_id", None)
    else:
        refused(decode_request, request_body("cancel", options={"target": "abc\n"}), "bad_options")


@pytest.mark.parametrize(("decode", "kind"), [(decode_request, {"op": "ping"}), (decode_response, {"type": "pong"})])
def test_id_length_limit(decode, kind):
    longest = "A-z_0.9:" * 8
    assert len(longest) == 64
    assert decode([header({"v": 1, "id": longest, **kind})]).request_id == longest
    refused(decode, [header({"v": 1, "id": longest + "x", **kind})], "bad_id", None)


@pytest.mark.parametrize("extra", [{"type": "pong"}, {"payload": 1}, {"V": 1}, {"options2": {}}, {"": None}], ids=repr)
def test_unknown_request_header_field(extra):
    refused(decode_request, request_body("ping", **extra), "bad_header")


@pytest.mark.parametrize("op", ["PING", "reconstruct ", "pong", "", None, 1, ["ping"], "__init__"], ids=repr)
def test_unknown_op(op):
    refused(decode_request, request_body(op), "bad_op")


def test_missing_op():
    refused(decode_request, [header({"v": 1, "id": RID})], "bad_op")


@pytest.mark.parametrize("op", REQUEST_OPS)
@pytest.mark.parametrize("options", [[], "x", 1, None, True, [["target", "a"]]], ids=repr)
def test_options_not_an_object(op, options):
    body = request_body(op, *([IMAGE] if op == "reconstruct" else []), options=options)
    refused(decode_request, body, "bad_options")


def test_options_are_optional_where_nothing_is_needed():
    assert decode_request(request_body("ping")).options == {}
    assert decode_request(request_body("info")).options == {}
    assert ReconstructOptions.from_json(decode_request(request_body("reconstruct", IMAGE)).options) == (
        ReconstructOptions()
    )


@pytest.mark.parametrize(
    ("op", "payload", "options"),
    [
        ("ping", [b"x"], {}),
        ("ping", [b""], {}),
        ("info", [b"x"], {}),
        ("info", [b"x", b"y"], {}),
        ("cancel", [b"x"], {"target": "job-1"}),
        ("shutdown", [b"x"], {"token": "t"}),
        ("reconstruct", [], {}),
        ("reconstruct", [IMAGE, MASK, MASK], {}),
        ("reconstruct", [IMAGE, MASK, b""], {}),
        ("reconstruct", [IMAGE, b"", b""], {}),
    ],
)
def test_wrong_payload_count(op, payload, options):
    refused(decode_request, request_body(op, *payload, options=options), "bad_frames")


def test_three_payload_frames_say_what_reconstruct_takes():
    error = refused(decode_request, request_body("reconstruct", IMAGE, MASK, MASK), "bad_frames")
    assert str(error) == "reconstruct takes 1 or 2 payload frame(s), got 3"


def test_reconstruct_takes_a_mask_as_its_second_frame():
    request = decode_request(encode_request(Request(RID, "reconstruct", {}, [IMAGE, MASK]))[1:])
    assert request.payload == [IMAGE, MASK]
    assert decode_request(request_body("reconstruct", IMAGE, b"\x00")).payload == [IMAGE, b"\x00"]


def test_empty_mask_frame():
    refused(decode_request, request_body("reconstruct", IMAGE, b""), "bad_mask")


def test_mask_size_limit(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_IMAGE_BYTES", 16)
    assert decode_request(request_body("reconstruct", b"i" * 16, b"m" * 16)).payload == [b"i" * 16, b"m" * 16]
    refused(decode_request, request_body("reconstruct", b"i" * 16, b"m" * 17), "mask_too_large")
    refused(decode_request, request_body("reconstruct", b"i" * 17, b"m" * 16), "image_too_large")


def test_empty_image_frame():
    refused(decode_request, request_body("reconstruct", b""), "bad_image")


def test_image_size_limit(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_IMAGE_BYTES", 16)
    assert decode_request(request_body("reconstruct", b"i" * 16)).payload == [b"i" * 16]
    refused(decode_request, request_body("reconstruct", b"i" * 17), "image_too_large")


def test_image_limit_is_the_documented_one():
    assert protocol.MAX_IMAGE_BYTES == 64 * 1024 * 1024
    # A whole request holds a header, an image and a mask, each at its limit.
    assert protocol.MAX_MESSAGE_BYTES > 2 * protocol.MAX_IMAGE_BYTES + MAX_HEADER_BYTES


# --------------------------------------------------------------------------------------------- options
BAD_OPTIONS = [
    {"shape": "voxels"},
    {"shape": None},
    {"refine_mask": 1},
    {"use_alpha": "no"},
    {"return_mask": 1},
    {"return_mask": "yes"},
    # resolution: a power of two from 32 to 512, an int and not a bool or a float
    {"resolution": 100},
    {"resolution": 96},
    {"resolution": 16},
    {"resolution": 1024},
    {"resolution": 0},
    {"resolution": -128},
    {"resolution": True},
    {"resolution": 128.0},
    {"resolution": "128"},
    {"resolution": None},
    {"resolution": [128]},
    # unknown keys
    {"resolutoin": 128},
    {"Resolution": 128},
    {"resolution": 128, "seed": 0},
    # category
    {"category": "x" * 101},
    {"category": 5},
    {"category": None},
    {"category": ["chair"]},
    {"category": True},
    # frame
    {"frame": "world"},
    {"frame": "Blender"},
    {"frame": ""},
    {"frame": 1},
    {"frame": None},
    {"frame": ["blender"]},
    # color: a JSON boolean only
    {"color": 1},
    {"color": 0},
    {"color": "true"},
    {"color": None},
    {"upright": "no"},
    {"upright": 0},
    # box: four finite numbers with x0 < x1 and y0 < y1
    {"box": [0, 0, 1]},
    {"box": [0, 0, 1, 1, 1]},
    {"box": []},
    {"box": [1, 0, 0, 1]},
    {"box": [0.5, 0, 0.5, 1]},
    {"box": [0, 1, 1, 1]},
    {"box": [0, 2, 1, 1]},
    {"box": [0, 0, 1e400, 1]},  # 1e400 parses as float inf
    {"box": [-1e400, 0, 1, 1]},
    {"box": ["0", "0", "1", "1"]},
    {"box": [0, 0, "1", 1]},
    {"box": [True, 0, 2, 2]},
    {"box": [0, None, 1, 1]},
    {"box": [[0], 0, 1, 1]},
    {"box": [0, 0, 1e-300, 1e-300]},  # a speck, not an object (issue 41: it gave a mesh)
    {"box": [10, 10, 13.9, 100]},
    {"box": "0,0,1,1"},
    {"box": {"x0": 0, "y0": 0, "x1": 1, "y1": 1}},
    {"box": 1},
    # max_faces: an int from 100 to 10,000,000
    {"max_faces": 99},
    {"max_faces": 0},
    {"max_faces": -1000},
    {"max_faces": 10_000_001},
    {"max_faces": 1000.0},
    {"max_faces": True},
    {"max_faces": "1000"},
    # deadline_s: a finite number in (0, 86400]
    {"deadline_s": 0},
    {"deadline_s": 0.0},
    {"deadline_s": -1},
    {"deadline_s": -0.5},
    {"deadline_s": 86400.5},
    {"deadline_s": 1e9},
    {"deadline_s": 10**30},
    {"deadline_s": 1e400},
    {"deadline_s": True},
    {"deadline_s": "10"},
    {"deadline_s": [10]},
    # precision
    {"precision": "fp64"},
    {"precision": "FP32"},
    {"precision": "int8"},
    {"precision": None},
    {"precision": 16},
]


def _raw_options(options: dict) -> bytes:
    # json.dumps would write 1e400 as Infinity (refused as bad_header); write it the way a sender could.
    return json.dumps(options).replace("Infinity", "1e400").encode()


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=lambda o: json.dumps(o)[:60])
def test_bad_reconstruct_options(options):
    raw = b'{"v":1,"id":"' + RID.encode() + b'","op":"reconstruct","options":' + _raw_options(options) + b"}"
    refused(decode_request, [raw, IMAGE], "bad_options")
    # The same check when the server parses the options itself (from_json with a request id).
    parsed = json.loads(_raw_options(options))
    with pytest.raises(ProtocolError) as info:
        ReconstructOptions.from_json(parsed, "job-9")
    assert info.value.code == "bad_options"
    assert info.value.request_id == "job-9"


GOOD_OPTIONS = [
    ({}, ReconstructOptions()),
    *[({"resolution": r}, ReconstructOptions(resolution=r)) for r in (32, 64, 128, 256, 512)],
    ({"category": "x" * 100}, ReconstructOptions(category="x" * 100)),
    ({"category": "  chair \n"}, ReconstructOptions(category="chair")),
    ({"category": "   "}, ReconstructOptions(category="auto")),
    ({"category": ""}, ReconstructOptions()),
    ({"category": "object"}, ReconstructOptions(category="object")),
    ({"upright": False}, ReconstructOptions(upright=False)),
    ({"largest_component": False}, ReconstructOptions(largest_component=False)),
    ({"frame": "camera"}, ReconstructOptions(frame="camera")),
    ({"color": False}, ReconstructOptions(color=False)),
    ({"box": [0, 0, 4, 4]}, ReconstructOptions(box=(0.0, 0.0, 4.0, 4.0))),  # the smallest box
    ({"box": [-5.5, -1, 2.25, 1e300]}, ReconstructOptions(box=(-5.5, -1.0, 2.25, 1e300))),
    ({"box": None}, ReconstructOptions()),
    ({"max_faces": 100}, ReconstructOptions(max_faces=100)),
    ({"max_faces": 10_000_000}, ReconstructOptions(max_faces=10_000_000)),
    ({"max_faces": None}, ReconstructOptions()),
    ({"deadline_s": 86400}, ReconstructOptions(deadline_s=86400.0)),
    ({"deadline_s": 0.001}, ReconstructOptions(deadline_s=0.001)),
    ({"deadline_s": 5}, ReconstructOptions(deadline_s=5.0)),
    ({"deadline_s": None}, ReconstructOptions()),
    *[({"precision": p}, ReconstructOptions(precision=p)) for p in ("fp32", "bf16", "fp16")],
    ({"shape": "learned"}, ReconstructOptions(shape="learned")),
    ({"refine_mask": False}, ReconstructOptions(refine_mask=False)),
    ({"use_alpha": False}, ReconstructOptions(use_alpha=False)),
    ({"return_mask": True}, ReconstructOptions(return_mask=True)),
    ({"return_mask": False}, ReconstructOptions()),
]


@pytest.mark.parametrize(
    ("options", "expected"), GOOD_OPTIONS, ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else "ok"
)
def test_good_reconstruct_options(options, expected):
    request = decode_request(reconstruct_body(options))
    parsed = ReconstructOptions.from_json(request.options, request.request_id)
    assert parsed == expected
    if parsed.box is not None:
        assert all(type(v) is float for v in parsed.box)
    if parsed.deadline_s is not None:
        assert type(parsed.deadline_s) is float


def test_box_with_huge_integers_is_a_protocol_error():
    raw = b'{"v":1,"id":"req-1","op":"reconstruct","options":{"box":[0,0,1' + b"0" * 400 + b",1" + b"0" * 401 + b"]}}"
    refused(decode_request, [raw, IMAGE], "bad_options")


@pytest.mark.parametrize(
    "options",
    [{}, {"target": 5}, {"target": None}, {"target": ""}, {"target": "bad id!"}, {"target": "x" * 65}, {"id": "a"}],
    ids=repr,
)
def test_bad_cancel(options):
    refused(decode_request, request_body("cancel", options=options), "bad_options")


def test_good_cancel():
    assert decode_request(request_body("cancel", options={"target": "x" * 64})).options == {"target": "x" * 64}


@pytest.mark.parametrize("options", [{}, {"token": 5}, {"token": None}, {"token": ["t"]}, {"tok": "t"}], ids=repr)
def test_bad_shutdown(options):
    refused(decode_request, request_body("shutdown", options=options), "bad_options")


def test_shutdown_with_empty_token_is_left_to_the_server():
    # The protocol checks the type; whether the token is right is the server's business.
    assert decode_request(request_body("shutdown", options={"token": ""})).options == {"token": ""}


# ------------------------------------------------------------------------------------------- responses
@pytest.mark.parametrize("kind", ["PONG", "results", "", None, 1, ["pong"], "ping"], ids=repr)
def test_unknown_response_type(kind):
    refused(decode_response, response_body(kind), "bad_type")


def test_missing_response_type():
    refused(decode_response, [header({"v": 1, "id": RID})], "bad_type")


def _counts(vertex_count=2, face_count=1, has_colors=False) -> dict:
    return {"vertex_count": vertex_count, "face_count": face_count, "has_colors": has_colors}


@pytest.mark.parametrize(
    "fields",
    [
        {"face_count": 1, "has_colors": False},
        {"vertex_count": 2, "has_colors": False},
        {"vertex_count": 2, "face_count": 1},
        {},
        _counts(vertex_count=-1),
        _counts(face_count=-1),
        _counts(vertex_count=2.0),
        _counts(face_count=1.0),
        _counts(vertex_count=True, face_count=1),
        _counts(face_count=True),
        _counts(vertex_count="2"),
        _counts(vertex_count=None),
        _counts(has_colors=1),
        _counts(has_colors=0),
        _counts(has_colors="true"),
        _counts(has_colors=None),
        _counts(vertex_count=protocol.MAX_RESULT_VERTICES + 1),
        _counts(face_count=2 * protocol.MAX_RESULT_VERTICES + 1),
    ],
    ids=lambda f: json.dumps(f),
)
def test_result_with_bad_counts(fields):
    # The frames match what a lenient reader would make of the counts (2.0 → 2, True → 1, "2" → 2,
    # has_colors 1 → colours), so only the type and range checks can refuse the message.
    def lenient(name, default):
        try:
            return max(int(fields.get(name, default)), 0)
        except (TypeError, ValueError):
            return default

    vertices, faces = lenient("vertex_count", 2), lenient("face_count", 1)
    vertices, faces = min(vertices, 1000), min(faces, 1000)
    payload = [b"\x00" * 12 * vertices, b"\x00" * 12 * faces]
    if fields.get("has_colors"):
        payload.append(b"\x00" * 4 * vertices)
    refused(decode_response, response_body("result", *payload, **fields), "bad_result")


def test_result_count_limits(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_RESULT_VERTICES", 4)
    vertices, faces, _ = mesh(4, 8)
    assert decode_response(result_body(vertices, faces, None)).fields["vertex_count"] == 4
    vertices, faces, _ = mesh(5, 8)
    refused(decode_response, result_body(vertices, faces, None), "bad_result")
    vertices, faces, _ = mesh(4, 9)
    refused(decode_response, result_body(vertices, faces, None), "bad_result")


def _tamper(body: list[bytes], how: str) -> list[bytes]:
    head, vertices, faces, *colors = body
    match how:
        case "vertices-short":
            return [head, vertices[:-1], faces, *colors]
        case "vertices-long":
            return [head, vertices + b"\x00", faces, *colors]
        case "faces-short":
            return [head, vertices, faces[:-4], *colors]
        case "faces-long":
            return [head, vertices, faces + b"\x00" * 12, *colors]
        case "colours-short":
            return [head, vertices, faces, colors[0][:-1]]
        case "colours-missing":
            return [head, vertices, faces]
        case "frames-swapped":
            return [head, faces, vertices, *colors]
        case "extra-frame":
            return [head, vertices, faces, *colors, b"\x00" * 4]
        case "no-frames":
            return [head]
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "vertices-short",
        "vertices-long",
        "faces-short",
        "faces-long",
        "colours-short",
        "colours-missing",
        "frames-swapped",
        "extra-frame",
        "no-frames",
    ],
)
def test_result_frames_must_match_the_counts(how):
    vertices, faces, colors = mesh(6, 9, seed=1)  # 72 B of vertices, 108 B of faces, 24 B of colours
    body = result_body(vertices, faces, colors)
    assert decode_response(body).payload == body[1:]
    refused(decode_response, _tamper(body, how), "bad_result")


@pytest.mark.parametrize("with_colors", [True, False], ids=["colours", "no-colours"])
def test_result_with_the_mask_used_round_trips(with_colors):
    vertices, faces, colors = mesh(6, 9, seed=1)
    colors = colors if with_colors else None
    fields, frames = result_payload(vertices, faces, colors, MASK)
    assert fields["has_mask"] is True
    assert frames[-1] == MASK
    wire = [b"router-id", *encode_response(Response(RID, "result", {**fields, "metadata": {}}, frames))]
    response = decode_response(split_envelope(wire)[1])
    assert result_mask(response) == MASK
    got_vertices, got_faces, got_colors = result_arrays(response)  # the mask frame is not taken for colours
    _assert_bit_exact(got_vertices, vertices, "<f4")
    _assert_bit_exact(got_faces, faces, "<u4")
    assert (got_colors is None) == (colors is None)
    if with_colors:
        _assert_bit_exact(got_colors, colors, "u1")


def test_a_result_without_the_mask_still_reads():
    # A server that was not asked for the mask (or predates it) sends no "has_mask": no mask, nothing else changes.
    vertices, faces, colors = mesh(6, 9, seed=1)
    response = decode_response(result_body(vertices, faces, colors))
    assert "has_mask" not in response.fields
    assert result_mask(response) is None
    assert result_arrays(response)[2] is not None


@pytest.mark.parametrize(
    ("has_mask", "frames"),
    [
        (True, []),  # declared, missing
        (True, [b""]),  # empty
        (True, [MASK, MASK]),  # one too many
        (False, [MASK]),  # not declared
        (1, [MASK]),
        ("true", [MASK]),
        (None, [MASK]),
    ],
    ids=["missing", "empty", "two", "undeclared", "one", "text", "null"],
)
def test_result_mask_frame_must_match_its_field(has_mask, frames):
    vertices, faces, colors = mesh(6, 9, seed=1)
    fields, arrays = result_payload(vertices, faces, colors)
    body = response_body("result", *arrays, *frames, **fields, has_mask=has_mask)
    refused(decode_response, body, "bad_result")


def test_result_mask_size_limit(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_IMAGE_BYTES", 16)
    vertices, faces, _ = mesh(6, 9, seed=1)
    fields, frames = result_payload(vertices, faces, None, b"m" * 16)
    assert result_mask(decode_response(response_body("result", *frames, **fields))) == b"m" * 16
    fields, frames = result_payload(vertices, faces, None, b"m" * 17)
    refused(decode_response, response_body("result", *frames, **fields), "bad_result")


def test_result_colour_frame_without_has_colors():
    vertices, faces, colors = mesh(6, 9, seed=1)
    body = result_body(vertices, faces, None)
    refused(decode_response, [*body, colors.tobytes()], "bad_result")


@pytest.mark.parametrize("kind", [t for t in RESPONSE_TYPES if t != "result"])
@pytest.mark.parametrize("payload", [[b"x"], [b""], [b"a", b"b"]], ids=["one", "empty", "two"])
def test_payload_on_a_non_result_type(kind, payload):
    refused(decode_response, response_body(kind, *payload), "bad_frames")


def test_result_arrays_refuses_out_of_range_face_indices():
    vertices, faces, colors = mesh(5, 4, seed=2)
    faces[2] = [0, 4, 1]
    ok = decode_response(result_body(vertices, faces, colors))
    assert result_arrays(ok)[1].max() == 4
    faces[2] = [0, 5, 1]  # == vertex count
    with pytest.raises(ProtocolError) as info:
        result_arrays(decode_response(result_body(vertices, faces, colors)))
    assert (info.value.code, info.value.request_id) == ("bad_result", RID)
    faces[2] = [0, 0xFFFFFFFF, 1]  # what -1 becomes as uint32
    with pytest.raises(ProtocolError):
        result_arrays(decode_response(result_body(vertices, faces, None)))


def test_result_arrays_refuses_faces_without_vertices():
    body = response_body("result", b"", np.zeros(3, "<u4").tobytes(), **_counts(vertex_count=0, face_count=1))
    with pytest.raises(ProtocolError) as info:
        result_arrays(decode_response(body))
    assert info.value.code == "bad_result"


# ------------------------------------------------------------------------------------------------ fuzz
def _tripwire():  # pragma: no cover - reaching it means something unpickled a payload
    raise AssertionError("a pickle payload was unpickled")


class _Hostile:
    def __reduce__(self):
        return (_tripwire, ())


PICKLES = [
    *(pickle.dumps({"v": 1, "id": RID, "op": "ping"}, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
    pickle.dumps(["", '{"v":1,"id":"req-1","op":"ping"}']),
    pickle.dumps(_Hostile()),
]


@pytest.mark.parametrize("blob", PICKLES, ids=lambda b: f"pickle-{b[:2].hex()}")
def test_pickle_is_never_a_header(blob):
    refused(decode_request, [blob], "bad_header", None)
    refused(decode_request, [blob, IMAGE], "bad_header", None)
    refused(decode_response, [blob], "bad_header", None)


@pytest.mark.parametrize("blob", PICKLES, ids=lambda b: f"pickle-{b[:2].hex()}")
def test_pickle_as_image_is_opaque_bytes(blob):
    request = decode_request(reconstruct_body({}, blob))
    assert request.payload == [blob]
    assert type(request.payload[0]) is bytes


JSON_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    128,
    2**31,
    -(2**63),
    2**64,
    0.5,
    -0.0,
    1e308,
    5e-324,
    "",
    "x",
    "req-1",
    "x" * 200,
    "\u00e9",
    "\ud800",
    [],
    [0, 0, 1, 1],
    [1, 2, 3],
    ["a"],
    {},
    {"a": 1},
    {"target": "req-1"},
    "\udfff",
    "ok\ud800ok",
    {"\ud800": 1},
    10**400,
    -(10**30),
    2**63 + 1,
]
HUGE_FLOAT_LITERALS = ("1e999", "-1e999", "1" + "0" * 400 + ".5")
"""JSON numbers that Python parses to ±inf or to a float beyond range; spliced into headers as raw text."""


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate_json(rng: random.Random, head: dict) -> dict:
    head = copy.deepcopy(head)
    path = rng.choice([p for p in _paths(head) if p])
    parent = head
    for step in path[:-1]:
        parent = parent[step]
    action = rng.random()
    if action < 0.6:
        parent[path[-1]] = copy.deepcopy(rng.choice(JSON_VALUES))
    elif action < 0.8 and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(["extra", "x", "resolution", "box", "op", "id", "v", "options"])] = copy.deepcopy(
            rng.choice(JSON_VALUES)
        )
    else:
        parent.append(copy.deepcopy(rng.choice(JSON_VALUES)))
    return head


def _random_message(rng: random.Random, valid: list[bytes]) -> list[bytes]:
    kind = rng.randrange(8)
    if kind == 0:  # random frames of random bytes
        return [rng.randbytes(rng.choice([0, 1, 2, 8, 40, 300])) for _ in range(rng.randrange(7))]
    body = list(valid)
    if kind == 1:  # flip bytes in the header
        head = bytearray(body[0])
        for _ in range(rng.randint(1, 4)):
            head[rng.randrange(len(head))] ^= rng.randint(1, 255)
        body[0] = bytes(head)
    elif kind == 2:  # truncate the header
        body[0] = body[0][: rng.randrange(len(body[0]))]
    elif kind == 3:  # drop or duplicate a frame
        index = rng.randrange(len(body))
        if rng.random() < 0.5:
            del body[index]
        else:
            body.insert(index, body[index])
    elif kind in (4, 5, 7):  # replace, delete or add values
        head = json.loads(body[0])
        for _ in range(rng.randint(1, 3)):
            head = _mutate_json(rng, head)
        body[0] = json.dumps(head).encode("utf-8", "surrogatepass")
    elif kind == 6 and rng.random() < 0.5:  # a number literal that overflows to infinity, anywhere
        text = body[0].decode("utf-8")
        numbers = [m.span() for m in re.finditer(r"(?<=[:\[,])-?\d+(\.\d+)?", text)]
        start, end = rng.choice(numbers)
        body[0] = (text[:start] + rng.choice(HUGE_FLOAT_LITERALS) + text[end:]).encode("utf-8")
    else:  # random image bytes and a random extra routing-ish prefix frame
        body[1] = rng.randbytes(rng.randrange(0, 64))
        if rng.random() < 0.5:
            body.insert(0, rng.choice([b"", b"\x00", b"{}", rng.randbytes(5)]))
    return body


def test_fuzz_decode_request_raises_only_protocol_errors():
    rng = random.Random(20240611)
    valid = encode_request(Request(RID, "reconstruct", FULL_OPTIONS.to_json(), [IMAGE]))[1:]
    assert decode_request(valid).payload == [IMAGE]
    accepted, codes, escaped = 0, set(), []
    for number in range(3000):
        body = _random_message(rng, valid)
        try:
            request = decode_request(body)
        except ProtocolError as error:
            codes.add(error.code)
            if error.request_id is not None and not protocol._REQUEST_ID.match(error.request_id):
                escaped.append(f"#{number} ProtocolError names an invalid request id {error.request_id!r}")
        except Exception as error:
            escaped.append(f"#{number} {type(error).__name__}: {error} for {[f[:80] for f in body]}")
        else:
            accepted += 1
            # Whatever is accepted is fully valid: the server may act on it without checking again.
            assert isinstance(request, Request)
            assert request.op in REQUEST_OPS
            assert all(type(frame) is bytes for frame in request.payload)
            assert len(request.payload) in ((1, 2) if request.op == "reconstruct" else (0,))
            if request.op == "reconstruct":
                assert all(0 < len(frame) <= protocol.MAX_IMAGE_BYTES for frame in request.payload)
                ReconstructOptions.from_json(request.options, request.request_id)
            # …and safe to use: every string encodes again, every number is finite and in range.
            protocol._encode_header({"options": request.options})
            assert protocol._unusable_value(request.options) is None
        # The response decoder sees the same garbage on the client side.
        try:
            decode_response(body)
        except ProtocolError:
            continue
        except Exception as error:
            escaped.append(f"#{number} decode_response {type(error).__name__}: {error}")
    assert not escaped, escaped[:5]
    # The fuzzer reached both sides of the decoder and most of its checks.
    assert accepted >= 100
    assert {"bad_header", "bad_id", "bad_version", "bad_op", "bad_options", "bad_frames"} <= codes


def test_fuzz_split_envelope():
    rng = random.Random(7)
    failures = []
    for _ in range(500):
        frames = [rng.choice([b"", b"a", rng.randbytes(3)]) for _ in range(rng.randrange(7))]
        try:
            envelope, body = split_envelope(frames)
        except ProtocolError as error:
            failures.append((error.code, b"" in frames))
        else:
            assert b"" not in envelope
            assert [*envelope, b"", *body] == frames
    assert failures, "the fuzzer never produced a message without a delimiter"
    assert set(failures) == {("bad_envelope", False)}


# ------------------------------------------------------------------------------------- ReconstructOptions
def test_default_options():
    options = ReconstructOptions()
    assert options == ReconstructOptions(
        128, "auto", "blender", True, None, None, "fp32", None, True, True, "inflate", True, True
    )
    assert options.to_json() == {
        "resolution": 128,
        "category": "auto",
        "frame": "blender",
        "color": True,
        "precision": "fp32",
        "shape": "inflate",
    }
    assert ReconstructOptions.from_json({}) == options
    assert ReconstructOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize(
    "options",
    [
        ReconstructOptions(),
        FULL_OPTIONS,
        ReconstructOptions(resolution=32, color=False, precision="fp16"),
        ReconstructOptions(resolution=512, frame="camera", box=(0.0, 0.0, 8.0, 8.0)),
        ReconstructOptions(max_faces=100, deadline_s=86400.0),
        ReconstructOptions(category="x" * 100, deadline_s=1e-3),
    ],
)
def test_options_json_round_trip(options):
    data = options.to_json()
    assert ReconstructOptions.from_json(data) == options
    # ... and through the wire format, as text.
    assert ReconstructOptions.from_json(json.loads(json.dumps(data, allow_nan=False))) == options
    assert ("box" in data) == (options.box is not None)
    assert ("max_faces" in data) == (options.max_faces is not None)
    assert ("deadline_s" in data) == (options.deadline_s is not None)
    if options.box is not None:
        assert data["box"] == list(options.box)


@pytest.mark.parametrize("data", [[], None, "resolution=128", 128, [("resolution", 128)]], ids=repr)
def test_options_from_json_needs_an_object(data):
    with pytest.raises(ProtocolError) as info:
        ReconstructOptions.from_json(data)
    assert (info.value.code, info.value.request_id) == ("bad_options", None)


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        ReconstructOptions().resolution = 256  # type: ignore[misc]


def test_protocol_error_fields():
    error = ProtocolError("bad_id", "message", "job-1")
    assert (error.code, error.request_id, str(error)) == ("bad_id", "job-1", "message")
    assert ProtocolError("x", "y").request_id is None


# ------------------------------------------------------------- values no handler should meet (issue 21)
UNUSABLE_TEXT = (
    '"\\ud800"',  # a lone high surrogate
    '"a\\udfffb"',  # a lone low surrogate inside text
    "1" + "0" * 400,  # an integer far beyond 2**63
    "-9223372036854775809",  # one below -2**63
    "1e999",  # overflows to infinity
    "-1e999",
)


@pytest.mark.parametrize("value", UNUSABLE_TEXT)
@pytest.mark.parametrize(
    ("op", "field"),
    [
        ("reconstruct", "category"),
        ("reconstruct", "resolution"),
        ("reconstruct", "deadline_s"),
        ("reconstruct", "max_faces"),
        ("reconstruct", "frame"),
        ("reconstruct", "precision"),
        ("reconstruct", "shape"),
        ("shutdown", "token"),
        ("cancel", "target"),
    ],
)
def test_unusable_values_in_any_option_are_bad_options(op, field, value):
    """The 62-byte message that stopped the broker ({"token": "\\ud800"}) and its relatives: refused by the
    protocol with bad_options, so no handler ever calls .encode() on a lone surrogate or float() on 10**400."""
    raw = f'{{"v":1,"id":"{RID}","op":"{op}","options":{{"{field}":{value}}}}}'.encode()
    refused(decode_request, [raw, IMAGE] if op == "reconstruct" else [raw], "bad_options")


@pytest.mark.parametrize("value", UNUSABLE_TEXT)
def test_unusable_values_elsewhere_in_the_header_are_bad_header(value):
    raw = f'{{"v":1,"id":"{RID}","op":"ping","extra":[{value}]}}'.encode()
    refused(decode_request, [raw], "bad_header")
    raw = f'{{"v":1,"id":"{RID}","type":"pong","note":{{"k":{value}}}}}'.encode()
    refused(decode_response, [raw], "bad_header")


def test_a_lone_surrogate_as_a_field_name_is_refused():
    raw = f'{{"v":1,"id":"{RID}","op":"ping","\\ud800":1}}'.encode()
    refused(decode_request, [raw], "bad_header")


def test_large_but_sane_numbers_still_pass():
    # The protocol passes them on (the pipeline then refuses a box so much larger than the photo).
    raw = b'{"v":1,"id":"t","op":"reconstruct","options":{"box":[0,0,9223372036854775807,1e308]}}'
    request = decode_request([raw, IMAGE])
    assert request.options == {"box": [0, 0, 2**63 - 1, 1e308]}


@pytest.mark.parametrize(
    ("op", "options"),
    [
        ("ping", {"x": 1}),
        ("info", {"verbose": True}),
        ("cancel", {"target": "a", "x": 1}),
        ("shutdown", {"token": "t", "now": 1}),
    ],
)
def test_unknown_options_of_any_op_are_refused(op, options):
    refused(decode_request, request_body(op, options=options), "bad_options")


@pytest.mark.parametrize("where", ["options", "header", "ping options", "version"])
def test_an_error_quotes_at_most_100_characters_of_what_the_client_sent(where):
    """Issue 41: a 60 KB option name was echoed back whole in the error message."""
    name = "k" * 60_000
    if where == "options":
        body = request_body("reconstruct", options={name: 1})
        body.append(IMAGE)
    elif where == "header":
        body = [json.dumps({"v": 1, "id": RID, "op": "ping", name: 1}).encode()]
    elif where == "ping options":
        body = request_body("ping", options={name: 1})
    else:
        body = [json.dumps({"v": name, "id": RID, "op": "ping"}).encode()]
    with pytest.raises(ProtocolError) as error:
        decode_request(body)
    assert len(str(error.value)) < 250
    assert "(60,004 characters)" in str(error.value) or "(60,002 characters)" in str(error.value)


# --------------------------------------------------------------------- whole-message bounds (issue 21)
@pytest.fixture
def socket_pair():
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    receiver.bind("inproc://bounds")
    sender.connect("inproc://bounds")
    yield sender, receiver
    sender.close(linger=0)
    receiver.close(linger=0)
    context.term()


def test_receive_request_frames_bounds_the_frame_count(socket_pair):
    sender, receiver = socket_pair
    limit = protocol.MAX_REQUEST_FRAMES
    sender.send_multipart([b"id", *[b"x"] * (limit - 1)])
    assert protocol.receive_request_frames(receiver) == [b"id", *[b"x"] * (limit - 1)]
    sender.send_multipart([b"id", *[b"x"] * limit])
    sender.send_multipart([b"next", b"", b"ok"])
    with pytest.raises(ProtocolError) as info:
        protocol.receive_request_frames(receiver)
    assert info.value.code == "message_too_large"
    assert info.value.envelope == [b"id"]  # who to tell
    # The refused message was read to its end: the next one arrives whole.
    assert protocol.receive_request_frames(receiver) == [b"next", b"", b"ok"]


def test_receive_request_frames_bounds_the_total_size(socket_pair, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", 1000)
    sender, receiver = socket_pair
    sender.send_multipart([b"id", b"", b"h" * 400, b"i" * 590])
    assert len(protocol.receive_request_frames(receiver)) == 4
    sender.send_multipart([b"id", b"", b"h" * 400, b"i" * 600])  # each frame small, the whole too large
    with pytest.raises(ProtocolError, match="1000 bytes") as info:
        protocol.receive_request_frames(receiver)
    assert info.value.code == "message_too_large"
