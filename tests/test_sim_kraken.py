"""The Kraken websocket v2 simulator family (ldc.sim.kraken), checked against Kraken's documented protocol
(shared/reference/exchanges.md section 4) and an independent Decimal replay (tests/venue_reference.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
import websocket
from venue_clients import connect, recv_json
from venue_reference import KrakenReference, kraken_crc

from ldc.sim import SimConfig, Simulator
from ldc.sim.venue_faults import venue_fault_from_cli


@pytest.fixture(scope="module")
def kraken() -> Iterator[Simulator]:
    sim = Simulator(SimConfig(spot_symbols=(), kraken_symbols=("BTC/USD", "ETH/USD"), history_events=5000, seed=11)).start()
    yield sim
    sim.stop()


def decimal_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def subscribe(sim: Simulator, symbols: list[str], depth: int, req_id: int = 1) -> websocket.WebSocket:
    ws = connect(sim.kraken_ws_url)
    status = recv_json(ws)
    assert status["channel"] == "status" and status["data"][0]["api_version"] == "v2"
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": symbols, "depth": depth}, "req_id": req_id}))
    return ws


def recv_decimal(ws: websocket.WebSocket) -> Any:
    return decimal_json(ws.recv())


FAULT_SHOWS_WITHIN_S = 15.0


def book_messages(ws: websocket.WebSocket, seconds: float) -> list[Any]:
    out = []
    for text in raw_texts(ws, seconds):
        message = decimal_json(text)
        if message.get("channel") == "book":
            out.append(message)
    return out


def raw_texts(ws: websocket.WebSocket, seconds: float) -> list[str]:
    texts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            texts.append(ws.recv())
        except websocket.WebSocketTimeoutException:
            break
    return texts


def us_of(timestamp: str) -> int:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int((moment - datetime(1970, 1, 1)).total_seconds()) * 1_000_000 + moment.microsecond


@pytest.mark.parametrize("depth", [10, 100])
def test_book_messages_keep_the_checksum_and_equal_the_truth(kraken: Simulator, depth: int) -> None:
    ws = subscribe(kraken, ["BTC/USD"], depth, req_id=7)
    ack = recv_decimal(ws)
    assert ack["method"] == "subscribe" and ack["success"] is True and ack["req_id"] == 7
    assert ack["result"] == {"channel": "book", "depth": depth, "snapshot": True, "symbol": "BTC/USD"}
    messages = book_messages(ws, 1.0)
    ws.close()
    assert messages[0]["type"] == "snapshot" and len(messages) > 10
    assert len(messages[0]["data"][0]["bids"]) == depth
    ref = KrakenReference(depth=depth, price_decimals=1, qty_decimals=8)
    stamps = []
    for message in messages:
        ref.apply(message)
        stamps.append(us_of(message["data"][0]["timestamp"]))
        truth = kraken.venue_truth("kraken", "BTC/USD", update_id=stamps[-1], depth=depth)
        assert ref.book.top(depth) == ([(Decimal(p), Decimal(q)) for p, q in truth["bids"]], [(Decimal(p), Decimal(q)) for p, q in truth["asks"]])
    assert ref.checksums == len(messages) and ref.mismatches == 0
    assert stamps == sorted(set(stamps))


def test_numbers_keep_the_pair_precision_as_json_number_tokens(kraken: Simulator) -> None:
    ws = subscribe(kraken, ["ETH/USD"], 10)
    recv_decimal(ws)
    text = next(t for t in raw_texts(ws, 0.5) if '"snapshot"' in t)
    ws.close()
    level = text.split('"bids":[')[1].split("}")[0]
    price, qty = level.split(",")
    assert price.startswith('{"price":') and len(price.split(".")[1]) == 2
    assert qty.startswith('"qty":') and len(qty.split(".")[1]) == 8 and '"' not in qty.split(":")[1]


def test_one_ack_per_symbol_and_errors_name_the_pair(kraken: Simulator) -> None:
    ws = subscribe(kraken, ["BTC/USD", "DOGE/USD"], 25, req_id=9)
    answers = [m for m in (recv_decimal(ws) for _ in range(3)) if m.get("method") == "subscribe"]
    assert [a["success"] for a in answers] == [True, False]
    assert answers[1]["error"] == "Currency pair not supported DOGE/USD" and answers[1]["symbol"] == "DOGE/USD"
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 7}}))
    refusal = next(m for m in (recv_decimal(ws) for _ in range(5)) if m.get("success") is False)
    assert refusal["error"] == "depth must be one of 10, 25, 100, 500, 1000, found 7"
    ws.send(json.dumps({"method": "ping", "req_id": 42}))
    pong = next(m for m in (recv_decimal(ws) for _ in range(20)) if m.get("method") == "pong")
    assert pong["req_id"] == 42 and "time_in" in pong
    ws.close()


def test_heartbeats_flow_on_a_subscribed_connection(kraken: Simulator) -> None:
    ws = subscribe(kraken, ["ETH/USD"], 10)
    texts = raw_texts(ws, 2.3)
    ws.close()
    assert 2 <= texts.count('{"channel":"heartbeat"}') <= 3


def test_instrument_channel_and_asset_pairs_give_the_precisions(kraken: Simulator) -> None:
    ws = connect(kraken.kraken_ws_url)
    recv_decimal(ws)
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}}))
    recv_decimal(ws)
    pairs = {p["symbol"]: (p["price_precision"], p["qty_precision"]) for p in recv_decimal(ws)["data"]["pairs"]}
    ws.close()
    assert pairs == {"BTC/USD": (1, 8), "ETH/USD": (2, 8)}
    rest = requests.get(f"{kraken.kraken_rest_url}/0/public/AssetPairs", timeout=5).json()["result"]
    assert rest["XBTUSD"]["wsname"] == "XBT/USD" and rest["XBTUSD"]["pair_decimals"] == 1


def test_wrong_checksum_and_drop_faults_are_caught_by_the_checksum(kraken: Simulator) -> None:
    for rule in ("checksum:count=1,symbol=BTC/USD", "drop:count=1,symbol=BTC/USD"):
        ws = subscribe(kraken, ["BTC/USD"], 10)
        recv_decimal(ws)
        ref = KrakenReference(depth=10, price_decimals=1, qty_decimals=8)
        first = book_messages(ws, 0.2)
        for message in first:
            ref.apply(message)
        # this connection's own: the previous round's, closed by the client, may not be closed at the
        # server yet on a loaded host, and took the unselected drop (and this round saw none)
        port = ws.sock.getsockname()[1]
        conns = requests.get(f"{kraken.kraken_rest_url}/_sim/connections", timeout=5).json()["connections"]
        conn = next(c["id"] for c in conns if c["port"] == port)
        kraken.add_venue_fault("kraken", venue_fault_from_cli(f"{rule},conn={conn}"))
        # until the fault shows (a loaded host streams slowly: a fixed window could end before the
        # message that reveals it), at most FAULT_SHOWS_WITHIN_S
        deadline = time.monotonic() + FAULT_SHOWS_WITHIN_S
        while ref.mismatches == 0 and time.monotonic() < deadline:
            for message in book_messages(ws, 0.5):
                ref.apply(message)
        ws.close()
        assert ref.mismatches >= 1, rule


# -- websocket v1 on "/" (Kraken serves it beside v2; cryptofeed's Kraken speaks it)


def v1_as_v2(message: list[Any], symbol: str) -> dict[str, Any]:
    """A v1 book message as the v2 shape KrakenReference applies (the snapshot has no checksum in v1)."""
    parts = message[1:-2]
    sides = {key: levels for part in parts for key, levels in part.items() if key != "c"}
    snapshot = "as" in sides
    bids = [{"price": Decimal(p), "qty": Decimal(q)} for p, q, _ in sides.get("bs" if snapshot else "b", [])]
    asks = [{"price": Decimal(p), "qty": Decimal(q)} for p, q, _ in sides.get("as" if snapshot else "a", [])]
    checksum = parts[-1].get("c")
    if checksum is None:
        top_bids = sorted(((b["price"], b["qty"]) for b in bids), reverse=True)[:10]
        top_asks = sorted((a["price"], a["qty"]) for a in asks)[:10]
        checksum = kraken_crc(top_bids, top_asks, 1, 8)
    data = {"symbol": symbol, "bids": bids, "asks": asks, "checksum": int(checksum)}
    return {"channel": "book", "type": "snapshot" if snapshot else "update", "data": [data]}


def test_v1_book_on_the_root_path_keeps_its_checksum_and_equals_the_truth(kraken: Simulator) -> None:
    ws = connect(kraken.kraken_ws_url[: -len("/v2")] + "/")
    status = recv_json(ws)
    assert (status["event"], status["status"]) == ("systemStatus", "online")
    ws.send(json.dumps({"event": "subscribe", "pair": ["XBT/USD", "XBT/EUR"], "subscription": {"name": "book", "depth": 10}, "reqid": 7}))
    ws.send(json.dumps({"event": "ping", "reqid": 8}))
    texts = raw_texts(ws, 1.5)
    ws.close()
    objects = [json.loads(t) for t in texts if t.startswith("{")]
    ack = next(o for o in objects if o.get("status") == "subscribed")
    assert ack == {"channelID": ack["channelID"], "channelName": "book-10", "event": "subscriptionStatus", "pair": "XBT/USD",
                   "status": "subscribed", "subscription": {"depth": 10, "name": "book"}, "reqid": 7}  # fmt: skip
    refused = next(o for o in objects if o.get("status") == "error")
    assert (refused["pair"], refused["errorMessage"]) == ("XBT/EUR", "Currency pair not supported XBT/EUR")
    assert {"event": "pong", "reqid": 8} in objects and {"event": "heartbeat"} in objects
    books = [json.loads(t) for t in texts if t.startswith("[")]
    assert len(books) > 5 and all(b[0] == ack["channelID"] and b[-2:] == ["book-10", "XBT/USD"] for b in books)
    assert "as" in books[0][1] and len(books[0][1]["bs"]) == 10 and all("c" in b[-3] for b in books[1:])
    ref = KrakenReference(depth=10, price_decimals=1, qty_decimals=8)
    for book in books:
        ref.apply(v1_as_v2(book, "BTC/USD"))
        stamps = {level[2] for part in book[1:-2] for key, levels in part.items() if key != "c" for level in levels}
        assert len(stamps) == 1 and len(stamps.pop().split(".")[1]) == 6
        us = int(Decimal(book[1][next(k for k in book[1] if k != "c")][0][2]) * 1_000_000)
        truth = kraken.venue_truth("kraken", "BTC/USD", update_id=us, depth=10)
        assert ref.book.top(10) == ([(Decimal(p), Decimal(q)) for p, q in truth["bids"]], [(Decimal(p), Decimal(q)) for p, q in truth["asks"]])
    assert ref.checksums == len(books) and ref.mismatches == 0
