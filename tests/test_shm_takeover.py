"""Issue 13's torture test: a spinning reader in each language (Python ldc.shm.reader, C readers/c/ldc.h,
Rust readers/rust) across >= 100 kill -9 -> restart cycles of the writer (mostly the same geometry,
every tenth restart another depth; every restart replaces the file), counting reads accepted as live and in sync whose data is a writer that
had already been reaped when the read started. It must be 0. The negative control runs the same
readers against successors that look alive on their predecessor's file before anything marks its
data dead (what a 1.x in-place takeover did): they must count such reads, so the test can fail.

Writers are forked by a pre-imported zygote (tests/shm_proc.py zygote), so a cycle costs no
interpreter start. Every writer of cycle k publishes update_id = k * 10^9 + n; a reader reports, per
cycle, how many reads of that cycle's data it accepted and when (CLOCK_MONOTONIC) the last 256 of
them started. LDC_TAKEOVER_CYCLES=1000 runs a longer variant by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from shm_helpers import c_tool, group_fixture, rust_read  # c_tool, rust_read: module fixtures

from ldc.shm.writer import SegmentWriter

PROC = str(Path(__file__).with_name("shm_proc.py"))
SYMBOL = "TAKEOVERUSDT"
DEPTH = 20  # tests/shm_proc.py TORTURE_DEPTH
OTHER_DEPTH = 21  # every OTHER_EVERY-th writer restarts at this depth: readers follow a new geometry too
OTHER_EVERY = 10
CYCLES = int(os.environ.get("LDC_TAKEOVER_CYCLES", "100"))
CONTROL_CYCLES = 8
HOLD_S = 0.01  # each writer publishes this long before it is killed
SPIN_MAX_MS = 600_000  # readers stop when the last writer stops cleanly; this only bounds a hang
LINE_TIMEOUT_S = 60
MIN_CYCLES_SEEN = 4  # each reader must have accepted the data of several writers: it followed them
LANGUAGES = ("python", "c", "rust", "python_attaching", "c_attaching")


@dataclass(frozen=True)
class Run:
    reaped: dict[int, int]  # cycle -> CLOCK_MONOTONIC ns after its writer was reaped
    readers: dict[str, dict[str, object]]  # language -> the spinner's JSON


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def python_proc(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, PROC, *args], stdin=stdin, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip


def expect(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"{prefix!r} expected, the process ended (rc {proc.poll()})"
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no {prefix!r} within {LINE_TIMEOUT_S} s")


def command(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def run_cycles(group: str, cycles: int, c_tool: Path, rust_read: Path, *, legacy: bool) -> Run:
    zygote = python_proc("zygote", group, SYMBOL, stdin=subprocess.PIPE)
    spinners: dict[str, subprocess.Popen[str]] = {}
    reaped: dict[int, int] = {}
    try:
        command(zygote, f"start 0 {DEPTH}")
        expect(zygote, "ready 0")
        spin = [group, SYMBOL, str(SPIN_MAX_MS)]
        spinners = {
            "python": python_proc("spin", *spin),
            "c": subprocess.Popen([str(c_tool), "spin", *spin], stdout=subprocess.PIPE, text=True),
            "rust": subprocess.Popen([str(rust_read), "spin", *spin], stdout=subprocess.PIPE, text=True),
            # readers that attach afresh for every read, so some attach in the middle of a takeover
            "python_attaching": python_proc("spin", *spin, "--attach-each"),
            "c_attaching": subprocess.Popen([str(c_tool), "spin", *spin, "--attach-each"], stdout=subprocess.PIPE, text=True),
        }
        time.sleep(0.5)  # the Python reader imports numpy first
        for cycle in range(cycles):
            time.sleep(HOLD_S)
            command(zygote, "kill")
            words = expect(zygote, f"reaped {cycle} ").split()
            reaped[cycle] = int(words[2])
            if cycle + 1 < cycles:
                depth = OTHER_DEPTH if (cycle + 1) % OTHER_EVERY == 0 else DEPTH
                command(zygote, f"start {cycle + 1} {depth}" + (" legacy" if legacy else ""))
                expect(zygote, f"ready {cycle + 1}")
        command(zygote, "quit")
        zygote.wait(timeout=LINE_TIMEOUT_S)
        SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL]).close()  # stopped: the spinners finish
        readers = {}
        for name, proc in spinners.items():
            out, _ = proc.communicate(timeout=LINE_TIMEOUT_S)
            assert proc.returncode == 0, (name, out)
            readers[name] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in (zygote, *spinners.values()):
            proc.kill()
            proc.wait(timeout=LINE_TIMEOUT_S)
    return Run(reaped, readers)


def dead_reads(run: Run, language: str) -> int:
    """Reads accepted live and in sync whose data is a writer reaped before the read started."""
    cycles: dict[str, dict[str, list[int]]] = run.readers[language]["cycles"]  # type: ignore[assignment]
    return sum(sum(t0 > run.reaped[int(cycle)] for t0 in seen["tail"]) for cycle, seen in cycles.items())


def test_no_reader_accepts_a_dead_writers_book_across_kill_restart_cycles(group: str, c_tool: Path, rust_read: Path) -> None:
    run = run_cycles(group, CYCLES, c_tool, rust_read, legacy=False)
    summary = {lang: (r["reads"], r["accepted"], len(r["cycles"])) for lang, r in run.readers.items()}  # type: ignore[arg-type]
    for language in LANGUAGES:
        assert dead_reads(run, language) == 0, (language, summary)
        assert len(run.readers[language]["cycles"]) >= MIN_CYCLES_SEEN, (language, summary)  # type: ignore[arg-type]


def test_negative_control_the_same_count_catches_a_successor_that_looks_alive_on_the_old_file(
    group: str, c_tool: Path, rust_read: Path
) -> None:
    run = run_cycles(group, CONTROL_CYCLES, c_tool, rust_read, legacy=True)
    caught = {language: dead_reads(run, language) for language in LANGUAGES}
    assert all(count > 0 for count in caught.values()), caught
