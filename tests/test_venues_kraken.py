"""ldc.venues.kraken: the Kraken v2 book protocol, its checksum, and BookSync on the seam proven on Kraken's own
recording (shared/data/venues/kraken_v1_book1000_20210417.jsonl.gz: websocket v1 ``book-1000``, six pairs,
2,682 updates each carrying Kraken's checksum of its top 10)."""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest
from venue_reference import KrakenReference

from ldc._fastbook import FastBook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.sim.kraken import kraken_checksum
from ldc.sync import BookSync, MarkOutOfSync, OutOfSyncReason, Resubscribe, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import kraken, stream_venue, venue_table
from ldc.venues._parse import ControlKind
from ldc.venues.base import Precision, SnapshotSource
from venue_recordings import venues_dir

DEPTH = 20
KRAKEN_FILE = "kraken_v1_book1000_20210417.jsonl.gz"
RECORDED = (venues_dir() / KRAKEN_FILE).is_file()


def _sync(symbol: str, precision: Precision, window: int = 1000, published: int = DEPTH, whole: bool = True) -> BookSync:
    config = SyncConfig(rule=kraken.SEQUENCE_RULE, depth=published, snapshot_limit=window, snapshot_source=SnapshotSource.STREAM,
                        refresh_interval_s=None, checksum=kraken.book_checksum(precision), window_kept_whole=whole)  # fmt: skip
    return BookSync(symbol, lambda: FastBook(depth=published), config)


def _feed(sync: BookSync, event: DepthSnapshot | DepthDiff) -> Any:
    if isinstance(event, DepthSnapshot):
        return sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
    return sync.on_diff(event, 0.0)


STAMP = "2026-08-09T21:05:48.483587Z"
STAMP_US = 1786309548483587  # STAMP in microseconds since the epoch


def _message(kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], crc: int, symbol: str = "BTC/USD",
             stamp: str = STAMP) -> bytes:
    """A v2 book message, numbers written as JSON number tokens with their trailing zeros (as Kraken does)."""
    def side(levels: list[tuple[str, str]]) -> str:
        return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"
    data = f'{{"symbol":"{symbol}","bids":{side(bids)},"asks":{side(asks)},"checksum":{crc},"timestamp":"{stamp}"}}'
    return f'{{"channel":"book","type":"{kind}","data":[{data}]}}'.encode()


def _event(raw: bytes, depth: int = 10) -> DepthSnapshot | DepthDiff:
    parsed = kraken.parse_message(raw, depth)
    assert isinstance(parsed, list) and len(parsed) == 1
    return parsed[0].event


# -- the protocol ----------------------------------------------------------------------------------------------


def test_checksum_equals_the_documented_rule_written_from_the_text() -> None:
    """Random books: ldc's checksum of the parsed floats equals the CRC of the texts as Kraken writes them
    (the simulator's independent implementation), trailing zeros and leading zeros included."""
    rng = random.Random(15)
    for _ in range(200):
        p, q = rng.randint(0, 6), rng.randint(0, 8)
        prices = sorted({round(rng.uniform(0.0001, 99999.0), p) for _ in range(24)})
        asks = [(f"{x:.{p}f}", f"{rng.uniform(0, 500):.{q}f}") for x in prices[12:]]
        bids = [(f"{x:.{p}f}", f"{rng.uniform(0, 500):.{q}f}") for x in reversed(prices[:12])]
        asks = [a for a in asks if float(a[1])] or [("1" + "0" * 6, "1")]
        bids = [b for b in bids if float(b[1])]
        expected = kraken_checksum([list(b) for b in bids], [list(a) for a in asks])  # type: ignore[arg-type]
        floats = ([(float(a), float(b)) for a, b in bids], [(float(a), float(b)) for a, b in asks])
        assert kraken.checksum(floats[0], floats[1], Precision(p, q)) == expected


def test_numbers_are_read_exactly_including_trailing_zeros_and_exponents() -> None:
    event = _event(_message("snapshot", [("0.5666", "4831.75496356")], [("0.56680", "1E-8")], 0))
    assert isinstance(event, DepthSnapshot)
    assert (list(event.bids), list(event.asks), event.limit) == ([(0.5666, 4831.75496356)], [(0.5668, 1e-08)], 10)


def test_subscribe_message_is_kraken_v2_with_the_channels_depth() -> None:
    assert orjson.loads(kraken.subscribe_message("book.25", ["BTC/USD", "ETH/USD"], "7")) == {
        "method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25, "snapshot": True}, "req_id": 7}
    with pytest.raises(ConfigError, match=r"channel 'book.30' not offered by Kraken"):
        kraken.subscribe_message("book.30", ["BTC/USD"], "1")


def test_symbols_in_kraken_syntax_and_other_venues_forms_named() -> None:
    assert kraken.symbol_error("BTC/USD") == ""
    assert kraken.symbol_error("BTC-USD") == "expected a Kraken pair like 'BTC/USD', found 'BTC-USD'"


def test_controls_carry_krakens_words_and_the_pair() -> None:
    error = kraken.parse_message(b'{"error":"Currency pair not supported NOPE/USD","method":"subscribe","req_id":1,"success":false,"symbol":"NOPE/USD"}', 10)
    assert (error.kind, error.topic, error.message) == (ControlKind.ERROR, "NOPE/USD", "Currency pair not supported NOPE/USD")  # type: ignore[union-attr]
    ack = kraken.parse_message(b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true}', 10)
    assert (ack.kind, ack.topic) == (ControlKind.ACK, "BTC/USD")  # type: ignore[union-attr]
    assert kraken.parse_message(b'{"method":"pong","req_id":3}', 10).kind is ControlKind.PONG  # type: ignore[union-attr]
    assert kraken.parse_message(b'{"channel":"heartbeat"}', 10).kind is ControlKind.OTHER  # type: ignore[union-attr]


def test_an_error_without_method_or_channel_is_an_error_in_krakens_words() -> None:
    """Kraken answers excess messages with ``{"Error":"Exceeded msg rate"}`` (no channel, no method): it was
    taken for an unnamed channel and dropped unsaid; now the connection's log says it."""
    for raw, words in ((b'{"Error":"Exceeded msg rate"}', "Exceeded msg rate"), (b'{"error":"EGeneral:Internal error"}', "EGeneral:Internal error")):
        control = kraken.parse_message(raw, 10)
        assert (control.kind, control.topic, control.message) == (ControlKind.ERROR, "", words)  # type: ignore[union-attr]


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"1.0","qty":1}],"asks":[],"checksum":1}]}',
     r"field 'bids'\[0\]: expected a non-negative JSON number, found '1.0'"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":-1}]}',
     r"field 'checksum': expected an unsigned 32-bit integer, found -1"),
    (b'{"channel":"book","type":"snap","data":[]}', r"field 'type': expected 'snapshot' or 'update', found 'snap'"),
    (b'{"channel":"book",', r"message is not valid json"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1}]}',
     r"field 'timestamp': expected an RFC 3339 UTC time like '2023-10-06T17:35:55.440295Z', found None"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1,"timestamp":"2026-08-09 21:05:48Z"}]}',
     r"field 'timestamp': expected an RFC 3339 UTC time .*, found '2026-08-09 21:05:48Z'"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1,"timestamp":"2026-02-30T21:05:48.1Z"}]}',
     r"field 'timestamp': expected a valid UTC date and time, found '2026-02-30T21:05:48.1Z'"),
])  # fmt: skip
def test_malformed_book_messages_name_the_field(raw: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        kraken.parse_message(raw, 10)


def test_asset_pairs_give_v2_names_and_decimals() -> None:
    body = b'{"error":[],"result":{"XXBTZUSD":{"wsname":"XBT/USD","pair_decimals":1,"lot_decimals":8},"XDGUSD":{"wsname":"XDG/USD","pair_decimals":7,"lot_decimals":8}}}'
    assert kraken.parse_asset_pairs(body) == {"BTC/USD": Precision(1, 8), "DOGE/USD": Precision(7, 8)}


def test_stream_venue_needs_the_pairs_precision_and_keeps_the_channels_depth() -> None:
    venue = stream_venue("kraken", "book.100")
    assert isinstance(venue, kraken.KrakenStream) and venue.depth == 100 and venue_table("kraken").levels_of("book.100") == 100
    with pytest.raises(ConfigError, match="BTC/USD: no precision known"):
        venue.checksum_for("BTC/USD", None)


def test_update_id_is_the_timestamp_in_microseconds_and_event_time_its_milliseconds() -> None:
    """Kraken has no update id: a book is keyed by its message's ``timestamp`` (as the simulator's truth and any
    replay are), read exactly from the text; digits beyond the microsecond are cut, never rounded up."""
    assert datetime.fromisoformat(STAMP[:-1]).replace(tzinfo=timezone.utc).timestamp() * 1e6 == pytest.approx(STAMP_US, abs=1)
    snapshot = _event(_message("snapshot", [("1.0", "1")], [("2.0", "1")], 0))
    assert isinstance(snapshot, DepthSnapshot) and (snapshot.last_update_id, snapshot.event_time_ms) == (STAMP_US, STAMP_US // 1000)
    update = _event(_message("update", [("1.0", "2")], [], 0, stamp="2026-08-09T21:05:48.483587999Z"))
    assert isinstance(update, DepthDiff)
    assert (update.first_id, update.final_id, update.event_time_ms) == (STAMP_US, STAMP_US, STAMP_US // 1000)
    assert kraken.timestamp_us("1970-01-01T00:00:01Z") == 1_000_000 and kraken.timestamp_us("2026-08-09T21:05:48.5Z") == STAMP_US - 483587 + 500000


def test_the_published_id_is_the_newest_timestamp_equal_for_equal_stamps_and_never_back() -> None:
    """Two messages with one timestamp publish one id (the later message's book: equal ids mean the same exchange
    microsecond, not the same book); a timestamp that steps back leaves the id where it was."""
    precision = Precision(1, 2)
    bids, asks = [("100.0", "1.00")], [("101.0", "1.00")]
    sync = _sync("BTC/USD", precision, 10, 1)
    _feed(sync, _event(_message("snapshot", bids, asks, kraken_checksum([list(b) for b in bids], [list(a) for a in asks]))))  # type: ignore[arg-type]
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, STAMP_US)
    later = "2026-08-09T21:05:48.483600Z"
    for quantity, stamp, expected in (("2.00", later, STAMP_US + 13), ("3.00", later, STAMP_US + 13), ("4.00", STAMP, STAMP_US + 13)):
        crc = kraken_checksum([["100.0", quantity]], [list(a) for a in asks])  # type: ignore[list-item]
        _feed(sync, _event(_message("update", [("100.0", quantity)], [], crc, stamp=stamp)))
        assert (sync.state, sync.update_id, sync.checksum_mismatches) == (SyncState.SYNCED, expected, 0)
    assert sync.book is not None and sync.book.levels()[0] == [(100.0, 4.0)]


# -- BookSync with Kraken's policies -----------------------------------------------------------------------------


def test_levels_beyond_the_depth_are_dropped_and_the_checksum_holds_then_a_mismatch_resyncs_that_pair_alone() -> None:
    precision = Precision(1, 2)
    bids = [(f"{100 - i}.0", "1.00") for i in range(10)]
    asks = [(f"{101 + i}.0", "1.00") for i in range(10)]
    crc = kraken_checksum([list(b) for b in bids], [list(a) for a in asks])  # type: ignore[arg-type]
    sync, other = _sync("BTC/USD", precision, 10, 5), _sync("ETH/USD", precision, 10, 5)
    for s in (sync, other):
        _feed(s, _event(_message("snapshot", bids, asks, crc)))
        assert s.state is SyncState.SYNCED and s.checksums == 1
    # a better bid pushes 91.0 out of the depth: Kraken sends no delete, the book must cut it
    new_bids = [("100.5", "2.00")] + bids[:9]
    crc2 = kraken_checksum([list(b) for b in new_bids], [list(a) for a in asks])  # type: ignore[arg-type]
    _feed(sync, _event(_message("update", [("100.5", "2.00")], [], crc2)))
    assert sync.book is not None and len(sync.book.levels()[0]) == 10 and sync.checksum_mismatches == 0
    assert _feed(sync, _event(_message("update", [("99.0", "3.00")], [], crc2))) == (
        MarkOutOfSync(OutOfSyncReason.CHECKSUM), Resubscribe(OutOfSyncReason.CHECKSUM))
    assert (sync.checksum_mismatches, sync.state) == (1, SyncState.BUFFERING)
    assert other.state is SyncState.SYNCED and other.checksum_mismatches == 0


def test_a_level_entering_the_depth_keeps_the_book_in_sync_as_kraken_keeps_its_window_whole() -> None:
    """book.10 published at depth 10: a bid inside the window is deleted and Kraken sends the level that comes into
    the 10th place, deeper than any level the snapshot showed. The venue keeps its window whole (the stream venue
    says so, the feeder passes it on): the book stays SYNCED, its checksum verified. Without the declaration (the
    coverage rule of a REST snapshot cut at its limit) the same messages flag it UNCOVERED."""
    assert stream_venue("kraken", "book.10").keeps_window_whole is True  # type: ignore[union-attr]
    assert stream_venue("okx", "books").keeps_window_whole is False  # type: ignore[union-attr]
    precision = Precision(1, 2)
    bids = [(f"{100 - i}.0", "1.00") for i in range(10)]
    asks = [(f"{101 + i}.0", "1.00") for i in range(10)]
    new_bids = bids[:3] + bids[4:] + [("90.0", "5.00")]  # 97.0 deleted, 90.0 enters at the 10th place
    crc, crc2 = (kraken_checksum([list(b) for b in side], [list(a) for a in asks]) for side in (bids, new_bids))  # type: ignore[arg-type]
    for whole, expected in ((True, SyncState.SYNCED), (False, SyncState.UNCOVERED)):
        sync = _sync("BTC/USD", precision, 10, 10, whole=whole)
        _feed(sync, _event(_message("snapshot", bids, asks, crc)))
        actions = _feed(sync, _event(_message("update", [("97.0", "0.00"), ("90.0", "5.00")], [], crc2)))
        assert (sync.state, sync.checksums, sync.checksum_mismatches) == (expected, 2, 0), actions
        assert sync.book is not None and sync.book.levels()[0] == [(float(p), float(q)) for p, q in new_bids]
    with pytest.raises(ConfigError, match="window_kept_whole needs a stream snapshot source, found rest"):
        SyncConfig(rule=kraken.SEQUENCE_RULE, depth=10, snapshot_limit=10, window_kept_whole=True)


# -- the genuine recording (v1) ----------------------------------------------------------------------------------


def _v1_as_v2(msg: list[Any]) -> dict[str, Any]:
    """A v1 book message in v2's shape (Decimal numbers), for the independent reference."""
    sides = {k: v for part in msg[1:-2] for k, v in part.items()}
    def levels(key: str) -> list[dict[str, Decimal]]:
        return [{"price": Decimal(level[0]), "qty": Decimal(level[1])} for level in sides.get(key, [])]
    snapshot = "as" in sides or "bs" in sides
    return {"type": "snapshot" if snapshot else "update",
            "data": [{"bids": levels("bs" if snapshot else "b"), "asks": levels("as" if snapshot else "a"), "checksum": sides.get("c")}]}


@pytest.mark.skipif(not RECORDED, reason="shared/data/venues recordings not present")
def test_recording_every_checksum_verified_and_the_top_20_equal_a_decimal_replay() -> None:
    syncs: dict[str, BookSync] = {}
    refs: dict[str, KrakenReference] = {}
    compared = 0
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    with gzip.open(venues_dir() / KRAKEN_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] != "recv" or not record["data"].startswith("[") or '"book-1000"' not in record["data"]:
                continue
            raw = record["data"]
            (event,) = kraken.parse_v1_message(raw)  # type: ignore[misc]
            if event.symbol not in syncs:
                precision = kraken.v1_precision(raw)
                syncs[event.symbol] = _sync(event.symbol, precision)
                refs[event.symbol] = KrakenReference(1000, precision.price_decimals, precision.size_decimals)
            sync, ref = syncs[event.symbol], refs[event.symbol]
            shaped = _v1_as_v2(json.loads(raw))
            if shaped["data"][0]["checksum"] is None:  # v1 sends none with a snapshot
                shaped["data"][0]["checksum"] = kraken.checksum(*_top_floats(ref, shaped), Precision(ref.price_decimals, ref.qty_decimals))
            ref.apply(shaped)
            _feed(sync, event.event)
            assert sync.state is SyncState.SYNCED and sync.book is not None
            n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
            ref_bids, ref_asks = ref.book.top(DEPTH)
            assert bids[:n_bids].tolist() == [[float(p), float(q)] for p, q in ref_bids]
            assert asks[:n_asks].tolist() == [[float(p), float(q)] for p, q in ref_asks]
            compared += 1
    assert compared == 2688 and sorted(syncs) == ["ADA/XBT", "ETH/CHF", "KSM/XBT", "SC/EUR", "WAVES/EUR", "XBT/CHF"]
    assert sum(s.checksums for s in syncs.values()) == 2682
    assert sum(s.checksum_mismatches + s.resyncs + s.faults for s in syncs.values()) == 0
    assert sum(r.mismatches for r in refs.values()) == 0  # the reference agrees with Kraken on its own


def _top_floats(ref: KrakenReference, shaped: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The snapshot's own top 10 (v1 sends no checksum with it: the reference checks what it computes)."""
    data = shaped["data"][0]
    bids = sorted(((float(x["price"]), float(x["qty"])) for x in data["bids"]), reverse=True)[:10]
    asks = sorted((float(x["price"]), float(x["qty"])) for x in data["asks"])[:10]
    return bids, asks


def test_an_unreadable_message_of_a_pair_resyncs_that_pair_its_checksum_covers_only_the_top_10() -> None:
    """Kraken has no sequence: a refused update may have changed level 15 and the next checksum still match."""
    from ldc.sync import MESSAGE_LOST

    precision = Precision(1, 2)
    bids, asks = [(f"{100 - i}.0", "1.00") for i in range(12)], [(f"{101 + i}.0", "1.00") for i in range(12)]
    crc = kraken_checksum([list(b) for b in bids], [list(a) for a in asks])  # type: ignore[arg-type]
    venue = kraken.KrakenStream("book.25")
    raw = _message("update", [("88.0", "oops")], [], crc).replace(b"oops", b'"oops"')
    with pytest.raises(ProtocolError, match=r"field 'bids'\[0\]"):
        venue.parse(raw)
    assert venue.stream_of(raw) == "BTC/USD" and venue.stream_of(b"{") == ""
    sync = _sync("BTC/USD", precision, 25, 5)
    assert sync.feed(MESSAGE_LOST, 0.0) == ()  # no book yet: the snapshot decides
    _feed(sync, _event(_message("snapshot", bids, asks, crc), 25))
    assert sync.feed(MESSAGE_LOST, 0.0) == (MarkOutOfSync(OutOfSyncReason.GAP), Resubscribe(OutOfSyncReason.GAP))
    assert (sync.gaps, sync.state, sync.book) == (1, SyncState.BUFFERING, None)
