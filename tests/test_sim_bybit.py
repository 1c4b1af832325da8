"""The Bybit v5 simulator family (ldc.sim.bybit), checked against Bybit's documented protocol
(shared/reference/exchanges.md section 3, the recorded acks in shared/data/venues) and an independent
Decimal replay (tests/venue_reference.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from venue_clients import collect, connect, recv_json, send_json, wait_closed
from venue_reference import BybitReference, ReferenceGap

from ldc.errors import SimError
from ldc.sim import SimConfig, Simulator
from ldc.sim.venue_faults import venue_fault_from_cli


@pytest.fixture(scope="module")
def bybit() -> Iterator[Simulator]:
    config = SimConfig(spot_symbols=(), bybit_spot_symbols=("BTCUSDT", "ETHUSDT"), bybit_linear_symbols=("BTCUSDT",), bybit_inverse_symbols=("BTCUSD",), history_events=5000, seed=5)
    sim = Simulator(config).start()
    yield sim
    sim.stop()


def subscribe(sim: Simulator, category: str, *topics: str, req_id: str | None = "1") -> Any:
    ws = connect(sim.bybit_ws_url(category))
    request: dict[str, object] = {"op": "subscribe", "args": list(topics)}
    if req_id is not None:
        request["req_id"] = req_id
    send_json(ws, request)
    return ws


def books(messages: list[Any]) -> list[Any]:
    return [m for m in messages if str(m.get("topic", "")).startswith("orderbook.")]


def check_truth(sim: Simulator, category: str, symbol: str, depth: int, messages: list[Any]) -> BybitReference:
    ref = BybitReference()
    for message in messages:
        u = ref.apply(message)
        truth = sim.venue_truth("bybit", symbol, category=category, update_id=u, depth=depth)
        assert [truth["bids"], truth["asks"]] == list(ref.book.top(depth)), (category, symbol, u)
    return ref


# -- protocol


def test_linear_ack_carries_req_id_and_the_snapshot_follows(bybit: Simulator) -> None:
    ws = subscribe(bybit, "linear", "orderbook.50.BTCUSDT", req_id="abc")
    ack = recv_json(ws)
    assert ack == {"success": True, "ret_msg": "", "conn_id": ack["conn_id"], "req_id": "abc", "op": "subscribe"}
    snapshot = recv_json(ws)
    assert list(snapshot) == ["topic", "type", "ts", "data", "cts"] and snapshot["type"] == "snapshot"
    data = snapshot["data"]
    assert data["s"] == "BTCUSDT" and len(data["b"]) == 50 and len(data["a"]) == 50
    assert all(len(level) == 2 and "." in level[0] and len(level[0].split(".")[1]) == 2 for level in data["b"])
    ws.close()


def test_spot_ack_says_subscribe_without_req_id_and_puts_ts_first(bybit: Simulator) -> None:
    ws = subscribe(bybit, "spot", "orderbook.200.ETHUSDT", req_id=None)
    ack = recv_json(ws)
    assert ack == {"success": True, "ret_msg": "subscribe", "conn_id": ack["conn_id"], "op": "subscribe"}
    assert list(recv_json(ws)) == ["topic", "ts", "type", "data", "cts"]
    ws.close()


@pytest.mark.parametrize(("category", "symbol", "depth"), [("linear", "BTCUSDT", 200), ("spot", "BTCUSDT", 50), ("inverse", "BTCUSD", 1000)])
def test_deltas_step_u_by_one_and_equal_the_truth(bybit: Simulator, category: str, symbol: str, depth: int) -> None:
    ws = subscribe(bybit, category, f"orderbook.{depth}.{symbol}")
    recv_json(ws)
    messages = books(collect(ws, 1.2))
    ws.close()
    ref = check_truth(bybit, category, symbol, depth, messages)
    assert len(messages) >= 4 and ref.snapshots == 1
    assert len(ref.book.bids) == depth and len(ref.book.asks) == depth


def test_level_one_is_only_ever_a_snapshot(bybit: Simulator) -> None:
    ws = subscribe(bybit, "linear", "orderbook.1.BTCUSDT")
    recv_json(ws)
    messages = books(collect(ws, 0.6))
    ws.close()
    assert len(messages) > 3 and {m["type"] for m in messages} == {"snapshot"}
    assert all(len(m["data"]["b"]) == 1 and len(m["data"]["a"]) == 1 for m in messages)
    us = [m["data"]["u"] for m in messages]
    assert us == list(range(us[0], us[0] + len(us)))


def test_seq_is_a_cross_sequence_comparable_between_depths(bybit: Simulator) -> None:
    ws = subscribe(bybit, "spot", "orderbook.50.BTCUSDT", "orderbook.200.BTCUSDT")
    messages = books(collect(ws, 0.8))
    ws.close()
    for topic in ("orderbook.50.BTCUSDT", "orderbook.200.BTCUSDT"):
        seqs = [m["data"]["seq"] for m in messages if m["topic"] == topic]
        assert seqs == sorted(seqs) and len(seqs) > 2


def test_unknown_topics_and_repeats_are_refused_as_bybit_does(bybit: Simulator) -> None:
    ws = subscribe(bybit, "linear", "orderbook.40.BTCUSDT", req_id="9")
    assert recv_json(ws) == {"success": False, "ret_msg": "error:handler not found,topic:orderbook.40.BTCUSDT", "conn_id": recv_conn(bybit), "req_id": "9", "op": "subscribe"}
    send_json(ws, {"op": "subscribe", "args": ["orderbook.50.ETHUSDT"]})  # ETHUSDT is only on spot here
    assert recv_json(ws)["ret_msg"] == "error:handler not found,topic:orderbook.50.ETHUSDT"
    send_json(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT", "tickers.BTCUSDT"]})
    assert recv_json(ws)["ret_msg"] == "error:already subscribed,topic:tickers.BTCUSDT"
    send_json(ws, {"op": "subscribe", "args": "orderbook.1.BTCUSDT"})
    assert recv_json(ws)["success"] is False
    send_json(ws, {"op": "order"})
    assert recv_json(ws)["ret_msg"].startswith("error:unsupported op 'order'")
    ws.close()


def recv_conn(sim: Simulator) -> str:
    conns = requests.get(f"{sim.bybit_rest_url}/_sim/connections", timeout=5).json()["connections"]
    return f"{conns[-1]['id']:08x}-0000-4000-8000-sim{conns[-1]['id']:08x}"


def test_spot_takes_at_most_ten_args_per_subscribe(bybit: Simulator) -> None:
    topics = [f"kline.{i}.BTCUSDT" for i in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720, 1440)]
    ws = subscribe(bybit, "spot", *topics, req_id="big")
    assert recv_json(ws) == {"success": False, "ret_msg": "args size >10", "conn_id": recv_conn(bybit), "req_id": "big", "op": "subscribe"}
    send_json(ws, {"req_id": "ok", "op": "subscribe", "args": topics[:10]})
    assert recv_json(ws)["success"] is True
    ws.close()


def test_ping_is_answered_with_the_category_pong(bybit: Simulator) -> None:
    spot, linear = connect(bybit.bybit_ws_url("spot")), connect(bybit.bybit_ws_url("linear"))
    send_json(spot, {"op": "ping"})
    send_json(linear, {"op": "ping"})
    spot_pong, linear_pong = recv_json(spot), recv_json(linear)
    assert spot_pong == {"success": True, "ret_msg": "pong", "conn_id": spot_pong["conn_id"], "op": "ping"}
    assert linear_pong == {"success": True, "ret_msg": "pong", "conn_id": linear_pong["conn_id"], "req_id": "", "op": "ping"}
    spot.close()
    linear.close()


def test_a_client_that_stops_pinging_is_disconnected() -> None:
    with Simulator(SimConfig(spot_symbols=(), bybit_linear_symbols=("BTCUSDT",), bybit_ping_timeout_s=1.0)) as sim:
        quiet = subscribe(sim, "linear", "orderbook.50.BTCUSDT")
        pinging = subscribe(sim, "linear", "orderbook.50.BTCUSDT")
        for _ in range(8):
            send_json(pinging, {"op": "ping", "req_id": "k"})
            time.sleep(0.2)
        assert wait_closed(quiet, 3.0)
        assert pinging.connected and any(m.get("ret_msg") == "pong" for m in collect(pinging, 0.3))
        pinging.close()


def test_unsubscribe_stops_the_topic(bybit: Simulator) -> None:
    ws = subscribe(bybit, "inverse", "orderbook.50.BTCUSD")
    recv_json(ws)
    recv_json(ws)
    send_json(ws, {"req_id": "u", "op": "unsubscribe", "args": ["orderbook.50.BTCUSD"]})
    messages = collect(ws, 0.5)
    acks = [m for m in messages if m.get("op") == "unsubscribe"]
    assert acks and acks[0]["success"] is True and messages[messages.index(acks[0]) + 1 :] == []
    ws.close()


# -- REST


def test_rest_orderbook_u_lines_up_with_the_1000_level_topic(bybit: Simulator) -> None:
    body = requests.get(f"{bybit.bybit_rest_url}/v5/market/orderbook", params={"category": "linear", "symbol": "BTCUSDT", "limit": "200"}, timeout=5).json()
    assert body["retCode"] == 0 and body["retMsg"] == "OK"
    result = body["result"]
    assert len(result["b"]) == 200 and set(result) == {"s", "b", "a", "ts", "u", "seq", "cts"}
    truth = bybit.venue_truth("bybit", "BTCUSDT", category="linear", update_id=result["u"], depth=1000, limit=200)
    assert (truth["bids"], truth["asks"]) == (result["b"], result["a"])


def test_rest_errors_and_instruments(bybit: Simulator) -> None:
    url = f"{bybit.bybit_rest_url}/v5/market/orderbook"
    assert requests.get(url, params={"category": "linear", "symbol": "XRPUSDT"}, timeout=5).json()["retMsg"] == "The requested symbol is invalid."
    assert requests.get(url, params={"category": "option", "symbol": "BTCUSDT"}, timeout=5).json()["retCode"] == 10001
    assert requests.get(url, params={"category": "spot", "symbol": "BTCUSDT", "limit": "0"}, timeout=5).json()["retCode"] == 10001
    info = requests.get(f"{bybit.bybit_rest_url}/v5/market/instruments-info", params={"category": "linear"}, timeout=5).json()["result"]
    assert info["category"] == "linear" and [e["symbol"] for e in info["list"]] == ["BTCUSDT"]
    entry = info["list"][0]
    assert (entry["priceFilter"]["tickSize"], entry["lotSizeFilter"]["qtyStep"], entry["contractType"]) == ("0.10", "0.001", "LinearPerpetual")


def test_truth_needs_a_depth_when_a_market_has_several_topics(bybit: Simulator) -> None:
    ws = subscribe(bybit, "spot", "orderbook.1.BTCUSDT", "orderbook.50.BTCUSDT")  # two topics at least
    recv_json(ws)
    ws.close()
    with pytest.raises(SimError, match="depth must be given for spot BTCUSDT"):
        bybit.venue_truth("bybit", "BTCUSDT", category="spot")
    with pytest.raises(SimError, match="category and symbol must name one market, found 2"):
        bybit.venue_truth("bybit", "BTCUSDT")


# -- faults


def test_reset_fault_sends_a_u_one_snapshot_that_replaces_the_book(bybit: Simulator) -> None:
    ws = subscribe(bybit, "spot", "orderbook.50.ETHUSDT")
    recv_json(ws)
    ref = BybitReference()
    ref.apply(recv_json(ws))
    bybit.add_venue_fault("bybit", venue_fault_from_cli("reset:count=1,symbol=ETHUSDT"))
    messages = books(collect(ws, 0.8))
    ws.close()
    for message in messages:
        u = ref.apply(message)
        truth = bybit.venue_truth("bybit", "ETHUSDT", category="spot", update_id=u, depth=50)
        assert [truth["bids"], truth["asks"]] == list(ref.book.top(50))
    resets = [m for m in messages if m["type"] == "snapshot"]
    assert len(resets) == 1 and resets[0]["data"]["u"] == 1 and ref.snapshots == 2


def test_duplicate_and_reorder_faults_break_u_continuity(bybit: Simulator) -> None:
    for kind in ("duplicate", "reorder"):
        ws = subscribe(bybit, "linear", "orderbook.50.BTCUSDT")
        recv_json(ws)
        ref = BybitReference()
        ref.apply(recv_json(ws))
        bybit.add_venue_fault("bybit", venue_fault_from_cli(f"{kind}:count=1,conn={int(recv_conn(bybit)[:8], 16)}"))
        with pytest.raises(ReferenceGap):
            for message in books(collect(ws, 1.0)):
                ref.apply(message)
        ws.close()


def test_stale_snapshot_fault_on_rest_and_on_subscribe(bybit: Simulator) -> None:
    requests.get(f"{bybit.bybit_rest_url}/v5/market/orderbook", params={"category": "inverse", "symbol": "BTCUSD"}, timeout=5)
    time.sleep(1.5)  # the 1000-level topic (started by that request if it was not) has published a few times
    fresh = requests.get(f"{bybit.bybit_rest_url}/v5/market/orderbook", params={"category": "inverse", "symbol": "BTCUSD"}, timeout=5).json()["result"]
    bybit.add_venue_fault("bybit", venue_fault_from_cli("stale_snapshot:count=2,behind=20,symbol=BTCUSD"))
    stale = requests.get(f"{bybit.bybit_rest_url}/v5/market/orderbook", params={"category": "inverse", "symbol": "BTCUSD"}, timeout=5).json()["result"]
    assert stale["u"] < fresh["u"]
    ws = subscribe(bybit, "inverse", "orderbook.1000.BTCUSD")
    recv_json(ws)
    ref = BybitReference()
    ref.apply(recv_json(ws))
    with pytest.raises(ReferenceGap):
        for message in books(collect(ws, 1.5)):
            ref.apply(message)
    ws.close()


def test_rest_error_fault_answers_the_status_with_bybit_s_body(bybit: Simulator) -> None:
    bybit.add_venue_fault("bybit", venue_fault_from_cli("rest_error:count=1,status=502"))
    failing = requests.get(f"{bybit.bybit_rest_url}/v5/market/orderbook", params={"category": "linear", "symbol": "BTCUSDT"}, timeout=5)
    assert failing.status_code == 502 and failing.json()["retCode"] == 10016


def test_an_unchanged_level_one_is_re_sent_with_the_same_u() -> None:
    with Simulator(SimConfig(spot_symbols=(), bybit_linear_symbols=("BTCUSDT",), rate=0.001, bybit_level1_repush_s=0.2)) as sim:
        ws = subscribe(sim, "linear", "orderbook.1.BTCUSDT")
        recv_json(ws)
        messages = books(collect(ws, 0.7))
        ws.close()
    assert len(messages) >= 3 and {m["type"] for m in messages} == {"snapshot"}
    assert len({m["data"]["u"] for m in messages}) == 1 and len({json.dumps(m["data"]) for m in messages}) == 1
