"""Replay of the genuine Binance captures in shared/data/binance (README there): a client written from
Binance's documents syncs on the replayed traffic and ends on the simulator's truth, the truth matches
the exchange's own recorded bookTicker, a client that syncs mid-replay converges too, and copies are
served under other symbol names.

The replay's known book (string keys, checkpoints shared by copies) is compared with a plain
Decimal-keyed replay of the same capture written here from Binance's documented algorithm ("How to
manage a local order book correctly"), at every checkpoint and at random indices in random order.
Synthetic captures follow the same file format (shared/data/binance/README.md: ``<ns> <json>`` lines).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import websocket
from hypothesis import given
from hypothesis import strategies as st

from ldc.errors import SimError
from ldc.sim import ReplaySource, Simulator
from ldc.sim.replay import Capture, captures_dir, decimal_key, load_captures, load_replays, parse_pace
from test_sim_conformance import DocClient, truth_levels

DATA = captures_dir()
SPOT_1 = DATA / "spot_btcusdt_20240808.gz"
SPOT_2 = DATA / "spot_btcusdt_20240809.gz"
USDM = DATA / "usdm_btcusdt_20240808.gz"
COINM = DATA / "coinm_btcusd_perp_20240808.gz"
RANDOM_INDICES = 24  # besides every checkpoint and its neighbours
STALE_BEHIND = 3  # diffs a stale snapshot lags

needs_captures = pytest.mark.skipif(not SPOT_1.exists(), reason=f"captures not found at {DATA}")


def book_tickers(path: Path) -> dict[int, tuple[Decimal, Decimal]]:
    """u -> (best bid, best ask) from the capture's own @bookTicker messages (independent truth)."""
    out = {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if "@bookTicker" in line[:80]:
                data = json.loads(line.split(" ", 1)[1])["data"]
                out[int(data["u"])] = (Decimal(data["b"]), Decimal(data["a"]))
    return out


def replay_sim(sim_factory: Callable[..., Simulator], *paths: Path, copies: int = 1, pace: str = "client") -> Simulator:
    return sim_factory(spot_symbols=(), replay=tuple(ReplaySource(path=str(p)) for p in paths), replay_copies=copies, replay_pace=pace)


@needs_captures
def test_spot_capture_replays_onto_the_truth_and_the_recorded_book_ticker(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, SPOT_2)
    tickers = book_tickers(SPOT_1) | book_tickers(SPOT_2)
    client = DocClient(sim.rest_url, sim.ws_url, "BTCUSDT", family="spot", stream="depth@100ms")
    last_id = load_captures((ReplaySource(path=str(SPOT_1)), ReplaySource(path=str(SPOT_2))))[0].final_ids[-1]
    checked = 0
    try:
        client.sync()
        while client.update_id < last_id:
            client.step()
            ticker = tickers.get(client.update_id)
            if ticker is not None:
                assert (max(client.bids), min(client.asks)) == ticker
                checked += 1
        bids, asks = client.known_levels()
        assert (bids, asks) == truth_levels(sim.rest_url, "BTCUSDT", "spot", client.update_id, client.low_bid, client.high_ask)
        assert checked > 100
        assert client.update_id == 50093696318  # the last diff of the 2024-08-09 file
    finally:
        client.close()


@needs_captures
def test_client_that_syncs_mid_replay_converges(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, USDM)
    early = websocket.create_connection(f"{sim.usdm_ws_url}/public/ws/btcusdt@depth@0ms", timeout=10)
    late = None
    for _ in range(1000):
        early.recv()
    # The replay runs at the slowest subscriber's pace: the early client keeps reading meanwhile.
    reader = threading.Thread(target=_read_until_closed, args=(early,), daemon=True)
    try:
        late = DocClient(sim.rest_url, sim.usdm_ws_url + "/public", "BTCUSDT", family="usdm", stream="depth@0ms")
        reader.start()
        late.sync()
        assert late.snapshots == 1 and late.update_id > 5123107852948  # past the recorded snapshot
        last_id = load_captures((ReplaySource(path=str(USDM)),))[0].final_ids[-1]
        while late.update_id < last_id:
            late.step()
        bids, asks = late.known_levels()
        assert (bids, asks) == truth_levels(sim.rest_url, "BTCUSDT", "usdm", late.update_id, late.low_bid, late.high_ask)
    finally:
        early.close()
        if late is not None:
            late.close()


def _read_until_closed(ws: websocket.WebSocket) -> None:
    try:
        while ws.recv():
            pass
    except (websocket.WebSocketException, OSError):
        pass


@needs_captures
def test_copies_are_served_under_other_names(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, copies=3)
    assert sim.urls()["markets"]["spot"] == ["BTCUSDT", "BTCUSDT2", "BTCUSDT3"]
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams=btcusdt3@depth@100ms", timeout=10)
    try:
        message = json.loads(ws.recv())
        assert message["stream"] == "btcusdt3@depth@100ms"
        assert message["data"]["s"] == "BTCUSDT3"
        assert message["data"]["U"] == 50093239189  # the capture's first diff
    finally:
        ws.close()
    info = requests.get(f"{sim.rest_url}/api/v3/exchangeInfo", timeout=10).json()
    assert info["symbols"][2]["filters"][0]["tickSize"] == "0.01000000"


@needs_captures
def test_recorded_pace_takes_recorded_time(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1, pace="x20")
    ws = websocket.create_connection(f"{sim.ws_url}/ws/btcusdt@depth@100ms", timeout=10)
    try:
        first = json.loads(ws.recv())
        started = time.monotonic()
        for _ in range(60):
            last = json.loads(ws.recv())
        elapsed = time.monotonic() - started
        recorded_s = (last["E"] - first["E"]) / 1000
        assert recorded_s > 5
        assert elapsed >= recorded_s / 20 * 0.7
    finally:
        ws.close()


@needs_captures
def test_snapshot_before_the_recorded_one_is_the_recorded_one(sim_factory: Callable[..., Simulator]) -> None:
    sim = replay_sim(sim_factory, SPOT_1)
    snap = requests.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}, timeout=10).json()
    assert snap["lastUpdateId"] == 50093239218
    assert snap["bids"][0] == ["61837.63000000", "3.78826000"]


@needs_captures
def test_pace_and_missing_snapshot_errors(tmp_path: Path) -> None:
    assert parse_pace("client") is None and parse_pace("recorded") == 1.0 and parse_pace("x10") == 10.0
    with pytest.raises(SimError, match="replay pace must be"):
        parse_pace("fast")
    no_snapshot = tmp_path / "cut.gz"
    with gzip.open(SPOT_1, "rb") as src, gzip.open(no_snapshot, "wb") as dst:
        dst.write(src.readline())
    with pytest.raises(SimError, match="has no REST snapshot"):
        load_captures((ReplaySource(path=str(no_snapshot)),))


# -- the known book against a Decimal-keyed replay

Levels = list[list[str]]


def reference_books(capture: Capture, indices: set[int]) -> dict[int, tuple[int, Levels, Levels]]:
    """(update id, bids, asks) after the first ``index`` diffs, for each index: the recorded snapshot,
    diffs it holds skipped (spot ``u <= lastUpdateId``, futures ``u < lastUpdateId``), the rest applied
    with prices and quantities read as Decimal; stdlib json, not the replay's parser."""
    snapshot = capture.snapshot or {}
    snapshot_id = int(snapshot["lastUpdateId"])
    sides: tuple[dict[Decimal, list[str]], dict[Decimal, list[str]]] = ({}, {})
    for side, levels in zip(sides, (snapshot["bids"], snapshot["asks"])):
        side.update((Decimal(p), [p, q]) for p, q in levels if Decimal(q) != 0)
    update_id = snapshot_id
    out = {}
    for at in range(len(capture.payloads) + 1):
        if at in indices:
            bids = [sides[0][p] for p in sorted(sides[0], reverse=True)]
            asks = [sides[1][p] for p in sorted(sides[1])]
            out[at] = (update_id, bids, asks)
        if at == len(capture.payloads):
            break
        final = capture.final_ids[at]
        if final < snapshot_id if capture.family.futures else final <= snapshot_id:
            continue
        diff = json.loads(capture.payloads[at])
        for side, levels in zip(sides, (diff["b"], diff["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = [price, qty]
        update_id = int(diff["u"])
    return out


def indices_to_check(capture: Capture, seed: int) -> list[int]:
    """Every checkpoint, the diffs around it, both ends and random indices, shuffled so the known book
    is asked going backwards (rewinds) as often as forwards."""
    end = len(capture.payloads)
    saved = capture.known().checkpoints  # where it will save books
    wanted = {0, 1, end - 1, end} | {max(0, min(end, at + d)) for at in saved for d in (-1, 0, 1)}
    rng = random.Random(seed)
    wanted |= {rng.randrange(end + 1) for _ in range(RANDOM_INDICES)}
    order = sorted(wanted)
    rng.shuffle(order)
    return order


@needs_captures
@pytest.mark.parametrize("path", [SPOT_1, USDM, COINM], ids=["spot", "usdm", "coinm"])
def test_known_book_equals_a_decimal_replay_at_any_index_in_any_order(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    capture = load_captures((ReplaySource(path=str(path)),))[0]
    order = indices_to_check(capture, seed=len(capture.payloads))
    expected = reference_books(capture, set(order))
    known = capture.known()
    for index in order:  # lazily: checkpoints saved on the way, rewinds from the nearest one
        assert known.levels_at(index, None) == expected[index], index
        assert known.update_id_at(index) == expected[index][0]
    known.prepare()
    for index in reversed(order):
        assert known.levels_at(index, None) == expected[index], index
        assert known.levels_at(index, 5) == (expected[index][0], expected[index][1][:5], expected[index][2][:5])


@needs_captures
@pytest.mark.parametrize("path", [SPOT_1, COINM], ids=["spot", "coinm"])
def test_market_snapshot_and_truth_equal_a_decimal_replay(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")
    (market,) = load_replays((ReplaySource(path=str(path)),), copies=1, pace="client")
    capture = market.capture
    order = indices_to_check(capture, seed=7)
    expected = reference_books(capture, set(order) | {max(0, at - STALE_BEHIND) for at in order})
    end = len(capture.payloads)
    for index in order:
        update_id, bids, asks = expected[index]
        market.sent_index = index
        assert market.snapshot(100) == (update_id, bids[:100], asks[:100])
        assert market.snapshot(5000, behind=STALE_BEHIND) == expected[max(0, index - STALE_BEHIND)]
        market.sent_index = end
        truth = market.truth(update_id, None)
        assert truth == {"symbol": capture.symbol, "update_id": update_id, "bids": bids, "asks": asks}
        if 0 < index < end and capture.final_ids[index] > capture.final_ids[index - 1] + 1 and update_id == capture.final_ids[index - 1]:
            # an id inside the next diff's range: the book stays the one before that diff
            assert market.truth(update_id + 1, 10) == {"symbol": capture.symbol, "update_id": update_id, "bids": bids[:10], "asks": asks[:10]}
    market.sent_index = end
    latest = market.truth(None, 1)
    assert latest is not None and latest["update_id"] == capture.final_ids[-1]
    assert market.truth(capture.final_ids[-1] + 1, 1) is None
    assert market.truth(capture.known().snapshot_id - 1, 1) is None


@needs_captures
def test_copies_share_one_known_book_and_answer_alike() -> None:
    markets = load_replays((ReplaySource(path=str(SPOT_1)),), copies=10, pace="client")
    assert [m.symbol for m in markets] == ["BTCUSDT"] + [f"BTCUSDT{i}" for i in range(2, 11)]
    assert len({id(m.capture.known()) for m in markets}) == 1
    end = len(markets[0].capture.payloads)
    positions = [end, 3, end // 2, end - 1, 0, end // 2, 1200, end, 2500, 999]  # each copy elsewhere, then all alike
    expected = reference_books(markets[0].capture, set(positions))
    for market, index in zip(markets, positions):
        market.sent_index = index
    for market, index in zip(markets, positions):
        assert market.snapshot(1000) == (expected[index][0], expected[index][1][:1000], expected[index][2][:1000])
    for market in markets:
        market.sent_index = end
    answers = [m.truth(expected[1200][0], 20) for m in markets]
    assert [a["symbol"] for a in answers if a] == [m.symbol for m in markets]
    assert all(a == dict(answers[0] or {}, symbol=m.symbol) for a, m in zip(answers, markets))
    assert answers[0] == {"symbol": "BTCUSDT", "update_id": expected[1200][0], "bids": expected[1200][1][:20], "asks": expected[1200][2][:20]}


# -- synthetic captures: spellings and refusals

SNAPSHOT_ID = 100


def write_capture(path: Path, snapshot_bids: Levels, diffs: list[tuple[Levels, Levels]]) -> Path:
    """A spot capture in the recorded format: a REST snapshot line, then one diff per element."""
    lines = [f"1000 {json.dumps({'lastUpdateId': SNAPSHOT_ID, 'bids': snapshot_bids, 'asks': [['90.00', '1.00']]}, separators=(',', ':'))}"]
    for n, (bids, asks) in enumerate(diffs):
        first = SNAPSHOT_ID + 1 + 2 * n
        data = {"e": "depthUpdate", "E": 1723161255208 + n, "s": "BTCUSDT", "U": first, "u": first + 1, "b": bids, "a": asks}
        lines.append(f"{2000 + n} " + json.dumps({"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":")))
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_a_price_spelled_two_ways_is_one_level(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "spellings.gz", [["10.5", "1"], ["9", "2"]], [
        ([["10.50", "3.0"], ["9.000", "0.00"]], []),  # 10.5 set again, 9 removed: other spellings
        ([["10.500", "0"], ["8.1", "4"]], [["90", "0.000"]]),
        ([["8.10", "5"], ["7", "1"]], []),
    ])
    (market,) = load_replays((ReplaySource(path=str(path)),), copies=1, pace="client")
    capture = market.capture
    expected = reference_books(capture, {0, 1, 2, 3})
    for index in (3, 1, 2, 0):
        market.sent_index = index
        assert market.snapshot(10) == expected[index]
    assert expected[1][1:] == ([["10.50", "3.0"]], [["90.00", "1.00"]])
    assert expected[3][1:] == ([["8.10", "5"], ["7", "1"]], [])


@pytest.mark.parametrize("bad", ["1e-5", "-1", "00.5", ".5", "+1", "1_0", " 1", "", "١٢"])
@pytest.mark.parametrize("where", ["diff price", "diff qty", "snapshot price"])
def test_a_number_not_written_as_binance_does_is_refused(tmp_path: Path, bad: str, where: str) -> None:
    snapshot = [[bad, "1"]] if where == "snapshot price" else [["10", "1"]]
    level = [bad, "1"] if where == "diff price" else ["11", bad]
    path = write_capture(tmp_path / "bad.gz", snapshot, [([["10", "2"]], []), ([level], [])])
    with pytest.raises(SimError, match=re.escape(f"expected a plain decimal string like '61820.99000000', found {bad!r}")) as info:
        load_replays((ReplaySource(path=str(path)),), copies=1, pace="client")
    assert ("snapshot 100" if where == "snapshot price" else "BTCUSDT diff 1 (u=104)") in str(info.value)


def test_a_level_that_is_not_a_pair_is_refused(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "triple.gz", [["10", "1"]], [([["10", "2", "x"]], [])])
    with pytest.raises(SimError, match=r"BTCUSDT diff 0 \(u=102\): expected a \[price, qty\] level, found \['10', '2', 'x'\]"):
        load_replays((ReplaySource(path=str(path)),), copies=1, pace="client")


def spelled(value: Decimal, extra_zeros: int) -> str:
    text = f"{value:f}"
    return text + ("" if "." in text else ".") + "0" * extra_zeros if extra_zeros else text


@given(st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False), st.integers(0, 3), st.integers(0, 3))
def test_decimal_key_is_equal_exactly_for_equal_numbers(value: Decimal, zeros_a: int, zeros_b: int) -> None:
    key = decimal_key(spelled(value, zeros_a))
    assert key == decimal_key(spelled(value, zeros_b))
    assert Decimal(key) == value
    assert (key == "0") == (value == 0)
    assert decimal_key(spelled(value + Decimal("0.00000001"), zeros_a)) != key


def test_books_before_a_refused_diff_are_still_served(tmp_path: Path) -> None:
    # the refused diff sets 9 before its bad level: the half-applied book must not be served as index 1
    path = write_capture(tmp_path / "late.gz", [["10", "1"]], [([["10", "2"], ["9", "1"]], []), ([["9", "5"], ["11", "-1"]], [])])
    capture = load_captures((ReplaySource(path=str(path)),))[0]
    known = capture.known()
    assert known.levels_at(0, None) == (SNAPSHOT_ID, [["10", "1"]], [["90.00", "1.00"]])
    with pytest.raises(SimError, match=r"BTCUSDT diff 1 \(u=104\): expected a plain decimal string like '61820.99000000', found '-1'"):
        known.levels_at(2, None)
    assert known.levels_at(1, None) == (102, [["10", "2"], ["9", "1"]], [["90.00", "1.00"]])
