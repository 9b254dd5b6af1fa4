"""Starting a backend from Blender (blender_addon/local_backend.py), without Blender."""

from __future__ import annotations

import subprocess
import sys

from blender_addon.local_backend import backend_command, stop


def test_the_working_folder_is_the_project_not_the_python_the_venv_links_to(tmp_path):
    project = tmp_path / "project"
    (project / ".venv" / "bin").mkdir(parents=True)
    python = project / ".venv" / "bin" / "python"
    python.symlink_to(sys.executable)  # as `python -m venv` makes it
    command, folder = backend_command(python, "tcp://127.0.0.1:5557", "--device cpu --queue-size 4")
    assert folder == project
    assert command[0] == str(python)
    expected = ["-m", "backend", "serve", "--address", "tcp://127.0.0.1:5557"]
    assert command[1:] == [*expected, "--device", "cpu", "--queue-size", "4"]


def test_stop_ends_a_running_process_and_says_whether_it_did():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop(process, grace_s=5)
    assert process.poll() is not None
    assert not stop(process)
    assert not stop(None)
