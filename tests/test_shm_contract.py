"""docs/LAYOUT.md as one contract: ldc's Python reader, readers/c/ldc.h and readers/rust refuse the
same bad geometries with the same rule (section 7), readers survive a waiter file not yet sized
(section 1), wait for a writer taking the segment over (section 10) and notice a replaced segment
(section 10)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shm_helpers import book, group_fixture

from ldc.errors import LayoutError, SegmentError, WriterDead
from ldc.shm.layout import HEADER, State, Status, segment_path, waiters_path
from ldc.shm.reader import Reader
from ldc.shm.segment import GEOMETRY_RULES
from ldc.shm.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "readers" / "c"
RUST_DIR = ROOT / "readers" / "rust"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
DEPTH = 20
CAPACITY = 4  # geometry of LAYOUT.md section 2 for D=20, C=4: slots at 640, slot_size 896, segment 4224
RUN_TIMEOUT_S = 60
CARGO_BUILD_TIMEOUT_S = 120
TAKEOVER_WAIT_S = 0.5  # LAYOUT.md section 10: ldc's readers wait this long for a STARTING writer

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


@pytest.fixture(scope="module")
def rust_read() -> Path:
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        pytest.skip("cargo is not installed: the Rust reader cannot be built")
    build = subprocess.run([cargo, "build", "--release", "--offline", "--quiet"], cwd=RUST_DIR,
                           capture_output=True, text=True, timeout=CARGO_BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stderr
    return RUST_DIR / "target" / "release" / "ldc-read"


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
    with pytest.raises(LayoutError, match=r"segment_size 4224 but the file has 4096 bytes \(truncated\)"):
        Reader(group)
    c = run(c_example, group, "--list")
    assert c.stderr.strip() == f"segment /ldc-{group} has segment_size 4224 but the file has 4096 bytes (truncated)"
    assert "is truncated: segment_size 4224 bytes, file has 4096" in run(rust_read, "list", group).stderr


def test_python_and_c_name_a_segment_of_the_other_byte_order(group: str, c_example: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, b"LDCDEPTH"[::-1], 0)
    os.close(fd)
    with pytest.raises(LayoutError, match=r"is in the other byte order \(magic b'HTPEDCDL'\): ldc segments are little-endian"):
        Reader(group)
    c = run(c_example, group, "--list")
    assert c.stderr.strip() == f"segment /ldc-{group} is in the other byte order (magic 0x4c44434445505448): ldc segments are little-endian"


def test_c_reader_does_not_map_a_waiter_file_its_writer_has_not_sized_yet(group: str, c_example: Path) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:
        publish(w, w.add_market("BTCUSDT"), 1)
    # the state between the writer's O_CREAT and its ftruncate (LAYOUT.md section 1): mapping the
    # file and touching the counter would kill the reader with SIGBUS
    os.truncate(waiters_path(group), 0)
    out = run(c_example, group, "BTCUSDT", "--wait", "0.05")
    assert out.returncode == 1, (out.returncode, out.stderr)
    got = json.loads(out.stdout)
    assert (got["result"], got["update_id"]) == ("writer_dead", 1)


def test_readers_do_not_map_a_waiter_file_shorter_than_a_page(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:
        w.add_market("BTCUSDT")
    os.truncate(waiters_path(group), 0)
    with Reader(group) as r:
        assert r.wait_for_update("BTCUSDT", timeout=0.02) is False


def hold_starting(group: str) -> None:
    """What a writer taking the segment over shows: state INITIALISING under its LOCK_EX."""
    poke_header(group, "state", State.INITIALISING)


def test_c_reader_waits_for_a_writer_taking_over_and_reads_the_slot_again(group: str, c_example: Path) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:  # this process holds the lock
        slot = w.add_market("BTCUSDT")
        publish(w, slot, 1)
        hold_starting(group)
        proc = subprocess.Popen([str(c_example), group, "BTCUSDT"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.1)
            publish(w, slot, 2)  # the takeover rewrites the slot before state goes back to RUNNING
            poke_header(group, "state", State.RUNNING)
            out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            proc.kill()
            proc.wait(timeout=RUN_TIMEOUT_S)
    got = json.loads(out)
    assert (got["result"], got["update_id"]) == ("ok", 2)


def test_c_reader_reports_a_takeover_that_outlasts_the_wait_as_writer_dead(group: str, c_example: Path) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:
        publish(w, w.add_market("BTCUSDT"), 1)
        hold_starting(group)
        t0 = time.monotonic()
        got = json.loads(run(c_example, group, "BTCUSDT").stdout)
        elapsed = time.monotonic() - t0
    assert (got["result"], got["update_id"], got["writer_alive"]) == ("writer_dead", 1, False)
    assert elapsed >= TAKEOVER_WAIT_S * 0.9


def test_state_initialising_without_the_lock_is_dead_at_once(group: str, c_example: Path) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w:
        publish(w, w.add_market("BTCUSDT"), 1)
    hold_starting(group)  # a writer that died while taking over: no lock
    got = json.loads(run(c_example, group, "BTCUSDT").stdout)
    assert got["result"] == "writer_dead"
    with Reader(group) as r, pytest.raises(WriterDead, match=r"died while starting or taking over"):
        r.snapshot("BTCUSDT")


def test_python_reader_waits_for_a_writer_taking_over_and_reads_the_slot_again(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w, Reader(group) as r:
        slot = w.add_market("BTCUSDT")
        publish(w, slot, 1)
        assert r.snapshot("BTCUSDT").update_id == 1  # the ALIVE verdict is now cached

        def finish_takeover() -> None:
            publish(w, slot, 2)
            poke_header(group, "state", State.RUNNING)

        hold_starting(group)
        timer = threading.Timer(0.1, finish_takeover)
        timer.start()
        try:
            assert r.snapshot("BTCUSDT").update_id == 2
        finally:
            timer.join()


def test_python_reader_reports_a_takeover_that_outlasts_the_wait(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY) as w, Reader(group) as r:
        publish(w, w.add_market("BTCUSDT"), 1)
        hold_starting(group)
        with pytest.raises(WriterDead, match=rf"was still taking the segment over after {TAKEOVER_WAIT_S:g} s"):
            r.snapshot("BTCUSDT")


def test_c_reader_notices_a_replaced_segment_by_device_and_inode(group: str, c_replaced: Path) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    proc = subprocess.Popen([str(c_replaced), group], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("?\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "0"
        SegmentWriter(group, depth=DEPTH + 1, capacity=CAPACITY).close()  # other geometry: a new file
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
        fd = os.open(segment_path(group), os.O_CREAT | os.O_RDWR, 0o640)  # a writer between create and magic
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


def test_takeover_counter_and_writer_identity_are_rewritten(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=CAPACITY).close()
    with Reader(group) as r:
        first = r.info()
        with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY):
            second = r.info()
    assert (first.takeovers, second.takeovers) == (0, 1)
    assert second.instance_id != first.instance_id and second.instance_id & 1
    assert second.writer_pid == os.getpid() and second.start_time_ns >= first.start_time_ns
    fd = os.open(segment_path(group), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # no writer left holding the lock
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
