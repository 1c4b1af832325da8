"""Stream names and payloads per Binance's stream documents (spot web-socket-streams.md "Diff. Depth
Stream"; derivatives "Diff. Book Depth Streams"), and the HTTP head parser."""

from __future__ import annotations

import json

import pytest

from ldc.sim.httpmsg import HttpError, Response, parse_head, split_target
from ldc.sim.markets import Family
from ldc.sim.streams import encode_diff, parse_stream, silent_stream_symbol, wrap_combined


def test_spot_stream_names() -> None:
    assert parse_stream("btcusdt@depth", Family.SPOT) == ("BTCUSDT", 1000, 0)
    assert parse_stream("btcusdt@depth@100ms", Family.SPOT) == ("BTCUSDT", 100, 0)
    assert parse_stream("btcusdt@depth@0ms", Family.SPOT) is None
    assert parse_stream("BTCUSDT@depth", Family.SPOT) is None  # stream names are lower case
    assert parse_stream("btcusdt@depth5", Family.SPOT) == ("BTCUSDT", 1000, 5)
    assert parse_stream("btcusdt@depth20@100ms", Family.SPOT) == ("BTCUSDT", 100, 20)
    assert parse_stream("btcusdt@depth7", Family.SPOT) is None
    assert parse_stream("btcusdt@depth50", Family.SPOT) is None
    assert parse_stream("btcusdt@trade", Family.SPOT) is None


def test_futures_stream_names() -> None:
    assert parse_stream("btcusdt@depth", Family.USDM) == ("BTCUSDT", 250, 0)
    assert [parse_stream(f"btcusd_perp@depth@{s}", Family.COINM) for s in ("0ms", "100ms", "500ms")] == [("BTCUSD_PERP", 0, 0), ("BTCUSD_PERP", 100, 0), ("BTCUSD_PERP", 500, 0)]
    assert parse_stream("btcusdt@depth10@500ms", Family.USDM) == ("BTCUSDT", 500, 10)
    assert parse_stream("btcusdt@depth10@0ms", Family.USDM) is None


def test_other_documented_stream_types_are_known_and_silent() -> None:
    known = {"btcusdt@aggTrade": "BTCUSDT", "btcusdt@trade": "BTCUSDT", "bnbbtc@kline_1M": "BNBBTC",
             "bnbbtc@kline_1s@+08:00": "BNBBTC", "btcusdt@bookTicker": "BTCUSDT", "btcusdt@ticker_4h": "BTCUSDT",
             "btcusdt@markPrice@1s": "BTCUSDT", "btcusd_perp@forceOrder": "BTCUSD_PERP", "!miniTicker@arr": "",
             "!markPrice@arr@1s": "", "!bookTicker": ""}  # fmt: skip
    assert {name: silent_stream_symbol(name) for name in known} == known
    for name in ("btcusdt@kline_7m", "BTCUSDT@trade", "btcusdt@trades", "btcusdt@trade,ethusdt@trade", "!nothing@arr",
                 "btcusdt@depth", "@trade"):  # fmt: skip
        assert silent_stream_symbol(name) is None, name


def test_payloads_are_json_in_the_documented_key_order() -> None:
    spot = json.loads(encode_diff(Family.SPOT, "BNBBTC", event_ms=1, first_id=157, final_id=160, prev_final_id=0, bids='["0.0024","10"]', asks=""))
    assert spot == {"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": 157, "u": 160, "b": [["0.0024", "10"]], "a": []}
    coin = json.loads(encode_diff(Family.COINM, "BTCUSD_PERP", event_ms=5, first_id=2, final_id=3, prev_final_id=1, bids="", asks="", pair="BTCUSD"))
    assert list(coin) == ["e", "E", "T", "s", "ps", "U", "u", "pu", "b", "a"] and coin["pu"] == 1
    assert json.loads(wrap_combined("a@depth", b"{}")) == {"stream": "a@depth", "data": {}}


def test_http_head_and_target() -> None:
    method, target, headers = parse_head(b"GET /api/v3/depth?symbol=BTCUSDT&limit=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (method, headers["connection"]) == ("GET", "close")
    assert split_target(target) == ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5"})
    with pytest.raises(HttpError, match="bad request line"):
        parse_head(b"nonsense\r\n\r\n")
    encoded = Response(429, b"{}", [("Retry-After", "3")]).encode(keep_alive=False)
    assert encoded.startswith(b"HTTP/1.1 429 Too Many Requests\r\n") and b"Retry-After: 3\r\n" in encoded and b"Connection: close" in encoded
