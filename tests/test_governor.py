"""ldc.io.governor: the host-wide REST weight ledger (binance-and-peers.md §1a: REQUEST_WEIGHT per minute
per IP, X-MBX-USED-WEIGHT-1M, 429 / 418 with Retry-After)."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator

import pytest

from ldc.errors import ConfigError, RateLimitError
from ldc.io.governor import (
    DEFAULT_418_BACKOFF_MS,
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
)

T0 = 1_700_000_040_000  # a window start (divisible by 60 000)


class FakeClock:
    """Wall clock in ms that only moves when the governor sleeps."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.slept_s: list[float] = []

    def __call__(self) -> int:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.now_ms += int(seconds * 1000)


@pytest.fixture
def key() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    unlink_governor(name)


# Pure decisions ---------------------------------------------------------------------------------------------


def test_reserve_grants_until_the_budget_then_waits_for_the_next_window() -> None:
    ledger = Ledger(budget=10, window_start_ms=T0)
    first = reserve(ledger, 5, T0 + 1000)
    second = reserve(first.ledger, 5, T0 + 2000)
    third = reserve(second.ledger, 5, T0 + 3000)
    assert (first.granted, second.granted, second.ledger.used) == (True, True, 10)
    assert (third.granted, third.reason, third.wait_ms) == (False, "budget", WINDOW_MS - 3000)
    fourth = reserve(third.ledger, 5, T0 + WINDOW_MS)
    assert (fourth.granted, fourth.ledger.used, fourth.ledger.window_start_ms) == (True, 5, T0 + WINDOW_MS)


def test_reserve_refuses_a_weight_above_the_whole_budget() -> None:
    with pytest.raises(ConfigError, match="request weight 250 exceeds the host budget of 200 per minute"):
        reserve(Ledger(budget=200), 250, T0)


def test_exchange_count_wins_when_higher_and_only_in_its_window() -> None:
    ledger = Ledger(budget=100, window_start_ms=T0, used=10)
    assert observe_used(ledger, 70, T0, T0 + 5).used == 70
    assert observe_used(ledger, 3, T0, T0 + 5).used == 10  # requests still in flight are not in its count
    assert observe_used(ledger, 70, T0 - WINDOW_MS, T0 + 5).used == 10  # an answer about the last window
    assert observe_used(ledger, 70, T0, T0 + WINDOW_MS).used == 0  # arrived after the window rolled


def test_429_blocks_for_retry_after() -> None:
    banned = observe_ban(Ledger(budget=100, window_start_ms=T0, used=5), 429, 7.0, T0 + 1000)
    assert (banned.banned_until_ms, banned.ban_status, banned.used) == (T0 + 8000, 429, 5)
    decision = reserve(banned, 1, T0 + 2000)
    assert (decision.granted, decision.reason, decision.wait_ms) == (False, "banned", 6000)


def test_418_without_retry_after_waits_the_shortest_ban() -> None:
    banned = observe_ban(Ledger(budget=100, window_start_ms=T0), 418, None, T0)
    assert banned.banned_until_ms == T0 + DEFAULT_418_BACKOFF_MS


def test_429_without_retry_after_waits_for_the_next_window() -> None:
    assert observe_ban(Ledger(budget=100, window_start_ms=T0), 429, None, T0 + 15_000).banned_until_ms == T0 + WINDOW_MS


def test_a_shorter_ban_never_shortens_a_longer_one() -> None:
    long = observe_ban(Ledger(budget=100, window_start_ms=T0), 418, 300.0, T0)
    assert observe_ban(long, 429, 1.0, T0 + 10).banned_until_ms == T0 + 300_000


def test_cold_start_of_500_markets_is_bounded_by_the_weight_limit() -> None:
    # 500 snapshots of weight 5 = 2500 weight under a budget of 1000 per minute: 3 windows, no more
    ledger, now, sleeps = Ledger(budget=1000, window_start_ms=T0), T0 + 1, 0
    for _ in range(500):
        decision = reserve(ledger, 5, now)
        while not decision.granted:
            now += decision.wait_ms
            sleeps += 1
            decision = reserve(decision.ledger, 5, now)
        ledger = decision.ledger
    assert sleeps == 2
    assert now - T0 == 2 * WINDOW_MS
    assert ledger.granted == 500


def test_governor_key_is_host_and_port() -> None:
    assert governor_key("https://api.binance.com") == "api.binance.com"
    assert governor_key("http://127.0.0.1:18080/x") == "127.0.0.1_18080"
    with pytest.raises(ConfigError, match="has no host"):
        governor_key("nohost")


# The shared segment ----------------------------------------------------------------------------------------


def test_two_governors_on_one_key_share_the_budget(key: str) -> None:
    clock = FakeClock(T0)
    one = RateGovernor(key, budget_per_min=10, clock_ms=clock, sleep=clock.sleep)
    two = RateGovernor(key, budget_per_min=10, clock_ms=clock, sleep=clock.sleep)
    one.acquire(5, timeout_s=0)
    two.acquire(5, timeout_s=0)
    with pytest.raises(RateLimitError) as info:
        one.acquire(5, timeout_s=1)
    assert info.value.status == STATUS_LOCAL
    assert info.value.retry_after_s == 60.0
    assert str(info.value) == (
        "host weight budget spent: 10 of 10 used, need 5, next window in 60.0 s, expected a grant within 1 s"
    )
    assert os.path.exists(f"/dev/shm/{SEGMENT_PREFIX.lstrip('/')}{key}")
    one.close()
    two.close()


def test_acquire_waits_into_the_next_window_when_allowed(key: str) -> None:
    clock = FakeClock(T0 + 30_000)
    with RateGovernor(key, budget_per_min=5, clock_ms=clock, sleep=clock.sleep) as governor:
        assert governor.acquire(5, timeout_s=0) == T0
        assert governor.acquire(5, timeout_s=60) == T0 + WINDOW_MS
    assert clock.slept_s == [30.0]


def test_the_most_cautious_budget_holds_for_the_host(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget_per_min=100, clock_ms=clock) as big, RateGovernor(key, budget_per_min=40, clock_ms=clock):
        assert big.ledger().budget == 40


def test_a_ban_seen_by_one_process_stops_the_other(key: str) -> None:
    clock = FakeClock(T0)
    with RateGovernor(key, budget_per_min=100, clock_ms=clock) as one, RateGovernor(key, budget_per_min=100, clock_ms=clock) as two:
        window = one.acquire(1, timeout_s=0)
        one.observe_response(status=429, used_weight=100, retry_after_s=12.0, window_start_ms=window)
        with pytest.raises(RateLimitError, match=r"host banned by the exchange \(status 429\) for another 12.0 s"):
            two.acquire(1, timeout_s=5)


def test_a_set_stop_event_ends_the_wait(key: str) -> None:
    import threading

    stop = threading.Event()
    stop.set()
    with RateGovernor(key, budget_per_min=1) as governor:
        governor.acquire(1, timeout_s=0)
        with pytest.raises(RateLimitError, match="host weight budget spent"):
            governor.acquire(1, timeout_s=120, stop=stop)


def _grab_all(key: str, now_ms: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    granted = 0
    with RateGovernor(key, budget_per_min=1000, clock_ms=lambda: now_ms) as governor:
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
    with RateGovernor(key, budget_per_min=1000, clock_ms=lambda: T0) as governor:
        assert governor.ledger().used == 999
