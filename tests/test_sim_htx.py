"""The HTX simulator family (ldc.sim.htx), checked against HTX's documented protocol
(shared/reference/exchanges.md section 1) and an independent Decimal replay (tests/venue_reference.py)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import websocket
from venue_clients import RECV_TIMEOUT_S, connect
from venue_reference import HtxReference, ReferenceGap

from ldc.sim import SimConfig, Simulator
from ldc.sim.venue_faults import venue_fault_from_cli


@pytest.fixture(scope="module")
def htx() -> Iterator[Simulator]:
    sim = Simulator(SimConfig(spot_symbols=(), htx_symbols=("btcusdt", "ethusdt"), history_events=5000, seed=7)).start()
    yield sim
    sim.stop()


def recv(ws: websocket.WebSocket) -> Any:
    """One server message: a gzip binary frame of JSON whose numbers are read as exact decimals."""
    opcode, data = ws.recv_data()
    assert opcode == websocket.ABNF.OPCODE_BINARY
    return json.loads(gzip.decompress(data), parse_float=Decimal, parse_int=Decimal)


def gather(ws: websocket.WebSocket, seconds: float) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append(recv(ws))
        except websocket.WebSocketTimeoutException:
            break
    ws.settimeout(RECV_TIMEOUT_S)
    return out


def sub(sim: Simulator, path: str, topic: str, req_id: str = "1") -> websocket.WebSocket:
    ws = connect(sim.htx_ws_url(path))
    ws.send(json.dumps({"sub": topic, "id": req_id}))
    return ws


def decimals(levels: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


def test_sub_ack_and_mbp_150_synced_by_req_on_the_same_connection_equal_the_truth(htx: Simulator) -> None:
    ws = sub(htx, "/feed", "market.btcusdt.mbp.150", "s1")
    ack = recv(ws)
    assert ack["id"] == "s1" and ack["status"] == "ok" and ack["subbed"] == "market.btcusdt.mbp.150"
    cached = [m["tick"] for m in gather(ws, 0.35)]
    ws.send(json.dumps({"req": "market.btcusdt.mbp.150", "id": "r1"}))
    messages = gather(ws, 0.6)
    ws.close()
    reply = next(m for m in messages if m.get("rep") == "market.btcusdt.mbp.150")
    assert reply["id"] == "r1" and reply["status"] == "ok" and "prevSeqNum" not in reply["data"]
    cached += [m["tick"] for m in messages if "ch" in m]
    ref = HtxReference()
    applied = ref.start(reply["data"], cached)
    assert len(applied) >= 3 and max(b - a for a, b in zip(applied, applied[1:])) > 1  # seqNum jumps
    truth = htx.venue_truth("htx", "btcusdt", update_id=ref.seq, limit=150)
    assert ref.book.top(150) == (decimals(truth["bids"]), decimals(truth["asks"]))


def test_every_mbp_150_message_matches_the_truth_at_its_seq_num(htx: Simulator) -> None:
    ws = sub(htx, "/feed", "market.ethusdt.mbp.150")
    recv(ws)
    ws.send(json.dumps({"req": "market.ethusdt.mbp.150", "id": "r"}))
    messages = gather(ws, 0.8)
    ws.close()
    reply = next(m for m in messages if "rep" in m)
    ref = HtxReference()
    ref.join(reply["data"])
    after = [m["tick"] for m in messages[messages.index(reply) + 1 :] if "ch" in m]
    assert after
    for tick in after:
        seq = ref.apply(tick)
        truth = htx.venue_truth("htx", "ethusdt", update_id=seq, limit=150)
        assert ref.book.top(150) == (decimals(truth["bids"]), decimals(truth["asks"])), seq


def test_mbp_5_is_tick_by_tick_with_only_the_changed_side(htx: Simulator) -> None:
    ws = sub(htx, "/feed", "market.btcusdt.mbp.5")
    recv(ws)
    ws.send(json.dumps({"req": "market.btcusdt.mbp.5", "id": "r"}))
    messages = gather(ws, 0.8)
    ws.close()
    reply = next(m for m in messages if "rep" in m)
    ref = HtxReference()
    ref.join(reply["data"])
    ticks = [m["tick"] for m in messages[messages.index(reply) + 1 :] if "ch" in m]
    assert len(ticks) > 5 and any(("bids" in t) != ("asks" in t) for t in ticks)
    assert all(t.get("bids") or t.get("asks") for t in ticks)  # nothing is sent without a change
    for tick in ticks:
        ref.apply(tick)
        assert len(ref.book.bids) <= 5 and len(ref.book.asks) <= 5
    truth = htx.venue_truth("htx", "btcusdt", update_id=ref.seq, limit=5)
    assert ref.book.top(5) == (decimals(truth["bids"]), decimals(truth["asks"]))


def test_depth_step0_is_a_whole_book_each_second_with_its_version(htx: Simulator) -> None:
    ws = sub(htx, "/ws", "market.ethusdt.depth.step0")
    recv(ws)
    pushes = [m for m in gather(ws, 2.2) if "ch" in m]
    ws.close()
    assert 2 <= len(pushes) <= 3
    for push in pushes:
        tick = push["tick"]
        assert len(tick["bids"]) == 150 and len(tick["asks"]) == 150
        truth = htx.venue_truth("htx", "ethusdt", update_id=int(tick["version"]), limit=150)
        assert [(p, q) for p, q in tick["bids"]] == decimals(truth["bids"])


def test_errors_are_htx_s_error_messages(htx: Simulator) -> None:
    feed = connect(htx.htx_ws_url("/feed"))
    for request, message in (
        ({"req": "market.btcusdt.mbp.400", "id": "a"}, "invalid topic market.btcusdt.mbp.400"),
        ({"sub": "market.xrpusdt.mbp.150", "id": "b"}, "invalid topic market.xrpusdt.mbp.150"),
        ({"sub": "market.btcusdt.depth.step0", "id": "c"}, "invalid topic market.btcusdt.depth.step0"),
        ({"unsub": "market.btcusdt.mbp.20", "id": "d"}, "unsub with not subbed topic"),
    ):
        feed.send(json.dumps(request))
        answer = recv(feed)
        assert (answer["status"], answer["err-code"], answer["err-msg"], answer["id"]) == ("error", "bad-request", message, request["id"])
    feed.send("{oops")
    assert recv(feed)["err-msg"] == "not json string"
    feed.close()


def test_a_client_that_does_not_pong_is_closed_after_two_pings() -> None:
    with Simulator(SimConfig(spot_symbols=(), htx_symbols=("btcusdt",), htx_ping_interval_s=0.4)) as sim:
        silent, polite = connect(sim.htx_ws_url("/ws")), connect(sim.htx_ws_url("/ws"))
        pings = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            message = gather(polite, 0.1)
            for m in message:
                if "ping" in m:
                    pings += 1
                    polite.send(json.dumps({"pong": int(m["ping"])}))
        assert pings >= 3 and polite.connected
        closed = False
        try:
            while True:
                assert "ping" in recv(silent)
        except (websocket.WebSocketConnectionClosedException, ConnectionError, AssertionError):
            closed = not silent.connected
        polite.close()
    assert closed


def test_rest_depth_and_symbols(htx: Simulator) -> None:
    body = json.loads(requests.get(f"{htx.htx_rest_url}/market/depth", params={"symbol": "btcusdt", "type": "step0", "depth": "20"}, timeout=5).text, parse_float=Decimal)
    assert body["status"] == "ok" and body["ch"] == "market.btcusdt.depth.step0" and len(body["tick"]["bids"]) == 20
    truth = htx.venue_truth("htx", "btcusdt", update_id=body["tick"]["version"], limit=20)
    assert [tuple(level) for level in body["tick"]["asks"]] == decimals(truth["asks"])
    bad = requests.get(f"{htx.htx_rest_url}/market/depth", params={"symbol": "nope", "type": "step0"}, timeout=5).json()
    assert (bad["status"], bad["err-msg"]) == ("error", "invalid symbol")
    symbols = requests.get(f"{htx.htx_rest_url}/v1/common/symbols", timeout=5).json()["data"]
    assert {s["symbol"] for s in symbols} == {"btcusdt", "ethusdt"} and symbols[0]["price-precision"] == 2


def test_drop_and_stale_refresh_faults_are_seen_by_the_reference(htx: Simulator) -> None:
    ws = sub(htx, "/feed", "market.btcusdt.mbp.20")
    recv(ws)
    ws.send(json.dumps({"req": "market.btcusdt.mbp.20", "id": "r"}))
    messages = gather(ws, 0.3)
    reply = next(m for m in messages if "rep" in m)
    ref = HtxReference()
    ref.join(reply["data"])
    for m in messages[messages.index(reply) + 1 :]:
        ref.apply(m["tick"])
    htx.add_venue_fault("htx", venue_fault_from_cli("drop:count=1,symbol=BTCUSDT"))
    with pytest.raises(ReferenceGap):
        for m in gather(ws, 1.0):
            ref.apply(m["tick"])
    htx.add_venue_fault("htx", venue_fault_from_cli("stale_snapshot:count=1,behind=30,symbol=BTCUSDT"))
    ws.send(json.dumps({"req": "market.btcusdt.mbp.20", "id": "stale"}))
    later = gather(ws, 0.5)
    ws.close()
    stale = next(m for m in later if m.get("id") == "stale")
    ticks = [m["tick"] for m in later if "ch" in m]
    assert all(int(t["prevSeqNum"]) > int(stale["data"]["seqNum"]) for t in ticks)  # too old: ccxt asks again
