"""`ldc demo` (issue 8 "What to build" 5, issue 12 item 8): the README's first command runs the simulator with
every venue of ``demo.VENUE_DEMOS`` (Binance spot and USD-M, OKX, Bybit, ...), `ldc run` with a group per venue
and a reader, checks every snapshot it reads against that venue's truth in the simulator, exits 0 after
`--duration` or on Ctrl-C, and leaves no process and no segment behind.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feeder_helpers import processes, unique_group, wait_until
from ldc import demo
from shm_helpers import unlink_group
from ldc.shm.layout import segment_path

pytestmark = pytest.mark.timeout(90)

SUMMARY = re.compile(r"^(\d+)/(\d+) markets synced; (\d+)/(\d+) snapshots equal to the exchange's book at their update id; 0 mismatches$", re.M)


CHECKED = re.compile(r"checked against the exchange's truth at the same update id: (\d+)/\d+ equal")


SYNCED_ROW = re.compile(r"^\S+\s+\S+\s+\S+\s+synced\s", re.M)

VENUE_LINE = re.compile(r"^  (\S+)\s+(\S+)\s+(\d+)/(\d+) markets synced, (\d+)/(\d+) snapshots equal, (\d+) mismatches$", re.M)

VENUES = demo.venue_demos()
MARKETS = sum(len(v.symbols) for v in VENUES)


def groups_of(prefix: str) -> list[str]:
    return [f"{prefix}-{v.suffix}" for v in VENUES]


def test_the_demo_shows_binance_okx_and_bybit_each_in_its_own_group() -> None:
    assert {v.exchange for v in VENUES} >= {"binance.com", "binance.com-futures", "okx", "bybit-linear", "kraken"}
    assert len({v.suffix for v in VENUES}) == len(VENUES)


def assert_clean_summary(out: str, prefix: str) -> None:
    """Every venue: every market synced, snapshots checked, all equal; the totals agree; nothing left behind."""
    found = SUMMARY.search(out)
    assert found is not None, out[-2000:]
    synced, total, equal, checked = map(int, found.groups())
    assert (synced, total) == (MARKETS, MARKETS) and equal == checked and checked > 0
    per_venue = {m[2]: m for m in VENUE_LINE.finditer(out)}
    assert sorted(per_venue) == sorted(groups_of(prefix)), out[-2000:]
    for v in VENUES:
        line = per_venue[f"{prefix}-{v.suffix}"]
        assert line[1] == v.exchange
        v_synced, v_total, v_equal, v_checked, v_mismatches = map(int, line.groups()[2:])
        assert (v_synced, v_total) == (len(v.symbols), len(v.symbols)), line[0]
        assert v_checked > 0 and v_equal == v_checked and v_mismatches == 0, line[0]
    for group in groups_of(prefix):
        assert not os.path.exists(segment_path(group)), f"{group} left behind"


def test_demo_runs_for_its_duration_and_exits_0(tmp_path: object) -> None:
    prefix = unique_group("demo")
    with processes() as procs:
        procs.groups += groups_of(prefix)
        # six feeders, thirteen markets: long enough for all of them to sync on a loaded 2-core host
        proc = procs.ldc("demo", "--duration", "12", "--plain", "--group-prefix", prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:] + err[-2000:]
    last_block = out[out.rindex("ldc demo:"):]
    titles = [f"{prefix}-{v.suffix} {v.symbols[0]}, top {demo.LADDER_LEVELS}:" for v in VENUES]
    places = [last_block.find(title) for title in titles]  # every venue's book, side by side, in the table's order
    assert -1 not in places and places == sorted(places), last_block
    assert_clean_summary(out, prefix)


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    prefix = unique_group("demoi")
    with processes() as procs:
        procs.groups += groups_of(prefix)
        proc = procs.ldc("demo", "--duration", "0", "--plain", "--group-prefix", prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        seen, block = "", ""
        while True:  # until a status block shows every market of every venue synced and a snapshot checked
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"the demo never showed every market synced: {seen[-2000:]}"
            seen += line
            block = line if line.startswith("ldc demo:") else block + line
            checked = CHECKED.match(line)
            if checked and checked[1] != "0" and len(SYNCED_ROW.findall(block)) == MARKETS:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err[-2000:]
    assert_clean_summary(seen + out, prefix)


def test_closing_the_terminal_stops_everything_the_demo_started(tmp_path: Path) -> None:
    """The demo runs as the session leader of a pseudo-terminal; closing the terminal's master side hangs it
    up (the kernel sends SIGHUP, as when a terminal window is closed). Every process the demo started (their
    command lines name its temporary directory), its segments and its temporary directory must go."""
    prefix = unique_group("demohup")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with processes() as procs:
        procs.groups += groups_of(prefix)
        pid, master = pty.fork()
        if pid == 0:  # the child: the session leader of the new terminal
            try:
                os.execve(sys.executable, [sys.executable, "-m", "ldc.cli", "demo", "--duration", "0", "--plain",
                                           "--group-prefix", prefix], env)  # fmt: skip
            finally:
                os._exit(127)
        try:
            seen = _read_until(master, CHECKED_SOME, deadline=time.monotonic() + 60)
            started = _processes_naming(str(tmp_path))
            assert len(started) >= 1 + len(VENUES), f"expected the supervisor and a feeder per venue: {started}\n{seen[-2000:]}"
        finally:
            os.close(master)  # the terminal is gone
        try:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) in (0, 1), status  # ended by itself, not killed by SIGHUP
            wait_until(lambda: not _processes_naming(str(tmp_path)), what="every process the demo started to end")
        finally:
            for leftover, _ in _processes_naming(str(tmp_path)):  # a failed run leaves nothing behind either
                os.kill(leftover, signal.SIGKILL)
    for group in groups_of(prefix):
        assert not os.path.exists(segment_path(group)), f"{group} left behind"
    assert list(tmp_path.glob("ldc-demo-*")) == []


CHECKED_SOME = re.compile(r"checked against the exchange's truth at the same update id: [1-9]\d*/\d+ equal")


def _read_until(fd: int, pattern: re.Pattern[str], *, deadline: float) -> str:
    seen = ""
    while pattern.search(seen) is None:
        assert time.monotonic() < deadline, f"the demo never checked a snapshot: {seen[-2000:]}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536).decode(errors="replace")
            except OSError:  # EIO: the demo's side closed
                raise AssertionError(f"the demo ended early: {seen[-2000:]}") from None
    return seen


def _processes_naming(text: str) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().split(") ", 1)[1][0] == "Z"
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if text in cmdline and not zombie:
            found.append((int(entry), cmdline))
    return found


def test_an_invalid_group_prefix_is_a_one_line_error_naming_the_rule() -> None:
    proc = subprocess.run([sys.executable, "-m", "ldc.cli", "demo", "--group-prefix", "../x"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [
        "ldc demo: --group-prefix expected letters, digits, '_' and '-', starting with a letter or digit, so that "
        f"PREFIX-{'/-'.join(v.suffix for v in VENUES)} match [A-Za-z0-9][A-Za-z0-9_-]{{0,47}} (up to {1 + max(len(v.suffix) for v in VENUES)} characters are added), "
        "found '../x'"
    ]


def test_a_ctrl_c_handled_during_a_screen_write_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands while the demo writes a status block (what a user watching it does): the handler's stop
    must survive the write. `stop |= not _show(...)` read `stop` before the write and stored it back after,
    undoing the handler: the demo ran on (seen under load in test_demo_stops_cleanly_on_ctrl_c)."""
    prefix = unique_group("demow")
    blocks: list[str] = []
    real_show = demo._show

    def show_and_press_ctrl_c(text: str) -> bool:
        if text.startswith("ldc demo:"):
            assert not blocks, "a status block was drawn after Ctrl-C: the demo went on"
            blocks.append(text)
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode, inside this write
        return real_show(text)

    monkeypatch.setattr(demo, "_show", show_and_press_ctrl_c)
    handlers = {signum: signal.getsignal(signum) for signum in demo.STOP_SIGNALS}
    try:
        demo.run(0, prefix, interactive=False)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for group in groups_of(prefix):
            unlink_group(group)
    assert len(blocks) == 1
