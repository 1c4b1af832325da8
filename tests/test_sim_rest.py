"""REST as Binance documents it (rest-api.md; derivatives "Order Book"): parameter validation and error
bodies, request weights per limit, X-MBX-USED-WEIGHT-1M, 429 + Retry-After, 418 for a client that keeps
going; exchangeInfo; the private truth endpoint."""

from __future__ import annotations

from collections.abc import Callable

import requests

from ldc.sim import Simulator, WeightConfig
from ldc.sim.weights import WeightLimiter, futures_depth_weight, spot_depth_weight


def get(sim: Simulator, path: str, **params: object) -> requests.Response:
    return requests.get(f"{sim.rest_url}{path}", params=params, timeout=5)


def test_bad_parameters_get_binance_errors(sim: Simulator) -> None:
    cases = [
        (get(sim, "/api/v3/depth"), 400, -1102),
        (get(sim, "/api/v3/depth", symbol="NOPE"), 400, -1121),
        (get(sim, "/api/v3/depth", symbol="BTCUSDT", limit="ten"), 400, -1100),
        (get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=0), 400, -1130),
        (get(sim, "/fapi/v1/depth", symbol="BTCUSDT", limit=7), 400, -1130),
        (get(sim, "/dapi/v1/depth", symbol="BTCUSDT"), 400, -1121),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert get(sim, "/api/v3/depth", symbol="NOPE").json()["msg"] == "Invalid symbol."
    assert get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=5).status_code == 200


def test_spot_limit_beyond_5000_is_truncated(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=("BTCUSDT",))
    book = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=9000)
    assert book.status_code == 200
    assert len(book.json()["bids"]) <= 5000
    assert book.headers["X-MBX-USED-WEIGHT-1M"] == "250"


def test_depth_weights_follow_the_changelog() -> None:
    assert [spot_depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == [5, 5, 25, 25, 50, 50, 250, 250]
    assert [futures_depth_weight(n) for n in (5, 10, 20, 50, 100, 500, 1000)] == [2, 2, 2, 2, 5, 10, 20]


def test_429_with_retry_after_then_418_for_a_client_that_keeps_going(sim_factory: Callable[..., Simulator]) -> None:
    # an hour-long window: the test cannot straddle a window start (windows align on the wall clock)
    sim = sim_factory(weights=WeightConfig(spot_limit=12, window_s=3600.0, requests_after_429_before_ban=2, ban_s=90.0))
    used = [get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=10) for _ in range(2)]
    assert [r.headers["X-MBX-USED-WEIGHT-1M"] for r in used] == ["5", "10"]
    limited = [get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=10) for _ in range(2)]
    assert [r.status_code for r in limited] == [429, 429]
    assert 1 <= int(limited[0].headers["Retry-After"]) <= 3600
    assert limited[0].json()["code"] == -1003
    assert get(sim, "/api/v3/ping").status_code == 200  # weight 1 still fits: 11 of 12
    banned = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=10)
    assert banned.status_code == 418 and banned.headers["Retry-After"] == "90"
    assert get(sim, "/api/v3/ping").status_code == 418
    assert get(sim, "/fapi/v1/ping").status_code == 200  # futures hosts count apart


def test_weight_window_resets() -> None:
    limiter = WeightLimiter(WeightConfig(spot_limit=10, window_s=1.0))
    assert limiter.charge("a", "spot", 10, 5.2).status == 200
    assert limiter.charge("a", "spot", 1, 5.9).status == 429
    assert limiter.charge("b", "spot", 1, 5.9).status == 200
    fresh = limiter.charge("a", "spot", 1, 6.0)
    assert (fresh.status, fresh.used) == (200, 1)


def test_exchange_info_lists_symbols_and_tick_sizes(sim: Simulator) -> None:
    spot = get(sim, "/api/v3/exchangeInfo").json()
    assert [s["symbol"] for s in spot["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    price_filter = spot["symbols"][0]["filters"][0]
    assert price_filter["filterType"] == "PRICE_FILTER" and price_filter["tickSize"] == "0.01000000"
    assert spot["rateLimits"][0]["limit"] == 6000
    coin = get(sim, "/dapi/v1/exchangeInfo").json()
    assert coin["symbols"][0]["symbol"] == "BTCUSD_PERP" and coin["symbols"][0]["filters"][1]["stepSize"] == "1"


def test_truth_endpoint_rewinds_and_forgets(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=("BTCUSDT",), history_events=20, speed=10.0)
    snap = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=50).json()
    now = get(sim, "/_sim/book", symbol="BTCUSDT", update_id=snap["lastUpdateId"], limit=50)
    assert now.status_code == 200
    assert now.json()["bids"] == snap["bids"] and now.json()["asks"] == snap["asks"]
    import time

    time.sleep(0.5)  # 100 model events at speed 10: the history of 20 has moved on
    gone = get(sim, "/_sim/book", symbol="BTCUSDT", update_id=snap["lastUpdateId"])
    assert gone.status_code == 404 and "outside the kept history" in gone.json()["msg"]
    assert get(sim, "/_sim/book", symbol="NOPE").status_code == 404


def test_unknown_path_and_keep_alive(sim: Simulator) -> None:
    with requests.Session() as session:
        first = session.get(f"{sim.rest_url}/api/v3/nothing", timeout=5)
        second = session.get(f"{sim.rest_url}/api/v3/time", timeout=5)
    assert first.status_code == 404 and second.status_code == 200 and "serverTime" in second.json()
    assert first.headers["X-MBX-USED-WEIGHT-1M"] == "0" and second.headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_sim_urls_fixture_names_every_route(sim_urls: dict[str, object]) -> None:
    assert set(sim_urls) == {"rest", "ws", "ws_usdm", "ws_coinm", "markets"}
    assert str(sim_urls["ws_usdm"]).endswith("/usdm")


def test_spot_depth_symbol_status_filter(sim: Simulator) -> None:
    """rest-api.md "Order book": symbolStatus; a mismatch is -1220 (every simulated market is TRADING)."""
    assert get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=5, symbolStatus="TRADING").status_code == 200
    halted = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=5, symbolStatus="HALT")
    assert (halted.status_code, halted.json()["code"]) == (400, -1220)
    assert get(sim, "/api/v3/depth", symbol="BTCUSDT", symbolStatus="ASLEEP").json()["code"] == -1130
