"""Issue 19: what other projects' unchanged Binance clients need of the simulator.

exchangeInfo carries every field of Binance's documented examples (spot rest-api.md "Exchange
information"; derivatives "Exchange Information" for USD-M and COIN-M) with tick and lot sizes that fit
the prices and quantities streamed; ``/ws/<anything>`` is accepted as Binance accepts it (ccxt.pro's
``/ws/0``) while unknown stream names are still refused; REST answers carry ``Date`` and the headers
Binance sends.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
import websocket

from ldc.sim import Simulator

TIMEOUT_S = 10.0
DIFFS_CHECKED = 20

# Keys of the documented examples (the USD-M page spells "OrderType"; the live API sends "orderTypes").
SPOT_TOP = {"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"}
SPOT_SYMBOL = {
    "symbol", "status", "baseAsset", "baseAssetPrecision", "quoteAsset", "quotePrecision", "quoteAssetPrecision",
    "baseCommissionPrecision", "quoteCommissionPrecision", "orderTypes", "icebergAllowed", "ocoAllowed", "otoAllowed",
    "opoAllowed", "quoteOrderQtyMarketAllowed", "allowTrailingStop", "cancelReplaceAllowed", "amendAllowed",
    "pegInstructionsAllowed", "isSpotTradingAllowed", "isMarginTradingAllowed", "filters", "permissions",
    "permissionSets", "defaultSelfTradePreventionMode", "allowedSelfTradePreventionModes",
}  # fmt: skip
USDM_TOP = {"exchangeFilters", "rateLimits", "serverTime", "assets", "symbols", "timezone"}
USDM_SYMBOL = {
    "symbol", "pair", "contractType", "deliveryDate", "onboardDate", "status", "maintMarginPercent",
    "requiredMarginPercent", "baseAsset", "quoteAsset", "marginAsset", "pricePrecision", "quantityPrecision",
    "baseAssetPrecision", "quotePrecision", "underlyingType", "underlyingSubType", "settlePlan", "triggerProtect",
    "filters", "orderTypes", "timeInForce", "liquidationFee", "marketTakeBound",
}  # fmt: skip
COINM_TOP = {"exchangeFilters", "rateLimits", "serverTime", "symbols", "timezone"}
COINM_SYMBOL = {
    "filters", "orderTypes", "timeInForce", "liquidationFee", "marketTakeBound", "symbol", "pair", "contractType",
    "deliveryDate", "onboardDate", "contractStatus", "contractSize", "quoteAsset", "baseAsset", "marginAsset",
    "pricePrecision", "quantityPrecision", "baseAssetPrecision", "quotePrecision", "equalQtyPrecision",
    "triggerProtect", "maintMarginPercent", "requiredMarginPercent", "underlyingType",
}  # fmt: skip
FAMILIES = {
    "spot": ("/api/v3", "", SPOT_TOP, SPOT_SYMBOL, "BTCUSDT"),
    "usdm": ("/fapi/v1", "/usdm", USDM_TOP, USDM_SYMBOL, "BTCUSDT"),
    "coinm": ("/dapi/v1", "/coinm", COINM_TOP, COINM_SYMBOL, "BTCUSD_PERP"),
}


def exchange_info(sim: Simulator, prefix: str, **params: str) -> dict[str, Any]:
    response = requests.get(f"{sim.rest_url}{prefix}/exchangeInfo", params=params, timeout=TIMEOUT_S)
    assert response.status_code == 200, response.text
    return dict(response.json())


def symbol_entry(info: dict[str, Any], symbol: str) -> dict[str, Any]:
    return dict(next(s for s in info["symbols"] if s["symbol"] == symbol))


def filter_of(entry: dict[str, Any], kind: str) -> dict[str, str]:
    return dict(next(f for f in entry["filters"] if f["filterType"] == kind))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exchange_info_has_every_documented_field(sim: Simulator, family: str) -> None:
    prefix, _, top, keys, symbol = FAMILIES[family]
    info = exchange_info(sim, prefix)
    assert top <= set(info), top - set(info)
    entry = symbol_entry(info, symbol)
    assert keys <= set(entry), keys - set(entry)
    assert {f["filterType"] for f in entry["filters"]} >= {"PRICE_FILTER", "LOT_SIZE"}
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000 if family == "spot" else 2400} in info["rateLimits"]


def test_exchange_info_names_assets_as_binance_does(sim: Simulator) -> None:
    spot = symbol_entry(exchange_info(sim, "/api/v3"), "BTCUSDT")
    assert (spot["baseAsset"], spot["quoteAsset"], spot["status"]) == ("BTC", "USDT", "TRADING")
    usdm_info = exchange_info(sim, "/fapi/v1")
    usdm = symbol_entry(usdm_info, "BTCUSDT")
    assert (usdm["baseAsset"], usdm["quoteAsset"], usdm["marginAsset"], usdm["contractType"]) == ("BTC", "USDT", "USDT", "PERPETUAL")
    assert [a["asset"] for a in usdm_info["assets"]] == ["USDT"]
    coinm = symbol_entry(exchange_info(sim, "/dapi/v1"), "BTCUSD_PERP")
    assert (coinm["baseAsset"], coinm["quoteAsset"], coinm["marginAsset"], coinm["pair"], coinm["contractSize"]) == ("BTC", "USD", "BTC", "BTCUSD", 100)


def test_spot_exchange_info_symbol_and_symbols_parameters(sim: Simulator) -> None:
    assert [s["symbol"] for s in exchange_info(sim, "/api/v3", symbol="ETHUSDT")["symbols"]] == ["ETHUSDT"]
    both = exchange_info(sim, "/api/v3", symbols='["ETHUSDT","BTCUSDT"]')["symbols"]
    assert [s["symbol"] for s in both] == ["ETHUSDT", "BTCUSDT"]
    bad = requests.get(f"{sim.rest_url}/api/v3/exchangeInfo", params={"symbol": "NOPE"}, timeout=TIMEOUT_S)
    assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    garbled = requests.get(f"{sim.rest_url}/api/v3/exchangeInfo", params={"symbols": "BTCUSDT"}, timeout=TIMEOUT_S)
    assert garbled.status_code == 400 and "expected a JSON array" in garbled.json()["msg"]


def _check_levels(levels: list[list[str]], price_filter: dict[str, str], lot: dict[str, str], precision: int | None) -> int:
    tick, step = Decimal(price_filter["tickSize"]), Decimal(lot["stepSize"])
    low, high = Decimal(price_filter["minPrice"]), Decimal(price_filter["maxPrice"])
    checked = 0
    for price_text, qty_text in levels:
        price, qty = Decimal(price_text), Decimal(qty_text)
        assert price % tick == 0 and low <= price <= high, (price_text, price_filter)
        if precision is not None:  # futures print prices with pricePrecision decimals
            assert len(price_text.partition(".")[2]) == precision, (price_text, precision)
        if qty:
            assert qty % step == 0 and Decimal(lot["minQty"]) <= qty <= Decimal(lot["maxQty"]), (qty_text, lot)
        checked += 1
    return checked


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tick_and_lot_sizes_fit_what_is_streamed(sim: Simulator, family: str) -> None:
    prefix, ws_prefix, _, _, symbol = FAMILIES[family]
    entry = symbol_entry(exchange_info(sim, prefix), symbol)
    price_filter, lot = filter_of(entry, "PRICE_FILTER"), filter_of(entry, "LOT_SIZE")
    precision = None if family == "spot" else int(str(entry["pricePrecision"]))
    stream = "depth@100ms"
    ws = websocket.create_connection(f"{sim.ws_url}{ws_prefix}/ws/{symbol.lower()}@{stream}", timeout=TIMEOUT_S)
    try:
        book = requests.get(f"{sim.rest_url}{prefix}/depth", params={"symbol": symbol, "limit": "1000"}, timeout=TIMEOUT_S).json()
        checked = _check_levels(book["bids"] + book["asks"], price_filter, lot, precision)
        for _ in range(DIFFS_CHECKED):
            diff = json.loads(ws.recv())
            checked += _check_levels(diff["b"] + diff["a"], price_filter, lot, precision)
    finally:
        ws.close()
    assert checked > 100  # a thin market holds a few dozen levels per side


@pytest.mark.parametrize("path", ["/ws/0", "/ws/anything", "/public/ws/0", "/usdm/public/ws/3", "/ws"])
def test_ws_path_without_a_stream_name_is_accepted_and_subscribes(sim: Simulator, path: str) -> None:
    """ccxt.pro connects to ``.../ws/<index>`` and SUBSCRIBEs; Binance accepts the path."""
    stream = "btcusdt@depth@100ms"  # on /public paths: the USD-M market
    ws = websocket.create_connection(f"{sim.ws_url}{path}", timeout=TIMEOUT_S)
    try:
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert json.loads(ws.recv()) == {"result": [], "id": 1}
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 2}))
        assert json.loads(ws.recv()) == {"result": None, "id": 2}
        event = json.loads(ws.recv())
        assert event["e"] == "depthUpdate" and event["s"] == stream.split("@")[0].upper()
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["/ws/nosuch@depth", "/ws/BTCUSDT@depth", "/ws/0/btcusdt@depht", "/stream?streams=nosuch@depth"])
def test_ws_path_naming_an_unknown_stream_is_refused(sim: Simulator, path: str) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{sim.ws_url}{path}", timeout=TIMEOUT_S)
    assert refused.value.status_code == 400


def test_ws_path_mixing_a_label_and_a_stream_subscribes_the_stream(sim: Simulator) -> None:
    ws = websocket.create_connection(f"{sim.ws_url}/ws/0/btcusdt@depth@100ms", timeout=TIMEOUT_S)
    try:
        assert json.loads(ws.recv())["s"] == "BTCUSDT"
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["/api/v3/ping", "/api/v3/time", "/api/v3/depth?symbol=BTCUSDT", "/api/v3/depth", "/fapi/v1/depth?symbol=BTCUSDT", "/dapi/v1/exchangeInfo"])
def test_rest_answers_carry_date_and_binance_headers(sim: Simulator, path: str) -> None:
    response = requests.get(f"{sim.rest_url}{path}", timeout=TIMEOUT_S)
    date = parsedate_to_datetime(response.headers["Date"])
    assert date.tzinfo is not None and abs(date.timestamp() - time.time()) < 60
    assert response.headers["Date"].endswith(" GMT")
    assert len(response.headers["x-mbx-uuid"]) == 36
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == response.headers["X-MBX-USED-WEIGHT"]
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"


def test_unicorn_reads_the_used_weight_with_its_date(sim_factory: Callable[..., Simulator]) -> None:
    """UNICORN's REST manager parses ``Date`` as "%a, %d %b %Y %H:%M:%S GMT" beside X-MBX-USED-WEIGHT."""
    sim = sim_factory()
    response = requests.get(f"{sim.rest_url}/api/v3/ping", timeout=TIMEOUT_S)
    stamp = datetime.datetime.strptime(response.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT")
    assert int(response.headers["X-MBX-USED-WEIGHT"]) == 1 and stamp.year >= 2024


@pytest.mark.parametrize(("host", "family_key"), [("stream.binance.com", None), ("fstream.binance.com/public", "pu"), ("dstream.binance.com", "ps")])
def test_binance_host_as_first_path_segment_selects_the_family(sim: Simulator, host: str, family_key: str | None) -> None:
    """ccxt.pro tells spot from futures by "/stream" in its URL; on the loopback the host goes in the path."""
    stream = "btcusd_perp@depth@100ms" if host.startswith("dstream") else "btcusdt@depth@100ms"
    ws = websocket.create_connection(f"{sim.ws_url}/{host}/ws/0", timeout=TIMEOUT_S)
    try:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 1}))
        assert json.loads(ws.recv()) == {"result": None, "id": 1}
        event = json.loads(ws.recv())
        assert ("pu" in event) == (family_key is not None) and (family_key is None or family_key in event)
    finally:
        ws.close()
