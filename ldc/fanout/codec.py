"""Wire format of the fan-out (docs: README "Past one host").

Subjects, for group ``G`` (group names and symbols never contain ``.``, ``*``, ``>`` or spaces):

- ``ldc.G.<SYMBOL>``: one update per origin slot change, binary (below).
- ``ldc.G._hb``: the relay's heartbeat, JSON (``Info``: the origin's geometry, whether its feeder
  runs, the last sequence per market), every ``relay.HEARTBEAT_INTERVAL_S``.
- ``ldc.G._state``: request with a symbol as payload -> reply the last update the relay published
  for it (the same bytes as on the stream), or an empty payload when the relay does not know it.

An update is ``ENVELOPE`` (magic, version, kind, epoch, seq), the group and the symbol (u8 length +
UTF-8 each), the origin slot header exactly as ``SLOT_HEADER`` lays it out (``SLOT_HEADER.size``
bytes; ``seq`` is meaningless off the host), the status message (u16 length + UTF-8), then
``n_bids`` and ``n_asks`` levels of 16 bytes. Every field offset of the slot header comes from
``ldc.shm.layout``, so a layout change changes the wire with it (and ``VERSION`` must follow).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from ldc.shm.layout import COUNTER_FIELDS, GROUP_NAME_RE, LEVEL_SIZE, NAME_SIZE, SLOT_HEADER, SYMBOL_SIZE

MAGIC: Final = b"LDCN"
VERSION: Final = 1  # bump on any change of the envelope or of SLOT_HEADER
KIND_UPDATE: Final = 1
ENVELOPE: Final = struct.Struct("<4sBBHQQ")  # magic, version, kind, reserved, epoch, seq
_LEN8: Final = struct.Struct("<B")
_LEN16: Final = struct.Struct("<H")
SUBJECT_PREFIX: Final = "ldc"
HEARTBEAT_TOKEN: Final = "_hb"
STATE_TOKEN: Final = "_state"
_FORBIDDEN_IN_TOKEN: Final = frozenset(".*> \t\r\n")

_STRUCT_CODES: Final = {"u32": "I", "u64": "Q", "i64": "q"}
# the slot header as one struct, built from the layout table (never typed twice)
SLOT_STRUCT: Final = struct.Struct("<" + "".join(_STRUCT_CODES[f.type] for f in SLOT_HEADER.fields))
_INDEX: Final = {f.name: i for i, f in enumerate(SLOT_HEADER.fields)}
assert SLOT_STRUCT.size == SLOT_HEADER.size, "every slot header field must be a scalar u32/u64/i64"

Levels = npt.NDArray[np.float64]
LevelView: TypeAlias = "Levels | memoryview[float]"  # (n, 2) float64 price, quantity: best first


class DecodeError(ValueError):
    """A message that is not a fan-out update of this version (counted and dropped by the mirror)."""


def data_subject(group: str, symbol: str) -> str:
    return f"{SUBJECT_PREFIX}.{group}.{symbol}"


def control_subject(group: str, token: str) -> str:
    return f"{SUBJECT_PREFIX}.{group}.{token}"


def symbol_is_token(symbol: str) -> bool:
    """True when the symbol can be one NATS subject token (and is not a control token)."""
    return bool(symbol) and not symbol.startswith("_") and not (_FORBIDDEN_IN_TOKEN & set(symbol))


def check_group(group: str) -> str:
    if not GROUP_NAME_RE.fullmatch(group):
        raise ValueError(f"group name must match {GROUP_NAME_RE.pattern}, got {group!r}")
    return group


def encode_update(epoch: int, seq: int, group: bytes, symbol: bytes, slot: memoryview, bids_offset: int, asks_offset: int, message_offset: int, message_size: int) -> bytes:
    """One update from a consistent slot copy ``slot`` (the reader's buffer: ``slot_size`` bytes
    laid out as the origin's geometry says)."""
    header = slot[: SLOT_HEADER.size]
    fields = SLOT_STRUCT.unpack_from(header)
    n_bids, n_asks = fields[_N_BIDS], fields[_N_ASKS]
    message = bytes(slot[message_offset : message_offset + message_size]).split(b"\0", 1)[0]
    return b"".join((
        ENVELOPE.pack(MAGIC, VERSION, KIND_UPDATE, 0, epoch, seq),
        _LEN8.pack(len(group)), group, _LEN8.pack(len(symbol)), symbol,
        header,
        _LEN16.pack(len(message)), message,
        slot[bids_offset : bids_offset + n_bids * LEVEL_SIZE],
        slot[asks_offset : asks_offset + n_asks * LEVEL_SIZE],
    ))


_COUNTERS_AT: Final = _INDEX[COUNTER_FIELDS[0]]
assert [_INDEX[name] for name in COUNTER_FIELDS] == list(range(_COUNTERS_AT, _COUNTERS_AT + len(COUNTER_FIELDS)))


class Update(NamedTuple):
    """A decoded update: the origin slot's fields by their layout names, levels as (n, 2) arrays.
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


_UPDATE_ID: Final = _INDEX["update_id"]
_STATUS: Final = _INDEX["status"]
_GEN: Final = _INDEX["gen"]
_N_BIDS: Final = _INDEX["n_bids"]
_N_ASKS: Final = _INDEX["n_asks"]


def decode_update(data: bytes, max_depth: int) -> Update:
    """Parse one update; raises DecodeError naming what was expected and what was found."""
    if len(data) < ENVELOPE.size:
        raise DecodeError(f"update of {len(data)} bytes, expected at least {ENVELOPE.size}")
    magic, version, kind, _, epoch, seq = ENVELOPE.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION or kind != KIND_UPDATE:
        raise DecodeError(f"version {version} kind {kind}, expected version {VERSION} kind {KIND_UPDATE}")
    try:
        pos = ENVELOPE.size
        group, pos = _text(data, pos, _LEN8, NAME_SIZE - 1)
        symbol, pos = _text(data, pos, _LEN8, SYMBOL_SIZE - 1)
        fields = SLOT_STRUCT.unpack_from(data, pos)
        pos += SLOT_STRUCT.size
        (mlen,) = _LEN16.unpack_from(data, pos)
        message = data[pos + 2 : pos + 2 + mlen]
        pos += 2 + mlen
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"truncated or garbled update: {exc}") from None
    n_bids, n_asks = fields[_N_BIDS], fields[_N_ASKS]
    if n_bids > max_depth or n_asks > max_depth:
        raise DecodeError(f"{symbol}: {n_bids} bids / {n_asks} asks, the segment holds at most {max_depth}")
    end = pos + (n_bids + n_asks) * LEVEL_SIZE
    if len(message) != mlen or len(data) != end:
        raise DecodeError(f"{symbol}: update of {len(data)} bytes, its fields say {end}")
    view = memoryview(data)
    mid = pos + n_bids * LEVEL_SIZE
    return Update(epoch, seq, group, symbol, fields, message, _levels(view, pos, n_bids), _levels(view, mid, n_asks))


def _levels(view: memoryview, pos: int, n: int) -> LevelView:
    """(n, 2) float64 view of the update's bytes: a memoryview cast costs a third of numpy's
    frombuffer + reshape + slice, and SegmentWriter.publish takes any such buffer."""
    if n == 0:
        return np.zeros((0, 2))
    return view[pos : pos + n * LEVEL_SIZE].cast("d", (n, 2))


def _text(data: bytes, pos: int, length: struct.Struct, limit: int) -> tuple[str, int]:
    (n,) = length.unpack_from(data, pos)
    pos += length.size
    raw = data[pos : pos + n]
    if len(raw) != n or n > limit:
        raise DecodeError(f"text field of {n} bytes at {pos}, at most {limit} fit in the {len(data)}-byte update")
    return raw.decode(), pos + n


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

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def decode(cls, data: bytes) -> Info:
        try:
            doc = orjson.loads(data)
            info = cls(**doc)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise DecodeError(f"info message is not the relay's JSON: {exc}") from None
        if not isinstance(info.seqs, dict) or not isinstance(info.depth, int) or not isinstance(info.capacity, int):
            raise DecodeError(f"info message has wrong field types: {doc!r:.200}")
        return info
