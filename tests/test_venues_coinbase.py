"""ldc.venues.coinbase: the Advanced Trade level2 protocol, and BookSync on the seam proven on Coinbase's own
recording (shared/data/venues/coinbase_advanced_level2_20260809.jsonl.gz: BTC-USD and ETH-USD on one
connection with ticker, market_trades, candles and heartbeats; ``sequence_num`` shared by all of them)."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest
from venue_reference import CoinbaseReference

from ldc._fastbook import FastBook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.sync import BookSync, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import coinbase, stream_venue, venue_table
from ldc.venues._parse import ControlKind, VenueControl
from ldc.venues.base import SequenceScope, SnapshotSource
from venue_recordings import venues_dir

DEPTH = 20
COINBASE_FILE = "coinbase_advanced_level2_20260809.jsonl.gz"
RECORDED = (venues_dir() / COINBASE_FILE).is_file()


def _sync(product: str) -> BookSync:
    config = SyncConfig(rule=coinbase.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=coinbase.WHOLE_BOOK_LEVELS,
                        snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)  # fmt: skip
    return BookSync(product, lambda: FastBook(depth=DEPTH), config)


def _l2(seq: int, kind: str, product: str, updates: list[tuple[str, str, str]]) -> bytes:
    return orjson.dumps({"channel": "l2_data", "timestamp": "2026-08-09T21:05:48.505350477Z", "sequence_num": seq, "events": [
        {"type": kind, "product_id": product, "updates": [
            {"side": side, "event_time": "2026-08-09T21:05:48.210883Z", "price_level": price, "new_quantity": size}
            for side, price, size in updates]}]})  # fmt: skip


# -- the protocol ----------------------------------------------------------------------------------------------


def test_subscribe_is_one_product_a_request_then_heartbeats() -> None:
    assert [orjson.loads(m) for m in coinbase.subscribe_messages("level2", ["BTC-USD", "ETH-USD"])] == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "channel": "heartbeats"},
    ]
    with pytest.raises(ConfigError, match="channel 'level3' not offered by Coinbase, expected 'level2'"):
        coinbase.subscribe_messages("level3", ["BTC-USD"])


def test_symbols_in_coinbase_syntax_and_the_form_named() -> None:
    assert coinbase.symbol_error("BTC-USD") == ""
    assert coinbase.symbol_error("BTCUSD") == "expected a Coinbase product id like 'BTC-USD', found 'BTCUSD'"


def test_book_events_carry_the_connections_sequence_and_other_channels_too() -> None:
    (event,) = coinbase.parse_message(_l2(14, "update", "BTC-USD", [("bid", "65062.5", "0.00583"), ("offer", "65063", "0")]))  # type: ignore[misc]
    diff = event.event
    assert isinstance(diff, DepthDiff)
    assert (diff.first_id, diff.final_id, list(diff.bids), list(diff.asks)) == (14, 14, [(65062.5, 0.00583)], [(65063.0, 0.0)])
    assert diff.event_time_ms == 1786309548505
    beat = coinbase.parse_message(b'{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48.8Z","sequence_num":35,"events":[{"heartbeat_counter":41691}]}')
    assert isinstance(beat, VenueControl) and (beat.kind, beat.sequence) == (ControlKind.OTHER, 35)
    error = coinbase.parse_message(b'{"type":"error","message":"Failed to subscribe: unknown product ids [\'NOPE-USD\']"}')
    assert isinstance(error, VenueControl) and (error.kind, error.topic) == (ControlKind.ERROR, "NOPE-USD")


def test_the_snapshot_is_the_whole_book_sorted() -> None:
    (event,) = coinbase.parse_message(_l2(0, "snapshot", "BTC-USD", [("bid", "10", "1"), ("offer", "12", "1"), ("bid", "11", "2"), ("offer", "11.5", "3")]))  # type: ignore[misc]
    snapshot = event.event
    assert isinstance(snapshot, DepthSnapshot)
    assert (list(snapshot.bids), list(snapshot.asks), snapshot.limit) == ([(11.0, 2.0), (10.0, 1.0)], [(11.5, 3.0), (12.0, 1.0)], coinbase.WHOLE_BOOK_LEVELS)


@pytest.mark.parametrize(("raw", "error"), [
    (_l2(1, "update", "BTC-USD", [("ask", "1", "1")]), r"field 'updates'\[0\].side of BTC-USD: expected 'bid' or 'offer', found 'ask'"),
    (_l2(1, "update", "BTC-USD", [("bid", "x", "1")]), r"field 'price_level'\[0\]: expected a non-negative decimal string, found 'x'"),
    (b'{"channel":"l2_data","events":[]}', r"field 'sequence_num': expected an integer, found nothing"),
])  # fmt: skip
def test_malformed_messages_name_the_field(raw: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        coinbase.parse_message(raw)


def test_the_stream_venue_is_connection_scoped_and_keeps_the_whole_book() -> None:
    venue = stream_venue("coinbase")
    assert isinstance(venue, coinbase.CoinbaseStream)
    assert venue.scope is SequenceScope.CONNECTION and venue_table("coinbase").levels_of("level2") == coinbase.WHOLE_BOOK_LEVELS


# -- the genuine recording ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not RECORDED, reason="shared/data/venues recordings not present")
def test_recording_sequence_continuous_top_20_equal_a_decimal_replay_and_the_tickers_as_the_readme_says() -> None:
    syncs: dict[str, BookSync] = {}
    ref = CoinbaseReference()
    last_seq, compared, at_once, tickers = -1, 0, 0, 0
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    with gzip.open(venues_dir() / COINBASE_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] != "recv":
                continue
            message: dict[str, Any] = json.loads(record["data"])
            ref.apply(message)  # raises on a gap of the connection's sequence
            parsed = coinbase.parse_message(record["data"])
            seq = parsed.sequence if isinstance(parsed, VenueControl) else parsed[0].event.final_id if isinstance(parsed[0].event, DepthDiff) else parsed[0].event.last_update_id
            assert seq == last_seq + 1
            last_seq = seq
            if message["channel"] == "ticker":
                for event in message["events"]:
                    for ticker in event["tickers"]:
                        sync = syncs.get(ticker["product_id"])
                        if sync is not None and sync.book is not None:
                            tickers += 1
                            best = (sync.book.best_bid(), sync.book.best_ask())
                            at_once += best[0] is not None and best[1] is not None and (best[0][0], best[1][0]) == (float(ticker["best_bid"]), float(ticker["best_ask"]))
            if isinstance(parsed, VenueControl):
                continue
            for event in parsed:
                sync = syncs.setdefault(event.product, _sync(event.product))
                if isinstance(event.event, DepthSnapshot):
                    sync.feed(SnapshotResult(event.event, SnapshotPurpose.LIVE), 0.0)
                else:
                    sync.on_diff(event.event, 0.0)
                assert sync.state is SyncState.SYNCED and sync.book is not None and sync.update_id == seq
                n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
                ref_bids, ref_asks = ref.books[event.product].top(DEPTH)
                assert bids[:n_bids].tolist() == [[float(Decimal(p)), float(Decimal(q))] for p, q in ref_bids]
                assert asks[:n_asks].tolist() == [[float(Decimal(p)), float(Decimal(q))] for p, q in ref_asks]
                compared += 1
    assert sorted(syncs) == ["BTC-USD", "ETH-USD"] and compared >= 775
    assert sum(s.resyncs + s.faults + s.gaps for s in syncs.values()) == 0
    assert (at_once, tickers) == (132, 154)  # the README's figure: a ticker is not ordered with level2
