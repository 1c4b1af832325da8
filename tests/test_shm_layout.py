"""The layout table (ldc/shm/layout.py) against itself, docs/LAYOUT.md and readers/c/ldc.h."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ldc.shm import _seqlock
from ldc.shm.layout import (
    DIR_ENTRY,
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
    assert (g.slots_offset, g.segment_size) == (16768, 246144)
    assert g.slot_offset(3) == 19456


@pytest.mark.parametrize("depth", [1, 3, 4, 5, 20, 21, 100, 1000, 5000])
def test_arrays_are_64_aligned_and_slots_128_aligned_for_any_depth(depth: int) -> None:
    g = Geometry.for_size(depth=depth, capacity=7)
    assert g.bids_offset % 64 == 0 and g.asks_offset % 64 == 0
    assert g.asks_offset >= g.bids_offset + 16 * depth and g.message_offset >= g.asks_offset + 16 * depth
    assert g.slot_size % 128 == 0 and g.slots_offset % 128 == 0
    assert g.slot_size == align_up(g.message_offset + g.message_size, 128)
    assert g.segment_size == g.slots_offset + 7 * g.slot_size


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
    for region in (HEADER, DIR_ENTRY, SLOT_HEADER):
        match = re.search(rf"<!-- table:{region.name} -->\n(.*?)\n<!-- /table -->", text, re.S)
        assert match, f"docs/LAYOUT.md has no table for {region.name}"
        assert match.group(1).splitlines() == markdown_table(region)


def test_layout_md_states_flags_and_version() -> None:
    text = LAYOUT_MD.read_text()
    assert f"version {VERSION_MAJOR}.{VERSION_MINOR}" in text.splitlines()[0]
    for flag in Status:
        assert re.search(rf"\| `{flag.value:#04x}` \| {flag.name} \|", text), flag.name


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
                 "LDC_STATE_INITIALISING", "LDC_IN_SYNC_MASK", "LDC_N_COUNTERS", "LDC_OK", "LDC_OUT_OF_SYNC",
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
    assert (consts["LDC_VERSION_MAJOR"], consts["LDC_VERSION_MINOR"]) == (VERSION_MAJOR, VERSION_MINOR)
    assert (consts["LDC_STATE_INITIALISING"], consts["LDC_STATE_RUNNING"], consts["LDC_STATE_STOPPED"]) == tuple(State)
    assert consts["LDC_IN_SYNC_MASK"] == _seqlock.IN_SYNC_MASK
    assert consts["LDC_N_COUNTERS"] == len(Counter)
    for flag in Status:
        assert consts[f"LDC_{flag.name}"] == flag.value
    for name in ("OK", "OUT_OF_SYNC", "GONE", "CONTENDED", "WRITER_DEAD", "WRITER_DEAD_NO_COPY"):
        assert consts[f"LDC_{name}"] == getattr(_seqlock, f"READ_{name}")
