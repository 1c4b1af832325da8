"""docs/LAYOUT.md as one contract: ldc's Python reader, readers/c/ldc.h and readers/rust refuse the
same bad geometries with the same rule, a file others can write, a link and a bad group name
(section 7); they see a killed writer dead on the next read, follow its successor's file (also from
the give-up path), flag a frozen writer STALE within its published limit (section 10); and a
reader's locks never block a restart (section 12)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from shm_helpers import book, c_tool, group_fixture, rust_read  # c_tool, rust_read: module fixtures

from ldc.errors import LayoutError, OutOfSync, SegmentError, WriterDead
from ldc.shm.files import ofd_lock
from ldc.shm.layout import HEADER, State, Status, segment_path
from ldc.shm.reader import Reader
from ldc.shm.segment import GEOMETRY_RULES
from ldc.shm.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "readers" / "c"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
DEPTH = 20
CAPACITY = 4  # geometry of LAYOUT.md section 2 for D=20, C=4: slots at 640, slot_size 896, slots end at 4224, segment 4608 (with the 2.1 feeder stats)
RUN_TIMEOUT_S = 60
PROC = str(Path(__file__).with_name("shm_proc.py"))
TORTURE_DEPTH = 20  # tests/shm_proc.py's writers
HEARTBEAT_MS = 100
STALE_MS = 300

# One header change per rule of LAYOUT.md section 7 step 7, each breaking that rule and no earlier one
# (from the D=20, C=4 geometry above). u32 fields unless named in U64_FIELDS.
BREAKS: dict[str, tuple[str, int]] = {
    "header_size >= 384": ("header_size", 376),
    "directory_entry_size >= 64": ("directory_entry_size", 56),
    "directory_offset >= header_size": ("directory_offset", 256),
    "directory_offset and directory_entry_size multiples of 8": ("directory_offset", 388),
    "1 <= capacity": ("capacity", 0),
    "directory_offset + capacity * directory_entry_size <= slots_offset": ("capacity", 0xFFFF_FFFF),
    "slots_offset multiple of 128": ("slots_offset", 704),
    "slot_size multiple of 128": ("slot_size", 900),
    "1 <= depth": ("depth", 0),
    "bids_offset >= 128": ("bids_offset", 120),
    "bids_offset and asks_offset multiples of 8": ("bids_offset", 132),
    "asks_offset >= bids_offset + 16 * depth": ("depth", 0xFFFF_FFFF),  # wraps in 32-bit arithmetic
    "message_offset >= asks_offset + 16 * depth": ("message_offset", 700),
    "1 <= message_size": ("message_size", 0),
    "message_offset + message_size <= slot_size": ("message_size", 200),
    "slots_offset + capacity * slot_size <= segment_size": ("segment_size", 4223),
}
U64_FIELDS = {"segment_size"}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture(scope="module")
def c_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c") / "ldc_example"
    subprocess.run(["cc", *CFLAGS, "-o", str(out), str(C_DIR / "ldc_example.c")], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def c_replaced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Attaches, prints ldc_replaced() once per line read from stdin."""
    src = tmp_path_factory.mktemp("c") / "replaced.c"
    src.write_text(
        '#include "ldc.h"\n'
        "int main(int argc, char **argv) {\n"
        "    (void)argc;\n"
        "    ldc_segment seg; char err[256], line[16];\n"
        '    if (ldc_open(&seg, argv[1], err, sizeof err) != LDC_OK) { fprintf(stderr, "%s\\n", err); return 2; }\n'
        '    while (fgets(line, sizeof line, stdin)) { printf("%d\\n", ldc_replaced(&seg)); fflush(stdout); }\n'
        "    ldc_close(&seg);\n"
        "    return 0;\n"
        "}\n"
    )
    out = src.with_suffix("")
    subprocess.run(["cc", *CFLAGS, f"-I{C_DIR}", "-o", str(out), str(src)], check=True, capture_output=True, text=True)
    return out


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, input=stdin)


def poke_header(group: str, field: str, value: int) -> None:
    fd = os.open(segment_path(group), os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<Q" if field in U64_FIELDS else "<I", value), HEADER.offset(field))
    finally:
        os.close(fd)


def publish(w: SegmentWriter, slot: int, update_id: int) -> None:
    bids, asks = book(DEPTH, mid=100.0 + update_id)
    w.publish(slot, update_id=update_id, event_time_ms=update_id, recv_time_ns=update_id, status=Status.SYNCED,
              bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)


def test_breaks_cover_every_rule_in_the_documented_order() -> None:
    assert list(BREAKS) == [rule for rule, _ in GEOMETRY_RULES]


@pytest.mark.parametrize("rule", list(BREAKS))
def test_python_c_and_rust_refuse_a_bad_geometry_with_the_same_rule(rule: str, group: str, c_example: Path, rust_read: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    field, value = BREAKS[rule]
    poke_header(group, field, value)
    with pytest.raises(LayoutError, match=rf"^segment /ldc-{group} has bad geometry: {rule.replace('*', '[*]').replace('+', '[+]')} fails \("):
        Reader(group)
    c = run(c_example, group, "--list")
    assert c.returncode == 2 and c.stderr.startswith(f"segment /ldc-{group} has bad geometry: {rule} fails ("), c.stderr
    rust = run(rust_read, "list", group)
    assert rust.stderr.startswith(f"ldc-read: segment /dev/shm/ldc-{group} has bad geometry: {rule} fails ("), rust.stderr


def test_python_c_and_rust_refuse_a_truncated_file_last(group: str, c_example: Path, rust_read: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    os.truncate(segment_path(group), 4224 - 128)
    with pytest.raises(LayoutError, match=r"segment_size 4608 but the file has 4096 bytes \(truncated\)"):
        Reader(group)
    c = run(c_example, group, "--list")
    assert c.stderr.strip() == f"segment /ldc-{group} has segment_size 4608 but the file has 4096 bytes (truncated)"
    assert "is truncated: segment_size 4608 bytes, file has 4096" in run(rust_read, "list", group).stderr


def test_python_and_c_name_a_segment_of_the_other_byte_order(group: str, c_example: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, b"LDCDEPTH"[::-1], 0)
    os.close(fd)
    with pytest.raises(LayoutError, match=r"is in the other byte order \(magic b'HTPEDCDL'\): ldc segments are little-endian"):
        Reader(group)
    c = run(c_example, group, "--list")
    assert c.stderr.strip() == f"segment /ldc-{group} is in the other byte order (magic 0x4c44434445505448): ldc segments are little-endian"


def test_python_c_and_rust_refuse_a_segment_others_can_write(group: str, c_example: Path, rust_read: Path) -> None:
    """Section 7 step 2: a file its group or others may write is nobody's segment, whatever it holds."""
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    for mode in (0o660, 0o646):
        os.chmod(segment_path(group), mode)
        text = f"segment /ldc-{group} has mode {mode:04o} (owner uid {os.getuid()}): a segment must be a regular file writable by its owner alone"
        with pytest.raises(SegmentError) as err:
            Reader(group)
        assert str(err.value) == text
        assert run(c_example, group, "--list").stderr.strip() == text
        assert run(rust_read, "list", group).stderr.strip() == f"ldc-read: {text.replace('/ldc-', '/dev/shm/ldc-')}"


def test_python_c_and_rust_refuse_a_segment_of_an_account_they_do_not_trust(group: str, c_example: Path, rust_read: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Section 7 step 2, the owner: another account's own complete segment is refused by default (root,
    the reader's user and `ldc` are trusted), accepted when LDC_FEEDER_USER names that account, and then
    a segment of anyone else (here root's) is refused."""
    if os.geteuid() != 0:
        pytest.skip("chown to another account needs root")
    stranger = 65534
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY, markets=["BTCUSDT"]).close()
    os.chown(segment_path(group), stranger, -1)
    with pytest.raises(SegmentError, match=rf"segment /ldc-{group} belongs to .*uid {stranger}\), not to a feeders' account"):
        Reader(group)
    refusal = f"belongs to uid {stranger}, not to a feeders' account this reader trusts"
    assert refusal in run(c_example, group, "--list").stderr
    assert refusal in run(rust_read, "list", group).stderr
    monkeypatch.setenv("LDC_FEEDER_USER", str(stranger))
    Reader(group).close()
    assert run(c_example, group, "--list").returncode == 0
    assert run(rust_read, "list", group).returncode == 0
    os.chown(segment_path(group), 0, -1)
    assert "belongs to uid 0, not to a feeders' account" in run(c_example, group, "--list").stderr
    assert "belongs to uid 0, not to a feeders' account" in run(rust_read, "list", group).stderr
    with pytest.raises(SegmentError, match="belongs to root"):
        Reader(group)


def test_python_c_and_rust_refuse_another_groups_segment_at_the_name(group: str, c_example: Path, rust_read: Path) -> None:
    """Section 7 step 8: a hard link (which a reader-group member can make where fs.protected_hardlinks
    is 0, or an operator's mistake) puts group G's live file at group H's name; every check before
    passes (owner, mode, geometry, a live writer), so H's readers took G's books as H's."""
    other = group + "h"
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY, markets=["BTCUSDT"]):
        os.link(segment_path(group), segment_path(other))
        try:
            text = f'segment /ldc-{other} holds group "{group}": a segment of another group at this name'
            with pytest.raises(LayoutError) as err:
                Reader(other)
            assert str(err.value) == text.replace(f'"{group}"', f"'{group}'")
            assert run(c_example, other, "--list").stderr.strip() == text
            assert text.replace("/ldc-", "/dev/shm/ldc-") in run(rust_read, "list", other).stderr
        finally:
            os.unlink(segment_path(other))


def test_python_c_and_rust_refuse_a_symbolic_link_at_the_name(group: str, c_example: Path, rust_read: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    os.rename(segment_path(group), segment_path(group) + "-real")
    os.symlink(segment_path(group) + "-real", segment_path(group))
    try:
        with pytest.raises(SegmentError, match="Too many levels of symbolic links"):
            Reader(group)
        assert "Too many levels of symbolic links" in run(c_example, group, "--list").stderr
        assert "Too many levels of symbolic links" in run(rust_read, "list", group).stderr
    finally:
        os.unlink(segment_path(group) + "-real")


def test_python_c_and_rust_check_the_group_name_before_opening_anything(c_example: Path, rust_read: Path) -> None:
    for bad in ("x.waiters", "../etc", ""):
        with pytest.raises(SegmentError, match=r"group name must match"):
            Reader(bad)
        assert "group name must match [A-Za-z0-9_-]{1,63}" in run(c_example, bad, "--list").stderr
        assert "invalid group name" in run(rust_read, "list", bad).stderr


class Watchers:
    """One reader per language attached to a group, each reading SYMBOL once per call of read()."""

    def __init__(self, group: str, c_tool: Path, rust_read: Path) -> None:
        self.python = Reader(group)
        self.procs = [subprocess.Popen([str(exe), "watch", group, "BTCUSDT"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True) for exe in (c_tool, rust_read)]  # fmt: skip
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def read(self) -> dict[str, tuple[str, int, int]]:
        """language -> (result, update_id, status)"""
        out: dict[str, tuple[str, int, int]] = {"python": self._python()}
        for name, proc in zip(("c", "rust"), self.procs):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("read\n")
            proc.stdin.flush()
            got = json.loads(proc.stdout.readline())
            out[name] = (got["result"], got["update_id"], got["status"])
        return out

    def _python(self) -> tuple[str, int, int]:
        try:
            snap = self.python.snapshot("BTCUSDT")
            return "ok", snap.update_id, int(snap.status)
        except OutOfSync:
            st = self.python.status("BTCUSDT")
            return "out_of_sync", st.update_id, int(st.status)
        except WriterDead:
            return "writer_dead", 0, 0

    def close(self) -> None:
        self.python.close()
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=RUN_TIMEOUT_S)


@pytest.fixture
def watchers(group: str, c_tool: Path, rust_read: Path) -> Iterator[Callable[[], Watchers]]:
    made: list[Watchers] = []

    def make() -> Watchers:
        made.append(Watchers(group, c_tool, rust_read))
        return made[-1]

    yield make
    for w in made:
        w.close()


def spawn_writer(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, PROC, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() in ("ready", "odd")
    return proc


def results(got: dict[str, tuple[str, int, int]]) -> set[str]:
    return {result for result, _, _ in got.values()}


def test_a_killed_writer_is_dead_to_all_three_on_the_next_read_and_they_follow_its_successor(
    group: str, watchers: Callable[[], Watchers]
) -> None:
    writer = spawn_writer("hold", group, "BTCUSDT")
    try:
        w = watchers()
        assert {k: v[:2] for k, v in w.read().items()} == {k: ("ok", 10) for k in ("python", "c", "rust")}
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)
        # the robust word: no waiting out a cached verdict, the very next read knows
        assert results(w.read()) == {"writer_dead"}
        with SegmentWriter(group, depth=TORTURE_DEPTH, capacity=CAPACITY, markets=["BTCUSDT"]) as successor:
            got = w.read()  # every reader followed the replaced file: the book is kept, marked STALE
            assert {k: (v[0], v[1], v[2] & Status.STALE) for k, v in got.items()} == {
                k: ("out_of_sync", 10, Status.STALE) for k in ("python", "c", "rust")}
            publish(successor, successor.slot("BTCUSDT"), 11)
            assert {k: v[:2] for k, v in w.read().items()} == {k: ("ok", 11) for k in ("python", "c", "rust")}
    finally:
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)


def test_the_give_up_path_checks_for_a_replaced_segment_too(group: str, watchers: Callable[[], Watchers]) -> None:
    """Issue 13 item 5: a slot its dead writer left odd gives no copy; the readers must still notice
    the successor's file instead of reporting the writer dead."""
    writer = spawn_writer("midwrite", group, "BTCUSDT")
    try:
        w = watchers()
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)
        assert results(w.read()) <= {"writer_dead", "writer_dead_no_copy"}
        with SegmentWriter(group, depth=TORTURE_DEPTH, capacity=CAPACITY, markets=["BTCUSDT"]):
            got = w.read()
        assert {k: (v[0], v[2]) for k, v in got.items()} == {k: ("out_of_sync", Status.STALE) for k in ("python", "c", "rust")}
        assert w.python.status("BTCUSDT").message == "writer died mid-write; levels discarded"
    finally:
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)


def test_a_frozen_writer_is_stale_to_all_three_within_its_published_limit(group: str, watchers: Callable[[], Watchers]) -> None:
    """Issue 13 item 7: SIGSTOP keeps the writer's locks, so only the readers can tell; each flags
    STALE once the heartbeat is older than the header's stale_after_ms, and recovers after SIGCONT."""
    writer = spawn_writer("beat", group, "BTCUSDT", str(HEARTBEAT_MS), str(STALE_MS))
    try:
        w = watchers()
        assert results(w.read()) == {"ok"}
        assert w.python.info().stale_after_ms == STALE_MS
        writer.send_signal(signal.SIGSTOP)
        time.sleep(STALE_MS / 1000 + 0.1)  # the heartbeat cannot move now: it is at least this old
        got = w.read()
        assert {k: (v[0], v[2]) for k, v in got.items()} == {
            k: ("out_of_sync", Status.SYNCED | Status.STALE) for k in ("python", "c", "rust")}, got
        with pytest.raises(OutOfSync, match=r"writer pid \d+ is stuck: heartbeat \d+\.\d s old, limit 0\.3 s"):
            w.python.snapshot("BTCUSDT")
        assert w.python.writer_alive() and w.python.writer_stale()
        writer.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while results(got := w.read()) != {"ok"} and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_MS / 1000)
        assert results(got) == {"ok"}
    finally:
        writer.send_signal(signal.SIGCONT)
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)


def test_a_reader_holding_every_kind_of_lock_never_blocks_a_restart(group: str) -> None:
    """Issue 13 item 6: a reader that holds flock, fcntl and OFD read locks on the segment (forever)
    while its writer is killed: the next writer starts at once (it locks only a file of its own)."""
    writer = spawn_writer("hold", group, "BTCUSDT")
    fd = os.open(segment_path(group), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what blocked every 1.x restart
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a Java / .NET probe that never lets go
        assert ofd_lock(fd, write=False)
        with SegmentWriter(group, depth=TORTURE_DEPTH, capacity=CAPACITY, markets=["BTCUSDT"]) as successor, Reader(group) as r:
            assert successor.took_over and r.writer_alive()
            assert r.info().takeovers == 1
    finally:
        os.close(fd)
        writer.kill()
        writer.wait(timeout=RUN_TIMEOUT_S)


def test_c_reader_notices_a_replaced_segment_by_device_and_inode(group: str, c_replaced: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    proc = subprocess.Popen([str(c_replaced), group], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("?\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "0"
        SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()  # every start builds a new file
        proc.stdin.write("?\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "1"
        proc.stdin.close()
        assert proc.wait(timeout=RUN_TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait(timeout=RUN_TIMEOUT_S)


def test_python_reader_stays_on_the_old_segment_while_the_new_one_is_not_valid(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:
        publish(w, w.add_market("BTCUSDT"), 7)
    r = Reader(group)
    try:
        os.unlink(segment_path(group))
        fd = os.open(segment_path(group), os.O_CREAT | os.O_RDWR, 0o640)  # damage: a file without magic
        os.ftruncate(fd, 4224)
        os.close(fd)
        with pytest.raises(WriterDead, match="stopped"):
            r.snapshot("BTCUSDT")
        assert r.snapshot("BTCUSDT", allow_out_of_sync=True).update_id == 7
    finally:
        r.close()


def test_writer_refuses_a_big_endian_host(group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "byteorder", "big")
    with pytest.raises(SegmentError, match="ldc segments are little-endian; this host is big-endian"):
        SegmentWriter(group, depth=DEPTH, capacity=CAPACITY)
    assert not os.path.exists(segment_path(group))


def test_each_start_is_a_new_file_whose_identity_never_changes(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    with Reader(group) as r:
        first = r.info()
        with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY):
            # the old file is retired, never taken over: its identity is as it was
            assert r._seg.load_u32(HEADER.offset("state")) == State.RETIRED
            assert r._seg.load_u64(HEADER.offset("instance_id")) == first.instance_id
            second = r.info()  # follows the name to the new file
    assert (first.takeovers, second.takeovers) == (0, 1)
    assert second.instance_id != first.instance_id and second.instance_id & 1
    assert second.writer_pid == os.getpid() and second.start_time_ns >= first.start_time_ns


def test_c_and_rust_2_0_readers_read_a_2_1_segment_with_its_feeder_stats_filled(group: str, c_example: Path, rust_read: Path) -> None:
    """LAYOUT.md section 13: 2.1 only adds the feeder-stats block after the last slot, 2.2 the paced notify
    words in reserved3. The C and Rust readers (written for 2.0) read the slot next to the block exactly
    while every stats word is non-zero and the paced words have moved."""
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY, notify_paced_us=1) as w:
        slots = [w.add_market(f"M{i}") for i in range(CAPACITY)]
        for slot in slots:
            publish(w, slot, 40 + slot)
        for name in ("rest_429", "rest_418", "ws_opened", "ws_reconnects", "record_written", "record_dropped", "record_errors"):
            w.stats.add(name, 2**63)
        w.stats.set("rest_weight_used", 2**64 - 1)
        for latency_ns in (1, 7_000, 3_000_000_000):
            w.stats.read_done(5, latency_ns)
        w.notify()
        raw = Path(segment_path(group)).read_bytes()
        assert struct.unpack_from("<II", raw, HEADER.offset("notify_paced")) == (1, 1)  # moved; a 1 us pace
        last = f"M{CAPACITY - 1}"
        c = run(c_example, group, last)
        assert c.returncode == 0, c.stderr
        rust = run(rust_read, "snapshot", group, last)
        assert rust.returncode == 0, rust.stderr
        with Reader(group) as r:
            snap, stats = r.snapshot(last), r.feeder_stats()
        assert json.loads(c.stdout)["update_id"] == json.loads(rust.stdout)["update_id"] == snap.update_id == 40 + CAPACITY - 1
        assert json.loads(c.stdout)["asks"] == json.loads(rust.stdout)["asks"] == snap.asks.tolist()
    assert stats is not None and stats.counters["rest_429"] == 2**63 and stats.counters["frames"] == 15
    assert stats.gauges["rest_weight_used"] == 2**64 - 1
    assert stats.latency_counts[0] == stats.latency_counts[1] == stats.latency_counts[-1] == 1 and sum(stats.latency_counts) == 3


def test_a_2_0_segment_has_no_feeder_stats(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, struct.pack("<H", 0), HEADER.offset("version_minor"))  # what a 2.0 writer wrote (its file ends at the slots)
    os.close(fd)
    with Reader(group) as r:
        assert r.feeder_stats() is None


def test_a_damaged_feeder_stats_block_is_refused_by_name(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, struct.pack("<I", 1 << 20), 4224)  # stats_size past the end of the file (stats at 4224, LAYOUT.md 16)
    os.close(fd)
    with Reader(group) as r, pytest.raises(LayoutError, match=r"feeder-stats block of 1048576 bytes with 16 latency buckets, expected >= 384"):
        r.feeder_stats()


def test_a_latency_from_another_clock_is_counted_in_the_last_bucket_and_bounded_in_the_sum(group: str) -> None:
    """A receive stamp of another clock (a test's or a replay's small integer) made read_done overflow the u64 sum."""
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w, Reader(group) as r:
        w.stats.read_done(2, 1_700_000_000 * 10**9)  # now - 0
        w.stats.read_done(1, -5)  # a stamp in the future: the first bucket, nothing added to the sum
        stats = r.feeder_stats()
    assert stats is not None and stats.counters["frames"] == 3
    assert stats.latency_counts[-1] == stats.latency_counts[0] == 1 and stats.latency_sum_ns == 60 * 10**9
