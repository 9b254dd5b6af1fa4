"""Project-wide rules checked on the source itself: where bpy may be imported, and no unsafe loading."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training", "blender_addon", "zeroshape_w")
# Modules allowed to import bpy/mathutils at module level: the add-on's UI and scene modules. Everything
# else must import in plain Python, so tests, the backend and the protocol never need Blender;
# `register()` functions may import bpy, since only Blender calls them.
BPY_MODULES: set[str] = {
    "blender_addon/ui.py",
    "blender_addon/properties.py",
    "blender_addon/jobs.py",
    "blender_addon/operators.py",
    "blender_addon/panel.py",
    "blender_addon/scene.py",
    "blender_addon/texture_bake.py",
}
# (training/data/render_blender.py and backend/preview_render.py import bpy only inside functions: they run
# as their own Blender processes.)


def python_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))
    yield from sorted(ROOT.glob("*.py"))


def module_level_nodes(tree: ast.AST):
    """Every node except those inside function bodies: what runs when the module is imported."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stack.extend(ast.iter_child_nodes(node))


def imported_modules(tree: ast.AST, module_level_only: bool = False):
    for node in module_level_nodes(tree) if module_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_files_exist():
    assert any(python_files())


def test_bpy_is_imported_only_by_blender_side_modules():
    offenders = []
    for path in python_files():
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=relative)
        modules = set(imported_modules(tree, module_level_only=True))
        if modules & {"bpy", "mathutils", "bmesh"} and relative not in BPY_MODULES:
            offenders.append(relative)
    assert not offenders, f"bpy imported outside the add-on's UI/scene modules: {offenders}"


def test_no_pickle_and_torch_load_is_always_weights_only():
    problems = []
    for path in python_files():
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=relative)
        if {"pickle", "dill", "cloudpickle"} & set(imported_modules(tree)):
            problems.append(f"{relative}: imports a pickle module")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            if name in ("recv_pyobj", "send_pyobj"):
                problems.append(f"{relative}:{node.lineno}: pickled ZeroMQ message")
            if name == "load" and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    problems.append(f"{relative}:{node.lineno}: torch.load without weights_only=True")
    assert not problems, problems


def test_addon_package_imports_without_blender():
    import subprocess
    import sys

    code = "import sys, blender_addon; assert 'bpy' not in sys.modules; print(blender_addon.bl_info['name'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ZeroShape-W"


# The house's layers, bottom up: a package may import those below it, never those above.
LAYERS = ("blender_addon", "backend", "training", "zeroshape_w")


def test_no_package_imports_a_layer_above_it():
    offenders = []
    for path in python_files():
        relative = path.relative_to(ROOT).as_posix()
        package = relative.split("/")[0]
        if package not in LAYERS:
            continue
        above = set(LAYERS[LAYERS.index(package) + 1 :])
        tree = ast.parse(path.read_text(), filename=relative)
        for module in set(imported_modules(tree)) & above:  # inside functions too: a lazy import is an import
            offenders.append(f"{relative} imports {module}")
    assert not offenders, offenders


def test_no_source_file_is_over_600_lines():
    """A file has one job; past ~600 lines it has several (split it, as `training/cli_*.py` were)."""
    long = {
        str(path.relative_to(ROOT)): n for path in python_files() if (n := len(path.read_text().splitlines())) > 600
    }
    assert not long, long


def test_no_command_line_function_is_over_80_lines():
    """Each command's parser lives beside its command, in functions short enough to read at once."""
    modules = [p for p in python_files() if p.name == "cli.py" or p.name.startswith("cli_")]
    assert len(modules) >= 10, modules  # backend/cli*.py, training/cli*.py, zeroshape_w/cli.py
    long = {}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80:
                long[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, long
