"""docs/LAYOUT.md sections 10 and 15 with a Java 17 reader that uses only the standard library: its
FileChannel.tryLock (an fcntl lock) sees the writer's OFD lock, its VarHandle loads see the robust
word, so a live writer is ALIVE and a killed one DEAD at once; and the shared lock such a probe takes,
held forever, does not stop the next writer (issue 13 items 2 and 6)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shm_helpers import group_fixture

from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

PROBE = Path(__file__).with_name("java") / "LdcProbe.java"
PROC = str(Path(__file__).with_name("shm_proc.py"))
RUN_TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="no Java compiler")
JAVA = ["java", "-XX:TieredStopAtLevel=1"]  # a short-lived probe: the quick JIT tier only


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("java")
    subprocess.run(["javac", "-d", str(out), str(PROBE)], check=True, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return out


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def java(classes: Path, *args: str) -> str:
    out = subprocess.run([*JAVA, "-cp", str(classes), "LdcProbe", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def spawn_writer(group: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, PROC, "hold", group, "BTCUSDT"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_java_standard_lock_api_tells_a_live_writer_from_a_killed_one(group: str, classes: Path) -> None:
    writer = spawn_writer(group)
    try:
        assert java(classes, group) == "ALIVE"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=RUN_TIMEOUT_S)
        assert java(classes, group) == "DEAD"
        with SegmentWriter(group, depth=20, capacity=4, markets=["BTCUSDT"]):
            assert java(classes, group) == "ALIVE"  # the successor's file
        assert java(classes, group) == "STOPPED"
    finally:
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)


def test_a_java_probe_lock_held_forever_does_not_block_the_next_writer(group: str, classes: Path) -> None:
    writer = spawn_writer(group)
    holder = None
    try:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=RUN_TIMEOUT_S)
        holder = subprocess.Popen([*JAVA, "-cp", str(classes), "LdcProbe", group, "hold"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with SegmentWriter(group, depth=20, capacity=4, markets=["BTCUSDT"]) as w, Reader(group) as r:
            assert w.took_over and r.writer_alive()
    finally:
        for proc in (writer, holder):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT_S)
