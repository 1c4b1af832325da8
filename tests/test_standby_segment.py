"""The hot standby's segment side (ldc.standby, SegmentWriter(standby=True), LAYOUT.md section 12 "Hot
standby"): the standby's file has no name and no magic until the writer goes, the takeover publishes its
slots as they are (a market out of sync stays flagged), a clean stop hands over too, a new writer and
``ldc clean`` leave a live standby's file alone, and another account can neither trigger nor fake a takeover.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feeder_helpers import wait_until
from ldc.shm.files import ofd_holder
from ldc.shm.layout import HEADER, State, Status, lock_path, segment_path, temp_paths
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from ldc.lifecycle import status_line
from ldc.standby import Standby
from ldc.sync import SyncState
from ldc.tools.clean import clean_group
from ldc.tools.status import as_text, collect
from shm_helpers import book, group_fixture

PROC = str(Path(__file__).with_name("shm_proc.py"))
DEPTH = 20  # tests/shm_proc.py TORTURE_DEPTH: the held writer's geometry
SYMBOL = "BTCUSDT"
OTHER = "ETHUSDT"
TAKEOVER_WAIT_S = 10.0  # generous (a loaded host); test_standby.py reports the real figures
HOSTILE = "nobody"


@pytest.fixture
def group() -> Iterator[str]:
    for name in group_fixture():  # its segment and lock file removed after the test
        yield name
        cleanup_builds(name)


def hold_writer(group: str) -> subprocess.Popen[str]:
    """A writer in its own process (tests/shm_proc.py hold): SYMBOL published at update id 10."""
    proc = subprocess.Popen([sys.executable, PROC, "hold", group, SYMBOL], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def standby_writer(group: str, *markets: str) -> SegmentWriter:
    writer = SegmentWriter(group, depth=DEPTH, capacity=4, markets=markets or (SYMBOL,), standby=True)
    assert not writer.active
    return writer


def publish(writer: SegmentWriter, symbol: str, update_id: int, status: int = Status.SYNCED, mid: float = 200.0) -> None:
    bids, asks = book(DEPTH, mid=mid)
    writer.publish(writer.slot(symbol), update_id=update_id, event_time_ms=1, recv_time_ns=1, status=status,
                   bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip


def build_file(writer: SegmentWriter) -> str:
    paths = [p for p in temp_paths(writer.group) if _pid_of(p) == os.getpid()]
    assert len(paths) == 1, paths
    return paths[0]


def _pid_of(path: str) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(os.pread(f.fileno(), 4, HEADER.offset("writer_pid")), "little")


def cleanup_builds(group: str) -> None:
    for path in temp_paths(group):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def test_the_standby_file_is_unnamed_until_the_writer_dies_then_its_books_are_read_in_sync(group: str) -> None:
    active = hold_writer(group)
    standby = standby_writer(group)
    try:
        publish(standby, SYMBOL, 777)
        path = build_file(standby)
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600  # no reader can open it
        with open(path, "rb") as f:
            assert int.from_bytes(os.pread(f.fileno(), 8, HEADER.offset("magic")), "little") == 0  # not a segment yet
        waiter = Standby(standby, on_failure=lambda: None)
        waiter.start()
        with Reader(group) as reader:
            assert reader.snapshot(SYMBOL).update_id == 10 and reader.info().writer_pid == active.pid
            time.sleep(0.05)
            assert not standby.active  # the writer lives: nothing happens
            active.send_signal(signal.SIGKILL)
            active.wait()
            wait_until(lambda: standby.active, timeout_s=TAKEOVER_WAIT_S, what="the takeover")
            snap = reader.snapshot(SYMBOL)  # the reader follows the name by itself
            assert snap.update_id == 777 and snap.in_sync and reader.info().writer_pid == os.getpid()
            assert reader.info().takeovers == 1 and waiter.takeover_ms is not None
        assert not os.path.exists(path) and os.stat(segment_path(group)).st_mode & 0o777 == 0o640
    finally:
        active.kill()
        standby.close()


def test_a_market_the_standby_has_out_of_sync_is_taken_over_flagged_never_in_sync(group: str) -> None:
    active = hold_writer(group)
    standby = standby_writer(group, SYMBOL, OTHER)
    try:
        publish(standby, SYMBOL, 5)
        publish(standby, OTHER, 6, status=Status.RESYNCING)
        standby.set_status(standby.slot(OTHER), Status.RESYNCING, "gap: resyncing")
        Standby(standby, on_failure=lambda: None).start()
        active.send_signal(signal.SIGKILL)
        active.wait()
        wait_until(lambda: standby.active, timeout_s=TAKEOVER_WAIT_S, what="the takeover")
        with Reader(group) as reader:
            assert reader.status(SYMBOL).in_sync
            other = reader.status(OTHER)
            assert not other.in_sync and other.status & Status.RESYNCING and other.message == "gap: resyncing"
    finally:
        active.kill()
        standby.close()


def test_a_clean_stop_of_the_writer_hands_the_group_to_the_standby(group: str) -> None:
    """The writer removes the lock file at its stop while holding it: the standby, woken on the removed file,
    locks the file at the name instead and takes over."""
    active = SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL])
    standby = standby_writer(group)
    try:
        publish(standby, SYMBOL, 42)
        Standby(standby, on_failure=lambda: None).start()
        active.close()
        wait_until(lambda: standby.active, timeout_s=TAKEOVER_WAIT_S, what="the takeover")
        with Reader(group) as reader:
            assert reader.snapshot(SYMBOL).update_id == 42
        assert os.path.exists(lock_path(group))
    finally:
        active.close()
        standby.close()


def test_a_new_writer_and_ldc_clean_leave_a_live_standbys_file_alone(group: str) -> None:
    first = SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL])
    standby = standby_writer(group)  # no waiting thread: it stays a standby
    try:
        path = build_file(standby)
        first.close()
        SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL]).close()  # removes dead builds only
        assert os.path.exists(path)
        outcomes = {o.path: o for o in clean_group(group, dry_run=False)}
        assert outcomes[path].action == "kept" and "hot standby" in outcomes[path].why
        assert outcomes[segment_path(group)].action == "removed"
        assert os.path.exists(path)
    finally:
        first.close()
        standby.close()
    assert not os.path.exists(path)  # a standby's stop removes its unnamed file
    cleanup_builds(group)


def test_a_closing_standby_refuses_the_lock_it_is_granted(group: str) -> None:
    active = SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL])
    standby = standby_writer(group)
    standby.close()
    active.close()  # the group is free: a lock granted now must not name the closed standby's file
    fd = os.open(lock_path(group), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert standby.take_over(fd) is False and not standby.active
        with Reader(group) as reader:
            assert reader.info().writer_pid == os.getpid() and reader.info().state == State.STOPPED  # the old file
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as a second user")
def test_another_account_can_neither_trigger_nor_fake_a_takeover(group: str) -> None:
    """nobody tries every way in: lock or remove the ownership lock, open or replace the standby's file,
    rename a file of its own over the segment, kill the writer. Each is refused, and the roles stay."""
    active = hold_writer(group)
    standby = standby_writer(group)
    try:
        publish(standby, SYMBOL, 99)
        Standby(standby, on_failure=lambda: None).start()
        path = build_file(standby)
        user = pwd.getpwnam(HOSTILE)
        probe = f"""
import errno, os, signal
def attempt(what, f):
    try:
        f()
        print(what, "DONE")
    except OSError as exc:
        print(what, errno.errorcode[exc.errno])
attempt("open lock", lambda: os.open({lock_path(group)!r}, os.O_RDWR))
attempt("unlink lock", lambda: os.unlink({lock_path(group)!r}))
attempt("open standby", lambda: os.open({path!r}, os.O_RDONLY))
attempt("unlink standby", lambda: os.unlink({path!r}))
fake = "/dev/shm/ldc-{group}.new-0000000000000000"
attempt("make fake", lambda: os.close(os.open(fake, os.O_CREAT | os.O_WRONLY, 0o644)))
attempt("rename fake", lambda: os.rename(fake, {segment_path(group)!r}))
attempt("kill writer", lambda: os.kill({active.pid}, signal.SIGKILL))
attempt("kill standby", lambda: os.kill({os.getpid()}, signal.SIGKILL))
os.unlink(fake)
"""
        done = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                               sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)  # fmt: skip
        results = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
        assert results == {"open lock": "EACCES", "unlink lock": "EPERM", "open standby": "EACCES", "unlink standby": "EPERM",
                           "make fake": "DONE", "rename fake": "EPERM", "kill writer": "EPERM", "kill standby": "EPERM"}, done  # fmt: skip
        time.sleep(0.1)
        assert active.poll() is None and not standby.active
        with Reader(group) as reader:
            assert reader.info().writer_pid == active.pid and reader.snapshot(SYMBOL).update_id == 10
        with open(path, "rb") as f:
            assert ofd_holder(f.fileno())  # still the standby's, still locked
    finally:
        active.kill()
        active.wait()
        wait_until(lambda: standby.active, timeout_s=TAKEOVER_WAIT_S, what="the takeover after the real death")
        standby.close()
    with Reader(group) as reader:
        assert reader.info().state == State.STOPPED


def test_ldc_status_names_the_writer_and_each_attached_standby(group: str) -> None:
    active = hold_writer(group)
    try:
        (report,) = collect([group], 0)
        assert report.info["writer_pid"] == active.pid and report.info["standbys"] == []
        standby = standby_writer(group)
        try:
            (report,) = collect([group], 0)
            assert report.info["writer_pid"] == active.pid and report.info["standbys"] == [os.getpid()]
            assert f"writer alive (running, pid {active.pid}, " in as_text([report])
            assert f", standby pid {os.getpid()})" in as_text([report])
        finally:
            standby.close()
        (report,) = collect([group], 0)
        assert report.info["standbys"] == []
    finally:
        active.kill()
        active.wait()


def test_the_status_line_systemd_shows_says_standby_for_a_standby(group: str) -> None:
    class M:
        def __init__(self, state: SyncState, error: str = "") -> None:
            self.sync, self.error = type("S", (), {"state": state})(), error

    markets = [M(SyncState.SYNCED), M(SyncState.BUFFERING), M(SyncState.WAITING_FOR_DIFF, "unknown symbol")]
    active = SegmentWriter(group, depth=DEPTH, capacity=4, markets=[SYMBOL])
    standby = standby_writer(group)
    try:
        assert status_line(active, markets) == "1/3 markets in sync, 1 failed"
        assert status_line(standby, markets) == "standby, 1/3 markets in sync, 1 failed"
    finally:
        standby.close()
        active.close()
