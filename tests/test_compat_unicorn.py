"""ldc.compat.unicorn (issue 18, "What to build" 1 and "Bad input"): UNICORN's README usage runs unchanged but
for the import against the simulator, every book read equal to the simulator's truth at its update id; the
seed's exceptions for unknown, out-of-sync and stopped markets (never a hang); a feeder that dies or hangs
is reported; a host's running group is used through ldc.Control."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from feeder_helpers import feeder_in_thread, wait_until
from ldc.compat.unicorn import (
    BinanceLocalDepthCacheManager,
    DepthCacheAlreadyStopped,
    DepthCacheClusterNotReachableError,
    DepthCacheNotFound,
    DepthCacheOutOfSync,
    FeederDied,
)
from ldc.control import socket_path
from ldc.errors import LdcError
from ldc.sim import Simulator

pytestmark = pytest.mark.timeout(120)

# UNICORN Binance Local Depth Cache 2.14.0 README ("Using a DepthCache"), verbatim, one snippet per entry
README_SNIPPETS = (
    '''from unicorn_binance_local_depth_cache import BinanceLocalDepthCacheManager, DepthCacheOutOfSync

ubldc = BinanceLocalDepthCacheManager(exchange="binance.com", depth_cache_update_interval=100)
ubldc.create_depthcache("BTCUSDT")
''',
    '''asks = ubldc.get_asks("BTCUSDT")
bids = ubldc.get_bids("BTCUSDT")
''',
    '''asks = ubldc.get_asks("BTCUSDT", limit_count=10)
bids = ubldc.get_bids("BTCUSDT", limit_count=10)
''',
    '''asks = ubldc.get_asks("BTCUSDT", threshold_volume=300000)
bids = ubldc.get_bids("BTCUSDT", threshold_volume=300000)
''',
    '''try:
    asks = ubldc.get_asks(market="BTCUSDT", limit_count=5, threshold_volume=300000)
    bids = ubldc.get_bids(market="BTCUSDT", limit_count=5, threshold_volume=300000)
except DepthCacheOutOfSync:
    asks = "Out of sync!"
    bids = "Out of sync!"
''',
    '''ubldc.stop_depthcache("BTCUSDT")
''',
    '''ubldc.stop_manager()
''',
)
ONE_IMPORT = ("from unicorn_binance_local_depth_cache import", "from ldc.compat.unicorn import")
DEPTH = 100  # the facade's default published depth


@pytest.fixture
def markets(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), usdm_symbols=("BTCUSDT",), rate=20.0, history_events=5000)


@pytest.fixture
def pointed_at(markets: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Simulator]]:
    """Point unchanged UNICORN code at the simulator (the environment, not the code)."""

    def point(family: str) -> Simulator:
        monkeypatch.setenv("LDC_COMPAT_REST_URL", markets.rest_url)
        monkeypatch.setenv("LDC_COMPAT_WS_URL", markets.ws_url if family == "spot" else markets.usdm_ws_url)
        return markets

    yield point


def unicorn_select(levels: Any, limit_count: int | None, threshold_volume: float | None) -> list[list[float]]:
    """UNICORN's _select_from_depthcache on already sorted levels (manager.py 2.14, lines 938-951)."""
    items = [[float(p), float(q)] for p, q in levels]
    if threshold_volume is None:
        return items[:limit_count]
    total, kept = 0.0, []
    for price, quantity in items:
        if price * quantity + total <= threshold_volume or total == 0.0:
            kept.append([price, quantity])
            total += price * quantity
        else:
            break
    return kept[:limit_count]


def recording(ubldc: BinanceLocalDepthCacheManager, reads: list[tuple[str, str, dict[str, Any], Any, int]]) -> None:
    """Record every get_asks / get_bids with the update id of the book it read."""
    for side in ("asks", "bids"):
        method = getattr(ubldc, f"get_{side}")

        def call(*args: Any, _method: Any = method, _side: str = side, **kwargs: Any) -> Any:
            result = _method(*args, **kwargs)
            market = args[0] if args else kwargs.pop("market")
            reads.append((_side, market, kwargs, result, ubldc.last_read_update_id))
            return result

        setattr(ubldc, f"get_{side}", call)


def test_unicorns_readme_runs_unchanged_but_for_the_import_and_reads_the_exact_book(pointed_at: Callable[[str], Simulator]) -> None:
    sim = pointed_at("spot")
    namespace: dict[str, Any] = {}
    reads: list[tuple[str, str, dict[str, Any], Any, int]] = []
    first, *rest = (snippet.replace(*ONE_IMPORT) for snippet in README_SNIPPETS)
    exec(first, namespace)
    ubldc = namespace["ubldc"]
    try:
        recording(ubldc, reads)
        wait_until(lambda: ubldc.is_depth_cache_synchronized("BTCUSDT"), what="BTCUSDT in sync")
        for snippet in rest:
            exec(snippet, namespace)
    finally:
        ubldc.stop_manager()
    assert len(reads) == 8 and namespace["asks"] != "Out of sync!"
    for side, market, kwargs, result, update_id in reads:
        truth = sim.truth(market, update_id=update_id, limit=DEPTH, family="spot")
        assert truth is not None, f"update id {update_id} left the simulator's history"
        expected = unicorn_select(truth[side], kwargs.get("limit_count"), kwargs.get("threshold_volume"))
        assert result == expected, (side, kwargs)
        assert all(type(level) is list and list(map(type, level)) == [float, float] for level in result)
    assert [len(r[3]) for r in reads] == [DEPTH, DEPTH, 10, 10, DEPTH, DEPTH, 5, 5]


def test_futures_books_read_through_the_facade_equal_the_truth(pointed_at: Callable[[str], Simulator]) -> None:
    sim = pointed_at("usdm")
    with BinanceLocalDepthCacheManager(exchange="binance.com-futures") as ubldc:
        ubldc.create_depthcache(markets=["BTCUSDT"])
        wait_until(lambda: ubldc.is_depth_cache_synchronized(market="btcusdt"), what="USD-M BTCUSDT in sync")
        bids = ubldc.get_bids(market="btcusdt", limit_count=20)
        truth = sim.truth("BTCUSDT", update_id=ubldc.last_read_update_id, limit=20, family="usdm")
        assert truth is not None and bids == unicorn_select(truth["bids"], None, None)
        assert bids[0][0] > bids[-1][0]  # highest first


def test_markets_the_feeder_does_not_have_raise_the_seeds_exceptions_at_once(pointed_at: Callable[[str], Simulator]) -> None:
    pointed_at("spot")
    with BinanceLocalDepthCacheManager() as ubldc:
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'btcusdt' does not exist!$"):
            ubldc.get_asks("BTCUSDT")
        assert ubldc.create_depthcache(["BTCUSDT", "NOSUCHCOIN"]) is False
        started = time.monotonic()
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'nosuchcoin' does not exist! .*unknown symbol NOSUCHCOIN"):
            ubldc.get_bids("nosuchcoin")
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'nosuchcoin' does not exist!"):
            ubldc.is_depth_cache_synchronized("nosuchcoin")
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'nosuchcoin' does not exist! .*unknown symbol NOSUCHCOIN"):
            ubldc.set_resync_request("nosuchcoin")
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'ethusdt' does not exist!$"):
            ubldc.get_asks("ethusdt")  # listed by the exchange, never created here
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache does not exist!$"):
            ubldc.get_asks()
        assert time.monotonic() - started < 5.0  # answers, not waits (generous: a loaded 2-core machine)
        wait_until(lambda: ubldc.is_depth_cache_synchronized("btcusdt"), what="btcusdt in sync")
        assert ubldc.stop_depthcache("btcusdt") is True
        with pytest.raises(DepthCacheAlreadyStopped, match="^The depth_cache for market 'btcusdt' is already stopped!$"):
            ubldc.get_asks("btcusdt")
        assert ubldc.get_list_of_depthcaches() == ["nosuchcoin"]
        with pytest.raises(DepthCacheNotFound, match="^The depth_cache for market 'xrpusdt' does not exist!$"):
            ubldc.stop_depthcache("xrpusdt")


@pytest.fixture
def synced(pointed_at: Callable[[str], Simulator]) -> Iterator[BinanceLocalDepthCacheManager]:
    """A manager with its own feeder and btcusdt in sync, on the spot simulator."""
    pointed_at("spot")
    with BinanceLocalDepthCacheManager() as ubldc:
        ubldc.create_depthcache("btcusdt")
        wait_until(lambda: ubldc.is_depth_cache_synchronized("btcusdt"), what="btcusdt in sync")
        yield ubldc


def test_out_of_sync_raises_depthcacheoutofsync_and_resync_and_refresh_are_carried_out(synced: BinanceLocalDepthCacheManager) -> None:
    ubldc = synced
    assert ubldc.set_resync_request("btcusdt") is True
    with pytest.raises(DepthCacheOutOfSync, match="^The depth_cache for market 'btcusdt' is out of sync, please try again later"):
        ubldc.get_asks("btcusdt", limit_count=10)
    assert ubldc.is_depth_cache_synchronized("btcusdt") is False
    wait_until(lambda: ubldc.is_depth_cache_synchronized("btcusdt"), what="btcusdt in sync again")
    assert ubldc.set_refresh_request(["btcusdt"]) is True
    assert len(ubldc.get_asks("btcusdt", limit_count=10)) == 10  # a refresh keeps the book readable
    assert ubldc.get_last_update_time("btcusdt") is not None
    assert ubldc.get_restart_count("btcusdt") == 1  # the resync above
    assert (ubldc.is_update_available(), ubldc.get_latest_version()) == (False, None)
    with pytest.raises(LdcError, match="^ldc has no UNICORN REST manager"):
        ubldc.get_ubra_manager()
    assert "btcusdt" in ubldc.summary()


def test_a_feeder_that_dies_is_reported_not_waited_for(synced: BinanceLocalDepthCacheManager) -> None:
    ubldc = synced
    assert ubldc._child is not None
    os.kill(ubldc._child.pid, signal.SIGKILL)
    ubldc._child.wait()
    with pytest.raises(FeederDied, match=r"feeder of group '.*' \(pid \d+\) exited with status -9"):
        ubldc.get_asks("btcusdt", limit_count=10)
    with pytest.raises(DepthCacheOutOfSync):  # what UNICORN code catches
        ubldc.is_depth_cache_synchronized("btcusdt")


def test_a_hung_feeder_is_reported_within_the_liveness_limit(synced: BinanceLocalDepthCacheManager) -> None:
    ubldc = synced
    assert ubldc._child is not None
    os.kill(ubldc._child.pid, signal.SIGSTOP)
    try:

        def reported() -> str:
            try:
                ubldc.is_depth_cache_synchronized("btcusdt")
            except FeederDied as exc:
                return exc.why
            return ""

        why = wait_until(reported, what="the hung feeder reported")
        assert "gave no heartbeat for" in why and "(limit 4 s)" in why
    finally:
        os.kill(ubldc._child.pid, signal.SIGCONT)


def test_a_hosts_running_group_is_used_and_only_the_managers_own_markets_are_removed(markets: Simulator) -> None:
    with feeder_in_thread(markets, "spot", ("BTCUSDT",), depth=20) as run:
        run.wait_synced()
        wait_until(lambda: socket_path(run.group.name).exists(), what="the control socket")
        with BinanceLocalDepthCacheManager(exchange="binance.com", group=run.group.name) as ubldc:
            assert len(ubldc.get_asks("btcusdt", limit_count=5)) == 5  # the host's market, readable at once
            assert ubldc.create_depthcache(["btcusdt", "ethusdt"]) is True
            wait_until(lambda: ubldc.is_depth_cache_synchronized("ethusdt"), what="ethusdt added through control")
            asks = ubldc.get_asks("ethusdt")
            truth = markets.truth("ETHUSDT", update_id=ubldc.last_read_update_id, limit=20, family="spot")
            assert truth is not None and asks == unicorn_select(truth["asks"], None, None)
            ubldc.stop_depthcache(["btcusdt", "ethusdt"])
            assert run.reader.markets() == ["BTCUSDT"]  # the host's market stays for its other readers
        assert run.in_sync("BTCUSDT")
        with pytest.raises(ValueError, match=f"^group '{run.group.name}' feeds exchange 'binance.com', expected 'binance.com-futures'$"):
            BinanceLocalDepthCacheManager(exchange="binance.com-futures", group=run.group.name)


def test_unicorns_cluster_and_unknown_exchanges_are_refused() -> None:
    with pytest.raises(DepthCacheClusterNotReachableError, match="ldc has no UNICORN cluster"):
        BinanceLocalDepthCacheManager(ubdcc_address="127.0.0.1")
    with pytest.raises(ValueError, match="^exchange expected one of .*, found 'binance.org'$"):
        BinanceLocalDepthCacheManager(exchange="binance.org")


def test_reads_equal_unicorns_own_get_asks_and_get_bids_on_the_same_book(markets: Simulator, synced: BinanceLocalDepthCacheManager) -> None:
    """With UNICORN installed (the optional extra .[unicorn]): its own manager code, loaded with the truth at
    the update id the facade read, answers every trimming the same (the README's and a threshold that cuts)."""
    unicorn = pytest.importorskip("unicorn_binance_local_depth_cache.manager")
    sim, ubldc = markets, synced
    theirs = unicorn.BinanceLocalDepthCacheManager.__new__(unicorn.BinanceLocalDepthCacheManager)
    for kwargs in ({}, {"limit_count": 10}, {"limit_count": 0}, {"threshold_volume": 300000.0},
                   {"threshold_volume": 2.0}, {"limit_count": 3, "threshold_volume": 2.0}):  # fmt: skip
        for side in ("asks", "bids"):
            ours = getattr(ubldc, f"get_{side}")("btcusdt", **kwargs)
            truth = sim.truth("BTCUSDT", update_id=ubldc.last_read_update_id, limit=DEPTH, family="spot")
            assert truth is not None
            levels: Any = truth[side]
            book = {price: float(qty) for price, qty in levels}
            expected = theirs._select_from_depthcache(items=book, reverse=side == "bids", **kwargs)
            assert ours == expected, (side, kwargs)


def test_threads_reading_and_creating_at_once_share_one_feeder(pointed_at: Callable[[str], Simulator]) -> None:
    import threading

    pointed_at("spot")
    errors: list[BaseException] = []
    with BinanceLocalDepthCacheManager() as ubldc:

        def create(market: str) -> None:
            try:
                ubldc.create_depthcache(market)
                wait_until(lambda: ubldc.is_depth_cache_synchronized(market), what=f"{market} in sync")
                for _ in range(200):
                    assert len(ubldc.get_bids(market, limit_count=5)) == 5
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(m,)) for m in ("btcusdt", "ethusdt", "btcusdt")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert sorted(ubldc.get_list_of_depthcaches()) == ["btcusdt", "ethusdt"]
        assert ubldc._child is not None and ubldc.summary().count("feeder pid=") == 1


def test_a_feeder_that_dies_while_starting_is_reported_with_its_last_words(pointed_at: Callable[[str], Simulator]) -> None:
    pointed_at("spot")
    with BinanceLocalDepthCacheManager(depth=0) as ubldc:  # the feeder refuses its configuration and exits 2
        with pytest.raises(FeederDied, match=r"exited with status 2: ldc feed: .*key 'depth' expected an integer in 1\.\.1000, found 0"):
            ubldc.create_depthcache("btcusdt")
