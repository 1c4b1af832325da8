"""One module per exchange protocol: URLs, stream names, control messages, parsers, limits.

``ldc.venues.binance`` covers binance.com (spot), its testnet, USD-M and COIN-M futures and Binance.US;
``ldc.venues.okx`` OKX v5 public books; ``ldc.venues.bybit`` Bybit v5 public order books (spot, linear,
inverse); ``ldc.venues.kraken`` Kraken websocket v2 ``book``; ``ldc.venues.coinbase`` Coinbase Advanced Trade
``level2``; ``ldc.venues.htx`` HTX spot ``mbp`` and ``depth.step0``. ``ldc.venues.base`` is the seam they share. Venue modules do no I/O and import without the C
extension; ``ldc.sync`` applies their sequence rules. ``docs/VENUES.md`` says how to add one.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ldc.errors import ConfigError
from ldc.venues import binance, bybit, coinbase, htx, kraken, okx
from ldc.venues.base import RestSnapshotVenue, StreamVenue, VenueTable

__all__ = ["VENUES", "rest_venue", "stream_venue", "venue_table"]

VENUES: Mapping[str, VenueTable] = MappingProxyType({
    table.name: table for module in (binance, okx, bybit, kraken, coinbase, htx) for table in module.TABLES
})  # fmt: skip


def venue_table(name: str) -> VenueTable:
    """The venue serving exchange ``name``, or ConfigError listing the known ones."""
    try:
        return VENUES[name]
    except KeyError:
        raise ConfigError(f"unknown exchange {name!r}, expected one of {', '.join(sorted(VENUES))}") from None


def rest_venue(name: str) -> RestSnapshotVenue | None:
    """The REST-snapshot venue serving exchange ``name`` (Binance's endpoint families), None for a
    websocket-snapshot one; ConfigError listing the known names for an unknown one."""
    table = venue_table(name)
    return binance.exchange(name) if table.module == binance.__name__ else None


def stream_venue(name: str, channel: str = "") -> StreamVenue | None:
    """The websocket-snapshot venue serving exchange ``name`` on book ``channel`` (OKX, Bybit, Kraken, Coinbase,
    HTX; "" the venue's default), None for a REST-snapshot one (Binance)."""
    table = venue_table(name)
    channel = channel or table.default_channel
    if table.module == kraken.__name__:
        return kraken.KrakenStream(channel)
    if table.module == coinbase.__name__:
        return coinbase.CoinbaseStream()
    if table.module == htx.__name__:
        return htx.HtxStream(channel)
    if table.module == okx.__name__:
        return okx.OkxStream()
    if table.module == bybit.__name__:
        return bybit.BybitStream(table.ws_path.rsplit("/", 1)[-1])
    return None
