"""The layout table (ldc/shm/layout.py) against itself, docs/LAYOUT.md and readers/c/ldc.h."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ldc.shm import _seqlock
from ldc.shm.segment import GEOMETRY_RULES
from ldc.shm.layout import (
    DIR_ENTRY,
    FUTEX_TID_MASK,
    FEEDER_STATS,
    HEADER,
    MAGIC,
    SLOT_HEADER,
    VERSION_MAJOR,
    VERSION_MINOR,
    Counter,
    Geometry,
    Region,
    State,
    Status,
    align_up,
)

ROOT = Path(__file__).resolve().parents[1]
LAYOUT_MD = ROOT / "docs" / "LAYOUT.md"
LDC_H = ROOT / "readers" / "c" / "ldc.h"
C_STRUCTS = {"header": "ldc_header", "directory entry": "ldc_dir_entry", "slot header": "ldc_slot_header"}


def test_regions_are_contiguous_naturally_aligned_and_sized() -> None:
    for region in (HEADER, DIR_ENTRY, SLOT_HEADER):
        offset = 0
        for field in region.fields:
            assert field.offset == offset, f"{region.name}.{field.name}"
            assert field.offset % min(8, field.size // field.count) == 0
            offset += field.size
        assert offset == region.size
    assert (HEADER.size, DIR_ENTRY.size, SLOT_HEADER.size) == (384, 64, 128)


def test_protocol_words_sit_where_docs_layout_says() -> None:
    assert [HEADER.offset(n) for n in ("magic", "state", "dir_seq", "notify", "heartbeat_ns")] == [0, 132, 160, 256, 152]
    assert [SLOT_HEADER.offset(n) for n in ("seq", "gen", "status", "n_bids", "n_asks")] == [0, 8, 48, 52, 56]
    assert MAGIC.to_bytes(8, "little") == b"LDCDEPTH" and MAGIC == 0x485450454443444C


def test_geometry_of_the_documented_example() -> None:
    g = Geometry.for_size(depth=20, capacity=256)
    assert (g.bids_offset, g.asks_offset, g.message_offset, g.slot_size) == (128, 448, 768, 896)
    assert (g.slots_offset, g.stats_offset, g.segment_size) == (16768, 246144, 246528)
    assert g.slot_offset(3) == 19456


@pytest.mark.parametrize("depth", [1, 3, 4, 5, 20, 21, 100, 1000, 5000])
def test_arrays_are_64_aligned_and_slots_128_aligned_for_any_depth(depth: int) -> None:
    g = Geometry.for_size(depth=depth, capacity=7)
    assert g.bids_offset % 64 == 0 and g.asks_offset % 64 == 0
    assert g.asks_offset >= g.bids_offset + 16 * depth and g.message_offset >= g.asks_offset + 16 * depth
    assert g.slot_size % 128 == 0 and g.slots_offset % 128 == 0
    assert g.slot_size == align_up(g.message_offset + g.message_size, 128)
    assert g.stats_offset == g.slots_offset + 7 * g.slot_size and g.segment_size == g.stats_offset + FEEDER_STATS.size


def test_geometry_rejects_out_of_range_sizes() -> None:
    with pytest.raises(ValueError, match="depth must be 1..5000, got 0"):
        Geometry.for_size(depth=0, capacity=1)
    with pytest.raises(ValueError, match="capacity must be 1..65536, got 70000"):
        Geometry.for_size(depth=1, capacity=70000)


def markdown_table(region: Region) -> list[str]:
    rows = ["| offset | size | type | field | meaning |", "|---:|---:|---|---|---|"]
    for f in region.fields:
        ftype = f.type if f.count == 1 else f"{f.type}[{f.count}]"
        rows.append(f"| {f.offset} | {f.size} | {ftype} | `{f.name}` | {f.doc} |")
    return rows


def test_layout_md_tables_match_the_layout_table() -> None:
    text = LAYOUT_MD.read_text()
    for region in (HEADER, DIR_ENTRY, SLOT_HEADER, FEEDER_STATS):
        match = re.search(rf"<!-- table:{region.name} -->\n(.*?)\n<!-- /table -->", text, re.S)
        assert match, f"docs/LAYOUT.md has no table for {region.name}"
        assert match.group(1).splitlines() == markdown_table(region)


def test_layout_md_states_flags_and_version() -> None:
    text = LAYOUT_MD.read_text()
    assert f"version {VERSION_MAJOR}.{VERSION_MINOR}" in text.splitlines()[0]
    for flag in Status:
        assert re.search(rf"\| `{flag.value:#04x}` \| {flag.name} \|", text), flag.name


def documented_geometry_rules() -> list[str]:
    text = LAYOUT_MD.read_text()
    match = re.search(r"<!-- rules:geometry -->\n(.*?)\n<!-- /rules -->", text, re.S)
    assert match, "docs/LAYOUT.md has no geometry rules table"
    rows = [line.split("|") for line in match.group(1).splitlines()[2:]]
    assert [int(row[1]) for row in rows] == list(range(1, len(rows) + 1))
    return [row[2].strip().strip("`") for row in rows]


def test_layout_md_geometry_rules_are_the_ones_segment_py_checks_in_order() -> None:
    assert documented_geometry_rules() == [rule for rule, _ in GEOMETRY_RULES] + ["segment_size <= file_size"]


def test_c_and_rust_readers_name_the_documented_rules_in_order() -> None:
    rules = [rule for rule, _ in GEOMETRY_RULES]
    c_rules = re.findall(r'^\s*\{.*, "([^"]+)"\},$', LDC_H.read_text(), re.M)
    assert c_rules == rules
    rust = (ROOT / "readers" / "rust" / "src" / "segment.rs").read_text()
    body = rust[rust.index("pub fn check_geometry"):]
    assert re.findall(r'(?<!!)\(\s*"([^"]+)",', body) == rules  # the first string of each rule tuple


def test_layout_md_lists_every_header_field_a_reader_must_load_atomically() -> None:
    text = LAYOUT_MD.read_text()
    table = text[text.index("| field | load | changes when |"):text.index("`writer_pid`, `start_time_ns`, `instance_id`, `takeovers`, `stale_after_ms` and `notify_paced_us` are")]
    rows = [row.strip() for row in table.splitlines()[2:] if row.strip().startswith("|")]
    first_column = "".join(row.split("|")[1] for row in rows)
    documented = set(re.findall(r"`(\w+)`", first_column)) - {"seq"}
    # everything that changes after magic (2.0: the writer's identity is written once, before it)
    once = {"writer_pid", "start_time_ns", "instance_id", "takeovers", "group", "notify_paced_us"}
    changing = {f.name for f in HEADER.fields if f.offset >= 128 and f.name not in once and not f.name.startswith("reserved")}
    assert documented == changing | {"magic"}


def c_offsets_program() -> str:
    lines = ['#include "ldc.h"', "int main(void) {"]
    for region in (HEADER, DIR_ENTRY, SLOT_HEADER):
        struct = C_STRUCTS[region.name]
        lines.append(f'    printf("{region.name}|size|%zu\\n", sizeof({struct}));')
        for f in region.fields:
            lines.append(
                f'    printf("{region.name}|{f.name}|%zu|%zu\\n", offsetof({struct}, {f.name}), sizeof((({struct} *)0)->{f.name}));'
            )
    constants = ["LDC_MAGIC", "LDC_VERSION_MAJOR", "LDC_VERSION_MINOR", "LDC_STATE_RUNNING", "LDC_STATE_STOPPED",
                 "LDC_STATE_INITIALISING", "LDC_STATE_RETIRED", "LDC_FUTEX_TID_MASK", "LDC_IN_SYNC_MASK", "LDC_N_COUNTERS", "LDC_OK", "LDC_OUT_OF_SYNC",
                 "LDC_GONE", "LDC_CONTENDED", "LDC_WRITER_DEAD", "LDC_WRITER_DEAD_NO_COPY"]
    constants += [f"LDC_{flag.name}" for flag in Status]
    for name in constants:
        lines.append(f'    printf("const {name} %llu\\n", (unsigned long long)({name}));')
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_every_c_header_offset_matches_the_layout_table(tmp_path: Path) -> None:
    src = tmp_path / "offsets.c"
    src.write_text(c_offsets_program())
    exe = tmp_path / "offsets"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{LDC_H.parent}", "-o", str(exe), str(src)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    found = {tuple(line.split("|")[:2]): line.split("|")[2:] for line in out if "|" in line}
    for region in (HEADER, DIR_ENTRY, SLOT_HEADER):
        assert found[(region.name, "size")] == [str(region.size)]
        for f in region.fields:
            assert found[(region.name, f.name)] == [str(f.offset), str(f.size)], f"{region.name}.{f.name}"
    consts = {line.split()[1]: int(line.split()[2]) for line in out if line.startswith("const")}
    assert consts["LDC_MAGIC"] == MAGIC
    # ldc.h is a 2.0 reader, kept so: it reads 2.1 and 2.2 files unchanged (LAYOUT.md section 13)
    assert (consts["LDC_VERSION_MAJOR"], consts["LDC_VERSION_MINOR"]) == (VERSION_MAJOR, 0) and VERSION_MINOR == 2
    states = ("LDC_STATE_INITIALISING", "LDC_STATE_RUNNING", "LDC_STATE_STOPPED", "LDC_STATE_RETIRED")
    assert tuple(consts[name] for name in states) == tuple(State)
    assert consts["LDC_FUTEX_TID_MASK"] == FUTEX_TID_MASK
    assert consts["LDC_IN_SYNC_MASK"] == _seqlock.IN_SYNC_MASK
    assert consts["LDC_N_COUNTERS"] == len(Counter)
    for flag in Status:
        assert consts[f"LDC_{flag.name}"] == flag.value
    for name in ("OK", "OUT_OF_SYNC", "GONE", "CONTENDED", "WRITER_DEAD", "WRITER_DEAD_NO_COPY"):
        assert consts[f"LDC_{name}"] == getattr(_seqlock, f"READ_{name}")


def _doc_reader(group: str, symbol: str) -> dict[str, object]:
    """A reader written only from docs/LAYOUT.md section 14 (literal offsets, struct, mmap, fcntl):
    it proves the page is enough to interoperate. x86-64 only (no fences in Python)."""
    import fcntl
    import mmap
    import os
    import struct

    assert re.fullmatch(r"[A-Za-z0-9_-]{1,63}", group)
    fd = os.open(f"/dev/shm/ldc-{group}", os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        assert st.st_mode & 0o022 == 0
        size = st.st_size
        assert size >= 384
        base = mmap.mmap(fd, size, prot=mmap.PROT_READ)

        def u16(off: int) -> int:
            return int(struct.unpack_from("<H", base, off)[0])

        def u32(off: int) -> int:
            return int(struct.unpack_from("<I", base, off)[0])

        def u64(off: int) -> int:
            return int(struct.unpack_from("<Q", base, off)[0])

        assert u64(0) == 0x485450454443444C and u16(8) == 2 and u64(16) == 0x0102030405060708
        h = {"header_size": u32(12), "segment_size": u64(24), "directory_offset": u32(32),
             "directory_entry_size": u32(36), "slots_offset": u32(40), "slot_size": u32(44), "capacity": u32(48),
             "depth": u32(52), "bids_offset": u32(56), "asks_offset": u32(60), "message_offset": u32(64),
             "message_size": u32(68)}
        rules = [  # section 7 step 7, as its table words them
            h["header_size"] >= 384, h["directory_entry_size"] >= 64, h["directory_offset"] >= h["header_size"],
            h["directory_offset"] % 8 == 0 and h["directory_entry_size"] % 8 == 0, h["capacity"] >= 1,
            h["directory_offset"] + h["capacity"] * h["directory_entry_size"] <= h["slots_offset"],
            h["slots_offset"] % 128 == 0, h["slot_size"] % 128 == 0 and h["slot_size"] > 0, h["depth"] >= 1,
            h["bids_offset"] >= 128, h["bids_offset"] % 8 == 0 and h["asks_offset"] % 8 == 0,
            h["asks_offset"] >= h["bids_offset"] + 16 * h["depth"],
            h["message_offset"] >= h["asks_offset"] + 16 * h["depth"], h["message_size"] >= 1,
            h["message_offset"] + h["message_size"] <= h["slot_size"],
            h["slots_offset"] + h["capacity"] * h["slot_size"] <= h["segment_size"], h["segment_size"] <= size,
        ]
        assert all(rules) and len(rules) == len(documented_geometry_rules())
        while True:
            d1 = u64(160)
            if d1 & 1:
                continue
            entries = base[h["directory_offset"]:h["directory_offset"] + h["capacity"] * h["directory_entry_size"]]
            if u64(160) == d1:
                break
        found = None
        for i in range(h["capacity"]):
            e = entries[i * h["directory_entry_size"]:(i + 1) * h["directory_entry_size"]]
            gen = struct.unpack_from("<Q", e, 40)[0]
            if gen and e[:40].split(b"\0", 1)[0] == symbol.encode():
                found = (i, gen)
        assert found is not None
        p = h["slots_offset"] + found[0] * h["slot_size"]
        while True:
            s1 = u64(p)
            if s1 & 1:
                continue
            hdr = base[p:p + 128]
            nb, na = (min(struct.unpack_from("<I", hdr, off)[0], h["depth"]) for off in (52, 56))
            bids = base[p + h["bids_offset"]:p + h["bids_offset"] + 16 * nb]
            asks = base[p + h["asks_offset"]:p + h["asks_offset"] + 16 * na]
            message = base[p + h["message_offset"]:p + h["message_offset"] + h["message_size"]]
            if u64(p) == s1:
                break
        assert struct.unpack_from("<Q", hdr, 8)[0] == found[1]
        state = u32(132)  # the probe of section 10: state, the lock, the robust word, state again
        if state in (3, 4):
            verdict = {3: "STOPPED", 4: "RETIRED"}[state]
        else:
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, struct.pack("=hh4xqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
            if struct.unpack("=hh4xqqi4x", answer)[0] == fcntl.F_UNLCK or u32(320) & 0x3FFFFFFF == 0:
                verdict = "DEAD"
            else:
                verdict = {2: "ALIVE", 3: "STOPPED", 4: "RETIRED"}.get(u32(132), "DEAD")
        alive = verdict == "ALIVE"
        base.close()
    finally:
        os.close(fd)
    update_id, event_ms, recv_ns, publish_ns = struct.unpack_from("<qqqq", hdr, 16)
    return {
        "update_id": update_id, "event_time_ms": event_ms, "recv_time_ns": recv_ns, "publish_time_ns": publish_ns,
        "status": struct.unpack_from("<I", hdr, 48)[0], "alive": alive,
        "bids": [list(struct.unpack_from("<dd", bids, 16 * k)) for k in range(nb)],
        "asks": [list(struct.unpack_from("<dd", asks, 16 * k)) for k in range(na)],
        "message": message.split(b"\0", 1)[0].decode(),
        "counters": list(struct.unpack_from("<6Q", hdr, 64)),
    }


def test_a_reader_written_from_layout_md_alone_agrees_with_ldc(tmp_path: Path) -> None:
    import numpy as np
    from shm_helpers import book, unique_group, unlink_group

    from ldc.shm.reader import Reader
    from ldc.shm.writer import SegmentWriter

    group = unique_group()
    try:
        with SegmentWriter(group, depth=13, capacity=5) as w:
            w.add_market("ETHUSDT")
            slot = w.add_market("BTCUSDT")
            bids, asks = book(13, mid=64_000.0, tick=0.01)
            w.publish(slot, update_id=123456789, event_time_ms=1_723_075_200_000, recv_time_ns=1_723_075_200_001_000_000,
                      status=Status.SYNCED | Status.REFRESHING, bids=bids, asks=asks, n_bids=13, n_asks=9)
            w.bump(slot, Counter.IGNORED, 4)
            w.set_status(slot, Status.SYNCED | Status.REFRESHING, "refresh audit running")
            got = _doc_reader(group, "BTCUSDT")
            with Reader(group) as r:
                snap = r.snapshot("BTCUSDT")
                st = r.status("BTCUSDT")
        assert got["alive"] is True
        assert (got["update_id"], got["event_time_ms"], got["recv_time_ns"], got["publish_time_ns"], got["status"]) == (
            snap.update_id, snap.event_time_ms, snap.recv_time_ns, snap.publish_time_ns, snap.status)
        assert np.array_equal(np.array(got["bids"]), snap.bids) and np.array_equal(np.array(got["asks"]), snap.asks)
        assert got["message"] == st.message and got["counters"] == list(st.counters.values())
    finally:
        unlink_group(group)
