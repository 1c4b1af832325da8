"""The Coinbase Advanced Trade simulator family (ldc.sim.coinbase), checked against Coinbase's documented
protocol (shared/reference/exchanges.md section 5, shapes as recorded in shared/data/venues) and an
independent Decimal replay (tests/venue_reference.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket
from venue_clients import collect, connect, recv_json, wait_closed
from venue_reference import CoinbaseReference, ReferenceGap

from ldc.sim import SimConfig, Simulator
from ldc.sim.venue_faults import venue_fault_from_cli


@pytest.fixture(scope="module")
def coinbase() -> Iterator[Simulator]:
    sim = Simulator(SimConfig(spot_symbols=(), coinbase_symbols=("BTC-USD", "ETH-USD"), history_events=5000, seed=13)).start()
    yield sim
    sim.stop()


def subscribe(sim: Simulator, channel: str, products: list[str] | None = None) -> websocket.WebSocket:
    ws = connect(sim.coinbase_ws_url)
    request: dict[str, object] = {"type": "subscribe", "channel": channel, "jwt": "ignored"}
    if products is not None:
        request["product_ids"] = products
    ws.send(json.dumps(request))
    return ws


def local_port(ws: websocket.WebSocket) -> int:
    return int(ws.sock.getsockname()[1])


def test_level2_arrives_as_l2_data_numbered_per_connection_and_equals_the_truth(coinbase: Simulator) -> None:
    ws = subscribe(coinbase, "level2", ["BTC-USD", "ETH-USD"])
    ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
    messages = collect(ws, 1.5)
    port = local_port(ws)
    ws.close()
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))
    assert {m["channel"] for m in messages} == {"l2_data", "subscriptions", "heartbeats"}
    snapshots = [m for m in messages if m["channel"] == "l2_data" and m["events"][0]["type"] == "snapshot"]
    assert [s["events"][0]["product_id"] for s in snapshots] == ["BTC-USD", "ETH-USD"]
    assert {u["side"] for u in snapshots[0]["events"][0]["updates"]} == {"bid", "offer"}
    ref = CoinbaseReference()
    checked = 0
    for message in messages:
        seq = ref.apply(message)
        if message["channel"] == "l2_data":
            product = message["events"][0]["product_id"]
            truth = coinbase.venue_truth("coinbase", product, update_id=seq, port=port)
            assert [truth["bids"], truth["asks"]] == list(ref.books[product].top(None)), seq
            checked += 1
    assert checked > 10
    beats = [m["events"][0]["heartbeat_counter"] for m in messages if m["channel"] == "heartbeats"]
    assert len(beats) >= 1 and beats == sorted(beats)


def test_the_subscriptions_message_lists_what_the_connection_holds(coinbase: Simulator) -> None:
    ws = subscribe(coinbase, "level2", ["ETH-USD"])
    ws.send(json.dumps({"type": "subscribe", "channel": "ticker", "product_ids": ["BTC-USD"]}))
    ws.send(json.dumps({"type": "unsubscribe", "channel": "level2", "product_ids": ["ETH-USD"]}))
    subscriptions = [m["events"][0]["subscriptions"] for m in collect(ws, 0.5) if m["channel"] == "subscriptions"]
    ws.close()
    assert subscriptions == [{"level2": ["ETH-USD"]}, {"level2": ["ETH-USD"], "ticker": ["BTC-USD"]}, {"ticker": ["BTC-USD"]}]


def test_bad_subscriptions_are_errors(coinbase: Simulator) -> None:
    ws = subscribe(coinbase, "level2", ["DOGE-USD"])
    error = recv_json(ws)
    assert error["type"] == "error" and error["message"].startswith("Failed to subscribe: unknown product ids ['DOGE-USD']")
    ws.send(json.dumps({"type": "subscribe", "channel": "level3", "product_ids": ["BTC-USD"]}))
    assert recv_json(ws)["message"] == "Failed to subscribe: unknown channel 'level3'"
    ws.close()


def test_a_quiet_connection_is_closed_and_heartbeats_keep_one_open() -> None:
    with Simulator(SimConfig(spot_symbols=(), coinbase_symbols=("BTC-USD",), coinbase_idle_s=1.6)) as sim:
        quiet = subscribe(sim, "ticker", ["BTC-USD"])
        beating = subscribe(sim, "heartbeats")
        assert wait_closed(quiet, 5.0)
        beats = [m for m in collect(beating, 2.5) if m["channel"] == "heartbeats"]
        assert len(beats) >= 2 and beating.connected
        beating.close()


def test_a_dropped_message_is_a_gap_on_the_whole_connection(coinbase: Simulator) -> None:
    ws = subscribe(coinbase, "level2", ["BTC-USD", "ETH-USD"])
    ref = CoinbaseReference()
    for message in collect(ws, 0.3):
        ref.apply(message)
    coinbase.add_venue_fault("coinbase", venue_fault_from_cli("drop:count=1,symbol=ETH-USD"))
    with pytest.raises(ReferenceGap):
        for message in collect(ws, 1.0):
            ref.apply(message)
    ws.close()


def test_rest_product_book_and_products(coinbase: Simulator) -> None:
    book = requests.get(f"{coinbase.coinbase_rest_url}/api/v3/brokerage/market/product_book", params={"product_id": "BTC-USD", "limit": "5"}, timeout=5).json()["pricebook"]
    assert book["product_id"] == "BTC-USD" and len(book["bids"]) == 5 and set(book["bids"][0]) == {"price", "size"}
    products = requests.get(f"{coinbase.coinbase_rest_url}/api/v3/brokerage/market/products", timeout=5).json()
    assert products["num_products"] == 2 and {p["product_id"] for p in products["products"]} == {"BTC-USD", "ETH-USD"}
    missing = requests.get(f"{coinbase.coinbase_rest_url}/api/v3/brokerage/market/product_book", params={"product_id": "X-Y"}, timeout=5)
    assert missing.status_code == 404 and missing.json()["message"] == "ProductID is invalid"


def test_the_authenticated_product_list_takes_any_well_formed_signature_and_refuses_none(coinbase: Simulator) -> None:
    """cryptofeed's Coinbase reads /api/v3/brokerage/products, signed (CB-ACCESS-*): the simulator checks the
    signature's form only (it holds no secret); unsigned or malformed is Coinbase's 401."""
    url = f"{coinbase.coinbase_rest_url}/api/v3/brokerage/products"
    hmac_headers = {"CB-ACCESS-KEY": "any", "CB-ACCESS-TIMESTAMP": "1765000000", "CB-ACCESS-SIGN": "ab" * 32}
    for headers in (hmac_headers, {"Authorization": "Bearer aGVhZA.cGF5bG9hZA.c2ln"}):
        answer = requests.get(url, headers=headers, timeout=5)
        assert answer.status_code == 200 and [p["product_id"] for p in answer.json()["products"]] == ["BTC-USD", "ETH-USD"]
    for headers in ({}, {**hmac_headers, "CB-ACCESS-SIGN": "not hex"}, {"Authorization": "Bearer nodots"}):
        answer = requests.get(url, headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json()["error"] == "UNAUTHENTICATED", headers


def test_truth_needs_a_number_of_that_connection(coinbase: Simulator) -> None:
    answer = requests.get(f"{coinbase.coinbase_rest_url}/_sim/book", params={"symbol": "BTC-USD", "update_id": "999999999", "conn": "1"}, timeout=5)
    assert answer.status_code == 404 and "is not an l2_data message of BTC-USD on connection 1" in answer.json()["msg"]
