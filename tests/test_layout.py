"""The layout shows the architecture: the core imports nothing of the app and no gradio, and the layers
above it import downwards only (read from the source, so imports for type hints count too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each package (or top-level module) and its layer: a module imports from its own layer or those below.
LAYERS = {
    "core": 0,  # the chat: prompt building, the turn loop, the reply, the relay, errors
    "tools": 1,
    "storage": 1,
    "config": 2,  # the settings name the backends and tools they choose from
    "providers": 2,  # ... and a backend is configured by the settings: the one pair that knows each other
    "chat": 3,  # the chat service over the core, the backend, the tools and the log
    "preflight": 3,
    "pages": 4,  # the ways in over the service
    "app": 5,  # the wiring
}
KNOWN_EACH_OTHER = {frozenset({"config", "providers"})}
OURS = set(LAYERS) | {"bench", "testkit", "tests"}


def modules() -> dict[str, Path]:
    found = {path.stem: path for path in ROOT.glob("*.py")}
    for package in LAYERS:
        for path in (ROOT / package).glob("*.py"):
            found[f"{package}.{path.stem}".removesuffix(".__init__")] = path
    return found


def imported(path: Path) -> set[str]:
    """Every module an import statement names, wherever it stands (in functions, under TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def ours(names: set[str], known: dict[str, Path]) -> set[str]:
    return {name for name in names if name in known}


CORE = sorted(name for name in modules() if name.startswith("core.") and name != "core")


def test_the_core_imports_only_the_core_and_never_gradio():
    for name in CORE:
        for target in imported(modules()[name]):
            top = target.split(".")[0]
            assert top != "gradio", f"{name} imports {target}"
            assert top not in OURS or top == "core", f"{name} imports {target}, outside the core"


@pytest.mark.parametrize("name", CORE)
def test_each_core_module_imports_alone(name: str):
    probe = (
        f"import sys, {name}\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(OURS)!r} and not m.startswith('core'))\n"
        "print(loaded, 'gradio' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "False"], f"{name} loaded {result.stdout}"


def test_imports_run_downwards_through_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        here = name.split(".")[0]
        for target in ours(imported(path), known):
            there = target.split(".")[0]
            if there == here or frozenset({here, there}) in KNOWN_EACH_OTHER:
                continue
            if LAYERS[there] >= LAYERS[here]:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_the_modules_import_each_other_in_no_circle_but_the_declared_pair():
    known = modules()

    def crosses_the_pair(name: str, target: str) -> bool:
        return frozenset({name.split(".")[0], target.split(".")[0]}) in KNOWN_EACH_OTHER

    graph = {
        name: {target for target in ours(imported(path), known) - {name} if not crosses_the_pair(name, target)}
        for name, path in known.items()
    }

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()]:
                if target == goal:
                    return True
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return False

    circles = [(name, target) for name in graph for target in graph[name] if reaches(target, name)]
    assert circles == []


@pytest.mark.parametrize("temp_dir", [None, "gradio-uploads"])
def test_the_upload_folder_is_gradios(temp_dir: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from gradio.utils import get_upload_folder

    from core.attachments import upload_folder

    if temp_dir:
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / temp_dir))
    else:
        monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert upload_folder() == Path(get_upload_folder()).resolve()
