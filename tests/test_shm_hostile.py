"""Issue 14 items 1-4 with a real second local account (nobody, through setpriv): a user who is not the
feeder can neither feed readers, nor kill the feeder or its readers, nor fake a ban, nor keep a group
from starting without being named. Skipped unless the tests run as root (setpriv needs it)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shm_helpers import book, group_fixture

from ldc.errors import SegmentError
from ldc.io.governor import SEGMENT_PREFIX, RateGovernor, unlink_governor
from ldc.shm.layout import Status, lock_path, segment_path, temp_path, waiters_path
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

PROC = str(Path(__file__).with_name("shm_proc.py"))
DEPTH = 5
RUN_TIMEOUT_S = 60
HOSTILE = "nobody"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as a second user"
)


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def as_user(code: str, *, gid: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the hostile user: its own group, or ``gid`` (a member of the readers' group)."""
    user = pwd.getpwnam(HOSTILE)
    group_arg = str(user.pw_gid if gid is None else gid)
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={group_arg}", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip


def hostile_uid() -> int:
    return pwd.getpwnam(HOSTILE).pw_uid


def publish(w: SegmentWriter, symbol: str, update_id: int) -> None:
    bids, asks = book(DEPTH)
    w.publish(w.add_market(symbol), update_id=update_id, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
              bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip


def test_a_segment_another_user_created_is_refused_by_the_writer_and_every_reader(group: str) -> None:
    """Item 1: nobody copies a real, compatible, stopped segment to the group's name, mode 0666."""
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        publish(w, "BTCUSDT", 1)
    data = Path(segment_path(group)).read_bytes()
    os.unlink(segment_path(group))
    assert not os.path.exists(lock_path(group))  # a clean stop leaves only the segment
    planted = as_user(f"import os\nfd = os.open({segment_path(group)!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\n"
                      f"os.fchmod(fd, 0o666)\nos.write(fd, {data!r})\n")  # fmt: skip
    assert planted.returncode == 0, planted.stderr
    with pytest.raises(SegmentError, match=rf"^{segment_path(group)} is a regular file of {HOSTILE} \(uid {hostile_uid()}\) "
                                           r"with mode 0666; ldc adopts only a file of its own user root \(uid 0\) with mode 0640"):
        SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"])
    st = os.stat(segment_path(group))
    assert (st.st_uid, st.st_mode & 0o777) == (hostile_uid(), 0o666)  # left as it was: not adopted, not chmod-ed
    with pytest.raises(SegmentError, match=r"has mode 0666 .*: a segment must be a regular file writable by its owner alone"):
        Reader(group)


def test_a_link_another_user_planted_is_never_followed(group: str, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    planted = as_user(f"import os\nos.symlink({str(target)!r}, {segment_path(group)!r})\n")
    assert planted.returncode == 0, planted.stderr
    with pytest.raises(SegmentError, match="is a symbolic link; ldc never follows one in /dev/shm"):
        SegmentWriter(group, depth=DEPTH, capacity=4)
    assert target.read_bytes() == b"precious"


def test_a_reader_group_member_can_read_but_write_truncate_or_lock_out_nothing(group: str) -> None:
    """Item 2: a member of the segment's group (gid 0 here) reads books, and every write it tries
    fails: the segment, the ownership lock, a waiters file; the writer and the readers go on."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]) as w:
        publish(w, "BTCUSDT", 7)
        Path(waiters_path(group)).touch(mode=0o660)  # a 1.x leftover, as a 1.x writer left it
        os.chmod(waiters_path(group), 0o660)
        attack = as_user(
            "import os, fcntl\n"
            "from ldc.shm.reader import Reader\n"
            f"r = Reader({group!r})\n"
            "print('read', r.snapshot('BTCUSDT').update_id)\n"
            f"for path in ({segment_path(group)!r}, {lock_path(group)!r}):\n"
            "    for how in (lambda: os.open(path, os.O_RDWR), lambda: os.truncate(path, 0)):\n"
            "        try:\n"
            "            how()\n"
            "            print('WROTE', path)\n"
            "        except PermissionError:\n"
            "            print('refused', path)\n"
            f"os.truncate({waiters_path(group)!r}, 0)\n",
            gid=0,
        )
        assert attack.returncode == 0, attack.stderr
        assert attack.stdout.splitlines() == ["read 7"] + [f"refused {p}" for p in (segment_path(group),) * 2 + (lock_path(group),) * 2]
        publish(w, "BTCUSDT", 8)  # the writer never touched the truncated waiters file: no SIGBUS
        w.notify()
        with Reader(group) as r:
            assert r.snapshot("BTCUSDT").update_id == 8
            assert r.wait_for_update("BTCUSDT", timeout=0.01) is False  # waiting needs no file either


@pytest.mark.parametrize("locks", ["fcntl.flock(fd, fcntl.LOCK_SH)\nfcntl.lockf(fd, fcntl.LOCK_SH)\n",
                                   "fcntl.flock(fd, fcntl.LOCK_EX)\n"])  # fmt: skip
def test_a_hostile_readers_locks_held_forever_do_not_block_a_restart(group: str, locks: str) -> None:
    """Issue 13 item 6 with a second user: a reader-group member holds flock and fcntl read locks on the
    segment after the writer is killed; the supervisor's next start must succeed at once. flock needs
    no write access, so a reader can also hold flock(LOCK_EX): only a 1.x writer's file may be refused
    for that (a 2.x file was: "has a live layout 1.x writer", on every restart, while it was held)."""
    writer = subprocess.Popen([sys.executable, PROC, "hold", group, "BTCUSDT"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    user = pwd.getpwnam(HOSTILE)
    locker = None
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=RUN_TIMEOUT_S)
        code = (f"import fcntl, os, time\nfd = os.open({segment_path(group)!r}, os.O_RDONLY)\n"
                f"{locks}print('locked', flush=True)\ntime.sleep(600)\n")  # fmt: skip
        locker = subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", "--regid=0", "--clear-groups", sys.executable, "-c", code],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        with SegmentWriter(group, depth=20, capacity=4, markets=["BTCUSDT"]) as w, Reader(group) as r:
            assert w.took_over and r.writer_alive()
    finally:
        for proc in (writer, locker):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT_S)


def test_a_pre_created_lock_file_is_refused_naming_its_owner(group: str) -> None:
    """Item 4: another user's file at the ownership lock's name stops a standalone start with a clear
    error (the deployed unit's root pre-start step removes it: tests/test_clean_foreign.py); it never
    crashes it with a traceback in a restart loop."""
    path = lock_path(group)
    planted = as_user(f"import os\nfd = os.open({path!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\nos.fchmod(fd, 0o666)\n")
    assert planted.returncode == 0, planted.stderr
    with pytest.raises(SegmentError, match=rf"{path} .*{HOSTILE} \(uid {hostile_uid()}\)"):
        SegmentWriter(group, depth=DEPTH, capacity=4)


@pytest.mark.parametrize("token", ["", "0123456789abcdef"])
def test_a_pre_created_build_file_no_longer_stops_the_group(group: str, token: str) -> None:
    """The file being built has a random name: another user's file at the old fixed name ``ldc-G.new``
    (or at any name it guesses) is left alone and the writer starts (it refused before)."""
    path = temp_path(group, token)
    planted = as_user(f"import os\nfd = os.open({path!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\nos.fchmod(fd, 0o666)\n")
    assert planted.returncode == 0, planted.stderr
    try:
        with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]) as w, Reader(group) as r:
            publish(w, "BTCUSDT", 3)
            assert r.snapshot("BTCUSDT").update_id == 3
        assert os.stat(path).st_uid == hostile_uid()  # never removed: not ours
    finally:
        os.unlink(path)


def test_a_pre_created_waiters_file_changes_nothing(group: str) -> None:
    """Item 4 as filed: layout 2.0 has no waiters file, so another user's one is simply ignored."""
    planted = as_user(f"import os\nfd = os.open({waiters_path(group)!r}, os.O_CREAT | os.O_WRONLY, 0o666)\nos.fchmod(fd, 0o666)\n")
    assert planted.returncode == 0, planted.stderr
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]) as w, Reader(group) as r:
        publish(w, "BTCUSDT", 3)
        assert r.snapshot("BTCUSDT").update_id == 3


@pytest.fixture
def ledger_key() -> Iterator[str]:
    key = f"hostile-{os.getpid()}-{time.monotonic_ns()}"
    yield key
    unlink_governor(key)


def test_a_reader_cannot_touch_the_governor_ledger_and_a_planted_one_is_refused(ledger_key: str) -> None:
    """Item 3: the ledger is the feeders' user's alone; one planted by another user is refused."""
    path = "/dev/shm" + SEGMENT_PREFIX + ledger_key
    with RateGovernor(ledger_key, budget=100):
        assert os.stat(path).st_mode & 0o777 == 0o600
        attack = as_user(f"import os\ntry:\n    os.open({path!r}, os.O_RDWR)\nexcept PermissionError:\n    print('refused')\n", gid=0)
        assert attack.stdout.strip() == "refused", attack.stderr
    os.unlink(path)
    planted = as_user(f"import os\nfd = os.open({path!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\nos.fchmod(fd, 0o666)\n"
                      "os.write(fd, bytes(1024))\n")  # fmt: skip
    assert planted.returncode == 0, planted.stderr
    with pytest.raises(SegmentError, match=rf"governor ledger {path} belongs to {HOSTILE} \(uid {hostile_uid()}\) with mode 0666"):
        RateGovernor(ledger_key, budget=100)


def test_another_accounts_complete_live_segment_is_refused_by_readers(group: str) -> None:
    """While a group's name is free (no feeder yet, or a stopped one removed by ``ldc clean``), another
    account can run a writer of its own: a complete segment, live, mode 0640. The mode check alone
    let readers take its books as the feeder's (SYNCED, update 10 here); the owner check refuses it,
    naming the account, unless the reader was told that account feeds the group."""
    user = pwd.getpwnam(HOSTILE)
    squatter = subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", "--regid=0", "--clear-groups", sys.executable, PROC,
                                 "hold", group, "BTCUSDT"], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "ready"
        assert os.stat(segment_path(group)).st_uid == user.pw_uid
        with pytest.raises(SegmentError, match=rf"segment /ldc-{group} belongs to {HOSTILE} \(uid {user.pw_uid}\), not to a feeders' account"):
            Reader(group)
        with Reader(group, owner=HOSTILE) as r:  # told so explicitly: the reader's choice
            assert r.snapshot("BTCUSDT").update_id == 10
    finally:
        squatter.kill()
        squatter.wait(timeout=RUN_TIMEOUT_S)
