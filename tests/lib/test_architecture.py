"""The library's shape, as a newcomer relies on it: no import cycles, the
library never reaches up into the command line or the plugin, and modules
stay small enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

SRC = REPO / "src"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "glnet").rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every glnet (or napari_glnet) module ``path`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{a.name}" for a in node.names} & known
            out.update(submodules)
            if len(submodules) < len(node.names):  # names defined in ``base`` itself
                out.add(base)
    out.discard(name)
    return {m for m in out if m.split(".")[0] in ("glnet", "napari_glnet")}


def _graph() -> dict[str, set[str]]:
    known = set(_modules())
    return {name: _imports(path, name, known) for name, path in _modules().items()}


def test_the_layout_names_its_parts():
    packages = {p.name for p in (SRC / "glnet").iterdir() if (p / "__init__.py").is_file()}
    assert {"io", "inference", "store", "data", "model", "train", "cli"} <= packages


def test_the_library_never_imports_the_cli_or_the_plugin():
    upward = {
        (name, target)
        for name, targets in _graph().items()
        if not name.startswith("glnet.cli") and name != "glnet.__main__"
        for target in targets
        if target.startswith(("glnet.cli", "napari_glnet"))
    }
    assert not upward, f"library modules import the CLI or the plugin: {sorted(upward)}"


def test_no_import_cycles():
    graph = {k: {t for t in v if t in _modules()} for k, v in _graph().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_version_is_written_once():
    """pyproject.toml says it; both packages read it from the installed metadata."""
    from importlib.metadata import version

    import glnet
    import napari_glnet

    assert glnet.__version__ == napari_glnet.__version__ == version("napari-glnet")
    typed = re.compile(r'__version__ = "\d')  # a number, not the fallback of an uninstalled tree
    written = [p for p in (*SRC.rglob("*.py"), *(REPO / "napari_glnet").rglob("*.py")) if typed.search(p.read_text())]
    assert not written, f"a version typed out again: {written}"


def test_modules_stay_readable():
    """Over MAX_LINES lines only with the reason in the module docstring ("Long because ...")."""
    long = []
    plugin = {f"napari_glnet.{p.stem}": p for p in sorted((REPO / "napari_glnet").rglob("*.py"))}
    for name, path in {**_modules(), **plugin}.items():
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and "Long because" not in doc:
            long.append(f"{name} ({text.count(chr(10))} lines)")
    assert not long, f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"
