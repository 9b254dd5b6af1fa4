"""`blender_addon.backend_status`: the panel's words for the backend and the model (pure Python)."""

from __future__ import annotations

from blender_addon.backend_status import (
    capability_line,
    estimates_used,
    model_notes,
    problem_line,
    ready_line,
    result_line,
)
from blender_addon.client import (
    BackendError,
    BackendKeyRefusedError,
    BackendRejectedError,
    BackendUnavailableError,
)

ADDRESS = "tcp://127.0.0.1:5557"


def test_each_kind_of_failure_names_its_own_fix():
    missing = problem_line(BackendUnavailableError("no answer … nothing listens there"), ADDRESS)
    assert missing == f"not reachable at {ADDRESS}: start it with `zeroshape-w serve`"
    key = problem_line(BackendKeyRefusedError(f"the backend at {ADDRESS} refused this client's key: add …"), ADDRESS)
    assert key.startswith(f"refused at {ADDRESS}: the server does not accept this client's key")
    handshake = problem_line(BackendRejectedError("the connection failed in the handshake: …"), ADDRESS)
    assert "keys do not match" in handshake
    offline = BackendError("tcp://10.0.0.2:5557 is on another computer, and Blender's online access is off: turn on …")
    assert problem_line(offline, ADDRESS) == (
        "cannot be used: tcp://10.0.0.2:5557 is on another computer, and Blender's online access is off"
    )


def test_lines_for_a_backend_that_answers():
    info = {"state": "ready", "model": "small", "device": "cpu", "queue_length": 2, "untrained": False}
    assert ready_line(info) == "busy: small on cpu, 2 queued"
    assert ready_line({**info, "state": "loading"}).startswith("loading the model on cpu")
    metadata = {"model": {"config": "tiny", "untrained": True}, "device": "cuda:0"}
    assert result_line(metadata) == "ready: tiny on cuda:0, UNTRAINED model"


def test_what_the_model_cannot_do_is_said_per_switch():
    bundled = {"gravity_head": False, "category_head": False, "body_head": True, "mask_sources": ["alpha"]}
    notes = model_notes(bundled)
    assert set(notes) == {"upright", "category"}
    assert "no gravity head" in notes["upright"]
    assert model_notes(None) == {}  # nothing known yet: nothing greyed out
    assert capability_line(bundled) == "model heads: body; no gravity, no category · masks: alpha"


def test_the_report_names_the_estimates_used():
    assert estimates_used({"up": {"source": "camera"}, "category": "object", "category_requested": "auto"}) == (
        "up: the camera's (no gravity head); category: object (auto)"
    )
    assert estimates_used({"up": {"source": "gravity head"}, "category": "mug", "category_requested": "mug"}) == (
        "up: the gravity head's; category: mug"
    )
    assert estimates_used({}) == ""
