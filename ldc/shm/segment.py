"""Header validation shared by the reader and the writer's takeover: bytes in, Geometry or LayoutError out."""

from __future__ import annotations

import os
import struct
from typing import Final

from ldc.errors import LayoutError
from ldc.shm.layout import (
    ARRAY_ALIGN,
    DIR_ENTRY_SIZE,
    ENDIAN_MARKER,
    HEADER,
    HEADER_SIZE,
    LEVEL_SIZE,
    MAGIC,
    MAGIC_BYTES,
    MAX_CAPACITY,
    MAX_DEPTH,
    SLOT_ALIGN,
    SLOT_HEADER_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    Geometry,
)

_CODES: Final = {"u16": "H", "u32": "I", "i32": "i", "u64": "Q", "i64": "q"}


def header_value(raw: bytes, name: str) -> int:
    field = HEADER[name]
    value: int = struct.unpack_from("<" + _CODES[field.type], raw, field.offset)[0]
    return value


def header_text(raw: bytes, name: str) -> str:
    field = HEADER[name]
    return raw[field.offset : field.offset + field.count].split(b"\0", 1)[0].decode(errors="replace")


def parse_header(raw: bytes, name: str, mapped: int) -> Geometry:
    """Validate the identity and geometry of a segment whose first bytes are ``raw`` and whose file
    holds ``mapped`` bytes. Checks run in the order a reader must run them (docs/LAYOUT.md)."""
    if mapped < HEADER_SIZE or len(raw) < HEADER_SIZE:
        raise LayoutError(f"segment {name} is {mapped} bytes, expected at least a {HEADER_SIZE}-byte header")
    magic = header_value(raw, "magic")
    if magic == 0:
        raise LayoutError(f"segment {name} is not initialised (magic is 0): its writer is starting or died while creating it")
    if magic != MAGIC:
        raise LayoutError(f"segment {name} has magic {raw[:8]!r}, expected {MAGIC_BYTES!r}")
    major, minor = header_value(raw, "version_major"), header_value(raw, "version_minor")
    if major != VERSION_MAJOR:
        raise LayoutError(
            f"segment {name} has layout version {major}.{minor}, this reader understands {VERSION_MAJOR}.{VERSION_MINOR}"
        )
    endian = header_value(raw, "endian_marker")
    if endian != ENDIAN_MARKER:
        raise LayoutError(f"segment {name} has endian marker {endian:#018x}, expected {ENDIAN_MARKER:#018x}")
    return _geometry(raw, name, mapped)


def _geometry(raw: bytes, name: str, mapped: int) -> Geometry:
    v = {f: header_value(raw, f) for f in (
        "header_size", "segment_size", "directory_offset", "directory_entry_size", "slots_offset", "slot_size",
        "capacity", "depth", "bids_offset", "asks_offset", "message_offset", "message_size",
    )}
    depth, capacity, slot_size = v["depth"], v["capacity"], v["slot_size"]
    problems = [
        (not 1 <= depth <= MAX_DEPTH, f"depth {depth} outside 1..{MAX_DEPTH}"),
        (not 1 <= capacity <= MAX_CAPACITY, f"capacity {capacity} outside 1..{MAX_CAPACITY}"),
        (v["header_size"] < HEADER_SIZE, f"header_size {v['header_size']} < {HEADER_SIZE}"),
        (v["directory_entry_size"] < DIR_ENTRY_SIZE, f"directory_entry_size {v['directory_entry_size']} < {DIR_ENTRY_SIZE}"),
        (v["directory_offset"] < v["header_size"], f"directory_offset {v['directory_offset']} inside the header"),
        (v["slots_offset"] % SLOT_ALIGN or slot_size % SLOT_ALIGN, f"slots_offset {v['slots_offset']} / slot_size {slot_size} not {SLOT_ALIGN}-aligned"),
        (v["directory_offset"] + capacity * v["directory_entry_size"] > v["slots_offset"], "directory overlaps the slots"),
        (v["bids_offset"] < SLOT_HEADER_SIZE or v["bids_offset"] % ARRAY_ALIGN, f"bids_offset {v['bids_offset']}"),
        (v["asks_offset"] < v["bids_offset"] + depth * LEVEL_SIZE or v["asks_offset"] % ARRAY_ALIGN, f"asks_offset {v['asks_offset']}"),
        (v["message_offset"] < v["asks_offset"] + depth * LEVEL_SIZE, f"message_offset {v['message_offset']}"),
        (v["message_offset"] + v["message_size"] > slot_size or v["message_size"] < 1, f"message_size {v['message_size']}"),
        (v["slots_offset"] + capacity * slot_size > v["segment_size"], f"segment_size {v['segment_size']} smaller than its slots"),
        (v["segment_size"] > mapped, f"segment_size {v['segment_size']} but the file has {mapped} bytes (truncated)"),
    ]
    for bad, what in problems:
        if bad:
            raise LayoutError(f"segment {name} has an inconsistent layout: {what}")
    return Geometry(
        depth=depth,
        capacity=capacity,
        header_size=v["header_size"],
        directory_offset=v["directory_offset"],
        directory_entry_size=v["directory_entry_size"],
        slots_offset=v["slots_offset"],
        slot_size=slot_size,
        bids_offset=v["bids_offset"],
        asks_offset=v["asks_offset"],
        message_offset=v["message_offset"],
        message_size=v["message_size"],
        segment_size=v["segment_size"],
    )


def read_geometry(fd: int, name: str) -> Geometry:
    """parse_header() on an open segment file."""
    size = os.fstat(fd).st_size
    return parse_header(os.pread(fd, HEADER_SIZE, 0), name, size)


def truncate_utf8(text: str, limit: int) -> bytes:
    """``text`` encoded, cut to at most ``limit`` bytes on a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return data
    return data[:limit].decode(errors="ignore").encode()
