"""Wire format of the fan-out, version 2 (docs/FANOUT.md; README "Past one host").

Subjects, for group ``G`` (group names and symbols never contain ``.``, ``*``, ``>`` or spaces):

- ``ldc.G._batch``: the markets that changed since the relay's last send, binary (below), one
  message per send (split at ``MAX_BATCH_BYTES``).
- ``ldc.G._hb``: the relay's heartbeat, JSON (``Info``: the origin's geometry, whether its feeder
  runs, the last sequence per market), every ``relay.HEARTBEAT_INTERVAL_S``.
- ``ldc.G._state``: request with a symbol as payload -> reply a batch holding the last entry the
  relay published for it (the same entry bytes as on the stream), or an empty payload when the
  relay does not know it.

A batch is ``ENVELOPE`` (magic, version, kind, entry count, epoch, batch sequence), the group (u8
length + UTF-8), then ``count`` entries. An entry is ``ENTRY`` (the market's own sequence, the
origin slot header exactly as ``SLOT_HEADER`` lays it out, the symbol's and the status message's
lengths), the symbol, the status message, then ``n_bids`` and ``n_asks`` levels of 16 bytes. Every
field of the slot header comes from ``ldc.shm.layout``, so a layout change changes the wire with it
(and ``VERSION`` must follow). The per-market sequence is what the mirror checks: a lost batch is a
gap in each market it carried, and only those resync.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from collections.abc import Set as AbstractSet
from typing import Final, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from ldc.shm.layout import COUNTER_FIELDS, GROUP_NAME_RE, LEVEL_SIZE, NAME_SIZE, SLOT_HEADER, SYMBOL_SIZE

MAGIC: Final = b"LDCN"
VERSION: Final = 2  # bump on any change of the envelope, the entry or SLOT_HEADER (1: one update per message)
KIND_BATCH: Final = 2
ENVELOPE: Final = struct.Struct("<4sBBHQQ")  # magic, version, kind, entry count, epoch, batch sequence
_LEN8: Final = struct.Struct("<B")
SUBJECT_PREFIX: Final = "ldc"
BATCH_TOKEN: Final = "_batch"
HEARTBEAT_TOKEN: Final = "_hb"
STATE_TOKEN: Final = "_state"
# A send is split into batches of at most this many bytes (one entry alone may be larger, up to the
# server's max_payload): small enough for a server's modest max_payload / max_pending (64 KiB in the
# slow-consumer test), large enough that 200 depth-20 markets (~0.8 KB each) take 3 messages.
MAX_BATCH_BYTES: Final = 60 * 1024
MAX_BATCH_ENTRIES: Final = 2**16 - 1  # the envelope's u16 count
_FORBIDDEN_IN_TOKEN: Final = frozenset(".*> \t\r\n")

_STRUCT_CODES: Final = {"u32": "I", "u64": "Q", "i64": "q"}
_HEADER_CODES: Final = "".join(_STRUCT_CODES[f.type] for f in SLOT_HEADER.fields)
# the slot header as one struct, built from the layout table (never typed twice)
SLOT_STRUCT: Final = struct.Struct("<" + _HEADER_CODES)
# an entry's fixed part: the market's sequence, the slot header, symbol length, message length
ENTRY: Final = struct.Struct("<Q" + _HEADER_CODES + "BH")
_INDEX: Final = {f.name: i for i, f in enumerate(SLOT_HEADER.fields)}
assert SLOT_STRUCT.size == SLOT_HEADER.size, "every slot header field must be a scalar u32/u64/i64"
assert ENTRY.size == 8 + SLOT_HEADER.size + 3, "no padding inside an entry's fixed part"
_HEADER_SIZE: Final = SLOT_HEADER.size

Levels = npt.NDArray[np.float64]
LevelView: TypeAlias = "Levels | memoryview[float]"  # (n, 2) float64 price, quantity: best first


class DecodeError(ValueError):
    """A message that is not a fan-out batch of this version (counted and dropped by the mirror)."""


def data_subject(group: str) -> str:
    """The subject every batch of the group travels on."""
    return f"{SUBJECT_PREFIX}.{group}.{BATCH_TOKEN}"


def control_subject(group: str, token: str) -> str:
    return f"{SUBJECT_PREFIX}.{group}.{token}"


def symbol_is_token(symbol: str) -> bool:
    """True when the symbol can be one NATS subject token (and is not a control token)."""
    return bool(symbol) and not symbol.startswith("_") and not (_FORBIDDEN_IN_TOKEN & set(symbol))


def check_group(group: str) -> str:
    if not GROUP_NAME_RE.fullmatch(group):
        raise ValueError(f"group name must match {GROUP_NAME_RE.pattern}, got {group!r}")
    return group


_SEQ: Final = struct.Struct("<Q")
_LENGTHS: Final = struct.Struct("<BH")


def encode_entry(seq: int, symbol: bytes, slot: memoryview, n_bids: int, n_asks: int, bids_offset: int, asks_offset: int,
                 message: bytes) -> bytes:
    """One market's entry from a consistent slot copy ``slot`` (the reader's buffer: ``slot_size``
    bytes laid out as the origin's geometry says; ``n_bids`` / ``n_asks`` are its header's)."""
    return b"".join((_SEQ.pack(seq), slot[:_HEADER_SIZE], _LENGTHS.pack(len(symbol), len(message)), symbol, message,
                     slot[bids_offset : bids_offset + n_bids * LEVEL_SIZE], slot[asks_offset : asks_offset + n_asks * LEVEL_SIZE]))


def encode_batch(epoch: int, batch_seq: int, group: bytes, entries: list[bytes]) -> bytes:
    """One message of ``entries`` (each from ``encode_entry``; at most ``MAX_BATCH_ENTRIES``)."""
    return b"".join((ENVELOPE.pack(MAGIC, VERSION, KIND_BATCH, len(entries), epoch, batch_seq),
                     _LEN8.pack(len(group)), group, *entries))


def batch_count(batch: bytes) -> int:
    """The entry count of a batch ``encode_batch`` made (its envelope's)."""
    return int.from_bytes(batch[6:8], "little")


def split_batches(entries: list[bytes], limit: int = MAX_BATCH_BYTES) -> list[list[bytes]]:
    """``entries`` in order, cut into runs of at most ``limit`` bytes (an entry larger goes alone)."""
    runs: list[list[bytes]] = [[]]
    size = 0
    for entry in entries:
        if runs[-1] and (size + len(entry) > limit or len(runs[-1]) == MAX_BATCH_ENTRIES):
            runs.append([])
            size = 0
        runs[-1].append(entry)
        size += len(entry)
    return runs if runs[0] else []


_COUNTERS_AT: Final = _INDEX[COUNTER_FIELDS[0]]
assert [_INDEX[name] for name in COUNTER_FIELDS] == list(range(_COUNTERS_AT, _COUNTERS_AT + len(COUNTER_FIELDS)))


class Update(NamedTuple):
    """A decoded entry: the origin slot's fields by their layout names, levels as (n, 2) arrays.
    (A NamedTuple, not a dataclass: the mirror makes one per update and this is half the cost.)"""

    epoch: int
    seq: int
    group: str
    symbol: str
    fields: tuple[int, ...]  # SLOT_HEADER field values in layout order
    message: bytes
    bids: LevelView
    asks: LevelView

    def field(self, name: str) -> int:
        return self.fields[_INDEX[name]]

    @property
    def update_id(self) -> int:
        return self.fields[_UPDATE_ID]

    @property
    def status(self) -> int:
        return self.fields[_STATUS]

    @property
    def gen(self) -> int:
        return self.fields[_GEN]

    @property
    def counters(self) -> tuple[int, ...]:
        return self.fields[_COUNTERS_AT : _COUNTERS_AT + len(COUNTER_FIELDS)]


class Batch(NamedTuple):
    epoch: int
    batch_seq: int
    group: str
    updates: list[Update]
    skipped: int  # entries of markets not wanted (decode_batch's ``wanted``)


_UPDATE_ID: Final = _INDEX["update_id"]
_STATUS: Final = _INDEX["status"]
_GEN: Final = _INDEX["gen"]
_N_BIDS: Final = _INDEX["n_bids"]
_N_ASKS: Final = _INDEX["n_asks"]


def decode_batch(data: bytes, max_depth: int, wanted: AbstractSet[str] | None = None) -> Batch:
    """Parse one batch, every entry checked; raises DecodeError naming what was expected and what
    was found (the whole message is dropped: a garbled length leaves nothing after it trustworthy).
    With ``wanted``, the other markets' entries are checked and counted (``Batch.skipped``) but not
    decoded (a ``--symbols`` mirror)."""
    if len(data) < ENVELOPE.size + 1:
        raise DecodeError(f"batch of {len(data)} bytes, expected at least {ENVELOPE.size + 1}")
    magic, version, kind, count, epoch, batch_seq = ENVELOPE.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION or kind != KIND_BATCH:
        raise DecodeError(f"version {version} kind {kind}, expected version {VERSION} kind {KIND_BATCH}")
    pos = ENVELOPE.size + 1
    glen = data[ENVELOPE.size]
    if glen > NAME_SIZE - 1 or pos + glen > len(data):
        raise DecodeError(f"group name of {glen} bytes, at most {NAME_SIZE - 1} fit in the {len(data)}-byte batch")
    try:
        group = data[pos : pos + glen].decode()
        view = memoryview(data)
        updates = []
        pos += glen
        for _ in range(count):
            update, pos = _entry(data, view, pos, epoch, group, max_depth, wanted)
            if update is not None:
                updates.append(update)
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or garbled batch: {exc}") from None
    if pos != len(data):
        raise DecodeError(f"batch of {len(data)} bytes, its {count} entries say {pos}")
    return Batch(epoch, batch_seq, group, updates, count - len(updates))


def decode_entry(data: bytes, max_depth: int) -> Update:
    """One entry alone (as ``Origin.changes`` makes it), epoch 0 and no group: for tools and tests."""
    try:
        update, end = _entry(data, memoryview(data), 0, 0, "", max_depth, None)
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or garbled entry: {exc}") from None
    if end != len(data) or update is None:
        raise DecodeError(f"entry of {len(data)} bytes, its fields say {end}")
    return update


def decode_entry_at(data: bytes, pos: int, epoch: int, group: str, max_depth: int) -> Update:
    """The entry at ``pos`` of a batch that ``decode_batch`` accepts (the mirror's C path hands the
    entries it does not apply itself to the Python path this way)."""
    try:
        update, _ = _entry(data, memoryview(data), pos, epoch, group, max_depth, None)
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or garbled entry: {exc}") from None
    assert update is not None
    return update


def _entry(data: bytes, view: memoryview, pos: int, epoch: int, group: str, max_depth: int,
           wanted: AbstractSet[str] | None) -> tuple[Update | None, int]:
    head = ENTRY.unpack_from(data, pos)
    slen, mlen = head[-2], head[-1]
    fields = head[1:-2]
    pos += ENTRY.size
    if slen > SYMBOL_SIZE - 1:
        raise DecodeError(f"symbol of {slen} bytes at {pos}, at most {SYMBOL_SIZE - 1}")
    symbol = data[pos : pos + slen].decode()
    pos += slen
    message = data[pos : pos + mlen]
    pos += mlen
    n_bids, n_asks = fields[_N_BIDS], fields[_N_ASKS]
    if n_bids > max_depth or n_asks > max_depth:
        raise DecodeError(f"{symbol}: {n_bids} bids / {n_asks} asks, the segment holds at most {max_depth}")
    mid = pos + n_bids * LEVEL_SIZE
    end = mid + n_asks * LEVEL_SIZE
    if end > len(data):
        raise DecodeError(f"{symbol}: entry ends at {end}, past the {len(data)}-byte batch")
    if wanted is not None and symbol not in wanted:
        return None, end
    return Update(epoch, head[0], group, symbol, fields, message, _levels(view, pos, n_bids), _levels(view, mid, n_asks)), end


def _levels(view: memoryview, pos: int, n: int) -> LevelView:
    """(n, 2) float64 view of the batch's bytes: a memoryview cast costs a third of numpy's
    frombuffer + reshape + slice, and SegmentWriter.publish takes any such buffer."""
    if n == 0:
        return _NO_LEVELS
    return view[pos : pos + n * LEVEL_SIZE].cast("d", (n, 2))


_NO_LEVELS: Final[Levels] = np.zeros((0, 2))


@dataclass(frozen=True)
class Info:
    """What the relay says of its origin: enough to create a mirror segment of the same geometry,
    whether the origin's writer is alive, and the last sequence published per market (so a mirror
    sees a lost last message of a quiet market)."""

    group: str
    exchange: str
    depth: int
    capacity: int
    epoch: int
    origin_alive: bool
    seqs: dict[str, int]
    wire: int = 1  # the relay's wire VERSION (absent before version 2: a mirror names the mismatch)

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def decode(cls, data: bytes) -> Info:
        try:
            doc = orjson.loads(data)
            info = cls(**doc)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise DecodeError(f"info message is not the relay's JSON: {exc}") from None
        if not isinstance(info.seqs, dict) or not all(isinstance(v, int) for v in (info.depth, info.capacity, info.wire)):
            raise DecodeError(f"info message has wrong field types: {doc!r:.200}")
        return info
