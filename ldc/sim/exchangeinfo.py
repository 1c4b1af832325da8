"""``exchangeInfo`` documents with every field of Binance's documented examples.

Spot follows rest-api.md "Exchange information" (binance-spot-api-docs, 2026-07 revision) with the
filters of filters.md; USD-M and COIN-M follow the derivatives "Exchange Information" pages. Values
that describe the simulated market come from it (tick and lot sizes are the steps of the prices and
quantities it streams, precisions their printed decimals); values the simulator has no notion of
(margins, fees, order limits) are Binance's published figures for BTCUSDT / BTCUSD_PERP, the same for
every market. Two deliberate spellings: the USD-M page's example says ``OrderType`` where the live API
(and every client) uses ``orderTypes``; COIN-M's has no ``orderTypes`` at all while the live API sends it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ldc.sim.markets import Family

# Quote assets Binance lists, longest first so "FDUSD" wins over "USD".
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "USD")
FALLBACK_QUOTE = "USDT"  # a name with no known quote (a replay copy "BTCUSDT2") is its own base
PERPETUAL_DELIVERY_MS = 4133404800000  # 2100-12-25, what Binance prints for a perpetual
ONBOARD_MS = 1569398400000  # BTCUSDT's onboardDate on USD-M; one date for every simulated market
DELIVERY_HOUR_UTC = 8  # quarterly contracts settle at 08:00 UTC
COINM_CONTRACT_USD = {"BTC": 100}  # contractSize in USD; every other COIN-M contract is 10 USD
COINM_DEFAULT_CONTRACT_USD = 10
SPOT_MAX_PRICE = "1000000.00000000"  # above every price a simulated market reaches
SPOT_MAX_QTY = "9000000.00000000"
FUTURES_MAX_PRICE = "1000000"
FUTURES_MAX_QTY = "9000000"
ASSET_PRECISION = 8

SPOT_ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
FUTURES_ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
FUTURES_TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
STP_MODES = ("NONE", "EXPIRE_MAKER", "EXPIRE_TAKER", "EXPIRE_BOTH", "DECREMENT")


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """What exchangeInfo needs of one market: its name, family and steps (as the exchange prints them)."""

    symbol: str
    family: Family
    tick_size: str
    step_size: str


def split_assets(symbol: str, family: Family) -> tuple[str, str]:
    """``"BTCUSDT"`` -> ``("BTC", "USDT")``; COIN-M ``"BTCUSD_PERP"`` -> ``("BTC", "USD")``."""
    pair = symbol.split("_")[0] if family is Family.COINM else symbol
    for quote in QUOTE_ASSETS:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return pair, FALLBACK_QUOTE


def decimals(text: str) -> int:
    """Digits after the point of a printed step: ``"0.010"`` -> 3 (Binance's precisions count them)."""
    return len(text.partition(".")[2])


def rate_limits(family: Family, weight_limit: int) -> list[dict[str, object]]:
    """The ``rateLimits`` array; REQUEST_WEIGHT is the limit the simulator enforces."""
    weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit}
    if family is Family.SPOT:
        return [
            weight,
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
    orders = [{"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}]
    if family is Family.USDM:
        orders.append({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300})
    return [weight, *orders]


def spot_symbol(info: SymbolInfo) -> dict[str, object]:
    base, quote = split_assets(info.symbol, info.family)
    tick, step = info.tick_size, info.step_size
    return {
        "symbol": info.symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": ASSET_PRECISION,
        "quoteAsset": quote,
        "quotePrecision": ASSET_PRECISION,
        "quoteAssetPrecision": ASSET_PRECISION,
        "baseCommissionPrecision": ASSET_PRECISION,
        "quoteCommissionPrecision": ASSET_PRECISION,
        "orderTypes": list(SPOT_ORDER_TYPES),
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "opoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": SPOT_MAX_PRICE, "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": SPOT_MAX_QTY, "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 100},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": SPOT_MAX_QTY, "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": list(STP_MODES),
    }


def _futures_filters(info: SymbolInfo) -> list[dict[str, object]]:
    tick, step = info.tick_size, info.step_size
    filters: list[dict[str, object]] = [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": FUTURES_MAX_PRICE, "tickSize": tick},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": FUTURES_MAX_QTY, "stepSize": step},
        {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": FUTURES_MAX_QTY, "stepSize": step},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
    ]
    if info.family is Family.USDM:
        filters.append({"filterType": "MIN_NOTIONAL", "notional": "5"})
    filters.append({"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"})
    return filters


def _common_futures(info: SymbolInfo) -> dict[str, object]:
    return {
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "pricePrecision": decimals(info.tick_size),
        "quantityPrecision": decimals(info.step_size),
        "baseAssetPrecision": ASSET_PRECISION,
        "quotePrecision": ASSET_PRECISION,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": _futures_filters(info),
        "orderTypes": list(FUTURES_ORDER_TYPES),
        "timeInForce": list(FUTURES_TIME_IN_FORCE),
    }


def delivery_ms(symbol: str) -> tuple[str, int]:
    """(contractType, deliveryDate ms) from a name: ``_PERP`` or none is perpetual, ``_YYMMDD`` a quarter."""
    suffix = symbol.rpartition("_")[2] if "_" in symbol else ""
    if len(suffix) == 6 and suffix.isdigit():
        try:
            day = datetime.datetime(2000 + int(suffix[:2]), int(suffix[2:4]), int(suffix[4:]), DELIVERY_HOUR_UTC, tzinfo=datetime.timezone.utc)
        except ValueError:  # not a date ("_991399"): the simulator still serves it, as a perpetual
            return "PERPETUAL", PERPETUAL_DELIVERY_MS
        return "CURRENT_QUARTER", int(day.timestamp() * 1000)
    return "PERPETUAL", PERPETUAL_DELIVERY_MS


def futures_symbol(info: SymbolInfo) -> dict[str, object]:
    """A USD-M or COIN-M entry: the margin asset is the quote on USD-M, the base (the coin) on COIN-M."""
    base, quote = split_assets(info.symbol, info.family)
    contract, delivery = delivery_ms(info.symbol)
    entry: dict[str, object] = {
        "symbol": info.symbol,
        "pair": info.symbol.split("_")[0],
        "contractType": contract,
        "deliveryDate": delivery,
        "onboardDate": ONBOARD_MS,
    }
    if info.family is Family.USDM:
        entry.update(status="TRADING", baseAsset=base, quoteAsset=quote, marginAsset=quote, settlePlan=0)
    else:
        contract_size = COINM_CONTRACT_USD.get(base, COINM_DEFAULT_CONTRACT_USD)
        entry.update(contractStatus="TRADING", contractSize=contract_size, baseAsset=base, quoteAsset=quote, marginAsset=base, equalQtyPrecision=4)
    entry.update(_common_futures(info))
    return entry


def exchange_info(family: Family, symbols: list[SymbolInfo], *, weight_limit: int, server_ms: int) -> dict[str, object]:
    """The whole document, keys in the order of the documented example."""
    if family is Family.SPOT:
        return {
            "timezone": "UTC",
            "serverTime": server_ms,
            "rateLimits": rate_limits(family, weight_limit),
            "exchangeFilters": [],
            "symbols": [spot_symbol(s) for s in symbols],
        }
    doc: dict[str, object] = {"timezone": "UTC", "serverTime": server_ms}
    if family is Family.USDM:
        doc["futuresType"] = "U_MARGINED"
    doc["rateLimits"] = rate_limits(family, weight_limit)
    doc["exchangeFilters"] = []
    if family is Family.USDM:
        margins = sorted({split_assets(s.symbol, family)[1] for s in symbols})
        doc["assets"] = [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in margins]
    doc["symbols"] = [futures_symbol(s) for s in symbols]
    return doc
