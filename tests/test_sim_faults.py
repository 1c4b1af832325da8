"""Every fault is observable by a plain client exactly as Binance's documents describe the symptom:
a gap in U/u (spot) or pu (futures), a duplicate, a stale snapshot, a disconnect, serverShutdown, 5xx,
slow REST, a 429 storm, malformed frames. Faults hit only their target connection."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import websocket

from ldc.sim import FaultKind, FaultRule, Simulator

RECV_TIMEOUT_S = 10.0


def spot_ws(sim: Simulator, stream: str = "btcusdt@depth@100ms") -> websocket.WebSocket:
    return websocket.create_connection(f"{sim.ws_url}/ws/{stream}", timeout=RECV_TIMEOUT_S)


def events(ws: websocket.WebSocket, n: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv()) for _ in range(n)]


def local_port(ws: websocket.WebSocket) -> int:
    return int(ws.sock.getsockname()[1])


def spot_gaps(evs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(a["u"], b["U"]) for a, b in zip(evs, evs[1:]) if b["U"] != a["u"] + 1]


@pytest.fixture
def fast(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), usdm_symbols=("BTCUSDT",), speed=5.0, history_events=5000)


def test_drop_on_one_connection_is_a_gap_there_only(fast: Simulator) -> None:
    victim, bystander = spot_ws(fast), spot_ws(fast)
    try:
        seen = events(victim, 2)
        fast.add_fault(FaultRule(FaultKind.DROP, count=1, port=local_port(victim)))
        seen += events(victim, 20)
        assert len(spot_gaps(seen)) == 1
        assert spot_gaps(events(bystander, 40)) == []
    finally:
        victim.close()
        bystander.close()


def test_drop_on_futures_breaks_the_pu_chain(fast: Simulator) -> None:
    ws = websocket.create_connection(f"{fast.usdm_ws_url}/public/ws/btcusdt@depth@0ms", timeout=RECV_TIMEOUT_S)
    try:
        seen = events(ws, 2)
        fast.add_fault(FaultRule(FaultKind.DROP, count=1, symbol="BTCUSDT"))
        seen += events(ws, 10)
        breaks = [(a["u"], b["pu"]) for a, b in zip(seen, seen[1:]) if b["pu"] != a["u"]]
        assert len(breaks) == 1
    finally:
        ws.close()


def test_duplicate_repeats_one_event(fast: Simulator) -> None:
    ws = spot_ws(fast)
    try:
        events(ws, 1)
        fast.add_fault(FaultRule(FaultKind.DUPLICATE, count=1))
        seen = events(ws, 10)
        ids = [(e["U"], e["u"]) for e in seen]
        assert len(ids) - len(set(ids)) == 1
        repeated = next(i for i in range(1, len(seen)) if seen[i] == seen[i - 1])
        assert seen[repeated]["u"] <= seen[repeated - 1]["u"]  # what the documents tell a client to ignore
    finally:
        ws.close()


def test_reorder_swaps_two_events(fast: Simulator) -> None:
    ws = spot_ws(fast)
    try:
        seen = events(ws, 1)
        fast.add_fault(FaultRule(FaultKind.REORDER, count=1))
        seen += events(ws, 10)
        finals = [e["u"] for e in seen]
        assert finals != sorted(finals)
        assert sorted(finals) == sorted(set(finals))  # nothing lost, nothing repeated
    finally:
        ws.close()


def test_reorder_of_one_symbol_on_a_shared_connection_is_a_gap_for_it(sim_factory: Callable[..., Simulator]) -> None:
    """Issue 14 item 13: the held frame waits for its own market's next frame, not any frame."""
    sim = sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT"), speed=5.0)
    streams = "/".join(f"{s}@depth@100ms" for s in ("btcusdt", "ethusdt", "bnbusdt"))
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams={streams}", timeout=RECV_TIMEOUT_S)
    try:
        seen = events(ws, 3)
        sim.add_fault(FaultRule(FaultKind.REORDER, count=1, symbol="ETHUSDT"))
        seen += events(ws, 30)
        by_symbol = {s: [e["data"] for e in seen if e["data"]["s"] == s] for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT")}
        assert len(spot_gaps(by_symbol["ETHUSDT"])) == 3  # x B A y: a jump ahead, the late one behind, a jump again
        finals = [e["u"] for e in by_symbol["ETHUSDT"]]
        assert sorted(finals) == sorted(set(finals))  # nothing lost, nothing repeated
        assert spot_gaps(by_symbol["BTCUSDT"]) == [] and spot_gaps(by_symbol["BNBUSDT"]) == []
    finally:
        ws.close()


def test_delay_holds_the_stream_and_keeps_order(fast: Simulator) -> None:
    ws = spot_ws(fast)
    try:
        seen = events(ws, 1)
        fast.add_fault(FaultRule(FaultKind.DELAY, count=1, ms=400))
        arrivals = [time.monotonic()]
        for _ in range(60):  # frames already in flight arrive first; then the held ones, late
            seen += events(ws, 1)
            arrivals.append(time.monotonic())
        assert max(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.3
        assert spot_gaps(seen) == []
    finally:
        ws.close()


def test_malformed_json_and_malformed_frame(fast: Simulator) -> None:
    ws = spot_ws(fast)
    try:
        events(ws, 1)
        fast.add_fault(FaultRule(FaultKind.MALFORMED, count=1, detail="json"))
        # frames already on their way when the fault was set come first (many on a loaded host)
        broken: list[str] = []
        for _ in range(200):
            text = ws.recv()
            if not _parses(text):
                broken.append(text)
                break
        assert broken == ['{"e":"depthUpdate","E":']
        fast.add_fault(FaultRule(FaultKind.MALFORMED, count=1, detail="frame"))
        with pytest.raises(websocket.WebSocketProtocolException):
            for _ in range(10):
                ws.recv()
    finally:
        ws.close()


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_disconnect_now_closes_only_the_target(fast: Simulator) -> None:
    victim, bystander = spot_ws(fast), spot_ws(fast)
    try:
        events(victim, 1)
        fast.add_fault(FaultRule(FaultKind.DISCONNECT, port=local_port(victim)))
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            for _ in range(100):
                victim.recv()
        assert len(events(bystander, 5)) == 5
    finally:
        victim.close()
        bystander.close()


def test_disconnect_every_seconds_drops_each_connection(fast: Simulator) -> None:
    fast.add_fault(FaultRule(FaultKind.DISCONNECT, every_s=0.5))
    ws = spot_ws(fast)
    started = time.monotonic()
    try:
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            for _ in range(1000):
                ws.recv()
        assert 0.4 <= time.monotonic() - started < 5
    finally:
        ws.close()


def test_server_shutdown_event_then_close(fast: Simulator) -> None:
    ws = websocket.create_connection(f"{fast.ws_url}/stream?streams=btcusdt@depth@100ms", timeout=RECV_TIMEOUT_S)
    try:
        events(ws, 1)
        fast.add_fault(FaultRule(FaultKind.SHUTDOWN, ms=200))
        seen: list[dict[str, Any]] = []
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            for _ in range(1000):
                text = ws.recv()
                if not text:
                    raise websocket.WebSocketConnectionClosedException("closed")
                seen.append(json.loads(text))
        shutdowns = [m for m in seen if m["stream"] == "!serverShutdown"]
        assert len(shutdowns) == 1 and shutdowns[0]["data"]["e"] == "serverShutdown"
    finally:
        ws.close()


def test_stale_snapshot_is_older_than_the_stream(fast: Simulator) -> None:
    ws = spot_ws(fast)
    try:
        first = events(ws, 1)[0]
        fast.add_fault(FaultRule(FaultKind.STALE_SNAPSHOT, count=1, behind=200))
        time.sleep(0.2)
        stale = requests.get(f"{fast.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5).json()
        fresh = requests.get(f"{fast.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5).json()
        assert stale["lastUpdateId"] < first["U"] <= fresh["lastUpdateId"]
        truth = fast.truth("BTCUSDT", update_id=stale["lastUpdateId"], limit=100, family="spot")
        assert truth is not None and truth["bids"] == stale["bids"] and truth["asks"] == stale["asks"]
    finally:
        ws.close()


def test_rest_error_delay_and_429_storm(fast: Simulator) -> None:
    url = f"{fast.rest_url}/api/v3/depth"
    fast.add_fault(FaultRule(FaultKind.REST_ERROR, count=1, status=503))
    failed = requests.get(url, params={"symbol": "BTCUSDT"}, timeout=5)
    assert failed.status_code == 503 and failed.json()["code"] == -1001
    fast.add_fault(FaultRule(FaultKind.REST_DELAY, count=1, ms=300))
    started = time.monotonic()
    assert requests.get(url, params={"symbol": "BTCUSDT"}, timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3
    fast.add_fault(FaultRule(FaultKind.RATE_LIMIT, count=3))
    statuses = [requests.get(url, params={"symbol": "BTCUSDT"}, timeout=5) for _ in range(4)]
    assert [r.status_code for r in statuses] == [429, 429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "1" and statuses[0].json()["code"] == -1003


def test_rest_error_418_bans_the_ip_with_retry_after(sim_factory: Callable[..., Simulator]) -> None:
    """Issue 14 item 13: a ban can be injected; it lasts its Retry-After, as Binance's bans do."""
    sim = sim_factory(spot_symbols=("BTCUSDT",), usdm_symbols=("BTCUSDT",))
    url = f"{sim.rest_url}/api/v3/depth"
    sim.add_fault(FaultRule(FaultKind.REST_ERROR, count=1, status=418, ms=90_000))
    banned = requests.get(url, params={"symbol": "BTCUSDT"}, timeout=5)
    assert banned.status_code == 418 and banned.json()["code"] == -1003
    assert 89 <= int(banned.headers["Retry-After"]) <= 90
    assert "IP banned until" in banned.json()["msg"]
    again = requests.get(f"{sim.rest_url}/api/v3/ping", timeout=5)  # the rule is used up; the ban is not
    assert again.status_code == 418 and 1 <= int(again.headers["Retry-After"]) <= 90
    assert requests.get(f"{sim.rest_url}/fapi/v1/ping", timeout=5).status_code == 200  # futures hosts count apart
    from ldc.errors import SimError
    from ldc.sim import rule_from_cli

    assert rule_from_cli("rest_error:status=418").status == 418
    with pytest.raises(SimError, match="within"):
        rule_from_cli("rest_error:status=418,ms=300000000")


def test_faults_set_through_the_private_endpoint_of_another_process(sim_process: dict[str, Any]) -> None:
    rest = sim_process["rest"]
    ws = websocket.create_connection(f"{sim_process['ws']}/ws/btcusdt@depth@100ms", timeout=RECV_TIMEOUT_S)
    try:
        seen = events(ws, 1)
        answer = requests.post(f"{rest}/_sim/faults", json={"kind": "drop", "count": 1, "port": local_port(ws)}, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["faults"][0]["kind"] == "drop"
        assert len(spot_gaps(seen + events(ws, 10))) == 1
        assert requests.get(f"{rest}/_sim/faults", timeout=5).json() == {"faults": []}
        bad = requests.post(f"{rest}/_sim/faults", json={"kind": "explode"}, timeout=5)
        assert bad.status_code == 400 and "fault kind must be one of" in bad.json()["msg"]
        requests.post(f"{rest}/_sim/faults", json=[{"kind": "rest_error", "status": 502}], timeout=5)
        assert requests.get(f"{rest}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5).status_code == 502
        assert requests.delete(f"{rest}/_sim/faults", timeout=5).json() == {"faults": []}
        assert requests.get(f"{rest}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5).status_code == 200
    finally:
        ws.close()


def test_rules_from_the_command_line_and_json() -> None:
    from ldc.errors import SimError
    from ldc.sim import rule_from_cli, rule_from_json
    from ldc.sim.faults import FaultTable

    rule = rule_from_cli("malformed:detail=frame,count=2,probability=0.5")
    assert (rule.kind, rule.detail, rule.count, rule.probability) == (FaultKind.MALFORMED, "frame", 2, 0.5)
    assert rule_from_json(rule.to_json()) == rule
    with pytest.raises(SimError, match="unknown fault key 'colour'"):
        rule_from_json({"kind": "drop", "colour": "red"})
    with pytest.raises(SimError, match="rest_error status must be 5xx or 418 .an IP ban., found 404"):
        rule_from_cli("rest_error:status=404")
    table = FaultTable(seed=1)
    table.add(FaultRule(FaultKind.DROP, count=2, symbol="BTCUSDT"))
    assert table.take(FaultKind.DROP, symbol="ETHUSDT") is None
    assert table.take(FaultKind.DROP, symbol="BTCUSDT") is not None
    assert table.rules()[0].count == 1
    assert table.take(FaultKind.DROP, symbol="BTCUSDT") is not None
    assert table.rules() == [] and not table.stream_active
