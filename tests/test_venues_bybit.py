"""ldc.venues.bybit: the Bybit v5 orderbook protocol, and BookSync on the seam proven on Bybit's own recording.

The recording (shared/data/venues/bybit_v5_orderbook200_20260809.jsonl.gz, 2026-08-09) holds a linear and a
spot connection with orderbook.200 and tickers of BTCUSDT and ETHUSDT: the tickers' best prices equal the
book's best after the last orderbook message with ``seq <= cs`` (the README's oracle, 332 checkpoints)."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import orjson
import pytest

from ldc._fastbook import FastBook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ConfigError
from ldc.sync import BookSync, MarkOutOfSync, OutOfSyncReason, Resubscribe, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import bybit
from ldc.venues._parse import ControlKind
from ldc.venues.base import SnapshotSource
from venue_recordings import BYBIT_FILE, DecimalBook, records, venues_dir

DEPTH = 20
RECORDED = (venues_dir() / BYBIT_FILE).is_file()


def _sync(topic: str) -> BookSync:
    config = SyncConfig(rule=bybit.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=200,
                        snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)  # fmt: skip
    return BookSync(topic, lambda: FastBook(depth=DEPTH), config)


def _feed(sync: BookSync, event: DepthSnapshot | DepthDiff) -> Any:
    if isinstance(event, DepthSnapshot):
        return sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
    return sync.on_diff(event, 0.0)


def _message(kind: str, u: int, bids: list[list[str]], asks: list[list[str]], symbol: str = "BTCUSDT") -> bytes:
    return orjson.dumps({"topic": f"orderbook.50.{symbol}", "type": kind, "ts": 1672304484978, "cts": 1672304484976,
                         "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": 7961638724}})  # fmt: skip


def _event(raw: bytes) -> DepthSnapshot | DepthDiff:
    parsed = bybit.parse_message(raw)
    assert isinstance(parsed, bybit.BookEvent)
    return parsed.event


def _synced(u: int = 100) -> BookSync:
    sync = _sync("orderbook.50.BTCUSDT")
    _feed(sync, _event(_message("snapshot", u, [["16493.50", "0.006"], ["16493.00", "0.100"]], [["16611.00", "0.029"]])))
    assert (sync.state, sync.update_id) == (SyncState.SYNCED, u)
    return sync


# -- the protocol ----------------------------------------------------------------------------------------------


def test_subscribe_ping_and_the_spot_args_limit() -> None:
    assert orjson.loads(bybit.subscribe_message("linear", ["orderbook.200.BTCUSDT"], "1")) == {
        "req_id": "1", "op": "subscribe", "args": ["orderbook.200.BTCUSDT"]}  # fmt: skip
    assert orjson.loads(bybit.ping_message("9")) == {"req_id": "9", "op": "ping"}
    with pytest.raises(ConfigError, match="11 topics on spot, expected 1..10"):
        bybit.subscribe_message("spot", [f"orderbook.1.S{i}USDT" for i in range(11)], "1")
    assert bybit.topic("orderbook.1000", "ETHUSDT") == "orderbook.1000.ETHUSDT"
    with pytest.raises(ConfigError, match="channel 'orderbook.25' not offered by Bybit"):
        bybit.topic("orderbook.25", "BTCUSDT")


def test_a_symbol_in_another_venues_syntax_names_the_bybit_form() -> None:
    assert bybit.symbol_error("BTCUSDT") == ""
    assert bybit.symbol_error("BTC-USDT") == "expected a Bybit symbol like 'BTCUSDT', found 'BTC-USDT'"


def test_control_messages_of_each_category_are_classified() -> None:
    spot_pong = b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}'
    linear_pong = b'{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"","op":"ping"}'
    assert bybit.parse_message(spot_pong).kind is bybit.parse_message(linear_pong).kind is ControlKind.PONG  # type: ignore[union-attr]
    ack = bybit.parse_message(b'{"success":true,"ret_msg":"subscribe","conn_id":"2324d924","op":"subscribe"}')
    assert ack.kind is ControlKind.ACK  # type: ignore[union-attr]
    error = bybit.parse_message(b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.200.NOPEUSDT","conn_id":"c","op":"subscribe"}')
    assert (error.kind, error.topic, error.message) == (  # type: ignore[union-attr]
        ControlKind.ERROR, "orderbook.200.NOPEUSDT", "error:handler not found,topic:orderbook.200.NOPEUSDT")
    ticker = bybit.parse_message(b'{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT"},"cs":1,"ts":2}')
    assert ticker.kind is ControlKind.OTHER  # type: ignore[union-attr]


def test_delta_u_continues_and_a_gap_resubscribes_that_market_only() -> None:
    sync, other = _synced(), _synced()
    assert _feed(sync, _event(_message("delta", 101, [["16493.50", "0"]], []))) is not None
    assert sync.book is not None and sync.book.best_bid() == (16493.0, 0.1)
    assert _feed(sync, _event(_message("delta", 103, [], []))) == (MarkOutOfSync(OutOfSyncReason.GAP), Resubscribe(OutOfSyncReason.GAP))
    assert (sync.gaps, sync.state, other.state) == (1, SyncState.BUFFERING, SyncState.SYNCED)


def test_u_equal_1_and_any_snapshot_reset_the_book() -> None:
    sync = _synced(5000)
    restart = _event(_message("delta", 1, [["100.0", "1"]], [["101.0", "1"]]))
    assert isinstance(restart, DepthSnapshot)  # u == 1 is snapshot data after a service restart
    _feed(sync, restart)
    assert (sync.state, sync.update_id, sync.gaps) == (SyncState.SYNCED, 1, 0)
    assert sync.book is not None and (sync.book.best_bid(), sync.book.best_ask()) == ((100.0, 1.0), (101.0, 1.0))
    _feed(sync, _event(_message("delta", 2, [["100.5", "2"]], [])))
    assert sync.book.best_bid() == (100.5, 2.0) and sync.update_id == 2


# -- the genuine recording ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not RECORDED, reason="shared/data/venues recordings not present")
def test_recording_best_prices_equal_the_tickers_and_the_top_20_a_decimal_replay() -> None:
    syncs: dict[tuple[str, str], BookSync] = {}  # (connection, topic): the same topic is on the spot and linear URLs
    reference: dict[tuple[str, str], DecimalBook] = {}
    bests: dict[tuple[str, str], list[tuple[int, float, float]]] = {}  # (seq, best bid, best ask) after each message
    tickers: dict[tuple[str, str], dict[str, str]] = {}
    checkpoints: list[tuple[tuple[str, str], int, str, str]] = []
    compared = 0
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for record in records(BYBIT_FILE):
        if record["t"] != "recv":
            continue
        conn, raw = str(record["conn"]), str(record["data"])
        msg = orjson.loads(raw)
        name = msg.get("topic", "")
        if name.startswith("tickers."):
            data, key = msg["data"], (conn, "orderbook.200." + name.split(".")[1])
            best = tickers.setdefault(key, {})
            best.update({k: data[k] for k in ("bid1Price", "ask1Price") if k in data})
            if ("bid1Price" in data or "ask1Price" in data) and len(best) == 2 and "cs" in msg:
                checkpoints.append((key, msg["cs"], best["bid1Price"], best["ask1Price"]))
            continue
        parsed = bybit.parse_message(raw)
        if not isinstance(parsed, bybit.BookEvent):
            continue
        key = (conn, parsed.topic)
        sync = syncs.get(key) or syncs.setdefault(key, _sync(parsed.topic))
        ref = reference.setdefault(key, DecimalBook())
        (ref.reset if msg["type"] == "snapshot" else ref.apply)(msg["data"]["b"], msg["data"]["a"])
        _feed(sync, parsed.event)
        assert sync.state is SyncState.SYNCED and sync.book is not None
        n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
        assert (bids[:n_bids].tolist(), asks[:n_asks].tolist()) == ref.top_floats(DEPTH)
        compared += 1
        bests.setdefault(key, []).append((msg["data"]["seq"], bids[0][0], asks[0][0]))
    matched = 0
    for key, cs, bid, ask in checkpoints:
        history = bests[key]
        index = bisect.bisect_right([seq for seq, _, _ in history], cs) - 1
        if index < 0:
            continue  # a ticker from before the book's first message
        assert history[index][1:] == (float(bid), float(ask)), (key, cs)
        matched += 1
    assert matched == 332 and compared > 1300
    assert sum(s.gaps + s.resyncs for s in syncs.values()) == 0
    assert len(syncs) == 4


def test_regression_a_window_thinner_than_the_published_depth_stays_synced_without_resubscribing() -> None:
    """orderbook.50 keeps exactly 50 levels a side: a book built from it is whole, even when deletions leave
    fewer levels than the depth published (it was flagged uncovered and resubscribed on every such delta)."""
    levels = 50
    sync = BookSync("orderbook.50.BTCUSDT", lambda: FastBook(depth=levels), SyncConfig(
        rule=bybit.SEQUENCE_RULE, depth=levels, snapshot_limit=levels, snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None))  # fmt: skip
    bids = [[f"{1000 - i}.00", "1"] for i in range(levels)]
    asks = [[f"{1001 + i}.00", "1"] for i in range(levels)]
    _feed(sync, _event(_message("snapshot", 10, bids, asks)))
    assert sync.state is SyncState.SYNCED
    actions = _feed(sync, _event(_message("delta", 11, [["1000.00", "0"]], [])))  # 49 bids left, as on the exchange
    assert (sync.state, [a for a in actions if isinstance(a, Resubscribe)]) == (SyncState.SYNCED, [])


def test_a_group_cannot_publish_more_levels_than_its_channel_keeps() -> None:
    from ldc.config import parse_config

    text = '[[group]]\nname = "g"\nexchange = "bybit-spot"\nsymbols = ["BTCUSDT"]\nchannel = "orderbook.50"\ndepth = 60\n'
    with pytest.raises(ConfigError, match=r"key 'depth' expected an integer in 1..50, found 60"):
        parse_config(text)
