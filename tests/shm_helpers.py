"""Helpers for the shared-memory tests: unique group names, cleanup, deterministic books."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ldc.shm.layout import lock_path, segment_path, temp_path, waiters_path


ROOT = Path(__file__).resolve().parents[1]
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
CARGO_BUILD_TIMEOUT_S = 300


def build_c_tool(out_dir: Path) -> Path:
    """tests/shm_reader_tool.c on readers/c/ldc.h (the C side of the contract and takeover tests)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    out = out_dir / "shm_reader_tool"
    subprocess.run(["cc", *CFLAGS, f"-I{ROOT / 'readers' / 'c'}", "-o", str(out), str(Path(__file__).with_name("shm_reader_tool.c"))],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return out


def build_rust_reader() -> Path:
    """readers/rust's ldc-read, built offline (skips the test without cargo)."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        pytest.skip("cargo is not installed: the Rust reader cannot be built")
    rust_dir = ROOT / "readers" / "rust"
    build = subprocess.run([cargo, "build", "--release", "--offline", "--quiet"], cwd=rust_dir,
                           capture_output=True, text=True, timeout=CARGO_BUILD_TIMEOUT_S)  # fmt: skip
    assert build.returncode == 0, build.stderr
    return rust_dir / "target" / "release" / "ldc-read"


@pytest.fixture(scope="module")
def c_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_c_tool(tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def rust_read() -> Path:
    return build_rust_reader()


def unique_group(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:10]}"


def unlink_group(group: str) -> None:
    """Remove every file a group can have in /dev/shm (the segment, its ownership lock, a half-built
    segment, a layout 1.x waiters file)."""
    for path in (segment_path(group), lock_path(group), temp_path(group), waiters_path(group)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def group_fixture() -> Iterator[str]:
    group = unique_group()
    try:
        yield group
    finally:
        unlink_group(group)


def book(depth: int, *, mid: float = 100.0, tick: float = 0.5, qty: float = 1.0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A full (depth, 2) bids/asks pair around ``mid``, best first, quantities qty, qty+1, ..."""
    steps = np.arange(depth, dtype=np.float64)
    bids = np.column_stack([mid - tick * (steps + 1), qty + steps])
    asks = np.column_stack([mid + tick * (steps + 1), qty + steps])
    return np.ascontiguousarray(bids), np.ascontiguousarray(asks)
