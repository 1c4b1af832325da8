"""`ldc clean --group G --foreign-owner USER`, the systemd unit's root pre-start step: another local account
(nobody, through setpriv) that created a group's names first (a fake segment, the ownership lock, a build
file, a REST ledger) stops a standalone feeder; after the step the feeder starts and readers read it. The
feeder's own files are never touched. Skipped unless the tests run as root (setpriv needs it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from shm_helpers import book, group_fixture

from ldc.errors import SegmentError
from ldc.io.governor import SEGMENT_PREFIX
from ldc.shm.layout import Status, lock_path, segment_path, temp_path
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

HOSTILE = "nobody"
DEPTH = 5
RUN_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as a second user"
)


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


@pytest.fixture
def ledger() -> Iterator[str]:
    path = f"/dev/shm{SEGMENT_PREFIX}foreign-{os.getpid()}"
    yield path
    if os.path.lexists(path):
        os.unlink(path)


def plant(*paths: str) -> None:
    """Create each path as the hostile user, mode 0666 (what a squatter would do)."""
    user = pwd.getpwnam(HOSTILE)
    code = "import os, sys\nfor p in sys.argv[1:]:\n    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\n    os.fchmod(fd, 0o666)\n"
    done = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                           sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr


def clean(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ldc.cli", "clean", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.mark.parametrize("names", ["segment", "lock"])
def test_squatted_names_stop_a_feeder_until_the_pre_start_step_removes_them(group: str, ledger: str, names: str) -> None:
    squatted = segment_path(group) if names == "segment" else lock_path(group)
    plant(squatted, temp_path(group), ledger)
    with pytest.raises(SegmentError, match=rf"{squatted} .*{HOSTILE}"):
        SegmentWriter(group, depth=DEPTH, capacity=4)  # what a standalone `ldc feed` can do: refuse, naming it
    done = clean("--group", group, "--foreign-owner", me())
    assert done.returncode == 0, done.stderr
    removed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("removed")]
    assert sorted(removed) == sorted([squatted, temp_path(group), ledger])
    assert f"of {HOSTILE} (uid {pwd.getpwnam(HOSTILE).pw_uid}), mode 0666, not of the feeder's user {me()}" in done.stdout
    st = os.lstat(lock_path(group))  # the lock name is now the feeder user's: no one else can take it
    assert (st.st_uid, st.st_mode & 0o7777) == (os.geteuid(), 0o600)
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]) as w, Reader(group) as r:
        bids, asks = book(DEPTH)
        w.publish(w.add_market("BTCUSDT"), update_id=7, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                  bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip
        assert r.snapshot("BTCUSDT").update_id == 7


def test_the_feeders_own_files_are_never_touched(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]):
        inode = os.stat(segment_path(group)).st_ino
        done = clean("--group", group, "--foreign-owner", me())
        assert done.returncode == 0 and "removed" not in done.stdout, done.stdout
        assert os.stat(segment_path(group)).st_ino == inode
    dry = clean("--group", group, "--foreign-owner", HOSTILE, "--dry-run")  # the other way round: all would go
    assert dry.returncode == 0 and f"would remove {segment_path(group)}" in " ".join(dry.stdout.split())
    assert os.path.exists(segment_path(group))


def test_foreign_owner_needs_a_group_and_a_known_user() -> None:
    assert clean("--foreign-owner", "root").returncode == 2
    done = clean("--group", "x", "--foreign-owner", "no-such-user-ldc")
    assert done.returncode == 2 and "no user 'no-such-user-ldc'" in done.stderr
