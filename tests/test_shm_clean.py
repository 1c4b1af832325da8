"""``ldc clean``: the /dev/shm files of groups without a live writer go, a live group's stay, another
user's files are named and left. Every test names its own groups (/dev/shm is shared with others)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shm_helpers import group_fixture

from ldc.shm.layout import lock_path, segment_path, temp_path, waiters_path
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from ldc.tools.clean import clean_ledgers, main

PROC = str(Path(__file__).with_name("shm_proc.py"))
DEPTH = 5


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def files(group: str) -> list[str]:
    return [p for p in (segment_path(group), lock_path(group), temp_path(group), waiters_path(group)) if os.path.lexists(p)]


def test_a_stopped_groups_files_are_removed_and_the_group_starts_again(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=2, markets=["BTCUSDT"]).close()
    Path(waiters_path(group)).touch()  # a layout 1.x leftover
    Path(temp_path(group)).touch()  # a writer that died while building
    assert files(group) == [segment_path(group), temp_path(group), waiters_path(group)]  # a clean stop drops its lock file
    assert main(["--group", group, "--dry-run"]) == 0
    assert len(files(group)) == 3 and capsys.readouterr().out.count("would remove") == 3  # a dry run creates nothing
    assert main(["--group", group]) == 0
    out = capsys.readouterr().out
    assert files(group) == []
    for kind in ("segment of a stopped or dead writer", "ownership lock", "half-built segment", "layout 1.x waiters file"):
        assert kind in out
    with SegmentWriter(group, depth=DEPTH, capacity=2, markets=["BTCUSDT"]) as w, Reader(group) as r:
        assert not w.took_over and r.markets() == ["BTCUSDT"]


def test_a_live_groups_files_stay(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2):
        assert main(["--group", group]) == 0
        assert files(group) == [segment_path(group), lock_path(group)]
        assert "its writer is running (the ownership lock is held)" in capsys.readouterr().out


def test_a_killed_writers_files_are_removed(group: str) -> None:
    proc = subprocess.Popen([sys.executable, PROC, "hold", group, "BTCUSDT"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert main(["--group", group]) == 0 and len(files(group)) == 2  # alive: kept
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert main(["--group", group]) == 0 and files(group) == []
    finally:
        proc.kill()
        proc.wait(timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_another_users_file_is_named_and_left(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path(segment_path(group)).write_bytes(b"planted")
    os.chown(segment_path(group), 65534, 65534)
    os.chmod(segment_path(group), 0o666)
    assert main(["--group", group]) == 0
    assert os.path.exists(segment_path(group))
    assert "not ours" in (out := capsys.readouterr().out) and "mode 0666: remove it by hand" in out


def test_an_unused_ledger_is_removed_and_one_a_feeder_holds_open_stays(tmp_path: Path) -> None:
    unused, held = tmp_path / "ldc-governor-a", tmp_path / "ldc-governor-b"
    unused.write_bytes(bytes(1024))
    held.write_bytes(bytes(1024))
    with open(held, "rb"):
        outcomes = {Path(o.path).name: o.action for o in clean_ledgers(dry_run=False, shm_dir=str(tmp_path))}
    assert outcomes == {"ldc-governor-a": "removed", "ldc-governor-b": "kept"}
    assert not unused.exists() and held.exists()


def test_a_bad_group_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--group", "../etc"]) == 2
    assert "group name must match" in capsys.readouterr().err
