"""A release as a user gets it (issue 14, "A wheel" and item 11): the sdist carries the C sources and headers
and builds a wheel on its own; the wheel holds the compiled extensions, `py.typed` and the stubs; installed
(not editable) into a fresh venv it gives a working `ldc`, and `ldc demo` started from inside an unbuilt source
tree runs: its children import the installed package, not the tree in the working directory.

Offline and quick: the build uses this venv's setuptools (`--no-build-isolation --no-deps`), and the fresh venv
is made without pip, the wheel installed into it by this venv's pip (`pip --python`); the runtime dependencies
(numpy, posix-ipc...) come from this venv's site-packages through a path line in a `.pth` file, which adds the
directory alone (its own `.pth` files, such as an editable install's finder, are not run), so `ldc` itself can
only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feeder_helpers import unique_group
from ldc.demo import venue_demos
from ldc.shm.layout import segment_path
from shm_helpers import unlink_group

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
BUILD_OUTPUTS = (".git", ".venv", "build", "dist", "*.so", "*.whl", "__pycache__", "*.egg-info", ".pytest_cache",
                 ".mypy_cache", ".hypothesis", "target")  # fmt: skip
EXTENSIONS = ("ldc/_fastbook", "ldc/shm/_seqlock", "ldc/io/_frames", "ldc/fanout/_relay")
FASTBOOK_FILES = tuple(str(p.relative_to(ROOT)) for p in sorted((ROOT / "ldc" / "fastbook").glob("*.[ch]")))
C_FILES = (*FASTBOOK_FILES, "ldc/shm/_seqlock.c", "ldc/io/_frames.c", "ldc/fanout/_relay.c", "ldc/shm/ldc_seqlock_api.h", "ldc/shm/ldc_shm_inline.h")
STEP_TIMEOUT_S = 180


@dataclass(frozen=True)
class Release:
    sdist: Path
    source: Path  # the sdist unpacked: a source tree with no compiled extension in it
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def run(*cmd: str | Path, cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    pytest.importorskip("setuptools", reason="the build backend is needed to build offline")
    tmp = tmp_path_factory.mktemp("release")
    tree = tmp / "checkout"  # a copy: building writes egg-info into its source tree
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*BUILD_OUTPUTS))
    out = run(sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp)!r}))", cwd=tree)
    sdist = tmp / out.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
        tar.extractall(tmp / "unpacked", **safe)  # type: ignore[arg-type]
    source = next((tmp / "unpacked").iterdir())
    run(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-q", "-w", tmp / "wheels", source, cwd=tmp)
    wheel = next((tmp / "wheels").glob("ldc-*.whl"))
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    site = run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip()
    (Path(site) / "ldc_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield Release(sdist, source, wheel, venv)


def test_the_sdist_carries_the_c_sources_headers_and_type_markers(release: Release) -> None:
    with tarfile.open(release.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {*C_FILES, "ldc/py.typed", "ldc/_fastbook.pyi", "ldc/shm/_seqlock.pyi", "ldc/io/_frames.pyi", "ldc/fanout/_relay.pyi",
                "setup.py", "pyproject.toml", "MANIFEST.in", "docs/LAYOUT.md", "readers/c/ldc.h"}  # fmt: skip
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.endswith(".so") or "__pycache__" in n]
    assert not list((release.source / "ldc").rglob("*.so"))  # the unpacked sdist is an unbuilt tree


def test_the_wheel_holds_the_compiled_extensions_and_type_markers(release: Release) -> None:
    with zipfile.ZipFile(release.wheel) as whl:
        names = set(whl.namelist())
    for ext in EXTENSIONS:
        assert [n for n in names if n.startswith(f"{ext}.") and n.endswith(".so")], f"{ext} not compiled into the wheel"
        assert f"{ext}.pyi" in names
    assert "ldc/py.typed" in names and "ldc/shm/ldc_seqlock_api.h" in names
    assert not [n for n in names if n.endswith(".c")]


def test_the_installed_wheel_gives_a_working_ldc(release: Release, tmp_path: Path) -> None:
    version = run(release.venv / "bin" / "ldc", "--version", cwd=tmp_path)
    assert version.stdout.startswith("ldc ")
    modules = ("ldc", "ldc._fastbook", "ldc.shm._seqlock", "ldc.io._frames")
    probe = "import importlib, sys; print('\\n'.join(importlib.import_module(m).__file__ for m in sys.argv[1:]))"
    files = run(release.python, "-c", probe, *modules, cwd=tmp_path).stdout.split()
    site = str(release.venv / "lib")
    assert len(files) == len(modules) and all(f.startswith(site) for f in files), files
    assert (Path(files[0]).parent / "py.typed").is_file()


def test_the_demo_runs_from_inside_an_unbuilt_source_tree(release: Release) -> None:
    """Issue 14 item 11: with the working directory in a source tree, `python -m ldc.cli` children imported
    that tree (no compiled extension in it) instead of the installed package, and no feeder ever started."""
    prefix = unique_group("wheel")
    venues = venue_demos()  # every venue the demo shows: a group and its markets each
    groups, markets = tuple(f"{prefix}-{v.suffix}" for v in venues), sum(len(v.symbols) for v in venues)
    try:
        demo = subprocess.run([str(release.venv / "bin" / "ldc"), "demo", "--duration", "12", "--plain", "--group-prefix", prefix],
                              cwd=release.source, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)  # fmt: skip
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
        assert " 0 mismatches" in demo.stdout and f"{markets}/{markets} markets synced" in demo.stdout
        assert not [g for g in groups if os.path.exists(segment_path(g))]
    finally:
        for group in groups:
            unlink_group(group)
