"""Multiprocess seqlock torture (DESIGN.md "Tests and benchmarks"): one writer publishing
checksummed payloads as fast as it can, several reader processes verifying every copy
(tests/shm_proc.py payload_errors), one of them killed mid-run, and a negative control that copies
without the seqlock and must see torn payloads, so the check is proven able to fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shm_helpers import group_fixture

PROC = str(Path(__file__).with_name("shm_proc.py"))
WRITER_MAX_S = 60.0  # the test stops the writer with SIGTERM once the readers are done
READER_S = 2.5
MIN_READS = 1_000  # far below what a loaded 2-core machine does in READER_S; guards a dead loop


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, PROC, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def result(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    parsed: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return parsed


def test_validated_readers_never_see_a_torn_payload_and_unvalidated_copies_do(group: str) -> None:
    writer = spawn("torture-writer", group, str(WRITER_MAX_S))
    procs = [writer]
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        readers = [spawn("torture-reader", group, str(READER_S), "validated") for _ in range(2)]
        control = spawn("torture-reader", group, str(READER_S), "raw")
        victim = spawn("torture-reader", group, str(READER_S), "validated")
        procs += [*readers, control, victim]
        time.sleep(READER_S / 2)
        victim.send_signal(signal.SIGKILL)  # a reader dying mid-read must not disturb anyone
        victim.wait(timeout=30)

        checked = [result(p) for p in readers]
        negative = result(control)
        writer.send_signal(signal.SIGTERM)
        published = result(writer)
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
            if p.stdout:
                p.stdout.close()
    for counts in checked:
        assert counts["torn"] == 0, counts
        assert counts["reads"] >= MIN_READS, counts
    assert negative["torn"] > 0, f"the negative control saw no torn copy in {negative['reads']} reads"
    assert published["publishes"] >= MIN_READS
