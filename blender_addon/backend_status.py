"""What the panel says about the backend and the model, and what a result's report says it used (pure Python).

The panel's Backend line must say what is actually wrong: a backend that is not running, one that refused this
client's key, a key file that cannot be read and Blender's online access are four different fixes. And a model
without a gravity or category head cannot honour Upright or Auto category: the panel says so instead of letting
the switches do nothing.
"""

from __future__ import annotations

from typing import Any


def problem_line(error: Exception, address: str) -> str:
    """The Backend line for a backend that could not be used: short, and naming the fix."""
    from .client import BackendKeyRefusedError, BackendRejectedError, BackendUnavailableError

    if isinstance(error, BackendKeyRefusedError):
        return f"refused at {address}: the server does not accept this client's key (see the report)"
    if isinstance(error, BackendRejectedError):
        return f"refused at {address}: the keys do not match the server's (--auth); see the report"
    if isinstance(error, BackendUnavailableError):
        return f"not reachable at {address}: start it with `zeroshape-w serve`"
    first = str(error).split(": turn on")[0].split("; ")[0]  # the cause; the report has the whole message
    return f"cannot be used: {first}"


def ready_line(info: dict[str, Any]) -> str:
    """The Backend line from the backend's `info`: state, model, device, queue."""
    if info.get("state") == "loading":
        return f"loading the model on {info.get('device')}; jobs sent now wait until it is ready"
    queued = int(info.get("queue_length") or 0)
    state = "busy" if queued else "ready"
    untrained = ", UNTRAINED model" if info.get("untrained") else ""
    return f"{state}: {info.get('model')} on {info.get('device')}, {queued} queued{untrained}"


def result_line(metadata: dict[str, Any]) -> str:
    """The Backend line after a reconstruction came back: the backend is there, with this model."""
    model = metadata.get("model") or {}
    untrained = ", UNTRAINED model" if model.get("untrained") else ""
    return f"ready: {model.get('config')} on {metadata.get('device')}{untrained}"


def model_notes(capabilities: dict[str, Any] | None) -> dict[str, str]:
    """What the loaded model cannot do, per panel switch ("upright", "category", "body"): the note to show beside
    it. Empty when every switch works, or when nothing is known yet (no backend checked)."""
    if not capabilities:
        return {}
    notes = {}
    if not capabilities.get("gravity_head"):
        notes["upright"] = "this model has no gravity head: meshes keep the camera's up"
    if not capabilities.get("category_head"):
        notes["category"] = 'this model has no category head: Auto uses "object"'
    if not capabilities.get("body_head"):
        notes["body"] = "this model has no body head: Body gives the round body"
    return notes


def capability_line(capabilities: dict[str, Any] | None) -> str:
    """One line of what the loaded model has: "heads: body; no gravity, no category · mask: file, alpha, model"."""
    if not capabilities:
        return ""
    has = [name for name in ("gravity", "category", "body") if capabilities.get(f"{name}_head")]
    lacks = [f"no {name}" for name in ("gravity", "category", "body") if not capabilities.get(f"{name}_head")]
    heads = "; ".join(part for part in (", ".join(has), ", ".join(lacks)) if part)
    sources = ", ".join(capabilities.get("mask_sources") or [])
    return f"model heads: {heads}" + (f" · masks: {sources}" if sources else "")


def estimates_used(metadata: dict[str, Any]) -> str:
    """What a result was built with, for its report: "up: the camera's (no gravity head); category: object"."""
    up = metadata.get("up") or {}
    source = str(up.get("source", ""))
    if source == "camera":
        up_text = "the camera's (no gravity head)"
    elif source:
        up_text = "the gravity head's" if source == "gravity head" else source
    else:
        up_text = ""
    parts = [f"up: {up_text}"] if up_text else []
    requested, used = metadata.get("category_requested"), metadata.get("category")
    if used:
        parts.append(f"category: {used}" + (" (auto)" if requested == "auto" else ""))
    return "; ".join(parts)
