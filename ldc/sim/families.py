"""The OKX, Bybit, HTX, Kraken and Coinbase simulator families, started beside the Binance simulator from one :class:`SimConfig`.

Each venue with markets gets its own 127.0.0.1 port (``okx_port`` / ``bybit_port``, 0: a free one):

- OKX when ``okx_symbols`` is set or an OKX recording is in ``venue_replay``: REST ``http://127.0.0.1:P``
  (``/api/v5/...``, ``/_sim/...``), websocket ``ws://127.0.0.1:P/ws/v5/public``.
- Bybit when ``bybit_spot_symbols`` / ``bybit_linear_symbols`` / ``bybit_inverse_symbols`` is set or a Bybit
  recording is replayed: REST ``http://127.0.0.1:P`` (``/v5/market/...``, ``/_sim/...``), websocket
  ``ws://127.0.0.1:P/v5/public/{spot,linear,inverse}``.
- HTX when ``htx_symbols`` is set or an HTX (Huobi) recording is replayed: REST ``http://127.0.0.1:P``
  (``/market/depth``, ``/v1/common/symbols``, ``/_sim/...``), websocket ``ws://127.0.0.1:P/feed`` (mbp, req)
  and ``ws://127.0.0.1:P/ws`` (depth.step0).
- Kraken when ``kraken_symbols`` is set or a Kraken recording is replayed (v1 served as v2): REST
  ``http://127.0.0.1:P`` (``/0/public/AssetPairs``, ``/0/public/Depth``, ``/_sim/...``), websocket
  ``ws://127.0.0.1:P/v2``.
- Coinbase when ``coinbase_symbols`` is set or a Coinbase recording is replayed: REST ``http://127.0.0.1:P``
  (``/api/v3/brokerage/market/...``, ``/_sim/...``), websocket ``ws://127.0.0.1:P``.

:meth:`VenueFamilies.urls` is what ``ldc sim`` prints under each venue's name: ``rest`` and ``ws`` are bases
(a client adds the venue's paths, as it would to the exchange's host), ``ws_*`` full websocket URLs. With
``SimConfig.tls`` every one of these ports speaks TLS: ``https://`` and ``wss://`` (ldc.sim.tls).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from functools import partial
from typing import TypeVar

from ldc.errors import SimError
from ldc.sim.bybit import CATEGORIES, BybitDialect, BybitMarket, BybitModelMarket
from ldc.sim.config import SimConfig
from ldc.sim.okx import OkxDialect, OkxMarket, OkxModelMarket, inst_type_of
from ldc.sim.venue_faults import VenueFault, VenueFaultTable
from ldc.sim.coinbase import CoinbaseDialect, CoinbaseMarket, CoinbaseModelMarket
from ldc.sim.htx import HtxDialect, HtxMarket, HtxModelMarket
from ldc.sim.kraken import KrakenDialect, KrakenModelMarket
from ldc.sim.kraken_market import KrakenMarket
from ldc.sim.venue_replay_copies import bybit_copies, okx_copies
from ldc.sim.kraken_replay import KrakenReplayMarket, kraken_replay_markets
from ldc.sim.coinbase_replay import CoinbaseReplayFeed
from ldc.sim.venue_replay import (
    BybitReplayMarket,
    HtxReplayMarket,
    OkxReplayMarket,
    Timeline,
    bybit_replay_markets,
    htx_replay_markets,
    okx_replay_markets,
    parse_pace,
    read_recording,
)
from ldc.sim.tls import schemes
from ldc.sim.venue_transport import HOST, VenueServer


T = TypeVar("T")


def _pair_of(text: str, sep: str) -> bool:
    base, found, quote = text.partition(sep)
    return bool(found) and base.isalnum() and quote.isalnum() and text.upper() == text


# venue -> (does a name have the venue's syntax, the syntax expected): bad names are refused before start
SYNTAX: dict[str, tuple[Callable[[str], bool], str]] = {
    "OKX instId": (lambda s: inst_type_of(s) is not None, "BTC-USDT, BTC-USDT-SWAP or BTC-USD-250926"),
    "Bybit symbol": (lambda s: s.isalnum() and s.upper() == s, "BTCUSDT"),
    "HTX symbol": (lambda s: s.isalnum() and s.lower() == s, "btcusdt"),
    "Kraken symbol": (lambda s: _pair_of(s, "/"), "BTC/USD"),
    "Coinbase product id": (lambda s: _pair_of(s, "-"), "BTC-USD"),
}


def with_models(markets: list[T], names: Iterable[str], *, what: str, key: Callable[[T], str], make: Callable[[str], T]) -> list[T]:
    """``markets`` (replays) plus a model market per name, each name checked against the venue's syntax."""
    valid, expected = SYNTAX[what]
    out = list(markets)
    for name in names:
        if not valid(name):
            raise SimError(f"{what} must look like {expected}, found {name!r}")
        made = make(name)
        if any(key(m) == key(made) for m in out):
            raise SimError(f"{what} {name!r} is listed twice (as a model market and a replay?)")
        out.append(made)
    return out


def bybit_markets(config: SimConfig, faults: VenueFaultTable, replays: list[BybitMarket]) -> list[BybitMarket]:
    markets = replays
    listed = zip(CATEGORIES, (config.bybit_spot_symbols, config.bybit_linear_symbols, config.bybit_inverse_symbols))
    for category, symbols in listed:
        make = partial(_bybit_model, category, config, faults)
        markets = with_models(markets, symbols, what="Bybit symbol", key=lambda m: f"{m.category}:{m.symbol}", make=make)
    return markets


def _bybit_model(category: str, config: SimConfig, faults: VenueFaultTable, symbol: str) -> BybitMarket:
    return BybitModelMarket(category, symbol, config=config, faults=faults)


class VenueFamilies:
    """The venue servers of one simulator. Built and run on the simulator's event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.servers: dict[str, VenueServer] = {}
        self.timelines: list[Timeline] = []
        okx_faults = VenueFaultTable(seed=config.seed, venue="okx")
        bybit_faults = VenueFaultTable(seed=config.seed, venue="bybit")
        htx_faults = VenueFaultTable(seed=config.seed, venue="htx")
        okx_replays: list[OkxMarket] = []
        bybit_replays: list[BybitMarket] = []
        htx_replays: list[HtxMarket] = []
        kraken_replays: list[KrakenMarket] = []
        kraken_faults = VenueFaultTable(seed=config.seed, venue="kraken")
        coinbase_replays: list[CoinbaseMarket] = []
        coinbase_faults = VenueFaultTable(seed=config.seed, venue="coinbase")
        pace = parse_pace(config.replay_pace) if config.venue_replay else None
        for path in config.venue_replay:
            rec = read_recording(path)
            if rec.venue == "okx":
                okx_replays += okx_copies(okx_replay_markets(rec, pace=pace), copies=config.replay_copies, loops=config.replay_loops, pace=pace)
            elif rec.venue == "bybit":
                bybit_replays += bybit_copies(bybit_replay_markets(rec, pace=pace), copies=config.replay_copies, loops=config.replay_loops, pace=pace)
            elif rec.venue == "htx":
                htx_replays += htx_replay_markets(rec, pace=pace)
            elif rec.venue == "kraken":
                kraken_replays += kraken_replay_markets(rec, pace=pace)
            else:
                feed = CoinbaseReplayFeed(rec, pace=pace)
                self.timelines.append(feed.timeline)
                coinbase_replays += feed.markets
        okx = with_models(
            okx_replays, config.okx_symbols, what="OKX instId", key=lambda m: m.inst_id,
            make=lambda s: OkxModelMarket(s, inst_type_of(s) or "SPOT", config=config, faults=okx_faults),
        )  # fmt: skip
        bybit = bybit_markets(config, bybit_faults, bybit_replays)
        htx = with_models(htx_replays, config.htx_symbols, what="HTX symbol", key=lambda m: m.symbol, make=lambda s: HtxModelMarket(s, config=config, faults=htx_faults))
        kraken = with_models(
            kraken_replays, config.kraken_symbols, what="Kraken symbol", key=lambda m: m.symbol,
            make=lambda s: KrakenModelMarket(s, config=config, faults=kraken_faults),
        )  # fmt: skip
        replays = [*okx_replays, *bybit_replays, *htx_replays, *kraken_replays]
        self.timelines += [m.timeline for m in replays if isinstance(m, (OkxReplayMarket, BybitReplayMarket, HtxReplayMarket, KrakenReplayMarket))]
        self.okx = OkxDialect(config, okx_faults, okx) if okx else None
        self.bybit = BybitDialect(config, bybit_faults, bybit) if bybit else None
        if self.okx is not None:
            self.servers["okx"] = VenueServer(self.okx, faults=okx_faults)
        if self.bybit is not None:
            self.servers["bybit"] = VenueServer(self.bybit, faults=bybit_faults)
        self.htx = HtxDialect(config, htx_faults, htx) if htx else None
        if self.htx is not None:
            self.servers["htx"] = VenueServer(self.htx, faults=htx_faults)
        self.kraken = KrakenDialect(config, kraken_faults, kraken) if kraken else None
        if self.kraken is not None:
            self.servers["kraken"] = VenueServer(self.kraken, faults=kraken_faults)
        coinbase = with_models(
            coinbase_replays, config.coinbase_symbols, what="Coinbase product id", key=lambda m: m.product_id,
            make=lambda s: CoinbaseModelMarket(s, config=config),
        )  # fmt: skip
        self.coinbase = CoinbaseDialect(config, coinbase_faults, coinbase) if coinbase else None
        if self.coinbase is not None:
            self.servers["coinbase"] = VenueServer(self.coinbase, faults=coinbase_faults)
        rules_by_venue = (
            ("okx", config.okx_faults), ("bybit", config.bybit_faults), ("htx", config.htx_faults),
            ("kraken", config.kraken_faults), ("coinbase", config.coinbase_faults),
        )  # fmt: skip
        for name, rules in rules_by_venue:
            for rule in rules:
                if name not in self.servers:
                    raise SimError(f"a {name} fault was given but no {name} market is served")
                self.servers[name].faults.add(rule)

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        ports = {"okx": self.config.okx_port, "bybit": self.config.bybit_port, "htx": self.config.htx_port, "kraken": self.config.kraken_port, "coinbase": self.config.coinbase_port}
        for name, server in self.servers.items():
            await server.start(ports[name], tls=tls)

    async def stop(self) -> None:
        for timeline in self.timelines:
            timeline.stop()
        for server in self.servers.values():
            await server.stop()

    def server(self, venue: str) -> VenueServer:
        found = self.servers.get(venue)
        if found is None:
            raise SimError(f"no {venue} markets are served, the venues running are {sorted(self.servers) or 'none'}")
        return found

    def apply_fault(self, venue: str, rule: VenueFault) -> None:
        self.server(venue).apply_fault(rule)

    def urls(self) -> dict[str, object]:
        """Per venue: ``rest`` and ``ws`` are bases (a client adds the venue's own paths, as against the
        exchange); the ``ws_*`` keys are the full websocket URLs."""
        out: dict[str, object] = {}
        for venue, server in self.servers.items():
            rest, base = (f"{scheme}://{HOST}:{server.port}" for scheme in schemes(self.config.tls))
            out[venue] = {"rest": rest, "ws": base, **{key: f"{base}{path}" for key, path in WS_PATHS[venue].items()}}
        if self.okx is not None:
            _markets(out, "okx", sorted(self.okx.markets))
        if self.bybit is not None:
            keys = sorted(self.bybit.markets)
            _markets(out, "bybit", {cat: [sym for c, sym in keys if c == cat] for cat in CATEGORIES})
        if self.htx is not None:
            _markets(out, "htx", sorted(self.htx.markets))
        if self.kraken is not None:
            _markets(out, "kraken", sorted(self.kraken.markets))
        if self.coinbase is not None:
            _markets(out, "coinbase", sorted(self.coinbase.markets))
        return out


WS_PATHS: dict[str, dict[str, str]] = {
    "okx": {"ws_public": "/ws/v5/public"},
    "bybit": {f"ws_{cat}": f"/v5/public/{cat}" for cat in CATEGORIES},
    "htx": {"ws_feed": "/feed", "ws_market": "/ws"},
    "kraken": {"ws_v2": "/v2"},
    "coinbase": {},
}


def _markets(out: dict[str, object], venue: str, markets: object) -> None:
    entry = out[venue]
    assert isinstance(entry, dict)
    entry["markets"] = markets
