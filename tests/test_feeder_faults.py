"""The feeder under each fault of issue 8 ("Bad input and faults"), one test per fault: a feeder (ldc.feeder.Feeder)
runs in a thread against the local simulator (ldc.sim, faults from ldc/sim/faults.py) and this test reads its
segment like any strategy process would (ldc.shm.Reader).

The bar (issue 8, binance-and-peers.md "Peers under feed faults"): a gap is detected on the first bad diff and
that market alone is flagged resyncing, back after one snapshot (no re-subscription); a duplicate is ignored and
counted; after a disconnect every market of that connection is back after the backoff plus one snapshot each;
readers see every transition in the slot's status and counters; nothing marked synced ever differs from the
exchange's book at its update id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feeder_helpers import FeederRun, Sampler, fast_ws_options, feeder_in_thread, group_table, wait_until, write_config
from ldc.shm.layout import Status
from ldc.sim import Simulator
from ldc.sim.faults import FaultKind, FaultRule
from ldc.sim.weights import WeightConfig

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
RATE = 30.0  # model events per second per market: several diffs per 100 ms stream interval
SLOW_SNAPSHOT_MS = 700
SHUTDOWN_GRACE_MS = 3000  # serverShutdown, then the exchange closes: room for a loaded machine's successor  # a resync's snapshot is held this long so readers can see the market flagged

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=SYMBOLS, rate=RATE, history_events=5000)


def counters(run: FeederRun) -> dict[str, dict[str, int]]:
    return {s: run.counters(s) for s in run.group.symbols}


def sim_counter(sim: Simulator, name: str) -> int:
    return int(sim.stats()["counters"].get(name, 0))


def flagged(run: FeederRun, symbol: str) -> Any:
    """The market's status once the reader sees it out of sync."""
    st = run.status(symbol)
    return None if st.in_sync else st


def connections(sim: Simulator) -> list[dict[str, Any]]:
    return sim.call(lambda state: state.connections_json())


def wait_updates(run: FeederRun, symbol: str, more_than: int) -> None:
    wait_until(lambda: run.counters(symbol)["updates"] > more_than, what=f"{symbol} publishing")


def test_gap_flags_that_market_alone_and_one_snapshot_brings_it_back(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        before, conns = counters(run), connections(spot)
        with Sampler(run, SYMBOLS) as sampler:
            spot.add_fault(FaultRule(FaultKind.REST_DELAY, symbol="BTCUSDT", ms=SLOW_SNAPSHOT_MS, count=1))
            spot.add_fault(FaultRule(FaultKind.DROP, symbol="BTCUSDT", count=1))
            st = wait_until(lambda: flagged(run, "BTCUSDT"), what="BTCUSDT flagged")
            # flagged on the first diff after the hole: the slot still holds the book before it, exactly
            assert st.status == Status.RESYNCING and st.message == "gap"
            truth = spot.truth("BTCUSDT", update_id=st.update_id, limit=run.group.depth, family="spot")
            stuck = run.reader.snapshot("BTCUSDT", allow_out_of_sync=True)
            assert truth is not None and (stuck.update_id, truth["update_id"]) == (st.update_id, st.update_id)
            assert st.counters["gaps"] == before["BTCUSDT"]["gaps"] + 1
            others = {s: run.counters(s)["updates"] for s in SYMBOLS[1:]}
            for symbol in SYMBOLS[1:]:  # the others keep publishing meanwhile
                wait_updates(run, symbol, others[symbol])
                assert run.in_sync(symbol)
            run.wait_synced("BTCUSDT")
            wait_updates(run, "BTCUSDT", run.counters("BTCUSDT")["updates"])
        after = counters(run)
        assert [c["id"] for c in connections(spot)] == [c["id"] for c in conns]  # no reconnect
    assert after["BTCUSDT"]["gaps"] - before["BTCUSDT"]["gaps"] == 1
    assert after["BTCUSDT"]["resyncs"] - before["BTCUSDT"]["resyncs"] == 1
    assert after["BTCUSDT"]["snapshots"] - before["BTCUSDT"]["snapshots"] == 1  # one round trip
    for symbol in SYMBOLS[1:]:
        assert (after[symbol]["gaps"], after[symbol]["resyncs"], after[symbol]["snapshots"]) == (0, 0, 1)
        assert sampler.out_of_sync_seen[symbol] == 0
    seen = sampler.states["BTCUSDT"]
    assert [flags for i, (flags, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != flags] == [Status.SYNCED, Status.RESYNCING, Status.SYNCED]
    # the slot said "gap" (asserted above, when flagged); the sampler, a thread of its own, may sample only
    # the next diff's "buffering diffs for a snapshot" on a loaded host
    assert {message for flags, message in seen if flags == Status.RESYNCING} <= {"gap", "buffering diffs for a snapshot"}
    assert sampler.checked > 0 and sampler.mismatches == []


def test_duplicate_diff_is_ignored_and_counted_not_a_gap(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        before = counters(run)
        with Sampler(run, SYMBOLS) as sampler:
            spot.add_fault(FaultRule(FaultKind.DUPLICATE, symbol="BTCUSDT", count=3))
            wait_until(lambda: run.counters("BTCUSDT")["ignored"] >= before["BTCUSDT"]["ignored"] + 3, what="3 ignored")
            wait_updates(run, "BTCUSDT", run.counters("BTCUSDT")["updates"])
        after = counters(run)
    assert after["BTCUSDT"]["ignored"] - before["BTCUSDT"]["ignored"] == 3
    assert {k: after["BTCUSDT"][k] - before["BTCUSDT"][k] for k in ("gaps", "resyncs", "snapshots")} == {"gaps": 0, "resyncs": 0, "snapshots": 0}
    assert sampler.out_of_sync_seen == {s: 0 for s in SYMBOLS}
    assert sampler.checked > 0 and sampler.mismatches == []


def test_disconnect_resyncs_the_markets_of_that_connection_only(sim_factory: Callable[..., Simulator]) -> None:
    symbols = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT")
    sim = sim_factory(spot_symbols=symbols, rate=RATE, history_events=5000)
    with feeder_in_thread(sim, "spot", symbols, ws_options=fast_ws_options(max_streams_per_connection=2)) as run:
        run.wait_synced()
        before = counters(run)
        conns = connections(sim)
        assert sorted(len(c["streams"]) for c in conns) == [2, 2]
        dropped = conns[0]
        hit = tuple(s for s in symbols if f"{s.lower()}@depth@100ms" in dropped["streams"])
        spared = tuple(s for s in symbols if s not in hit)
        with Sampler(run, symbols) as sampler:
            for symbol in hit:
                sim.add_fault(FaultRule(FaultKind.REST_DELAY, symbol=symbol, ms=SLOW_SNAPSHOT_MS, count=1))
            sim.add_fault(FaultRule(FaultKind.DISCONNECT, conn=dropped["id"], count=1))
            wait_until(lambda: all(flagged(run, s) for s in hit), what=f"{hit} flagged")
            run.wait_synced(*hit)
        after = counters(run)
        assert len(connections(sim)) == 2 and sim_counter(sim, "ws_connections") == 3  # one reconnect
    for symbol in hit:
        assert Status.RESYNCING in Status(sampler.states[symbol][1][0])
        assert after[symbol]["snapshots"] - before[symbol]["snapshots"] == 1  # one snapshot each
        assert after[symbol]["resyncs"] - before[symbol]["resyncs"] == 1
    for symbol in spared:
        assert after[symbol]["snapshots"] == before[symbol]["snapshots"] and after[symbol]["resyncs"] == 0
        assert sampler.out_of_sync_seen[symbol] == 0
    assert sampler.mismatches == []


def test_stale_snapshot_is_fetched_again_before_the_market_is_synced(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.STALE_SNAPSHOT, symbol="BTCUSDT", behind=200, count=1))
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        with Sampler(run, SYMBOLS) as sampler:
            wait_updates(run, "BTCUSDT", run.counters("BTCUSDT")["updates"] + 2)
        got = counters(run)
    assert got["BTCUSDT"]["snapshots"] == 2  # the stale one, refused, and a fresh one
    assert (got["BTCUSDT"]["gaps"], got["BTCUSDT"]["resyncs"]) == (0, 0)
    assert [got[s]["snapshots"] for s in SYMBOLS[1:]] == [1, 1]
    assert sampler.checked > 0 and sampler.mismatches == []


def test_rest_5xx_snapshots_are_retried_and_the_other_markets_sync_meanwhile(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_ERROR, symbol="BTCUSDT", status=503, count=2))
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        got = counters(run)
        failures = run.feeder.markets["BTCUSDT"].sync.snapshot_failures
        assert run.check_truth("BTCUSDT") in (True, None)
    assert spot.stats()["faults_fired"]["rest_error"] == 2 and failures == 2
    assert (got["BTCUSDT"]["snapshots"], got["BTCUSDT"]["resyncs"]) == (1, 0)


def test_a_418_ban_is_said_in_the_slot_while_waited_out(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_ERROR, symbol="BTCUSDT", status=418, ms=3000, count=1))
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        # not only "buffering diffs for a snapshot": the exchange's answer and the wait (issue 14)
        def banned() -> Any:
            status = run.status("BTCUSDT")
            return status if "ip banned" in status.message else None

        st = wait_until(banned, what="the ban in the slot")
        assert st.status == Status.RESYNCING and "status 418 ip banned, retry after 3 s" in st.message, st.message
        run.wait_synced()


def test_rest_timeout_is_a_failed_snapshot_then_retried(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_DELAY, symbol="BTCUSDT", ms=2500, count=1))
    with feeder_in_thread(spot, "spot", SYMBOLS, rest_timeout_s=0.5) as run:
        run.wait_synced()
        assert run.counters("BTCUSDT")["snapshots"] == 1 and run.feeder.markets["BTCUSDT"].sync.snapshot_failures == 1
        assert run.check_truth("BTCUSDT") in (True, None)
    assert spot.stats()["faults_fired"]["rest_delay"] == 1


def test_429_storm_is_waited_out_with_no_418_and_weight_within_the_limit(sim_factory: Callable[..., Simulator]) -> None:
    symbols = tuple(f"S{i:02d}USDT" for i in range(6))
    # 20 (exchangeInfo) + 6 x 5 (limit-100 snapshots) fits a 100-weight budget only if nothing is wasted
    sim = sim_factory(spot_symbols=symbols, rate=RATE, weights=WeightConfig(spot_limit=100, window_s=60.0, requests_after_429_before_ban=2))
    sim.add_fault(FaultRule(FaultKind.RATE_LIMIT, count=4))
    started = time.monotonic()
    with feeder_in_thread(sim, "spot", symbols, weight_limit_per_min=100, weight_budget_fraction=1.0) as run:
        run.wait_synced(timeout_s=30.0)
        elapsed = time.monotonic() - started
        got = counters(run)
    stats = sim.stats()
    assert stats["faults_fired"]["rate_limit"] == 4
    assert "rest_418" not in stats["counters"]  # never banned
    assert "rest_429" not in stats["counters"]  # the exchange's own count never refused a request: never over
    assert all(got[s]["snapshots"] == 1 for s in symbols)
    assert elapsed >= 1.0  # each 429 carried Retry-After: 1 s, and the whole host waited it out


def test_malformed_json_frame_is_logged_and_only_its_market_resyncs(spot: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        before = counters(run)
        with Sampler(run, SYMBOLS) as sampler:
            spot.add_fault(FaultRule(FaultKind.MALFORMED, symbol="BTCUSDT", detail="json", count=1))
            wait_until(lambda: run.counters("BTCUSDT")["resyncs"] == 1, what="BTCUSDT resynced")
            run.wait_synced()
        after = counters(run)
    # truncated before its symbol: it cannot be charged to a market, only logged; the diff is lost, so its
    # successor is a gap, seen and repaired like one
    assert [r.getMessage()[:40] for r in caplog.records if "malformed" in r.getMessage()] == [
        "malformed frame: message is not valid js"
    ]
    assert after["BTCUSDT"]["gaps"] - before["BTCUSDT"]["gaps"] == 1
    assert after["BTCUSDT"]["snapshots"] - before["BTCUSDT"]["snapshots"] == 1
    assert all(after[s]["resyncs"] == 0 and sampler.out_of_sync_seen[s] == 0 for s in SYMBOLS[1:])
    assert sampler.mismatches == []


def test_malformed_websocket_frame_drops_the_connection_and_every_market_comes_back(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        spot.add_fault(FaultRule(FaultKind.MALFORMED, symbol="BTCUSDT", detail="frame", count=1))
        wait_until(lambda: sim_counter(spot, "ws_connections") == 2, what="a reconnect")
        wait_until(lambda: all(run.counters(s)["snapshots"] == 2 for s in SYMBOLS), what="one snapshot each")
        run.wait_synced()
        got = counters(run)
        assert all(run.check_truth(s) in (True, None) for s in SYMBOLS)
    assert all((got[s]["resyncs"], got[s]["snapshots"]) == (1, 2) for s in SYMBOLS)


def test_unknown_symbol_shows_error_in_its_slot_and_the_others_run(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT", "NOSUCHCOIN", "ETHUSDT")) as run:
        run.wait_synced("BTCUSDT", "ETHUSDT")
        st = run.status("NOSUCHCOIN")
        assert st.status == Status.ERROR
        assert st.message == "unknown symbol NOSUCHCOIN: not listed by binance.com exchangeInfo"
        assert st.counters["snapshots"] == 0 and st.update_id <= 0
        subscribed = {s for c in connections(spot) for s in c["streams"]}
        assert subscribed == {"btcusdt@depth@100ms", "ethusdt@depth@100ms"}


def test_a_websocket_that_cannot_connect_says_so_in_the_waiting_markets_slots(spot: Simulator) -> None:
    # REST answers (the symbol is valid), the websocket endpoint refuses: readers learn why nothing syncs
    with feeder_in_thread(spot, "spot", ("BTCUSDT",), ws_url="ws://127.0.0.1:9") as run:
        wait_until(lambda: run.in_sync("BTCUSDT") or "websocket" in run.status("BTCUSDT").message
                   if "BTCUSDT" in run.reader.markets() else False, what="the connect failure in the slot")  # fmt: skip
        st = run.status("BTCUSDT")
        assert st.message.startswith("websocket connection failed, retrying: ConnectionRefusedError")
        assert st.status == Status.RESYNCING and not st.in_sync


def test_server_shutdown_rolls_the_connection_over_with_no_gap_for_readers(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        run.wait_synced()
        before = counters(run)
        with Sampler(run, SYMBOLS) as sampler:
            spot.add_fault(FaultRule(FaultKind.SHUTDOWN, ms=SHUTDOWN_GRACE_MS))
            wait_until(lambda: sim_counter(spot, "ws_connections") == 2, what="the successor connection")
            wait_until(lambda: len(connections(spot)) == 1, what="the old connection closed")
            for symbol in SYMBOLS:
                wait_updates(run, symbol, run.counters(symbol)["updates"])
        after = counters(run)
    assert sampler.out_of_sync_seen == {s: 0 for s in SYMBOLS}
    assert all(after[s]["resyncs"] == 0 and after[s]["gaps"] == 0 and after[s]["snapshots"] == before[s]["snapshots"] for s in SYMBOLS)
    assert sampler.checked > 0 and sampler.mismatches == []


def test_connection_rollover_before_the_lifetime_cut_leaves_no_gap(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=SYMBOLS, rate=RATE, history_events=5000, max_lifetime_s=6.0)
    options = fast_ws_options(rollover_after_s=1.5, rollover_overlap_max_s=4.0)  # cut at 5.5 s at the latest
    with feeder_in_thread(sim, "spot", SYMBOLS, ws_options=options) as run:
        run.wait_synced()
        with Sampler(run, SYMBOLS) as sampler:
            wait_until(lambda: sim_counter(sim, "ws_connections") >= 3, what="two rollovers", timeout_s=30.0)
            for symbol in SYMBOLS:
                wait_updates(run, symbol, run.counters(symbol)["updates"])
        got = counters(run)
    assert sampler.out_of_sync_seen == {s: 0 for s in SYMBOLS}
    assert all((got[s]["resyncs"], got[s]["gaps"], got[s]["snapshots"]) == (0, 0, 1) for s in SYMBOLS)
    assert sampler.checked > 0 and sampler.mismatches == []


def test_unknown_symbol_is_found_once_exchange_info_answers_again(spot: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """exchangeInfo fails at start: the unknown stream goes into the connection URL and the exchange refuses
    the whole connection; the feeder checks the symbols again with backoff, flags the unknown one and the
    others connect and sync."""
    caplog.set_level(logging.INFO, logger="ldc.feeder")
    spot.add_fault(FaultRule(FaultKind.REST_ERROR, status=500, count=2))  # the first two requests: exchangeInfo
    with feeder_in_thread(spot, "spot", ("BTCUSDT", "NOSUCHCOIN")) as run:
        run.wait_synced("BTCUSDT")
        st = run.status("NOSUCHCOIN")
        assert (st.status, st.message) == (Status.ERROR, "unknown symbol NOSUCHCOIN: not listed by binance.com exchangeInfo")
        assert {s for c in connections(spot) for s in c["streams"]} == {"btcusdt@depth@100ms"}
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("symbols not validated: binance.com /api/v3/exchangeInfo failed") for m in messages) == 2
    assert "symbols validated: 1 listed, 1 unknown" in messages


def test_reload_past_the_segment_capacity_adds_what_fits_and_logs_the_rest(spot: Simulator, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="ldc.feeder")
    path = tmp_path / "ldc.toml"
    with feeder_in_thread(spot, "spot", ("BTCUSDT",), capacity=2, config_path=str(path)) as run:
        run.wait_synced()
        # capacity only changes at a restart (ldc.config.restart_keys): the running segment keeps 2 slots
        write_config(path, [group_table(run.group.name, "spot", SYMBOLS, spot, capacity=3, refresh_interval_s=0.0)])
        run.feeder.request_reload()
        wait_until(lambda: any("reload: 1 markets added" in r.getMessage() for r in caplog.records), what="the reload")
        run.wait_synced("BTCUSDT", "ETHUSDT")
        assert sorted(run.reader.markets()) == ["BTCUSDT", "ETHUSDT"]
        assert run.counters("BTCUSDT")["snapshots"] == 1 and run.feeder.group.symbols == ("BTCUSDT", "ETHUSDT")
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload: market BNBUSDT not added")]
    assert refused == [f"reload: market BNBUSDT not added: segment /ldc-{run.group.name} is full: capacity 2 markets"]
    assert any(r.getMessage() == "reload: capacity changed; those take effect at the next restart" for r in caplog.records)


def test_futures_duplicate_diff_is_ignored_by_the_pu_rule_not_a_gap(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=(), usdm_symbols=("BTCUSDT", "ETHUSDT"), rate=RATE, history_events=5000)
    with feeder_in_thread(sim, "usdm", ("BTCUSDT", "ETHUSDT")) as run:
        run.wait_synced()
        before = counters(run)
        with Sampler(run, ("BTCUSDT", "ETHUSDT")) as sampler:
            sim.add_fault(FaultRule(FaultKind.DUPLICATE, symbol="BTCUSDT", count=2))
            wait_until(lambda: run.counters("BTCUSDT")["ignored"] >= before["BTCUSDT"]["ignored"] + 2, what="2 ignored")
            wait_updates(run, "BTCUSDT", run.counters("BTCUSDT")["updates"])
        after = counters(run)
    assert after["BTCUSDT"]["ignored"] - before["BTCUSDT"]["ignored"] == 2
    assert (after["BTCUSDT"]["gaps"], after["BTCUSDT"]["resyncs"], after["BTCUSDT"]["snapshots"]) == (0, 0, 1)
    assert sampler.out_of_sync_seen == {"BTCUSDT": 0, "ETHUSDT": 0} and sampler.mismatches == []


def test_stop_with_a_snapshot_in_flight_is_clean(spot: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_DELAY, symbol="BTCUSDT", ms=1000, count=1))
    with feeder_in_thread(spot, "spot", SYMBOLS) as run:
        wait_until(lambda: run.feeder.markets.get("BTCUSDT") and run.feeder.markets["BTCUSDT"].fetching, what="a snapshot in flight")
        stopped = time.monotonic()
    # close() waited for the request (bounded by rest_timeout_s + 1 s), then closed the governor it uses
    assert time.monotonic() - stopped < run.group.rest_timeout_s + 3.0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
