"""The OKX v5 simulator family (ldc.sim.okx), checked against OKX's documented protocol
(shared/reference/exchanges.md section 2) and an independent Decimal replay (tests/venue_reference.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ldc.errors import SimError
from ldc.sim import SimConfig, Simulator
from ldc.sim.venue_faults import venue_fault_from_cli
from venue_clients import collect, connect, recv_json, send_json, wait_closed
from venue_reference import OkxReference, ReferenceGap, okx_crc

INSTRUMENTS = ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250926")


@pytest.fixture(scope="module")
def okx() -> Iterator[Simulator]:
    sim = Simulator(SimConfig(spot_symbols=(), okx_symbols=INSTRUMENTS, history_events=5000, seed=3)).start()
    yield sim
    sim.stop()


def subscribe(sim: Simulator, channel: str, inst_id: str, req_id: str = "1") -> Any:
    ws = connect(sim.okx_ws_url)
    send_json(ws, {"id": req_id, "op": "subscribe", "args": [{"channel": channel, "instId": inst_id}]})
    return ws


def book_messages(messages: list[Any]) -> list[Any]:
    return [m for m in messages if "action" in m]


# -- protocol


def test_subscribe_is_acknowledged_then_a_snapshot_of_the_channel_depth_arrives(okx: Simulator) -> None:
    ws = subscribe(okx, "books", "BTC-USDT", "77")
    ack = recv_json(ws)
    assert ack == {"id": "77", "event": "subscribe", "arg": {"channel": "books", "instId": "BTC-USDT"}, "connId": ack["connId"]}
    snapshot = recv_json(ws)
    assert snapshot["arg"] == {"channel": "books", "instId": "BTC-USDT"} and snapshot["action"] == "snapshot"
    item = snapshot["data"][0]
    assert item["prevSeqId"] == -1 and isinstance(item["seqId"], int)
    assert len(item["bids"]) == 400 and len(item["asks"]) == 400
    assert all(len(level) == 4 and level[2] == "0" for level in item["bids"] + item["asks"])
    assert item["checksum"] == okx_crc(item["bids"], item["asks"]) != 0
    ws.close()


def test_books_updates_link_by_prev_seq_id_and_keep_the_checksum_and_the_truth(okx: Simulator) -> None:
    ws = subscribe(okx, "books", "BTC-USDT-SWAP")
    recv_json(ws)
    messages = book_messages(collect(ws, 1.5))
    ws.close()
    ref = OkxReference()
    seen: list[tuple[int, list[list[str]], list[list[str]]]] = []
    for message in messages:
        seq = ref.apply(message)
        seen.append((seq, *ref.book.top(400)))
    assert len(messages) >= 5 and ref.checksums == len(messages) and ref.mismatches == 0
    steps = {b[0] - a[0] for a, b in zip(seen, seen[1:])}
    assert max(steps) > 1, "seqIds must not be contiguous (OKX's are not)"
    for seq, bids, asks in seen:
        truth = okx.venue_truth("okx", "BTC-USDT-SWAP", update_id=seq, limit=400)
        assert (truth["bids"], truth["asks"]) == ([b[:2] for b in bids], [a[:2] for a in asks]), seq
    assert len(ref.book.bids) == 400 and len(ref.book.asks) == 400


def test_books50_l2_tbt_keeps_fifty_levels_every_ten_ms(okx: Simulator) -> None:
    ws = subscribe(okx, "books50-l2-tbt", "BTC-USD-250926")
    recv_json(ws)
    messages = book_messages(collect(ws, 1.0))
    ws.close()
    ref = OkxReference()
    for message in messages:
        seq = ref.apply(message)
        assert len(ref.book.bids) <= 50 and len(ref.book.asks) <= 50
        truth = okx.venue_truth("okx", "BTC-USD-250926", update_id=seq, limit=50)
        assert [truth["bids"], truth["asks"]] == [[b[:2] for b in side] for side in ref.book.top(50)]
    assert len(ref.book.bids) == 50 and ref.mismatches == 0 and len(messages) > 15


def test_unknown_channel_or_inst_id_is_refused_with_60018(okx: Simulator) -> None:
    ws = subscribe(okx, "books", "DOGE-USDT", "5")
    error = recv_json(ws)
    assert error == {
        "id": "5", "event": "error", "code": "60018", "connId": error["connId"],
        "msg": "Wrong URL or channel:books,instId:DOGE-USDT doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
    }  # fmt: skip
    send_json(ws, {"op": "subscribe", "args": [{"channel": "books7", "instId": "BTC-USDT"}]})
    assert recv_json(ws)["code"] == "60018"
    ws.close()


def test_bad_requests_get_60012_and_the_connection_stays(okx: Simulator) -> None:
    ws = connect(okx.okx_ws_url)
    ws.send("{not json")
    assert recv_json(ws)["code"] == "60012"
    send_json(ws, {"op": "subscribe"})
    assert recv_json(ws)["msg"] == 'Invalid request: {"op": "subscribe"}'
    send_json(ws, {"op": "trade", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
    assert recv_json(ws)["code"] == "60012"
    ws.send("ping")
    assert ws.recv() == "pong"
    ws.close()


def test_unsubscribe_is_acknowledged_and_stops_the_channel(okx: Simulator) -> None:
    ws = subscribe(okx, "books-l2-tbt", "BTC-USDT")
    recv_json(ws)
    recv_json(ws)
    send_json(ws, {"id": "2", "op": "unsubscribe", "args": [{"channel": "books-l2-tbt", "instId": "BTC-USDT"}]})
    messages = collect(ws, 0.6)
    acks = [m for m in messages if m.get("event") == "unsubscribe"]
    assert acks and acks[0]["arg"] == {"channel": "books-l2-tbt", "instId": "BTC-USDT"}
    after = messages[messages.index(acks[0]) + 1 :]
    assert after == []
    ws.close()


def test_a_connection_with_nothing_pushed_is_closed_after_the_idle_limit() -> None:
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), okx_idle_s=1.0)) as sim:
        idle = connect(sim.okx_ws_url)
        pinging = connect(sim.okx_ws_url)
        for _ in range(10):
            pinging.send("ping")
            assert pinging.recv() == "pong"
            time.sleep(0.2)
        assert wait_closed(idle, 3.0)
        assert pinging.connected
        pinging.close()


# -- REST


def test_rest_books_carries_the_seq_id_of_the_truth(okx: Simulator) -> None:
    body = requests.get(f"{okx.okx_rest_url}/api/v5/market/books", params={"instId": "BTC-USDT", "sz": "25"}, timeout=5).json()
    assert body["code"] == "0" and body["msg"] == ""
    book = body["data"][0]
    assert len(book["bids"]) == 25 and len(book["asks"]) == 25 and all(len(lvl) == 4 for lvl in book["bids"])
    truth = okx.venue_truth("okx", "BTC-USDT", update_id=book["seqId"], limit=25)
    assert truth["bids"] == [lvl[:2] for lvl in book["bids"]] and truth["asks"] == [lvl[:2] for lvl in book["asks"]]


def test_rest_errors_are_okx_error_bodies(okx: Simulator) -> None:
    url = f"{okx.okx_rest_url}/api/v5/market/books"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 400 and missing.json() == {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}
    assert requests.get(url, params={"instId": "NOPE-USDT"}, timeout=5).json()["code"] == "51001"
    assert requests.get(url, params={"instId": "BTC-USDT", "sz": "401"}, timeout=5).json()["code"] == "51000"


def test_instruments_list_spot_swap_and_futures(okx: Simulator) -> None:
    url = f"{okx.okx_rest_url}/api/v5/public/instruments"
    found = {t: [e["instId"] for e in requests.get(url, params={"instType": t}, timeout=5).json()["data"]] for t in ("SPOT", "SWAP", "FUTURES")}
    assert found == {"SPOT": ["BTC-USDT"], "SWAP": ["BTC-USDT-SWAP"], "FUTURES": ["BTC-USD-250926"]}
    spot = requests.get(url, params={"instType": "SPOT"}, timeout=5).json()["data"][0]
    assert (spot["tickSz"], spot["baseCcy"], spot["quoteCcy"], spot["state"]) == ("0.1", "BTC", "USDT", "live")


def test_instruments_of_a_documented_type_the_simulator_does_not_list_are_an_empty_list(okx: Simulator) -> None:
    """OKX documents MARGIN and OPTION (OPTION with ``uly`` or ``instFamily``); cryptofeed's OKX asks for
    ``instType=OPTION&uly=BTC-USD`` before anything else and gave up on a 400."""
    url = f"{okx.okx_rest_url}/api/v5/public/instruments"
    for params in ({"instType": "OPTION", "uly": "BTC-USD"}, {"instType": "OPTION", "instFamily": "ETH-USD"}, {"instType": "MARGIN"}):
        answer = requests.get(url, params=params, timeout=5)
        assert answer.status_code == 200 and answer.json() == {"code": "0", "msg": "", "data": []}, params
    bare = requests.get(url, params={"instType": "OPTION"}, timeout=5)
    assert bare.status_code == 400 and bare.json()["code"] == "50014" and "instFamily" in bare.json()["msg"]


def test_truth_of_an_unknown_seq_id_says_why(okx: Simulator) -> None:
    with pytest.raises(SimError, match="outside the kept history of BTC-USDT"):
        okx.venue_truth("okx", "BTC-USDT", update_id=5)
    answer = requests.get(f"{okx.okx_rest_url}/_sim/book", params={"symbol": "ETH-USDT"}, timeout=5)
    assert answer.status_code == 404 and "unknown instId 'ETH-USDT'" in answer.json()["msg"]


# -- modes and faults


def test_production_mode_sends_checksum_zero_and_no_websocket_snapshot() -> None:
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), okx_checksum=False, okx_ws_snapshot=False)) as sim:
        ws = subscribe(sim, "books", "BTC-USDT")
        recv_json(ws)
        messages = book_messages(collect(ws, 0.6))
        ws.close()
    assert messages and all(m["action"] == "update" and m["data"][0]["checksum"] == 0 for m in messages)


def test_wrong_checksum_fault_breaks_only_the_checksum(okx: Simulator) -> None:
    ws = subscribe(okx, "books-l2-tbt", "BTC-USDT")
    recv_json(ws)
    okx.add_venue_fault("okx", venue_fault_from_cli("checksum:count=2,symbol=BTC-USDT"))
    messages = book_messages(collect(ws, 0.8))
    ws.close()
    ref = OkxReference()
    for message in messages:
        seq = ref.apply(message)
        truth = okx.venue_truth("okx", "BTC-USDT", update_id=seq, limit=25)
        assert [truth["bids"], truth["asks"]] == [[b[:2] for b in side] for side in ref.book.top(25)]
    assert ref.mismatches == 2


def test_reset_fault_sends_a_lower_seq_id_still_linked_by_prev_seq_id(okx: Simulator) -> None:
    ws = subscribe(okx, "books", "BTC-USDT")
    recv_json(ws)
    collect(ws, 0.3)
    ws.close()
    ws = subscribe(okx, "books", "BTC-USDT")
    recv_json(ws)
    snapshot = recv_json(ws)
    ref = OkxReference()
    ref.apply(snapshot)
    okx.add_venue_fault("okx", venue_fault_from_cli("reset:count=1,symbol=BTC-USDT"))
    for message in book_messages(collect(ws, 0.8)):
        seq = ref.apply(message)
        truth = okx.venue_truth("okx", "BTC-USDT", update_id=seq, limit=400)
        assert [truth["bids"], truth["asks"]] == [[b[:2] for b in side] for side in ref.book.top(400)]
    ws.close()
    assert ref.resets == 1 and ref.mismatches == 0


def test_drop_fault_makes_a_gap_the_reference_sees(okx: Simulator) -> None:
    ws = subscribe(okx, "books-l2-tbt", "BTC-USDT-SWAP")
    recv_json(ws)
    ref = OkxReference()
    ref.apply(recv_json(ws))
    conn = requests.get(f"{okx.okx_rest_url}/_sim/connections", timeout=5).json()["connections"][-1]["id"]
    okx.add_venue_fault("okx", venue_fault_from_cli(f"drop:count=1,conn={conn}"))
    with pytest.raises(ReferenceGap):
        for message in book_messages(collect(ws, 1.0)):
            ref.apply(message)
    ws.close()


def test_stale_websocket_snapshot_is_older_than_the_next_update(okx: Simulator) -> None:
    okx.add_venue_fault("okx", venue_fault_from_cli("stale_snapshot:count=1,behind=10,symbol=BTC-USD-250926"))
    ws = subscribe(okx, "books", "BTC-USD-250926")
    recv_json(ws)
    snapshot = recv_json(ws)
    update = book_messages(collect(ws, 1.0, until=1))[0]
    ws.close()
    assert snapshot["data"][0]["seqId"] < update["data"][0]["prevSeqId"]


def test_disconnect_and_rest_error_faults(okx: Simulator) -> None:
    ws = subscribe(okx, "books", "BTC-USDT")
    recv_json(ws)
    reply = requests.post(f"{okx.okx_rest_url}/_sim/faults", json=[{"kind": "disconnect"}, {"kind": "rest_error", "status": 503, "count": 1}], timeout=5)
    assert reply.status_code == 200
    assert wait_closed(ws, 2.0)
    failing = requests.get(f"{okx.okx_rest_url}/api/v5/market/books", params={"instId": "BTC-USDT"}, timeout=5)
    assert failing.status_code == 503 and failing.json()["code"] == "50001"
    assert requests.get(f"{okx.okx_rest_url}/api/v5/market/books", params={"instId": "BTC-USDT"}, timeout=5).json()["code"] == "0"
    bad = requests.post(f"{okx.okx_rest_url}/_sim/faults", json={"kind": "explode"}, timeout=5)
    assert bad.status_code == 400 and "fault kind must be one of" in bad.json()["msg"]


def test_other_public_channels_are_acknowledged_and_silent(okx: Simulator) -> None:
    ws = connect(okx.okx_ws_url)
    send_json(ws, {"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "books", "instId": "BTC-USDT"}]})
    first, second = recv_json(ws), recv_json(ws)
    assert (first["event"], first["arg"]["channel"], second["event"], second["arg"]["channel"]) == ("subscribe", "tickers", "subscribe", "books")
    send_json(ws, {"op": "unsubscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]})
    later = collect(ws, 0.5)
    ws.close()
    assert {m.get("arg", {}).get("channel") for m in later} == {"books", "tickers"} and any("action" in m for m in later[-3:])


def test_more_than_480_requests_an_hour_are_refused_with_60014(okx: Simulator) -> None:
    ws = connect(okx.okx_ws_url)
    request = json.dumps({"op": "unsubscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]})
    for _ in range(480):
        ws.send(request)
    answers = [recv_json(ws) for _ in range(480)]
    ws.send(request)
    refused = recv_json(ws)
    ws.close()
    assert all(a["event"] == "unsubscribe" for a in answers)
    assert (refused["event"], refused["code"], refused["msg"]) == ("error", "60014", "Requests too frequent.")


def test_rest_book_plus_buffered_updates_follows_okx_s_2026_procedure() -> None:
    """No websocket snapshot: buffer, fetch /market/books, drop updates with seqId <= its seqId; the first
    kept one has prevSeqId <= seqId < its seqId, and applying the rest gives the truth at every seqId."""
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), okx_ws_snapshot=False, rate=200.0, history_events=20000)) as sim:
        ws = subscribe(sim, "books-l2-tbt", "BTC-USDT")
        recv_json(ws)
        for _ in range(6):
            collect(ws, 0.05)  # drop what came before this round
            rest = requests.get(f"{sim.okx_rest_url}/api/v5/market/books", params={"instId": "BTC-USDT", "sz": "400"}, timeout=5).json()["data"][0]
            # Buffer until an update past the REST book has come: a fixed window missed it on a loaded host
            # (the simulator's thread starved for longer than the window).
            kept: list[Any] = []
            deadline = time.monotonic() + 20.0
            while not kept and time.monotonic() < deadline:
                kept = [m for m in book_messages(collect(ws, 0.1, until=1)) if m["data"][0]["seqId"] > rest["seqId"]]
            kept += [m for m in book_messages(collect(ws, 0.2)) if m["data"][0]["seqId"] > rest["seqId"]]
            assert kept and kept[0]["data"][0]["prevSeqId"] <= rest["seqId"] < kept[0]["data"][0]["seqId"]
            ref = OkxReference()
            ref.apply({"action": "snapshot", "data": [{**rest, "prevSeqId": -1, "checksum": 0}]})
            ref.seq = kept[0]["data"][0]["prevSeqId"]  # the procedure's join
            for message in kept:
                seq = ref.apply(message)
                truth = sim.venue_truth("okx", "BTC-USDT", update_id=seq, limit=400)
                assert [truth["bids"], truth["asks"]] == [[b[:2] for b in side] for side in ref.book.top(400)], seq
            assert ref.mismatches == 0
        ws.close()


def test_an_unchanged_channel_sends_an_empty_update_with_prev_seq_id_equal_to_seq_id() -> None:
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), rate=0.001, okx_no_change_update_s=0.2)) as sim:
        ws = subscribe(sim, "books", "BTC-USDT")
        recv_json(ws)
        snapshot = recv_json(ws)
        updates = book_messages(collect(ws, 0.7))
        ws.close()
    seq = snapshot["data"][0]["seqId"]
    assert len(updates) >= 2
    assert all((m["data"][0]["prevSeqId"], m["data"][0]["seqId"], m["data"][0]["bids"], m["data"][0]["asks"]) == (seq, seq, [], []) for m in updates)
