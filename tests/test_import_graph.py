"""The installed package's module-level import graph: no cycles, and no product module pulls in the offline
tiny builders (`styleid_guidance.tiny`) at import time.

Static (ast), so it is cheap and sees every module, imported by a test or not. Only imports that run when a
module is imported count: module level, class bodies, `if`/`try` blocks — not function bodies (deferred on
purpose) and not `if TYPE_CHECKING:` blocks (never run). Importing `a.b.c` also runs `a` and `a.b`, so those
count as well, except the importing module's own parent packages (already being initialised by then).
"""
from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "styleid_guidance"
TINY = f"{NAMESPACE}.tiny"

@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: set[str] = field(default_factory=set)  # every dotted name imported at import time (ours or not)


def installed_roots() -> dict[str, Path]:
    """Dotted package → folder, from pyproject's setuptools `package-dir` (the one place the layout is defined)."""
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in setuptools_cfg["package-dir"].items()}


def discover() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    roots = installed_roots()
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if "__pycache__" in rel.parts or any(not (folder / Path(*rel.parts[:i]) / "__init__.py").is_file()
                                                  for i in range(1, len(rel.parts))):
                continue  # not inside a package (e.g. loose scripts in a data folder)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # a subfolder that pyproject maps on its own is discovered from there, not twice
            if any(other.startswith(package + ".") and (name == other or name.startswith(other + ".")) for other in roots):
                continue
            modules[name] = Module(name, path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportTimeImports(ast.NodeVisitor):
    """Collects the imports a module executes when it is imported."""

    def __init__(self, module: Module, known: set[str]):
        self.module, self.known, self.found = module, known, set()

    def visit_FunctionDef(self, node: ast.AST) -> None:  # deferred until called
        pass

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            for child in node.body:
                self.visit(child)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.module.name if self.module.is_package else self.module.name.rpartition(".")[0]
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        self.found.add(base)
        for alias in node.names:  # `from pkg import submodule` imports the submodule
            if f"{base}.{alias.name}" in self.known:
                self.found.add(f"{base}.{alias.name}")


def build_graph() -> tuple[dict[str, Module], dict[str, set[str]]]:
    modules = discover()
    known = set(modules)
    for module in modules.values():
        visitor = _ImportTimeImports(module, known)
        visitor.visit(ast.parse(module.path.read_text(), str(module.path)))
        module.imports = visitor.found
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        own_parents = {".".join(module.name.split(".")[:i]) for i in range(1, module.name.count(".") + 1)}
        for target in module.imports:
            if not (target == NAMESPACE or target.startswith(NAMESPACE + ".")):
                continue
            parts = target.split(".")
            while parts and ".".join(parts) not in known:  # `from pkg.mod import name`: the module is pkg.mod
                parts.pop()
            for i in range(1, len(parts) + 1):  # the module and every package above it run
                dep = ".".join(parts[:i])
                if dep in known and dep != module.name and dep not in own_parents:
                    graph[module.name].add(dep)
    return modules, graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative); components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(component)
    return found


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


@pytest.fixture(scope="module")
def graph():
    return build_graph()


def test_every_installed_folder_is_scanned(graph):
    modules, _ = graph
    for package in ("styleid_guidance", "styleid_guidance.train", "styleid_guidance.integrations", "styleid_guidance.pipelines",
                    "styleid_guidance.jojogan", "styleid_guidance.demo", TINY):
        assert package in modules, package
    assert "styleid_guidance.integrations.callback" in modules and "styleid_guidance.demo.app" in modules


def test_no_import_cycles(graph):
    _, edges = graph
    cycles = list(strongly_connected(edges))
    assert not cycles, "import cycles (module-level imports): " + "; ".join(" ↔ ".join(sorted(c)) for c in cycles)


def test_product_code_does_not_import_the_tiny_builders(graph):
    modules, edges = graph
    offenders = sorted(f"{name} → {dep}" for name, deps in edges.items() if not (name == TINY or name.startswith(TINY + "."))
                       for dep in deps if dep == TINY or dep.startswith(TINY + "."))
    assert not offenders, "product modules import styleid_guidance.tiny at import time (use it inside .tiny()): " + ", ".join(offenders)


def test_loading_flux_does_not_load_the_sdxl_pipeline_or_cv2(graph):
    modules, edges = graph
    loaded = _closure(edges, f"{NAMESPACE}.pipelines.infiniteyou")
    assert f"{NAMESPACE}.pipelines.instantid" not in loaded
    with_cv2 = sorted(m for m in loaded if any(t == "cv2" or t.startswith("cv2.") for t in modules[m].imports))
    assert not with_cv2, with_cv2


def test_the_analysis_sees_what_it_should(tmp_path, monkeypatch):
    """The graph code itself, on a throw-away project: relative imports, TYPE_CHECKING and function-level
    imports, implicit parent packages, folders mapped into the namespace, cycles."""
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools.package-dir]\n"styleid_guidance" = "core"\n'
                                             '"styleid_guidance.extra" = "extra"\n')
    files = {
        "core/__init__.py": "from .a import A\n",
        "core/a.py": "A = 1\n",
        "core/b.py": "from typing import TYPE_CHECKING\nfrom styleid_guidance.extra import c\n"
                     "if TYPE_CHECKING:\n    from . import a\ndef f():\n    from .tiny import x\n",
        "core/tiny/__init__.py": "",
        "extra/__init__.py": "",
        "extra/c.py": "from styleid_guidance import b\nclass K:\n    import cv2\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    modules, edges = build_graph()
    assert set(modules) == {"styleid_guidance", "styleid_guidance.a", "styleid_guidance.b", "styleid_guidance.tiny",
                            "styleid_guidance.extra", "styleid_guidance.extra.c"}
    assert edges["styleid_guidance"] == {"styleid_guidance.a"}
    assert edges["styleid_guidance.b"] == {"styleid_guidance.extra", "styleid_guidance.extra.c"}  # not a (TYPE_CHECKING), not tiny (in f)
    assert edges["styleid_guidance.extra.c"] == {"styleid_guidance.b"}  # the namespace root is its own parent package
    assert "cv2" in modules["styleid_guidance.extra.c"].imports  # class bodies run at import time
    assert strongly_connected(edges) == [{"styleid_guidance.b", "styleid_guidance.extra.c"}]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"a"}, "b": set()}) == [{"a"}]
