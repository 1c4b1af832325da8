"""Command-line readers of ldc segments: ``ldc status``, ``ldc book``, ``ldc top``.

They attach like any other reader (read-only, ``ldc.shm.reader.Reader``); nothing here writes to a
segment. Shared formatting lives here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Final

from ldc.errors import MarketNotFound
from ldc.shm.layout import SEGMENT_PREFIX, SHM_DIR, WAITERS_SUFFIX, GROUP_NAME_RE, Status
from ldc.shm.reader import Reader, Snapshot

MAX_DECIMALS: Final = 12  # Binance prices and quantities have at most 8 decimals; a float beyond this is noise
MS_PER_S: Final = 1000.0
S_PER_MIN: Final = 60.0
S_PER_H: Final = 3600.0
S_PER_DAY: Final = 86400.0


def group_name_error(group: str) -> str | None:
    """None for a group name a segment can have, else the one-line error naming the rule (a name is a path
    component of /dev/shm/ldc-GROUP, so '../etc' and the like never reach the file system)."""
    if GROUP_NAME_RE.fullmatch(group):
        return None
    return f"group name expected {GROUP_NAME_RE.pattern} (letters, digits, '_', '-'), found {group!r}"


def decimals(values: Iterable[float]) -> int:
    """Decimals that show every value exactly: the segment holds each exchange decimal string as the nearest
    f64, whose shortest repr is that string without its trailing zeros; the finest value of a ladder gives
    the column its decimals back (150.20 next to 150.21, never 150.2)."""
    places = 0
    for value in values:
        exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
        if isinstance(exponent, int):  # not NaN / infinity
            places = max(places, -exponent)
    return min(places, MAX_DECIMALS)


def fixed(value: float, places: int) -> str:
    return f"{value:.{places}f}"


def human_ms(ms: float) -> str:
    """A duration for people: 12.3 ms, 7.3 s, 12.0 min, 20.4 h, 850 d."""
    s = ms / MS_PER_S
    if abs(s) < 1.0:
        return f"{ms:.1f} ms"
    if abs(s) < 2 * S_PER_MIN:
        return f"{s:.1f} s"
    if abs(s) < 2 * S_PER_H:
        return f"{s / S_PER_MIN:.1f} min"
    if abs(s) < 2 * S_PER_DAY:
        return f"{s / S_PER_H:.1f} h"
    return f"{s / S_PER_DAY:.0f} d"


def flag_names(status: int) -> list[str]:
    """Names of the status flags set, e.g. ["SYNCED", "REFRESHING"]; [] for 0 (no data yet)."""
    return [flag.name or "" for flag in Status if status & flag]


def list_groups(shm_dir: str = SHM_DIR) -> list[str]:
    """Groups that have a segment file on this host, sorted."""
    try:
        names = os.listdir(shm_dir)
    except FileNotFoundError:
        return []
    groups = [
        name[len(SEGMENT_PREFIX):]
        for name in names
        if name.startswith(SEGMENT_PREFIX) and not name.endswith(WAITERS_SUFFIX)
    ]
    return sorted(g for g in groups if GROUP_NAME_RE.fullmatch(g))


def levels_json(levels: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[float(price), float(qty)] for price, qty in levels]


def ladder(snap: Snapshot) -> list[str]:
    """Asks above (best ask lowest, next to the spread), bids below, one level per line; each column with the
    decimals of its finest value, the spread exact in those decimals."""
    width = 18
    asks, bids = snap.asks.tolist(), snap.bids.tolist()
    price_places = decimals(p for p, _ in asks + bids)
    qty_places = decimals(q for _, q in asks + bids)

    def row(level: list[float], side: str) -> str:
        return f"{fixed(level[0], price_places):>{width}}  {fixed(level[1], qty_places):>{width}}  {side}"

    lines = [f"{'price':>{width}}  {'quantity':>{width}}"]
    lines += [row(level, "ask") for level in reversed(asks)]
    if bids and asks:
        spread = Decimal(repr(asks[0][0])) - Decimal(repr(bids[0][0]))  # exact: no 0.300000000003
        lines.append(f"{'-' * width}  spread {spread:.{price_places}f}")
    else:
        lines.append("-" * width)
    lines += [row(level, "bid") for level in bids]
    return lines


def header_line(snap: Snapshot, now_ns: int, exchange: str = "") -> str:
    published = f"published {human_ms((now_ns - snap.publish_time_ns) / 1e6)} ago" if snap.publish_time_ns else "never published"
    flags = "|".join(flag_names(snap.status)) or "no data yet"
    return f"{snap.symbol}  update_id {snap.update_id}  {flags}  {published}" + (f"  {exchange}" if exchange else "")


def resolve_symbol(reader: Reader, symbol: str) -> str:
    """The segment's spelling of ``symbol``: itself when the segment has it, else the one market equal to it
    ignoring case. Venues spell markets their own way (BTCUSDT, BTC-USDT-SWAP, BTC/USD, HTX's btcusdt) and
    people type any case, so neither upper- nor lower-casing the argument finds every venue's market."""
    markets = reader.markets()
    if symbol in markets:
        return symbol
    folded = [market for market in markets if market.casefold() == symbol.casefold()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(markets) or "none yet"
    raise MarketNotFound(f"market {symbol!r} is not in segment {reader.name}, expected one of: {known}")
