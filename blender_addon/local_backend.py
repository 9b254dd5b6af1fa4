"""Starting and stopping a backend on this computer from Blender, with the project's own Python (no bpy)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def backend_command(
    python: str | Path, address: str, extra_arguments: str = "", parent_pid: int | None = None
) -> tuple[list[str], Path]:
    """(command, working folder) that start `zeroshape-w serve` with a project's virtual-environment Python; with
    `parent_pid` (Blender's), the backend stops by itself once that process is gone.

    The working folder is the project: the folder that holds the environment (PROJECT/.venv/bin/python). The
    path is made absolute but not resolved: a venv's bin/python is a symlink to the system's Python, and
    following it would start the backend in the system's folder."""
    interpreter = Path(python).absolute()
    project = interpreter.parent.parent.parent
    command = [str(interpreter), "-m", "backend", "serve", "--address", address, *shlex.split(extra_arguments)]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    return command, project


def stop(process: subprocess.Popen | None, grace_s: float = 15.0) -> bool:
    """Stop a backend started from Blender: SIGTERM (it finishes its job within its grace), then SIGKILL.
    Returns whether a running process was stopped."""
    if process is None or process.poll() is not None:
        return False
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return True
