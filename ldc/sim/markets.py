"""Market definitions: families, symbols, tick sizes and the exchange's string formats.

Prices and quantities are integers (price in ticks, quantity in lots); only the edges turn them into
the decimal strings Binance sends ("61837.63000000" on spot, "61800.20" / "2.909" on USD-M,
"61804.7" / "35" on COIN-M). Integers make the truth exact without any float in sight.
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal

from ldc.errors import SimError


class Family(enum.Enum):
    SPOT = "spot"
    USDM = "usdm"
    COINM = "coinm"

    @property
    def rest_prefix(self) -> str:
        return {"spot": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1"}[self.value]

    @property
    def futures(self) -> bool:
        return self is not Family.SPOT


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market. ``tick_units``/``lot_units`` are the tick and lot in units of the last printed digit."""

    symbol: str
    family: Family
    price_decimals: int
    tick_units: int
    qty_decimals: int
    lot_units: int
    base_ticks: int  # starting mid price, in ticks
    depth_levels: int  # levels per side the model keeps around
    spread_ticks: int  # typical distance between best bid and best ask
    mean_lots: int  # typical level size, in lots

    @property
    def stream_symbol(self) -> str:
        return self.symbol.lower()

    @property
    def pair(self) -> str:
        """COIN-M ``ps``: the symbol without its delivery suffix (BTCUSD_PERP -> BTCUSD)."""
        return self.symbol.split("_")[0]

    @property
    def tick_size(self) -> Decimal:
        return Decimal(self.tick_units).scaleb(-self.price_decimals)

    @property
    def lot_size(self) -> Decimal:
        return Decimal(self.lot_units).scaleb(-self.qty_decimals)

    def price_str(self, ticks: int) -> str:
        return fixed_str(ticks * self.tick_units, self.price_decimals)

    def qty_str(self, lots: int) -> str:
        return fixed_str(lots * self.lot_units, self.qty_decimals)


def fixed_str(units: int, decimals: int) -> str:
    """``units`` of 10**-decimals as a fixed-point string with exactly ``decimals`` digits."""
    if decimals == 0:
        return str(units)
    scale = 10**decimals
    whole, frac = divmod(units, scale)
    return f"{whole}.{frac:0{decimals}d}"


# Formats as Binance prints them: spot always 8 decimals; futures the tick's own precision.
SPOT_DECIMALS = 8
USDM_PRICE_DECIMALS = 2
USDM_QTY_DECIMALS = 3
COINM_PRICE_DECIMALS = 1

SYNTHETIC_PREFIX = "SIM"
MIN_SYNTHETIC_DEPTH = 300
MAX_SYNTHETIC_DEPTH = 1000

# A few well-known names first so logs read naturally; then synthetic ones.
SPOT_NAMES = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT")
USDM_NAMES = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
COINM_NAMES = ("BTCUSD_PERP", "ETHUSD_PERP", "BNBUSD_PERP", "SOLUSD_PERP", "XRPUSD_PERP")


def generated_symbols(family: Family, count: int) -> list[str]:
    """``count`` distinct symbol names for a family: the well-known ones, then SIMnnnnUSDT-style."""
    known = {Family.SPOT: SPOT_NAMES, Family.USDM: USDM_NAMES, Family.COINM: COINM_NAMES}[family]
    names = list(known[:count])
    for i in range(len(names), count):
        names.append(f"SIM{i:04d}USD_PERP" if family is Family.COINM else f"SIM{i:04d}USDT")
    return names


# Where the well-known names trade (mid prices of mid-2024, the captures' time), so a demo's books look like the
# exchange's; synthetic names keep the seeded levels, one in five on a power of ten.
KNOWN_MIDS: dict[str, Decimal] = {
    "BTC": Decimal("61800"), "ETH": Decimal("3200"), "BNB": Decimal("580"), "SOL": Decimal("150"),
    "LTC": Decimal("80"), "XRP": Decimal("0.58"), "ADA": Decimal("0.45"), "DOGE": Decimal("0.12"),
}  # fmt: skip
SUB_UNIT_DECIMALS = 4  # a market below 1 quotes 0.0001 ticks (XRP, ADA, DOGE), as Binance does


def known_mid(symbol: str) -> Decimal | None:
    """The mid a well-known symbol trades at (BTCUSDT, ETHUSD_PERP, ...); None for any other name."""
    base = symbol.split("_")[0]
    for asset, mid in KNOWN_MIDS.items():
        if base in (f"{asset}USDT", f"{asset}USD"):
            return mid
    return None


def _known_spec(symbol: str, family: Family, mid: Decimal, depth: int, spread: int) -> MarketSpec:
    """A well-known market at its real price level: the tick is 0.01 (0.10 on USD-M above 10,000, 0.1 on
    COIN-M), or 0.0001 below 1."""
    small = mid < 1
    if family is Family.SPOT:
        tick = Decimal("0.0001") if small else Decimal("0.01")
        tick_units = int(tick.scaleb(SPOT_DECIMALS))
        return MarketSpec(symbol, family, SPOT_DECIMALS, tick_units, SPOT_DECIMALS, 10**3, int(mid / tick), depth, spread, 500)
    if family is Family.USDM:
        decimals = SUB_UNIT_DECIMALS if small else USDM_PRICE_DECIMALS
        tick_units = 10 if mid >= 10_000 else 1
        tick = Decimal(tick_units).scaleb(-decimals)
        return MarketSpec(symbol, family, decimals, tick_units, USDM_QTY_DECIMALS, 1, int(mid / tick), depth, spread, 400)
    decimals = SUB_UNIT_DECIMALS if small else COINM_PRICE_DECIMALS
    return MarketSpec(symbol, family, decimals, 1, 0, 1, int(mid.scaleb(decimals)), depth, spread, 200)


def _rng_for(symbol: str, family: Family, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{family.value}/{symbol}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def make_spec(symbol: str, family: Family, *, seed: int) -> MarketSpec:
    """A deterministic market for ``symbol``: the same seed and name always give the same market.

    A well-known name (``KNOWN_MIDS``) trades at its real price level; about one other market in five sits
    on a power of ten (mid 99.9-100.1 with a 0.01 tick) so its prices cross 99.99 / 100.00; one in five of
    all markets is thin and wide; the rest are deep (thousands of levels).
    """
    if not symbol or not symbol.replace("_", "").isalnum() or symbol.upper() != symbol:
        raise SimError(f"symbol must be upper-case letters, digits or '_', found {symbol!r}")
    rng = _rng_for(symbol, family, seed)
    kind = rng.random()
    thin = 0.2 <= kind < 0.4
    if thin:
        depth = rng.randint(20, 60)
    elif symbol.startswith(SYNTHETIC_PREFIX):
        depth = rng.randint(MIN_SYNTHETIC_DEPTH, MAX_SYNTHETIC_DEPTH)  # hundreds of markets must fit in memory
    else:
        depth = rng.randint(1500, 4000)
    spread = rng.randint(5, 40) if thin else rng.randint(1, 3)
    mid = known_mid(symbol)
    if mid is not None:
        return _known_spec(symbol, family, mid, depth, spread)
    if family is Family.SPOT:
        tick_units = 10**6  # 0.01 printed with 8 decimals
        base = 10_000 if kind < 0.2 else rng.choice((6_180_000, 320_000, 58_000, 15_000))
        return MarketSpec(symbol, family, SPOT_DECIMALS, tick_units, SPOT_DECIMALS, 10**3, base, depth, spread, 500)
    if family is Family.USDM:
        tick_units = 1 if kind < 0.2 else 10  # 0.01 or 0.10
        base = 10_000 if kind < 0.2 else rng.choice((618_000, 32_000, 5_800, 1_500))
        return MarketSpec(symbol, family, USDM_PRICE_DECIMALS, tick_units, USDM_QTY_DECIMALS, 1, base, depth, spread, 400)
    base = 1_000 if kind < 0.2 else rng.choice((618_000, 32_000, 5_800))
    return MarketSpec(symbol, family, COINM_PRICE_DECIMALS, 1, 0, 1, base, depth, spread, 200)


def parse_symbols(text: str) -> list[str]:
    """``"BTCUSDT, ethusdt"`` -> ``["BTCUSDT", "ETHUSDT"]`` (empty items dropped, order kept, no repeats)."""
    out: list[str] = []
    for item in text.split(","):
        name = item.strip().upper()
        if name and name not in out:
            out.append(name)
    return out
