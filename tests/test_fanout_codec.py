"""The fan-out's wire format and NATS options (issue 16): a batch carries origin slots as
ldc.shm.layout lays them out, each with its market's sequence, and bad input is refused naming what
was expected and what was found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from ldc.errors import ConfigError
from ldc.fanout import codec
from ldc.fanout.conn import load_options, options_from_url
from ldc.shm.layout import SLOT_HEADER, Geometry, Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from shm_helpers import unique_group, unlink_group


@pytest.fixture
def slot_copy() -> tuple[bytes, Geometry]:
    """A real slot written by SegmentWriter and copied by Reader (with its message)."""
    group = unique_group("codec")
    try:
        with SegmentWriter(group, depth=4, capacity=2, exchange="binance.com") as w:
            slot = w.add_market("BTCUSDT")
            w.set_status(slot, Status.SYNCED, "all good")
            bids = np.array([[100.0, 1.0], [99.5, 2.0], [99.0, 3.0]])
            asks = np.array([[100.5, 4.0], [101.0, 5.0]])
            w.publish(slot, update_id=42, event_time_ms=7, recv_time_ns=8, status=Status.SYNCED, bids=bids, asks=asks, n_bids=3, n_asks=2)
            with Reader(group) as r:
                buf = r.new_buffer()
                assert r._seg.read(0, 1, buf, True) == 0
                return bytes(memoryview(buf)), r.geometry
    finally:
        unlink_group(group)


def entry(raw: bytes, g: Geometry, seq: int = 9, symbol: bytes = b"BTCUSDT") -> bytes:
    return codec.encode_entry(seq, symbol, memoryview(raw), 3, 2, g.bids_offset, g.asks_offset, b"all good")


def encode(raw: bytes, g: Geometry, group: bytes = b"spot") -> bytes:
    return codec.encode_batch(5, 77, group, [entry(raw, g)])


def test_an_update_round_trips_the_slot(slot_copy: tuple[bytes, Geometry]) -> None:
    raw, g = slot_copy
    (update,) = codec.decode_batch(encode(raw, g), max_depth=4).updates
    assert (update.epoch, update.seq, update.group, update.symbol) == (5, 9, "spot", "BTCUSDT")
    assert update.update_id == 42 and update.status == Status.SYNCED and update.message == b"all good"
    assert update.field("event_time_ms") == 7 and update.field("recv_time_ns") == 8
    assert update.counters[0] == 1  # updates: one publish
    assert update.bids.tolist() == [[100.0, 1.0], [99.5, 2.0], [99.0, 3.0]] and update.asks.tolist() == [[100.5, 4.0], [101.0, 5.0]]


def test_the_slot_header_on_the_wire_is_the_layout_table() -> None:
    assert codec.SLOT_STRUCT.size == SLOT_HEADER.size
    offsets = [f.offset for f in SLOT_HEADER.fields]
    assert offsets == sorted(offsets)  # the struct follows the table's order, so offsets agree


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda b: b[:10], "batch of 10 bytes, expected at least 25"),
        (lambda b: b"XXXX" + b[4:], "magic b'XXXX', expected b'LDCN'"),
        (lambda b: b[:4] + b"\x01\x01" + b[6:], "version 1 kind 1, expected version 2 kind 2"),
        (lambda b: b[:-16], "BTCUSDT: entry ends at"),
        (lambda b: b + b"\0" * 16, "its 1 entries say"),
        (lambda b: b[:6] + b"\x02" + b[7:], "truncated or garbled batch"),  # two entries claimed, one there
        (lambda b: b[:24] + b"\x7f" + b[25:], "group name of 127 bytes, at most 63"),
    ],
)
def test_bad_updates_are_refused_saying_what_was_expected(slot_copy: tuple[bytes, Geometry], mangle: object, expected: str) -> None:
    raw, g = slot_copy
    with pytest.raises(codec.DecodeError, match=None) as info:
        codec.decode_batch(mangle(encode(raw, g)), max_depth=4)  # type: ignore[operator]
    assert expected in str(info.value)


def test_more_levels_than_the_mirror_holds_are_refused(slot_copy: tuple[bytes, Geometry]) -> None:
    raw, g = slot_copy
    with pytest.raises(codec.DecodeError, match="3 bids / 2 asks, the segment holds at most 2"):
        codec.decode_batch(encode(raw, g), max_depth=2)


def test_a_batch_carries_each_markets_own_sequence_and_splits_at_its_size_limit(slot_copy: tuple[bytes, Geometry]) -> None:
    raw, g = slot_copy
    entries = [entry(raw, g, seq=100 + i, symbol=f"M{i:02d}USDT".encode()) for i in range(10)]
    batch = codec.decode_batch(codec.encode_batch(3, 4, b"spot", entries), max_depth=4)
    assert (batch.epoch, batch.batch_seq, batch.group) == (3, 4, "spot")
    assert [(u.symbol, u.seq) for u in batch.updates] == [(f"M{i:02d}USDT", 100 + i) for i in range(10)]
    assert all(u.update_id == 42 and u.bids.tolist()[0] == [100.0, 1.0] for u in batch.updates)
    runs = codec.split_batches(entries, limit=3 * len(entries[0]))
    assert [len(r) for r in runs] == [3, 3, 3, 1] and sum(runs, []) == entries
    assert codec.split_batches([entries[0]], limit=1) == [[entries[0]]]  # larger than the limit: alone
    assert codec.split_batches([]) == []
    assert codec.decode_entry(entries[2], max_depth=4).seq == 102
    # a --symbols mirror: the other markets' entries are checked and counted, not decoded
    some = codec.decode_batch(codec.encode_batch(3, 4, b"spot", entries), max_depth=4, wanted={"M03USDT", "M07USDT"})
    assert ([u.symbol for u in some.updates], some.skipped) == (["M03USDT", "M07USDT"], 8)
    with pytest.raises(codec.DecodeError, match="M09USDT: entry ends at"):
        codec.decode_batch(codec.encode_batch(3, 4, b"spot", entries)[:-1], max_depth=4, wanted={"M03USDT"})


def test_info_round_trips_and_garbage_is_refused() -> None:
    info = codec.Info("spot", "binance.com", 20, 256, 3, True, {"BTCUSDT": 4}, codec.VERSION)
    assert codec.Info.decode(info.encode()) == info
    before_v2 = {k: v for k, v in info.__dict__.items() if k != "wire"}  # a version 1 relay's heartbeat
    assert codec.Info.decode(orjson.dumps(before_v2)).wire == 1
    with pytest.raises(codec.DecodeError, match="not the relay's JSON"):
        codec.Info.decode(b'{"group": "spot"}')


def test_symbols_that_cannot_be_subject_tokens() -> None:
    assert codec.symbol_is_token("BTCUSD_PERP")
    for bad in ("A.B", "A*", ">", "A B", "_hb", ""):
        assert not codec.symbol_is_token(bad)


def test_nats_options_from_toml_and_url(tmp_path: Path) -> None:
    path = tmp_path / "nats.toml"
    path.write_text('[nats]\nservers = ["nats://a:4222", "nats://b:4222"]\nuser = "u"\npassword = "p"\n')
    options = load_options(path)
    assert options.connect_kwargs() == {"servers": ["nats://a:4222", "nats://b:4222"], "user": "u", "password": "p"}
    path.write_text('[nats]\nservers = ["nats://a:4222"]\npasword = "p"\n')
    with pytest.raises(ConfigError, match="unknown key 'pasword', expected one of"):
        load_options(path)
    path.write_text("[other]\n")
    with pytest.raises(ConfigError, match=r"expected a \[nats\] table"):
        load_options(path)
    assert options_from_url("nats://x:1,nats://y:2").servers == ("nats://x:1", "nats://y:2")
    with pytest.raises(ConfigError, match="expected a URL"):
        options_from_url(" , ")
