"""The simulator is an independent implementation of the exchanges: it imports nothing of the client
(issue 12 item 10), so a shared misreading of a protocol cannot pass both sides' tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from boundary_helpers import imported_modules

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PACKAGES = ("ldc.book", "ldc.sync", "ldc.venues", "ldc.io", "ldc.feeder", "ldc.catalogue", "ldc.depth", "ldc.shm", "ldc._fastbook")


def test_no_simulator_module_imports_the_client() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted((ROOT / "ldc" / "sim").glob("*.py"))
        for name in imported_modules(path)
        if name.startswith(CLIENT_PACKAGES)
    }
    assert offenders == set()


def test_importing_the_simulator_loads_no_client_module() -> None:
    code = "import sys, ldc.sim, ldc.sim.cli, ldc.sim.families; print(sorted(m for m in sys.modules if m.startswith('ldc')))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    assert [m for m in ast.literal_eval(loaded) if m.startswith(CLIENT_PACKAGES)] == []


def import_graph(directory: Path, package: str = "ldc.sim") -> dict[str, set[str]]:
    """Module -> the modules of ``package`` (the ``*.py`` files of ``directory``) it imports: every import
    statement, at the top, inside a function or under ``TYPE_CHECKING`` (a type-only import is still a
    dependency a reader must follow). ``from ldc.sim import x`` names the module ``x``; the package
    ``__init__`` that Python loads first is left out (it only gathers the public names)."""
    modules = {path.stem for path in directory.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in sorted(modules):
        path = directory / f"{name}.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name}: a relative import above {package}"
                base = (f"{package}.{node.module}" if node.module else package) if node.level == 1 else node.module or ""
                if base == package:
                    found.update(alias.name for alias in node.names if alias.name in modules)
                elif base.startswith(f"{package}."):
                    found.add(base[len(package) + 1 :].split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name[len(package) + 1 :].split(".")[0] for alias in node.names if alias.name.startswith(f"{package}."))
        graph[name] = found - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as the path ``a -> b -> ... -> a`` ([] when it has none)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


def test_the_simulators_import_graph_has_no_cycle() -> None:
    """Issue 12: the REST API and the sessions see the server through ``ldc.sim.context``, not ``ServerState``
    (the rest / server / session circle), and every venue family's modules depend one way only."""
    graph = import_graph(ROOT / "ldc" / "sim")
    assert graph["server"] >= {"rest", "session", "context"} and "context" in graph["rest"] & graph["session"]
    assert find_cycle(graph) == []


def test_the_scan_sees_type_checking_and_function_level_imports(tmp_path: Path) -> None:
    """The scan is not blind to what it must catch: the old circle's shape (a module importing the server
    only under ``TYPE_CHECKING``, the server importing it back inside a function) is found and named."""
    (tmp_path / "__init__.py").write_text("from ldc.sim.server import ServerState\n")
    (tmp_path / "rest.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ldc.sim.server import ServerState\n")
    (tmp_path / "server.py").write_text("def make() -> None:\n    from ldc.sim import rest, tls\n")
    (tmp_path / "wire.py").write_text("import ldc.sim.rest\nfrom . import tls\n")
    (tmp_path / "tls.py").write_text("import ssl\n")
    graph = import_graph(tmp_path)
    assert graph == {"rest": {"server"}, "server": {"rest", "tls"}, "tls": set(), "wire": {"rest", "tls"}}
    assert find_cycle(graph) == ["rest", "server", "rest"]
    (tmp_path / "rest.py").write_text("import orjson\n")
    assert find_cycle(import_graph(tmp_path)) == []
