"""An outsider's Java 17 reader written from docs/LAYOUT.md alone (tests/outsider/OutsiderReader.java),
run against real feeders (`ldc sim` + `ldc feed`): kill -9 -> restart at the same and at another depth,
SIGSTOP past the published `stale_after_ms`, books compared with the simulator's truth, and the
document's refusals (group name, symbolic link, a file others may write, another owner). The torture's
negative control (the reader skipping section 10's probe) must be caught. Skipped without `javac`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None, reason="javac/java not installed")


def _torture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("outsider_torture", HERE / "outsider" / "torture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


torture: Any = _torture()


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out: Path = tmp_path_factory.mktemp("outsider")
    torture.compile_reader(out)
    return out


def _group(tag: str) -> str:
    return f"out{tag}{os.getpid()}"


@pytest.fixture
def shm_names() -> Iterator[list[str]]:
    """Groups a test used: their /dev/shm files are removed afterwards."""
    groups: list[str] = []
    yield groups
    for g in groups:
        for suffix in ("", ".lock", ".new"):
            Path(f"/dev/shm/ldc-{g}{suffix}").unlink(missing_ok=True)


def _book(classes: Path, group: str, *extra: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(["java", "-cp", str(classes), "OutsiderReader", "book", group, "BTCUSDT", *extra],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout.splitlines()[-1])


def test_kill_restart_and_sigstop_no_dead_writer_data_accepted(classes: Path, shm_names: list[str]) -> None:
    group = _group("t")
    shm_names.append(group)
    books: list[tuple[int, dict[str, object]]] = []

    def live(feeder: subprocess.Popen[bytes], truth: torture.Truth) -> None:
        rc, out = _book(classes, group)   # one `book` run while the spinning reader reads
        assert rc == 0, out
        assert out["version"] == "2.2" and out["group"] == group and out["writer_pid"] == feeder.pid
        truth.check(out)
        books.append(_book(classes, group, "--owner", str(os.getuid() + 1)))

    result = torture.run(cycles=4, stop=True, classes=classes, group=group, on_live=live)
    assert result["cycles"] == 4
    assert result["dead_reads"] == 0, result
    assert result["frozen_reads"] == 0, result
    assert result["stats"]["ok"] > 0 and result["stats"]["reattaches"] >= 4, result
    truth = result["truth"]
    assert truth["checked"] > 0 and truth["matched"] == truth["checked"], truth
    [(rc, out)] = books
    assert (rc, out["kind"]) == (2, "refused") and "not to a feeders' account" in str(out["message"])


def test_negative_control_a_reader_without_the_probe_is_caught(classes: Path, shm_names: list[str]) -> None:
    group = _group("c")
    shm_names.append(group)
    result = torture.run(cycles=1, stop=False, classes=classes, group=group, control=True)
    assert result["dead_reads"] > 0, result


def test_refusals_named_as_the_document_says(classes: Path, shm_names: list[str]) -> None:
    rc, out = _book(classes, "../etc")
    assert (rc, out["kind"]) == (2, "bad_group")
    group = _group("r")
    shm_names.append(group)
    path = Path(f"/dev/shm/ldc-{group}")
    rc, out = _book(classes, group)
    assert (rc, out["kind"]) == (2, "no_segment")
    path.symlink_to("/etc/passwd")
    rc, out = _book(classes, group)
    assert (rc, out["kind"]) == (2, "refused") and "cannot be opened" in str(out["message"])
    path.unlink()
    path.write_bytes(b"LDCDEPTH" + bytes(1000))
    path.chmod(0o666)
    rc, out = _book(classes, group)
    assert (rc, out["kind"]) == (2, "refused") and "mode 0666" in str(out["message"])
