"""ldc.io.governor: the host-wide REST weight ledger (binance-and-peers.md §1a: REQUEST_WEIGHT per minute
per IP, X-MBX-USED-WEIGHT-1M, 429 / 418 with Retry-After)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from feeder_helpers import group_table, processes, unique_group, wait_until, write_config
from hypothesis import given, settings
from hypothesis import strategies as st
from test_standby import READY_TIMEOUT_S, all_in_sync_from, holds_ledger, standby_ready, start_feeder

from ldc.config import endpoints, load_config
from ldc.errors import ConfigError, RateLimitError
from ldc.io.governor import (
    BUCKETS,
    DEFAULT_418_BACKOFF_MS,
    MAX_BAN_MS,
    SEGMENT_PREFIX,
    STATUS_LOCAL,
    WINDOW_MS,
    Ledger,
    RateGovernor,
    governor_key,
    observe_ban,
    observe_used,
    reserve,
    unlink_governor,
    used,
)
from ldc.shm.reader import Reader
from ldc.sim import Simulator
from ldc.sim.weights import WeightConfig

T0 = 1_700_000_040_000  # a minute boundary
BUCKET_MS = WINDOW_MS // BUCKETS


class FakeClock:
    """Wall clock in ms that only moves when the governor sleeps."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.slept_s: list[float] = []

    def __call__(self) -> int:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.now_ms += round(seconds * 1000)


@pytest.fixture
def key() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    unlink_governor(name)


def _grant_all(ledger: Ledger, weights: list[int], now_ms: int) -> tuple[Ledger, list[int]]:
    """Reserve each weight in turn, waiting as told; return the ledger and the grant times."""
    times = []
    for weight in weights:
        decision = reserve(ledger, weight, now_ms)
        while not decision.granted:
            assert decision.wait_ms > 0
            now_ms += decision.wait_ms
            decision = reserve(decision.ledger, weight, now_ms)
        ledger = decision.ledger
        times.append(now_ms)
    return ledger, times


# Pure decisions ---------------------------------------------------------------------------------------------


def test_reserve_grants_until_the_budget_then_waits_until_the_first_grant_leaves_the_window() -> None:
    first = reserve(Ledger(budget=10), 5, T0 + 1000)
    second = reserve(first.ledger, 5, T0 + 2000)
    third = reserve(second.ledger, 5, T0 + 3000)
    assert (first.granted, second.granted, used(second.ledger, T0 + 3000)) == (True, True, 10)
    # the bucket of T0+1000 counts until one window and one bucket after its start
    assert (third.granted, third.reason, third.wait_ms) == (False, "budget", 1000 + WINDOW_MS + BUCKET_MS - 3000)
    fourth = reserve(third.ledger, 5, T0 + 1000 + WINDOW_MS + BUCKET_MS)
    assert (fourth.granted, used(fourth.ledger, T0 + 1000 + WINDOW_MS + BUCKET_MS)) == (True, 10)


def test_reserve_refuses_a_weight_above_the_whole_budget() -> None:
    with pytest.raises(ConfigError, match="request weight 250 exceeds the host budget of 200 per window"):
        reserve(Ledger(budget=200), 250, T0)


def test_exchange_count_wins_only_when_higher() -> None:
    ledger = reserve(Ledger(budget=100), 10, T0).ledger
    assert used(observe_used(ledger, 70, T0 + 5), T0 + 5) == 70
    assert used(observe_used(ledger, 3, T0 + 5), T0 + 5) == 10  # requests in flight are not in its count


def test_429_blocks_for_retry_after() -> None:
    banned = observe_ban(Ledger(budget=100), 429, 7.0, T0 + 1000)
    assert (banned.banned_until_ms, banned.ban_status) == (T0 + 8000, 429)
    decision = reserve(banned, 1, T0 + 2000)
    assert (decision.granted, decision.reason, decision.wait_ms) == (False, "banned", 6000)
    assert reserve(banned, 1, T0 + 8000).granted


def test_bans_without_retry_after_use_the_defaults() -> None:
    assert observe_ban(Ledger(budget=100), 418, None, T0).banned_until_ms == T0 + DEFAULT_418_BACKOFF_MS
    assert observe_ban(Ledger(budget=100), 429, None, T0).banned_until_ms == T0 + WINDOW_MS


def test_a_shorter_ban_never_shortens_a_longer_one() -> None:
    long = observe_ban(Ledger(budget=100), 418, 300.0, T0)
    assert observe_ban(long, 429, 1.0, T0 + 10).banned_until_ms == T0 + 300_000


def test_cold_start_of_500_markets_is_bounded_by_the_weight_limit() -> None:
    # 500 snapshots of weight 5 = 2500 weight under a budget of 1000 per minute: 2 waits of one window each
    # (plus one bucket each for the sliding count), not a sleep per market
    ledger, times = _grant_all(Ledger(budget=1000), [5] * 500, T0)
    assert ledger.granted == 500
    assert times[-1] - T0 == 2 * (WINDOW_MS + BUCKET_MS)
    assert times[-1] - T0 <= 1.2 * (2500 // 1000) * WINDOW_MS


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=120),
    gaps=st.lists(st.integers(min_value=0, max_value=7_000), min_size=120, max_size=120),
    offset=st.integers(min_value=0, max_value=WINDOW_MS - 1),
)
def test_no_window_of_any_alignment_exceeds_the_budget(weights: list[int], gaps: list[int], offset: int) -> None:
    # requests arrive at arbitrary times; whatever the exchange's window alignment (offset), the weight
    # granted inside any of its windows stays within the budget
    budget, ledger, now, grants = 100, Ledger(budget=100), T0, []
    for weight, gap in zip(weights, gaps):
        now += gap
        ledger, (at,) = _grant_all(ledger, [weight], now)
        now = at
        grants.append((at, weight))
    windows: dict[int, int] = {}
    for at, weight in grants:
        start = (at - offset) // WINDOW_MS
        windows[start] = windows.get(start, 0) + weight
    assert max(windows.values()) <= budget


def test_governor_key_is_host_and_port() -> None:
    assert governor_key("https://api.binance.com") == "api.binance.com"
    assert governor_key("http://127.0.0.1:18080/x") == "127.0.0.1_18080"
    with pytest.raises(ConfigError, match="has no host"):
        governor_key("nohost")


# The shared segment ----------------------------------------------------------------------------------------


def test_two_governors_on_one_key_share_the_budget(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget=10, clock_ms=clock, sleep=clock.sleep) as one, RateGovernor(
        key, budget=10, clock_ms=clock, sleep=clock.sleep
    ) as two:
        one.acquire(5, timeout_s=0)
        two.acquire(5, timeout_s=0)
        with pytest.raises(RateLimitError) as info:
            one.acquire(5, timeout_s=1)
    assert (info.value.status, info.value.retry_after_s) == (STATUS_LOCAL, 61.0)
    assert str(info.value) == (
        "host weight budget spent: 10 of 10 used, need 5, free again in 61.0 s, expected a grant within 1 s"
    )
    assert SEGMENT_PREFIX.startswith("/")


def test_acquire_sleeps_until_weight_is_free(key: str) -> None:
    clock = FakeClock(T0 + 30_000)
    with RateGovernor(key, budget=5, clock_ms=clock, sleep=clock.sleep) as governor:
        governor.acquire(5, timeout_s=0)
        governor.acquire(5, timeout_s=120)
    assert clock.slept_s == [61.0]


def test_the_most_cautious_budget_and_window_hold_for_the_host(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget=100, window_ms=2_000, clock_ms=clock) as first:
        first.acquire(30, timeout_s=0)
        with RateGovernor(key, budget=40, clock_ms=clock):
            ledger = first.ledger()
            assert (ledger.budget, ledger.window_ms) == (40, WINDOW_MS)
            assert first.used() == 30  # carried over into the longer window


def test_a_ban_seen_by_one_process_stops_the_other(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget=100, clock_ms=clock) as one, RateGovernor(key, budget=100, clock_ms=clock) as two:
        one.acquire(1, timeout_s=0)
        one.observe_response(status=429, used_weight=100, retry_after_s=12.0)
        with pytest.raises(RateLimitError, match=r"host banned by the exchange \(status 429\) for another 12.0 s"):
            two.acquire(1, timeout_s=5)


def test_waiting_out_a_ban_is_logged_once(key: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    with caplog.at_level(logging.WARNING, logger="ldc.io.governor"), \
            RateGovernor(key, budget=100, clock_ms=clock, sleep=clock.sleep) as governor:  # fmt: skip
        governor.observe_response(status=418, used_weight=None, retry_after_s=12.0)
        governor.acquire(1, timeout_s=60)  # waits the ban out (a 418 wait was silent, issue 14)
    assert clock.slept_s and sum(clock.slept_s) >= 12.0
    assert [r.getMessage() for r in caplog.records] == ["REST request waits 12.0 s: host banned by the exchange (status 418)"]


def test_a_set_stop_event_ends_the_wait(key: str) -> None:
    stop = threading.Event()
    stop.set()
    with RateGovernor(key, budget=1) as governor:
        governor.acquire(1, timeout_s=0)
        with pytest.raises(RateLimitError, match="host weight budget spent"):
            governor.acquire(1, timeout_s=120, stop=stop)


def test_bad_budget_is_a_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match="weight budget 0 per 60000 ms, expected >= 1 per >= 60 ms"):
        RateGovernor(key, budget=0)


def _grab_all(key: str, now_ms: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    granted = 0
    with RateGovernor(key, budget=1000, clock_ms=lambda: now_ms) as governor:
        while True:
            try:
                governor.acquire(3, timeout_s=0)
            except RateLimitError:
                break
            granted += 1
    results.put(granted)


def test_processes_racing_for_weight_never_exceed_the_budget(key: str) -> None:
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_grab_all, args=(key, T0, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    counts = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert sum(counts) == 1000 // 3
    with RateGovernor(key, budget=1000, clock_ms=lambda: T0) as governor:
        assert governor.used() == 999


# A ledger no exchange answer can have produced ---------------------------------------------------------------


def _plant(key: str, ledger: Ledger) -> None:
    """Write ``ledger`` as it would be stored, whatever its values (as damage or a tamperer would)."""
    with RateGovernor(key, budget=max(1, min(ledger.budget, 1_000_000))) as governor:
        governor._store(ledger)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"banned_until_ms": T0 + MAX_BAN_MS + 3_600_000, "ban_status": 418}, "banned for another 73.0 h, the exchange bans for at most 72 h"),
        ({"ban_status": 500, "banned_until_ms": T0 + 1000}, "ban status 500, expected one of (0, 418, 429)"),
        ({"budget": 0}, "budget 0, expected 1..1000000"),
        ({"ring": ((T0 // BUCKET_MS + 5, 1),) + ((-1, 0),) * (BUCKETS)}, f"bucket {T0 // BUCKET_MS + 5} with weight 1"),
    ],
)
def test_a_corrupt_ledger_is_named_and_reset(key: str, change: dict[str, object], named: str, caplog: pytest.LogCaptureFixture) -> None:
    _plant(key, replace(Ledger(budget=100), **change))  # type: ignore[arg-type]
    clock = FakeClock(T0)
    with caplog.at_level(logging.ERROR, logger="ldc.io.governor"), RateGovernor(key, budget=100, clock_ms=clock) as governor:
        governor.acquire(1, timeout_s=0)  # not stopped by the damage
        assert governor.ledger().banned_until_ms == 0
    assert any(named in r.getMessage() and "is corrupt" in r.getMessage() and "reset" in r.getMessage() for r in caplog.records), caplog.text


def test_a_ban_the_exchange_can_give_is_kept(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget=100, clock_ms=clock) as governor:
        governor.observe_response(status=418, used_weight=None, retry_after_s=MAX_BAN_MS / 1000)
        with pytest.raises(RateLimitError, match=r"host banned by the exchange \(status 418\) for another 259200.0 s"):
            governor.acquire(1, timeout_s=0)


def test_a_ledger_an_older_ldc_left_group_writable_is_replaced(key: str) -> None:
    path = "/dev/shm" + SEGMENT_PREFIX + key
    clock = FakeClock(T0)
    with RateGovernor(key, budget=100, clock_ms=clock) as governor:
        governor.observe_response(status=429, used_weight=None, retry_after_s=30)
    os.chmod(path, 0o660)  # what 1.x made; a group member may have written anything into it
    with RateGovernor(key, budget=100, clock_ms=clock) as governor:
        assert os.stat(path).st_mode & 0o777 == 0o600
        governor.acquire(1, timeout_s=0)


# The host's ledger with a hot standby (issue 17 item 3) ---------------------------------------------------

STANDBY_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
ONE_WINDOW_S = 10 * 365 * 86400.0  # the simulator counts every request of the test in one window


def _ledger_weight(key: str) -> tuple[int, int]:
    """(weight booked in the host's ledger of ``key`` within its window, requests granted), read as any feeder
    would (a handle asking for the largest budget changes no limit: the most cautious one holds)."""
    with RateGovernor(key, budget=1_000_000) as governor:
        ledger = governor.ledger()
        return used(ledger, time.time_ns() // 1_000_000), ledger.granted


def test_the_rest_weight_of_the_active_and_of_its_standby_counts_in_the_hosts_one_ledger(
    tmp_path: Path, sim_factory: Callable[..., Simulator]
) -> None:
    """Two feeders of one Binance group, the writer then its standby, each load their own REST snapshots (and
    exchangeInfo): the host's ledger holds the sum of both, equal to the weight the simulator itself counted
    for this host; the standby's share is what it fetched (its books start from their own snapshots)."""
    sim = sim_factory(spot_symbols=STANDBY_SYMBOLS, rate=20.0, weights=WeightConfig(window_s=ONE_WINDOW_S))
    group = unique_group("gov")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", STANDBY_SYMBOLS, sim, refresh_interval_s=0.0)])
    key = governor_key(endpoints(load_config(config).group(group)).rest_url)
    sim_weight = lambda: int(sim.call(lambda state: state.limiter.used("127.0.0.1", "spot", time.time())))  # noqa: E731
    requests = lambda: int(sim.stats()["counters"].get("rest_requests", 0))  # noqa: E731
    log = tmp_path / "feeders.log"
    with processes() as procs:
        procs.groups.append(group)
        procs.governors.append(key)
        active = start_feeder(procs, config, group, log)
        with Reader(group, attach_timeout_s=READY_TIMEOUT_S) as reader:
            wait_until(lambda: all_in_sync_from(reader, active.pid), timeout_s=READY_TIMEOUT_S, what="the writer in sync")
            wait_until(lambda: _ledger_weight(key)[0] == sim_weight() > 0, what="the ledger at the simulator's count")
            alone, alone_requests = _ledger_weight(key)
            assert alone_requests == requests()
            standby = start_feeder(procs, config, group, log)
            wait_until(lambda: standby_ready(group, standby.pid, len(STANDBY_SYMBOLS)), timeout_s=READY_TIMEOUT_S, what="the standby in sync")
            assert holds_ledger(active.pid, key) and holds_ledger(standby.pid, key)
            wait_until(lambda: _ledger_weight(key)[0] == sim_weight() > alone, what="the ledger at the simulator's count, both feeders'")
            both, both_requests = _ledger_weight(key)
            assert both_requests == requests() > alone_requests
            snapshots = int(sim.stats()["counters"].get("snapshots", 0))
        print(f"\nhost ledger: writer alone {alone} weight in {alone_requests} requests; with its standby {both} weight "
              f"in {both_requests} requests (the simulator counted {sim_weight()} weight, {requests()} requests, "
              f"{snapshots} depth snapshots)")  # fmt: skip
    # the standby asked what the writer asked at its start (exchangeInfo, one snapshot a market): twice the weight
    assert (both, both_requests) == (2 * alone, 2 * alone_requests) and snapshots == 2 * len(STANDBY_SYMBOLS)
