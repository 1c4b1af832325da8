"""`ldc demo` (issue 8 "What to build" 5): the README's first command runs the simulator, `ldc run` and a
reader, checks every snapshot it reads against the simulator's truth, exits 0 after `--duration` or on
Ctrl-C, and leaves no process and no segment behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from feeder_helpers import processes, unique_group
from ldc.shm.layout import segment_path

pytestmark = pytest.mark.timeout(90)

SUMMARY = re.compile(r"^(\d+)/(\d+) markets synced; (\d+)/(\d+) snapshots equal to the exchange's book at their update id; 0 mismatches$", re.M)


CHECKED = re.compile(r"checked against the exchange's truth at the same update id: (\d+)/\d+ equal")


SYNCED_ROW = re.compile(r"^\S+\s+\S+\s+synced\s", re.M)


def assert_clean_summary(out: str, prefix: str) -> None:
    found = SUMMARY.search(out)
    assert found is not None, out[-2000:]
    synced, total, equal, checked = map(int, found.groups())
    assert (synced, total) == (7, 7) and equal == checked and checked > 0
    for group in (f"{prefix}-spot", f"{prefix}-usdm"):
        assert not os.path.exists(segment_path(group)), f"{group} left behind"


def test_demo_runs_for_its_duration_and_exits_0(tmp_path: object) -> None:
    prefix = unique_group("demo")
    with processes() as procs:
        procs.groups += [f"{prefix}-spot", f"{prefix}-usdm"]
        proc = procs.ldc("demo", "--duration", "6", "--plain", "--group-prefix", prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=80)
    assert proc.returncode == 0, err[-2000:]
    assert f"{prefix}-spot BTCUSDT, top 10:" in out
    assert_clean_summary(out, prefix)


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    prefix = unique_group("demoi")
    with processes() as procs:
        procs.groups += [f"{prefix}-spot", f"{prefix}-usdm"]
        proc = procs.ldc("demo", "--duration", "0", "--plain", "--group-prefix", prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        seen, block = "", ""
        while True:  # until a status block shows all 7 markets synced and a snapshot checked
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"the demo never showed every market synced: {seen[-2000:]}"
            seen += line
            block = line if line.startswith("ldc demo:") else block + line
            checked = CHECKED.match(line)
            if checked and checked[1] != "0" and len(SYNCED_ROW.findall(block)) == 7:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err[-2000:]
    assert_clean_summary(seen + out, prefix)
