"""Header validation shared by the reader and the writer's takeover: bytes in, Geometry or LayoutError out."""

from __future__ import annotations

import os
import pwd
import re
import stat
import struct
from collections.abc import Callable
from typing import Final

from ldc.errors import LayoutError, SegmentError
from ldc.shm.files import owner_name
from ldc.shm.layout import (
    DIR_ENTRY_SIZE,
    ENDIAN_MARKER,
    HEADER,
    HEADER_SIZE,
    LEVEL_SIZE,
    MAGIC,
    MAGIC_BYTES,
    SLOT_ALIGN,
    FEEDER_STATS_SIZE,
    SLOT_HEADER_SIZE,
    STATS_MIN_MINOR,
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
    if raw[:8] == MAGIC_BYTES[::-1]:
        raise LayoutError(f"segment {name} is in the other byte order (magic {raw[:8]!r}): ldc segments are little-endian")
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
    return _geometry(raw, name, mapped, minor)


WORD: Final = 8  # readers copy words and load gen atomically: arrays and entries must be 8-aligned

# Step 7 of docs/LAYOUT.md section 7, in its order and with its rule names (the test checks both
# against the document, readers/c/ldc.h and readers/rust). Python ints never overflow; other
# languages compute these sums and products in 64 bits, where u32 operands cannot overflow.
GEOMETRY_RULES: Final[tuple[tuple[str, Callable[[dict[str, int]], bool]], ...]] = (
    ("header_size >= 384", lambda v: v["header_size"] >= HEADER_SIZE),
    ("directory_entry_size >= 64", lambda v: v["directory_entry_size"] >= DIR_ENTRY_SIZE),
    ("directory_offset >= header_size", lambda v: v["directory_offset"] >= v["header_size"]),
    ("directory_offset and directory_entry_size multiples of 8",
     lambda v: v["directory_offset"] % WORD == 0 and v["directory_entry_size"] % WORD == 0),
    ("1 <= capacity", lambda v: v["capacity"] >= 1),
    ("directory_offset + capacity * directory_entry_size <= slots_offset",
     lambda v: v["directory_offset"] + v["capacity"] * v["directory_entry_size"] <= v["slots_offset"]),
    ("slots_offset multiple of 128", lambda v: v["slots_offset"] % SLOT_ALIGN == 0),
    ("slot_size multiple of 128", lambda v: v["slot_size"] % SLOT_ALIGN == 0 and v["slot_size"] > 0),
    ("1 <= depth", lambda v: v["depth"] >= 1),
    ("bids_offset >= 128", lambda v: v["bids_offset"] >= SLOT_HEADER_SIZE),
    ("bids_offset and asks_offset multiples of 8", lambda v: v["bids_offset"] % WORD == 0 and v["asks_offset"] % WORD == 0),
    ("asks_offset >= bids_offset + 16 * depth", lambda v: v["asks_offset"] >= v["bids_offset"] + LEVEL_SIZE * v["depth"]),
    ("message_offset >= asks_offset + 16 * depth",
     lambda v: v["message_offset"] >= v["asks_offset"] + LEVEL_SIZE * v["depth"]),
    ("1 <= message_size", lambda v: v["message_size"] >= 1),
    ("message_offset + message_size <= slot_size", lambda v: v["message_offset"] + v["message_size"] <= v["slot_size"]),
    ("slots_offset + capacity * slot_size <= segment_size",
     lambda v: v["slots_offset"] + v["capacity"] * v["slot_size"] <= v["segment_size"]),
)
GEOMETRY_FIELDS: Final = (
    "header_size", "segment_size", "directory_offset", "directory_entry_size", "slots_offset", "slot_size",
    "capacity", "depth", "bids_offset", "asks_offset", "message_offset", "message_size",
)


def _geometry(raw: bytes, name: str, mapped: int, minor: int) -> Geometry:
    v = {f: header_value(raw, f) for f in GEOMETRY_FIELDS}
    for rule, holds in GEOMETRY_RULES:
        if not holds(v):
            raise LayoutError(f"segment {name} has bad geometry: {rule} fails ({_details(rule, v)})")
    if v["segment_size"] > mapped:
        raise LayoutError(f"segment {name} has segment_size {v['segment_size']} but the file has {mapped} bytes (truncated)")
    depth, capacity, slot_size = v["depth"], v["capacity"], v["slot_size"]
    slots_end = v["slots_offset"] + capacity * slot_size
    # 2.1: the feeder-stats block follows the slots (LAYOUT.md section 16); a 2.0 file has none
    has_stats = minor >= STATS_MIN_MINOR and slots_end + FEEDER_STATS_SIZE <= v["segment_size"]
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
        stats_offset=slots_end if has_stats else 0,
    )


def _details(rule: str, v: dict[str, int]) -> str:
    """The values the rule names, e.g. ``asks_offset 448, bids_offset 128, depth 20``."""
    return ", ".join(f"{k} {v[k]}" for k in GEOMETRY_FIELDS if re.search(rf"\b{k}\b", rule))


GROUP_OTHER_WRITE: Final = stat.S_IWGRP | stat.S_IWOTH


def check_mode(st: os.stat_result, name: str) -> None:
    """Step 2 of LAYOUT.md section 7: a segment only its owner can write. A file another account can
    write (or a non-regular file) is not an ldc writer's, whatever its header says."""
    if not stat.S_ISREG(st.st_mode) or st.st_mode & GROUP_OTHER_WRITE:
        raise SegmentError(
            f"segment {name} has mode {stat.S_IMODE(st.st_mode):04o}"
            + ("" if stat.S_ISREG(st.st_mode) else " and is not a regular file")
            + f" (owner uid {st.st_uid}): a segment must be a regular file writable by its owner alone"
        )


FEEDER_USER_ENV: Final = "LDC_FEEDER_USER"  # the feeders' account (name or uid) a reader trusts, alone
DEFAULT_FEEDER_USER: Final = "ldc"  # the systemd unit's static user (systemd/sysusers.d/ldc.conf)


def trusted_owners(owner: str | int | None = None) -> frozenset[int]:
    """The uids whose segments a reader accepts (LAYOUT.md section 7 step 2): ``owner`` if given, else
    ``$LDC_FEEDER_USER`` if set, else root, this process's own user and the account ``ldc`` if it exists.
    Any other account could otherwise present a complete, live segment of its own whenever the name is
    free (no feeder yet, a stopped one removed by ``ldc clean``): only the mode was checked."""
    chosen = owner if owner is not None else os.environ.get(FEEDER_USER_ENV) or None
    if chosen is not None:
        return frozenset({_uid(chosen)})
    found = {0, os.geteuid()}
    try:
        found.add(pwd.getpwnam(DEFAULT_FEEDER_USER).pw_uid)
    except KeyError:
        pass
    return frozenset(found)


def _uid(user: str | int) -> int:
    if isinstance(user, int) or user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise SegmentError(f"no user {user!r} on this host (the feeders' account a reader trusts)") from None


def check_owner(st: os.stat_result, name: str, trusted: frozenset[int]) -> None:
    """Step 2 of LAYOUT.md section 7, the owner: a segment of an account the reader does not trust."""
    if st.st_uid not in trusted:
        names = ", ".join(owner_name(uid) for uid in sorted(trusted))
        raise SegmentError(
            f"segment {name} belongs to {owner_name(st.st_uid)}, not to a feeders' account this reader trusts "
            f"({names}; set {FEEDER_USER_ENV} or Reader(owner=...) to the feeders' user)"
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
