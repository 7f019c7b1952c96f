"""fastgan's import layering (docs: DESIGN.md, "Layering: who may import whom").

Every ``import`` in fastgan/**/*.py is read with ``ast`` (imports inside functions and
``if`` blocks count: a lazy import is still an arrow), relative imports resolved. Each module
belongs to a unit (a subpackage or a top-level module) and each unit to a layer; an import
may point sideways or down, never up, and the units' import graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

import fastgan

# the package under test: the source tree's, or an installed one (make test-compat and
# make wheel-test run these tests from a copy, against fastgan in site-packages)
PKG_DIR = Path(fastgan.__file__).resolve().parent

# unit -> layer; higher layers may import lower ones (and their own layer), never higher ones
LAYERS: Dict[str, int] = {
    # top: wire everything together
    "fastgan.cli": 5,
    "fastgan.__main__": 5,
    "fastgan.benchmark": 5,
    # the loop, config, checkpoints; loads generators for eval
    "fastgan.train": 4,
    # built from nn (and ops) only: no TrainConfig, no training policy
    "fastgan.models": 3,
    "fastgan.nn": 2,
    "fastgan.losses": 2,
    "fastgan.metrics": 2,
    "fastgan.data": 2,
    # drop-in names for other code bases, built on ops and nn; nothing in fastgan imports it
    "fastgan.compat": 2,
    # the package's front door (fastgan/__init__.py): re-exports nn, ops and backend_info
    "fastgan": 2,
    "fastgan.ops": 1,
    "fastgan._backend": 0,
    # the compiled kernels, loaded by _backend
    "fastgan._C": 0,
    # private helpers that import nothing from fastgan, shared by the CLIs, metrics and train
    "fastgan._cli_common": 0,
    "fastgan._safe_load": 0,
}

# (importing unit, imported unit) -> why the upward arrow is allowed. Keep it empty.
ALLOWED_UPWARD: Dict[Tuple[str, str], str] = {}

# modules that exist without a .py file
NON_PY_MODULES = {"fastgan._C"}


def module_name(path: Path, pkg_dir: Path = PKG_DIR) -> str:
    rel = path.relative_to(pkg_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(pkg_dir: Path = PKG_DIR) -> Dict[str, Path]:
    return {module_name(p, pkg_dir): p for p in sorted(pkg_dir.rglob("*.py"))}


def unit_of(module: str) -> Optional[str]:
    """The longest LAYERS key that is ``module`` or a package above it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name
    return None


def _resolve(name: str, known: Set[str]) -> str:
    """``name`` or, when it names an attribute (a function, a class), the module holding it."""
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool, known: Set[str]) -> Iterator[Tuple[str, int]]:
    """(imported fastgan module, line) for every import in ``source`` of ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastgan":
                    yield _resolve(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package) - 1:
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fastgan":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else _resolve(target, known)), node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.split(".")[0] == "fastgan"):
            yield _resolve(node.args[0].value, known), node.lineno


def import_edges(pkg_dir: Path = PKG_DIR) -> List[Tuple[str, str, str, int]]:
    """(importing module, imported module, file, line) over the whole package."""
    mods = all_modules(pkg_dir)
    known = set(mods) | NON_PY_MODULES
    edges = []
    for mod, path in mods.items():
        for target, line in imports_of(path.read_text(), mod, path.name == "__init__.py", known):
            edges.append((mod, target, str(path.relative_to(pkg_dir.parent)), line))
    return edges


def upward_arrows(edges) -> List[str]:
    bad = []
    for src, dst, where, line in edges:
        su, du = unit_of(src), unit_of(dst)
        if su == du or LAYERS[su] >= LAYERS[du] or (su, du) in ALLOWED_UPWARD:
            continue
        bad.append(f"{where}:{line}: {src} (layer {LAYERS[su]}) imports {dst} (layer {LAYERS[du]})")
    return bad


def unit_cycles(edges) -> List[List[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    graph: Dict[str, Set[str]] = {}
    for src, dst, _, _ in edges:
        su, du = unit_of(src), unit_of(dst)
        graph.setdefault(su, set())
        graph.setdefault(du, set())
        if su != du:
            graph[su].add(du)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe_cycle(comp, edges) -> str:
    members = set(comp)
    arrows = sorted({f"{where}:{line}: {src} -> {dst}" for src, dst, where, line in edges
                     if unit_of(src) in members and unit_of(dst) in members and unit_of(src) != unit_of(dst)})
    return " <-> ".join(comp) + "\n    " + "\n    ".join(arrows)


# ----------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def edges():
    return import_edges()


def test_every_module_has_a_layer():
    missing = [m for m in all_modules() if unit_of(m) is None]
    assert not missing, f"modules outside the layering table (add them to LAYERS): {missing}"


def test_the_walk_sees_the_package(edges):
    # a guard against a walk that finds nothing (and so passes anything)
    pairs = {(s, d) for s, d, _, _ in edges}
    assert any(s.startswith("fastgan.train.") and d.startswith("fastgan.models") for s, d in pairs)
    assert ("fastgan.metrics.api", "fastgan._safe_load") in pairs  # relative: from .._safe_load import ...
    assert ("fastgan._backend", "fastgan._C") in pairs  # inside a function


def test_no_upward_imports(edges):
    bad = upward_arrows(edges)
    assert not bad, "imports that run up the layers (DESIGN.md, Layering):\n" + "\n".join(bad)


def test_no_cycles_between_subpackages(edges):
    cycles = unit_cycles(edges)
    assert not cycles, "import cycles between fastgan's subpackages:\n" + "\n".join(
        _describe_cycle(c, edges) for c in cycles)


def test_models_build_from_the_layer_kit_only(edges):
    """DESIGN.md, One layer kit: a model imports fastgan.nn (and torch), nothing else of
    fastgan: no ops, no _backend, no second kit beside nn."""
    bad = sorted(f"{where}:{line}: {src} -> {dst}" for src, dst, where, line in edges
                 if src.startswith("fastgan.models") and not dst.startswith("fastgan.models")
                 and dst != "fastgan.nn")
    assert not bad, "models importing fastgan beyond fastgan.nn:\n" + "\n".join(bad)
    assert any(s.startswith("fastgan.models.") and d == "fastgan.nn" for s, d, _, _ in edges)


def test_allowed_exceptions_are_still_needed(edges):
    used = {(unit_of(s), unit_of(d)) for s, d, _, _ in edges}
    stale = [k for k in ALLOWED_UPWARD if k not in used]
    assert not stale, f"ALLOWED_UPWARD lists arrows nothing draws any more: {stale}"


# ----------------------------------------------------------------------------- the checker itself


def _fake_package(tmp_path, files: Dict[str, str]) -> Path:
    root = tmp_path / "fastgan"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_catches_a_lazy_relative_upward_import_and_its_cycle(tmp_path):
    root = _fake_package(tmp_path, {
        "__init__.py": "",
        "metrics/__init__.py": "from .sources import load\n",
        "metrics/sources.py": "import os\n\ndef load(p):\n    from ..train import checkpoint\n    return checkpoint\n",
        "train/__init__.py": "",
        "train/checkpoint.py": "from fastgan.metrics.sources import load\n",
        "models/__init__.py": "from . import layers\nfrom .layers import conv\n",
        "models/layers.py": "from ..ops.bias_act import bias_act\n",
        "ops/__init__.py": "",
        "ops/bias_act.py": "def bias_act(): pass\n",
        "nn/__init__.py": "import fastgan.models.layers as kit\n",
    })
    e = import_edges(root)
    assert ("fastgan.metrics.sources", "fastgan.train.checkpoint", "fastgan/metrics/sources.py", 4) in e
    assert ("fastgan.models", "fastgan.models.layers", "fastgan/models/__init__.py", 1) in e
    assert ("fastgan.models.layers", "fastgan.ops.bias_act", "fastgan/models/layers.py", 1) in e
    bad = upward_arrows(e)
    assert len(bad) == 2, bad
    assert "fastgan/metrics/sources.py:4: fastgan.metrics.sources (layer 2) imports fastgan.train.checkpoint" in bad[0] + bad[1]
    assert any("fastgan/nn/__init__.py:1: fastgan.nn (layer 2) imports fastgan.models.layers" in b for b in bad)
    assert unit_cycles(e) == [["fastgan.metrics", "fastgan.train"]]


def test_checker_catches_a_same_layer_cycle(tmp_path):
    root = _fake_package(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "def f():\n    import importlib\n    return importlib.import_module('fastgan.metrics.api')\n",
        "metrics/__init__.py": "",
        "metrics/api.py": "from ..data import f\n",
    })
    e = import_edges(root)
    assert not upward_arrows(e)
    assert unit_cycles(e) == [["fastgan.data", "fastgan.metrics"]]
