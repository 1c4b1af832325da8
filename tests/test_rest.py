"""ldc.io.rest against the local exchange simulator (tests/conftest.py `sim_factory`), which follows
Binance's rest-api.md: GET /api/v3/depth, error JSON {"code","msg"}, X-MBX-USED-WEIGHT-1M, 429 / 418 with
Retry-After; faults rest_error, rest_delay, rate_limit (a 429 storm)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest
import urllib3

from ldc.errors import RateLimitError, RestError
from ldc.io.governor import STATUS_LOCAL, RateGovernor, unlink_governor
from ldc.io.rest import RestClient, _pool_manager
from ldc.venues.binance import REST_PROTOCOL
from ldc.sim import Simulator
from ldc.sim.faults import FaultKind, FaultRule
from ldc.sim.weights import WeightConfig

DEPTH = "/api/v3/depth"


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"))


@pytest.fixture
def governor_factory() -> Iterator[Callable[..., RateGovernor]]:
    made: list[tuple[str, RateGovernor]] = []

    def make(budget: int, window_ms: int = 60_000) -> RateGovernor:
        key = f"test-rest-{uuid.uuid4().hex[:12]}"
        governor = RateGovernor(key, budget=budget, window_ms=window_ms)
        made.append((key, governor))
        return governor

    yield make
    for key, governor in made:
        governor.close()
        unlink_governor(key)


def _counters(sim: Simulator) -> dict[str, int]:
    return dict(sim.stats()["counters"])


def test_snapshot_returns_the_body_and_the_exchange_weight(spot: Simulator, governor_factory: Callable[..., RateGovernor]) -> None:
    governor = governor_factory(100)
    with RestClient(spot.rest_url, governor=governor, protocol=REST_PROTOCOL) as client:
        response = client.snapshot(DEPTH, symbol="BTCUSDT", limit=100, weight=5)
        again = client.snapshot(DEPTH, symbol="ETHUSDT", limit=100, weight=5)
    doc = orjson.loads(response.body)
    assert response.status == 200 and set(doc) == {"lastUpdateId", "bids", "asks"}
    assert (response.used_weight, again.used_weight) == (5, 10)
    assert governor.used() == 10


def test_the_exchange_count_wins_when_someone_else_spent_weight(spot: Simulator, governor_factory: Callable[..., RateGovernor]) -> None:
    with RestClient(spot.rest_url, governor=None, protocol=REST_PROTOCOL) as other_client:
        for _ in range(4):
            other_client.snapshot(DEPTH, symbol="BTCUSDT", limit=1000, weight=50)  # 200 weight we never booked
    governor = governor_factory(1000)
    with RestClient(spot.rest_url, governor=governor, protocol=REST_PROTOCOL) as client:
        client.snapshot(DEPTH, symbol="BTCUSDT", limit=100, weight=5)
    assert governor.used() == 205


def test_requests_reuse_one_keep_alive_connection(spot: Simulator) -> None:
    with RestClient(spot.rest_url, governor=None, protocol=REST_PROTOCOL) as client:
        for _ in range(5):
            client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
        pools = client._pools.pools
        assert [pools[key].num_connections for key in pools.keys()] == [1]  # one pool, one socket opened


def test_unknown_symbol_is_a_rest_error_with_binance_code(spot: Simulator) -> None:
    with RestClient(spot.rest_url, governor=None, protocol=REST_PROTOCOL) as client, pytest.raises(RestError) as info:
        client.snapshot(DEPTH, symbol="NOPE", limit=100, weight=5)
    assert (info.value.status, info.value.code) == (400, -1121)
    assert str(info.value) == (
        "GET /api/v3/depth?symbol=NOPE&limit=100: status 400, expected 200, exchange error -1121 'Invalid symbol.'"
    )


def test_server_error_carries_code_and_message(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_ERROR, count=1, status=503))
    with RestClient(spot.rest_url, governor=None, protocol=REST_PROTOCOL) as client:
        with pytest.raises(RestError) as info:
            client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
        assert client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5).status == 200  # one fault, then fine
    assert (info.value.status, info.value.code) == (503, -1001)
    assert "status 503, expected 200, exchange error -1001 'Internal error;" in str(info.value)


def test_slow_answer_times_out_as_a_rest_error_without_status(spot: Simulator) -> None:
    spot.add_fault(FaultRule(FaultKind.REST_DELAY, count=1, ms=2000))
    with RestClient(spot.rest_url, governor=None, read_timeout_s=0.3, protocol=REST_PROTOCOL) as client, pytest.raises(RestError) as info:
        client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
    assert info.value.status is None
    assert str(info.value).startswith("GET /api/v3/depth?symbol=BTCUSDT&limit=5: no answer within 0.3 s")


def test_refused_connection_is_a_rest_error() -> None:
    with RestClient("http://127.0.0.1:9", governor=None, protocol=REST_PROTOCOL) as client, pytest.raises(RestError, match="request failed"):
        client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)


def test_429_raises_with_retry_after_and_holds_back_the_whole_host(
    spot: Simulator, governor_factory: Callable[..., RateGovernor]
) -> None:
    spot.add_fault(FaultRule(FaultKind.RATE_LIMIT, count=1, ms=30_000))
    governor = governor_factory(1000)
    with RestClient(spot.rest_url, governor=governor, grant_timeout_s=1, protocol=REST_PROTOCOL) as client:
        with pytest.raises(RateLimitError) as info:
            client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
        with pytest.raises(RateLimitError) as refused:
            client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
    assert (info.value.status, info.value.retry_after_s) == (429, 30.0)
    assert "status 429 rate limited, retry after 30 s, exchange error -1003" in str(info.value)
    assert refused.value.status == STATUS_LOCAL  # the second request never left the host
    assert _counters(spot)["rest_requests"] == 1


def test_429_storm_is_waited_out_without_a_418(spot: Simulator, governor_factory: Callable[..., RateGovernor]) -> None:
    spot.add_fault(FaultRule(FaultKind.RATE_LIMIT, count=3, ms=1000))
    governor = governor_factory(1000)
    statuses: list[int | None] = []
    with RestClient(spot.rest_url, governor=governor, grant_timeout_s=10, protocol=REST_PROTOCOL) as client:
        while True:
            try:
                client.snapshot(DEPTH, symbol="BTCUSDT", limit=5, weight=5)
                statuses.append(200)
                break
            except RateLimitError as exc:
                statuses.append(exc.status)
    assert statuses == [429, 429, 429, 200]  # each retry waited for Retry-After: none refused locally
    assert "rest_418" not in _counters(spot)


def test_two_clients_hammering_never_pass_the_weight_limit(
    sim_factory: Callable[..., Simulator], governor_factory: Callable[..., RateGovernor]
) -> None:
    # a 2-second window keeps the test short; the exchange's limit and our budget are equal: no headroom
    sim = sim_factory(spot_symbols=("BTCUSDT",), weights=WeightConfig(spot_limit=50, window_s=2.0))
    budget = governor_factory(50, window_ms=2000)
    used: list[int] = []
    failures: list[BaseException] = []

    def hammer() -> None:
        with RestClient(sim.rest_url, governor=budget, grant_timeout_s=10, protocol=REST_PROTOCOL) as client:
            for _ in range(12):
                try:
                    used.append(client.snapshot(DEPTH, symbol="BTCUSDT", limit=100, weight=5).used_weight or 0)
                except RestError as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(used) == 24 and max(used) <= 50
    counters = _counters(sim)
    assert "rest_429" not in counters and "rest_418" not in counters


def test_the_environment_proxy_is_followed_unless_the_host_is_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests' behaviour, kept: a daemon behind a corporate proxy reaches the exchange through it
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    proxied = _pool_manager("https://api.binance.com")
    assert isinstance(proxied, urllib3.ProxyManager) and proxied.proxy is not None and proxied.proxy.port == 3128
    assert not isinstance(_pool_manager("http://api.binance.com"), urllib3.ProxyManager)  # no http_proxy set
    monkeypatch.setenv("no_proxy", "api.binance.com")
    assert not isinstance(_pool_manager("https://api.binance.com"), urllib3.ProxyManager)
