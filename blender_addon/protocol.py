"""The wire protocol between the Blender add-on (client) and the inference backend (server).

One module, imported by both sides: pure Python, standard library and numpy only, importable inside
Blender. Never pickle: a message is a list of ZeroMQ frames

    [b"", header, *payload]

where the empty frame separates routing envelopes (added by ROUTER sockets and brokers) from the body,
`header` is a UTF-8 JSON object validated strictly against the schema below, and the payload frames are
raw bytes whose count and sizes the header declares and the receiver checks.

Requests (client → server), header {"v": 1, "id": REQUEST_ID, "op": OP, "options": {...}}:
    ping, info                     no payload
    reconstruct                    one or two frames: the image file's bytes (JPEG, PNG, WebP, TIFF or BMP),
                                   then optionally the object's mask as an image file's bytes (PNG etc., the
                                   photo file's size; alpha if it has a real one, else brightness: white or
                                   opaque is the object); each at most MAX_IMAGE_BYTES
    cancel                         options {"target": REQUEST_ID}; a client that gives up on a job sends it
                                   (a server also drops the jobs of clients whose connection is gone)
    shutdown                       options {"token": the server's shutdown token}

Responses (server → client), header {"v": 1, "id": REQUEST_ID, "type": TYPE, ...}:
    pong                           {"state": "loading" | "ready" | "stopping"}: while the model loads, jobs
                                   are accepted and wait in the queue
    info                           {"info": {...}}: state, model, device, queue, job counts, and "metrics"
                                   (job times' percentiles, peak memory of a job)
    accepted                       {"queue_position": int}: the job is queued; events follow
    busy                           {"message": str}: the queue is full; try later
    progress                       {"stage": str, "fraction": float}: at least every 2 s while a job runs,
                                   and while it waits ({"stage": "queued", "queue_position": int, 1 = next})
    result                         {"vertex_count", "face_count", "has_colors", "metadata"} and frames:
                                   vertices float32 [V, 3], faces uint32 [F, 3], colours uint8 [V, 4] if any;
                                   with {"has_mask": true} (only when the options asked, "return_mask", so a
                                   client that knows nothing of masks never meets the frame) a last frame: the
                                   mask the mesh was built from, a greyscale PNG at the photo file's size
    cancelled, error               {"code": str, "message": str}
    ok                             reply to cancel and shutdown
All arrays are little-endian and C-contiguous.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"

MAX_HEADER_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Largest image file a request may carry (a 50-megapixel JPEG is about 20 MB); the same bound holds for a
mask frame, in a request and in a result."""
MAX_MESSAGE_BYTES = 2 * MAX_IMAGE_BYTES + MAX_HEADER_BYTES + 1024
"""Largest request as a whole (header, image and mask), which `receive_request_frames` enforces; also the default
ZMQ_MAXMSGSIZE, which libzmq applies to each frame: a larger frame makes ZeroMQ drop the connection before it is
buffered."""
MAX_REQUEST_FRAMES = 8
"""Frames of one request, routing envelopes included: a broker adds two (the client's identity and a
delimiter) to the client's [b"", header, image, mask]; anything longer is not a request."""
MAX_RESULT_VERTICES = 20_000_000
"""Sanity bound a client applies to a result's declared sizes."""

REQUEST_OPS = ("ping", "info", "reconstruct", "cancel", "shutdown")
RESPONSE_TYPES = ("pong", "info", "accepted", "busy", "progress", "result", "cancelled", "error", "ok")
FRAMES = ("blender", "camera")
PRECISIONS = ("fp32", "bf16", "fp16")
SHAPES = ("inflate", "body", "learned")
"""How the body is made: "inflate" (a round body inflated from the object's outline, mirrored about a plane
facing the camera: no network call per point), "body" (the same body, its plane tilted and its depth scaled as
the model's body head estimates from the mask; a model without a body head gives the round one), or "learned"
(the occupancy decoder, carved by the outline's visual cone). docs/MODEL_CARD.md measures all three."""
_OPTIONS_OF = {"ping": set(), "info": set(), "cancel": {"target"}, "shutdown": {"token"}}
"""The options each op other than reconstruct takes (reconstruct's: `ReconstructOptions`)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # used with fullmatch: no trailing newline slips through


def is_loopback(address: str) -> bool:
    """True for tcp://127.x.y.z:PORT, tcp://[::1]:PORT, tcp://localhost:PORT and inproc/ipc endpoints: addresses
    that only programs on this computer can reach."""
    import ipaddress

    if not address.startswith("tcp://"):
        return address.startswith(("inproc://", "ipc://"))
    host = address[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: not provably loopback


def is_ipv6_endpoint(address: str) -> bool:
    """True for tcp://[IPv6]:PORT: ZeroMQ binds and connects to such addresses only with ZMQ_IPV6 set."""
    return address.startswith("tcp://[")


class ProtocolError(Exception):
    """A message that does not follow the protocol. `code` is machine-readable; `request_id` is set when
    the header was readable enough to say which request it was."""

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@dataclass(frozen=True)
class ReconstructOptions:
    """What a reconstruction may be asked to do: the one options type of the protocol, the pipeline, the
    command line and the add-on. Every value is checked on construction (ValueError names the field), so a
    request, a command line and a test all meet the same rules. Adding an option: a field and its check
    here, its use in `backend.pipeline`, its control in the add-on."""

    resolution: int = 128
    """Cells per side of the finest occupancy grid: a power of two from 32 to 512."""
    category: str = "auto"
    """Category prompt; "object" is the category-agnostic setting; "auto" lets the model choose (models
    without a category head use "object")."""
    frame: str = "blender"
    """"blender" (Z up, on the ground) or "camera" (OpenCV camera axes)."""
    color: bool = True
    box: tuple[float, float, float, float] | None = None
    """Object box (x0, y0, x1, y1) in the photo file's pixels; overrides the automatic crop."""
    max_faces: int | None = None
    """Decimate to at most this many faces (100 to 10,000,000)."""
    precision: str = "fp32"
    """Arithmetic of the network: fp32, or bf16/fp16 autocast (fp16 needs a GPU)."""
    deadline_s: float | None = None
    """Give up on the job after this many seconds, queue included (the server also has its own limit)."""
    largest_component: bool = True
    """Drop floating fragments (keep the connected part with the largest area)."""
    upright: bool = True
    """"blender" frame: stand the object on the ground the model predicts (models with a gravity head); false:
    the camera's up, so the mesh is tilted by the camera's elevation."""
    shape: str = "inflate"
    """One of SHAPES."""
    refine_mask: bool = True
    """Without a user's mask or an alpha channel: sharpen the network's object mask with GrabCut."""
    use_alpha: bool = True
    """Take a photo's real alpha channel as the object's mask; false: ignore it (the model finds the object)."""
    return_mask: bool = False
    """Server: send the mask the mesh was built from back with the result (a PNG frame, "has_mask"). Only the
    answer changes: the pipeline ignores it, and the command line always writes the mask beside the mesh."""

    def __post_init__(self) -> None:
        resolution = self.resolution
        if type(resolution) is not int or not 32 <= resolution <= 512 or resolution & (resolution - 1):
            raise ValueError("resolution must be a power of two from 32 to 512")
        if not isinstance(self.category, str) or len(self.category) > 100:
            raise ValueError("category must be a string of at most 100 characters")
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}")
        for name in ("color", "largest_component", "upright", "refine_mask", "use_alpha", "return_mask"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be true or false")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        box = self.box
        if box is not None:
            if (
                not isinstance(box, list | tuple)
                or len(box) != 4
                or not all(_is_finite_number(v) for v in box)
                or not (box[0] < box[2] and box[1] < box[3])
            ):
                raise ValueError("box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
            if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
                raise ValueError(f"box must be at least {MIN_BOX_PX} pixels wide and tall (an object, not a speck)")
            object.__setattr__(self, "box", tuple(float(v) for v in box))
        max_faces = self.max_faces
        if max_faces is not None and (type(max_faces) is not int or not 100 <= max_faces <= 10_000_000):
            raise ValueError("max_faces must be an integer from 100 to 10,000,000")
        deadline = self.deadline_s
        if deadline is not None:
            if not _is_finite_number(deadline) or not 0 < deadline <= 24 * 3600:
                raise ValueError("deadline_s must be a number of seconds from 0 to 86400")
            object.__setattr__(self, "deadline_s", float(deadline))

    def to_json(self) -> dict[str, Any]:
        data = {
            "resolution": self.resolution,
            "category": self.category,
            "frame": self.frame,
            "color": self.color,
            "precision": self.precision,
            "shape": self.shape,
        }
        if not self.refine_mask:
            data["refine_mask"] = False
        if not self.use_alpha:
            data["use_alpha"] = False
        if self.return_mask:  # only when asked: a server older than the option refuses unknown options
            data["return_mask"] = True
        if not self.largest_component:
            data["largest_component"] = False
        if not self.upright:
            data["upright"] = False
        if self.box is not None:
            data["box"] = list(self.box)
        if self.max_faces is not None:
            data["max_faces"] = self.max_faces
        if self.deadline_s is not None:
            data["deadline_s"] = self.deadline_s
        return data

    @classmethod
    def from_json(cls, data: Any, request_id: str | None = None) -> ReconstructOptions:
        """Strict validation: unknown keys, wrong types and out-of-range values are ProtocolError."""
        if not isinstance(data, dict):
            raise ProtocolError("bad_options", "options must be an object", request_id)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ProtocolError("bad_options", f"unknown options: {quoted(sorted(unknown))}", request_id)
        values = dict(data)
        if values.get("box") is not None and not isinstance(values["box"], list):  # JSON has lists, not tuples
            raise ProtocolError("bad_options", "box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1", request_id)
        if isinstance(values.get("category"), str):
            values["category"] = values["category"].strip() or "auto"  # blank: the default, as if not given
        try:
            return cls(**values)
        except ValueError as error:
            raise ProtocolError("bad_options", str(error), request_id) from None


QUOTE_LIMIT = 100
"""Characters of what the other side sent that an error message repeats: enough to recognise it, and a 60 KB option
name is not echoed back whole."""
MIN_BOX_PX = 4.0
"""Smallest object box side, in photo pixels."""


def quoted(value: Any) -> str:
    """`repr(value)`, cut to QUOTE_LIMIT characters with its full length said."""
    text = repr(value)
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}… ({len(text):,} characters)"


def _is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that converts to a finite float; JSON integers are unbounded."""
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass
class Request:
    request_id: str
    op: str
    options: dict[str, Any] = field(default_factory=dict)
    payload: list[bytes] = field(default_factory=list)


@dataclass
class Response:
    request_id: str
    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    payload: list[bytes] = field(default_factory=list)


def _encode_header(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


def receive_request_frames(socket, flags: int = 0) -> list[bytes]:
    """One message from a ZeroMQ socket, frame by frame, bounded as a whole: at most MAX_REQUEST_FRAMES frames
    and MAX_MESSAGE_BYTES in all. ZMQ_MAXMSGSIZE bounds each frame only, and `recv_multipart` would copy every
    frame of a 300-frame message before anyone counts them. Past a bound, the rest of the message is received
    and dropped frame by frame (ZeroMQ delivers whole messages, so it must be read to get past it) and
    ProtocolError("message_too_large") carries the routing frame, so the sender can be told.

    `flags` go to the first receive (e.g. zmq.NOBLOCK, whose zmq.Again propagates); the rest of a message is
    already there."""
    first = socket.recv(flags, copy=False)
    frames, total, more = [first.bytes], len(first), first.more
    too_large = None
    while more:
        frame = socket.recv(copy=False)
        more = frame.more
        total += len(frame)
        if too_large is None and (len(frames) >= MAX_REQUEST_FRAMES or total > MAX_MESSAGE_BYTES):
            too_large = f"a request is at most {MAX_REQUEST_FRAMES} frames and {MAX_MESSAGE_BYTES} bytes"
        if too_large is None:
            frames.append(frame.bytes)
        del frame  # returned to ZeroMQ at once: a dropped message is never held in full by Python
    if too_large is not None:
        error = ProtocolError("message_too_large", too_large)
        error.envelope = frames[:1]
        raise error
    return frames


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """[*envelope, b"", *body] → (envelope, body). Raises ProtocolError if there is no delimiter."""
    for index, frame in enumerate(frames):
        if frame == b"":
            return frames[:index], frames[index + 1 :]
    raise ProtocolError("bad_envelope", "no empty delimiter frame before the header")


def _decode_header(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_HEADER_BYTES:
        raise ProtocolError("header_too_large", f"header is {len(frame)} bytes, the limit is {MAX_HEADER_BYTES}")
    try:
        header = json.loads(frame.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError("bad_header", f"header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_header", "header must be a JSON object")
    request_id = header.get("id") if isinstance(header.get("id"), str) else None
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        raise ProtocolError("bad_id", "id must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    for key, value in header.items():
        problem = _unusable_value(value)
        if problem:
            code = "bad_options" if key == "options" else "bad_header"
            raise ProtocolError(code, f"{quoted(key)}: {problem}", request_id)
    if any(_unusable_value(key) for key in header):
        raise ProtocolError("bad_header", "a header field name is not text", request_id)
    version = header.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            "bad_version", f"protocol version {quoted(header.get('v'))} is not {PROTOCOL_VERSION}", request_id
        )
    if request_id is None:
        raise ProtocolError("bad_id", "id must be a string")
    return header


MAX_JSON_INTEGER = 2**63
"""Larger JSON integers are refused wherever they appear: no field needs them, and Python would carry them
into arithmetic (float(10**400) raises) far from the validation that should have stopped them."""


def _unusable_value(value: Any) -> str | None:
    """Why a decoded JSON value cannot be used safely, or None: lone UTF-16 surrogates in a string ("\\ud800"
    decodes to a str that cannot be encoded again), integers beyond ±2**63, and numbers that overflow to
    infinity (1e999). Checked everywhere in the header, so no handler meets them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate, which is not text"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -MAX_JSON_INTEGER <= item <= MAX_JSON_INTEGER:
                return "a number is too large"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number is too large to be finite"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def encode_request(request: Request) -> list[bytes]:
    header = {"v": PROTOCOL_VERSION, "id": request.request_id, "op": request.op, "options": request.options}
    return [b"", _encode_header(header), *request.payload]


def decode_request(body: list[bytes]) -> Request:
    """Body frames (after the envelope) → a validated Request, or ProtocolError."""
    if not body:
        raise ProtocolError("bad_frames", "empty message")
    header = _decode_header(body[0])
    request_id = header["id"]
    unknown = set(header) - {"v", "id", "op", "options"}
    if unknown:
        raise ProtocolError("bad_header", f"unknown header fields: {quoted(sorted(unknown))}", request_id)
    op = header.get("op")
    if op not in REQUEST_OPS:
        raise ProtocolError("bad_op", f"op must be one of {REQUEST_OPS}", request_id)
    options = header.get("options", {})
    if not isinstance(options, dict):
        raise ProtocolError("bad_options", "options must be an object", request_id)
    payload = body[1:]
    expected = (1, 2) if op == "reconstruct" else (0,)
    if len(payload) not in expected:
        takes = "1 or 2" if op == "reconstruct" else "0"
        raise ProtocolError("bad_frames", f"{op} takes {takes} payload frame(s), got {len(payload)}", request_id)
    if op == "reconstruct":
        if not payload[0]:
            raise ProtocolError("bad_image", "the image frame is empty", request_id)
        if len(payload[0]) > MAX_IMAGE_BYTES:
            raise ProtocolError("image_too_large", f"image is over {MAX_IMAGE_BYTES} bytes", request_id)
        if len(payload) == 2 and not payload[1]:
            raise ProtocolError("bad_mask", "the mask frame is empty", request_id)
        if len(payload) == 2 and len(payload[1]) > MAX_IMAGE_BYTES:
            raise ProtocolError("mask_too_large", f"mask is over {MAX_IMAGE_BYTES} bytes", request_id)
        ReconstructOptions.from_json(options, request_id)
    if op in _OPTIONS_OF:
        unknown_options = set(options) - _OPTIONS_OF[op]
        if unknown_options:
            raise ProtocolError("bad_options", f"{op} takes no options {quoted(sorted(unknown_options))}", request_id)
    if op == "cancel" and not (isinstance(options.get("target"), str) and _REQUEST_ID.fullmatch(options["target"])):
        raise ProtocolError("bad_options", "cancel needs options.target, a request id", request_id)
    if op == "shutdown" and not isinstance(options.get("token"), str):
        raise ProtocolError("bad_options", "shutdown needs options.token", request_id)
    return Request(request_id=request_id, op=op, options=options, payload=list(payload))


def encode_response(response: Response) -> list[bytes]:
    header = {"v": PROTOCOL_VERSION, "id": response.request_id, "type": response.type, **response.fields}
    return [b"", _encode_header(header), *response.payload]


def decode_response(body: list[bytes]) -> Response:
    """Body frames → a validated Response. A result's arrays are checked against its declared counts."""
    if not body:
        raise ProtocolError("bad_frames", "empty message")
    header = _decode_header(body[0])
    kind = header.pop("type", None)
    request_id = header.pop("id")
    header.pop("v")
    if kind not in RESPONSE_TYPES:
        raise ProtocolError("bad_type", f"unknown response type {quoted(kind)}", request_id)
    payload = body[1:]
    if kind == "result":
        vertices, faces = header.get("vertex_count"), header.get("face_count")
        has_colors, has_mask = header.get("has_colors"), header.get("has_mask", False)
        if (
            type(vertices) is not int
            or type(faces) is not int
            or type(has_colors) is not bool
            or type(has_mask) is not bool
            or not 0 <= vertices <= MAX_RESULT_VERTICES
            or not 0 <= faces <= 2 * MAX_RESULT_VERTICES
        ):
            raise ProtocolError("bad_result", "result counts are missing or out of range", request_id)
        sizes = [vertices * 12, faces * 12] + ([vertices * 4] if has_colors else [])
        arrays = payload[: len(payload) - 1] if has_mask else payload
        if [len(frame) for frame in arrays] != sizes or (has_mask and len(payload) != len(sizes) + 1):
            raise ProtocolError("bad_result", "result frames do not match the declared counts", request_id)
        if has_mask and not 0 < len(payload[-1]) <= MAX_IMAGE_BYTES:
            raise ProtocolError("bad_result", f"the mask frame is empty or over {MAX_IMAGE_BYTES} bytes", request_id)
    elif payload:
        raise ProtocolError("bad_frames", f"{kind} carries no payload", request_id)
    return Response(request_id=request_id, type=kind, fields=header, payload=list(payload))


def result_arrays(response: Response):
    """A result response's (vertices float32 [V, 3], faces uint32 [F, 3], colours uint8 [V, 4] or None)."""
    import numpy as np

    vertices = np.frombuffer(response.payload[0], dtype="<f4").reshape(-1, 3)
    faces = np.frombuffer(response.payload[1], dtype="<u4").reshape(-1, 3)
    has_colors = response.fields.get("has_colors") is True
    colors = np.frombuffer(response.payload[2], dtype=np.uint8).reshape(-1, 4) if has_colors else None
    if len(faces) and int(faces.max()) >= len(vertices):
        raise ProtocolError("bad_result", "a face refers to a vertex that does not exist", response.request_id)
    return vertices, faces, colors


def result_mask(response: Response) -> bytes | None:
    """A result response's mask frame (a PNG's bytes, checked only for its size), or None when it has none."""
    return response.payload[-1] if response.fields.get("has_mask") is True else None


def result_payload(vertices, faces, colors, mask: bytes | None = None) -> tuple[dict[str, Any], list[bytes]]:
    """Arrays (and the mask used, as a PNG's bytes) → (header fields, frames) for a result response."""
    import numpy as np

    frames = [
        np.ascontiguousarray(vertices, dtype="<f4").tobytes(),
        np.ascontiguousarray(faces, dtype="<u4").tobytes(),
    ]
    if colors is not None:
        frames.append(np.ascontiguousarray(colors, dtype=np.uint8).tobytes())
    fields = {"vertex_count": len(vertices), "face_count": len(faces), "has_colors": colors is not None}
    if mask is not None:
        frames.append(bytes(mask))
        fields["has_mask"] = True
    return fields, frames
