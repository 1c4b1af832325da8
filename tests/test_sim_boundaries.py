"""The simulator is an independent implementation of the exchanges: it imports nothing of the client
(issue 12 item 10), so a shared misreading of a protocol cannot pass both sides' tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PACKAGES = ("ldc.book", "ldc.sync", "ldc.venues", "ldc.io", "ldc.feeder", "ldc.depth", "ldc.shm", "ldc._fastbook")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


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
