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

:meth:`VenueFamilies.urls` is what ``ldc sim`` prints under ``"okx"`` and ``"bybit"``.
"""

from __future__ import annotations

from ldc.errors import SimError
from ldc.sim.bybit import CATEGORIES, BybitDialect, BybitMarket, BybitModelMarket
from ldc.sim.config import SimConfig
from ldc.sim.okx import OkxDialect, OkxMarket, OkxModelMarket, inst_type_of
from ldc.sim.venue_faults import VenueFault, VenueFaultTable
from ldc.sim.coinbase import CoinbaseDialect, CoinbaseMarket, CoinbaseModelMarket
from ldc.sim.htx import HtxDialect, HtxMarket, HtxModelMarket
from ldc.sim.kraken import KrakenDialect, KrakenMarket, KrakenModelMarket
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
from ldc.sim.venue_transport import HOST, VenueServer


def okx_markets(config: SimConfig, faults: VenueFaultTable, replays: list[OkxMarket]) -> list[OkxMarket]:
    markets: list[OkxMarket] = list(replays)
    for inst_id in config.okx_symbols:
        inst_type = inst_type_of(inst_id)
        if inst_type is None:
            raise SimError(f"OKX instId must look like BTC-USDT, BTC-USDT-SWAP or BTC-USD-250926, found {inst_id!r}")
        if any(m.inst_id == inst_id for m in markets):
            raise SimError(f"OKX instId {inst_id!r} is listed twice (as a model market and a replay?)")
        markets.append(OkxModelMarket(inst_id, inst_type, config=config, faults=faults))
    return markets


def bybit_markets(config: SimConfig, faults: VenueFaultTable, replays: list[BybitMarket]) -> list[BybitMarket]:
    markets: list[BybitMarket] = list(replays)
    listed = zip(CATEGORIES, (config.bybit_spot_symbols, config.bybit_linear_symbols, config.bybit_inverse_symbols))
    for category, symbols in listed:
        for symbol in symbols:
            if not symbol.isalnum() or symbol.upper() != symbol:
                raise SimError(f"Bybit symbol must be upper-case letters and digits such as BTCUSDT, found {symbol!r}")
            if any((m.category, m.symbol) == (category, symbol) for m in markets):
                raise SimError(f"Bybit {category} symbol {symbol!r} is listed twice (as a model market and a replay?)")
            markets.append(BybitModelMarket(category, symbol, config=config, faults=faults))
    return markets


def htx_markets(config: SimConfig, faults: VenueFaultTable, replays: list[HtxMarket]) -> list[HtxMarket]:
    markets: list[HtxMarket] = list(replays)
    for symbol in config.htx_symbols:
        if not symbol.isalnum() or symbol.lower() != symbol:
            raise SimError(f"HTX symbol must be lower-case letters and digits such as btcusdt, found {symbol!r}")
        if any(m.symbol == symbol for m in markets):
            raise SimError(f"HTX symbol {symbol!r} is listed twice (as a model market and a replay?)")
        markets.append(HtxModelMarket(symbol, config=config, faults=faults))
    return markets


def kraken_markets(config: SimConfig, faults: VenueFaultTable, replays: list[KrakenMarket]) -> list[KrakenMarket]:
    markets: list[KrakenMarket] = list(replays)
    for symbol in config.kraken_symbols:
        base, slash, quote = symbol.partition("/")
        if not slash or not base.isalnum() or not quote.isalnum() or symbol.upper() != symbol:
            raise SimError(f"Kraken symbol must look like BTC/USD, found {symbol!r}")
        if any(m.symbol == symbol for m in markets):
            raise SimError(f"Kraken symbol {symbol!r} is listed twice (as a model market and a replay?)")
        markets.append(KrakenModelMarket(symbol, config=config, faults=faults))
    return markets


def coinbase_markets(config: SimConfig, replays: list[CoinbaseMarket]) -> list[CoinbaseMarket]:
    markets: list[CoinbaseMarket] = list(replays)
    for product_id in config.coinbase_symbols:
        base, dash, quote = product_id.partition("-")
        if not dash or not base.isalnum() or not quote.isalnum() or product_id.upper() != product_id:
            raise SimError(f"Coinbase product id must look like BTC-USD, found {product_id!r}")
        if any(m.product_id == product_id for m in markets):
            raise SimError(f"Coinbase product {product_id!r} is listed twice (as a model market and a replay?)")
        markets.append(CoinbaseModelMarket(product_id, config=config))
    return markets


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
                okx_replays += okx_replay_markets(rec, pace=pace)
            elif rec.venue == "bybit":
                bybit_replays += bybit_replay_markets(rec, pace=pace)
            elif rec.venue == "htx":
                htx_replays += htx_replay_markets(rec, pace=pace)
            elif rec.venue == "kraken":
                kraken_replays += kraken_replay_markets(rec, pace=pace)
            else:
                feed = CoinbaseReplayFeed(rec, pace=pace)
                self.timelines.append(feed.timeline)
                coinbase_replays += feed.markets
        okx = okx_markets(config, okx_faults, okx_replays)
        bybit = bybit_markets(config, bybit_faults, bybit_replays)
        htx = htx_markets(config, htx_faults, htx_replays)
        kraken = kraken_markets(config, kraken_faults, kraken_replays)
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
        coinbase = coinbase_markets(config, coinbase_replays)
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

    async def start(self) -> None:
        ports = {"okx": self.config.okx_port, "bybit": self.config.bybit_port, "htx": self.config.htx_port, "kraken": self.config.kraken_port, "coinbase": self.config.coinbase_port}
        for name, server in self.servers.items():
            await server.start(ports[name])

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
        out: dict[str, object] = {}
        if self.okx is not None:
            port = self.servers["okx"].port
            out["okx"] = {"rest": f"http://{HOST}:{port}", "ws": f"ws://{HOST}:{port}/ws/v5/public", "markets": sorted(self.okx.markets)}
        if self.bybit is not None:
            server = self.servers["bybit"]
            base = f"ws://{HOST}:{server.port}"
            keys = sorted(self.bybit.markets)
            markets = {cat: [sym for c, sym in keys if c == cat] for cat in CATEGORIES}
            out["bybit"] = {"rest": f"http://{HOST}:{server.port}", "ws": base, **{f"ws_{cat}": f"{base}/v5/public/{cat}" for cat in CATEGORIES}, "markets": markets}
        if self.htx is not None:
            port = self.servers["htx"].port
            out["htx"] = {"rest": f"http://{HOST}:{port}", "ws": f"ws://{HOST}:{port}/ws", "ws_feed": f"ws://{HOST}:{port}/feed", "markets": sorted(self.htx.markets)}
        if self.kraken is not None:
            port = self.servers["kraken"].port
            out["kraken"] = {"rest": f"http://{HOST}:{port}", "ws": f"ws://{HOST}:{port}/v2", "markets": sorted(self.kraken.markets)}
        if self.coinbase is not None:
            port = self.servers["coinbase"].port
            out["coinbase"] = {"rest": f"http://{HOST}:{port}", "ws": f"ws://{HOST}:{port}", "markets": sorted(self.coinbase.markets)}
        return out
