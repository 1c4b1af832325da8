"""``ldc sim``: run the local Binance exchange simulator on 127.0.0.1.

The first line on stdout is JSON: {"rest": "http://127.0.0.1:P", "ws": "ws://127.0.0.1:P", "ws_usdm": ...,
"ws_coinm": ..., "markets": {"spot": [...], "usdm": [...], "coinm": [...]}}, plus, for each venue family
serving markets (ldc.sim.families), "okx" / "bybit" / "htx" / "kraken" / "coinbase": {"rest": base,
"ws": base, "ws_...": full websocket URLs ("ws_public"; "ws_spot", "ws_linear", "ws_inverse"; "ws_feed",
"ws_market"; "ws_v2"), "markets": ...}. With --tls the URLs are https:// and wss:// and "ca_file" names the CA
to trust (removed when the simulator stops). SIGTERM / SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import orjson

from ldc.errors import SimError
from ldc.sim.config import ReplaySource, SimConfig
from ldc.sim.faults import FaultRule, rule_from_cli
from ldc.sim.markets import Family, generated_symbols, parse_symbols
from ldc.sim.simulator import Simulator
from ldc.sim.venue_faults import venue_fault_from_cli
from ldc.sim.venue_replay import recording_venue
from ldc.sim.weights import WeightConfig

EPILOG = """\
markets: --symbols names spot markets, --usdm-symbols USD-M, --coinm-symbols COIN-M (e.g. BTCUSD_PERP);
--markets N / --usdm-markets N / --coinm-markets N add N generated markets of that family
(BTCUSDT, ETHUSDT, ... then SIM0008USDT ...). With no market option at all: spot BTCUSDT.

routes (one port): REST /api/v3 (spot), /fapi/v1 (USD-M), /dapi/v1 (COIN-M): depth, exchangeInfo, ping,
time. Websocket /ws/<stream>, /stream?streams=a/b, futures also /public/ws and /public/stream; prefix
/usdm or /coinm (the "ws_usdm" / "ws_coinm" URLs) when a symbol exists in several families.
Streams: spot <symbol>@depth (1000 ms), @depth@100ms; USD-M/COIN-M @depth (250 ms), @depth@0ms, @100ms,
@500ms; partial books @depth5|10|20 with the same speeds (not on replays).
Private: GET /_sim/book?symbol=S&update_id=U&limit=N (truth), /_sim/stats, /_sim/connections,
GET|POST|DELETE /_sim/faults (POST a JSON rule or list, e.g. {"kind":"drop","count":1}).

faults (--fault KIND:key=value,..., repeatable): drop, duplicate, delay (ms), reorder,
malformed (detail=json|frame), disconnect (every_s), shutdown (ms), stale_snapshot (behind),
rest_delay (ms), rest_error (status 5xx, or 418 with ms: an IP ban), rate_limit; selectors conn, port,
symbol; count, probability.
example: --fault drop:count=1,symbol=BTCUSDT --fault disconnect:every_s=30

replay: --replay FILE[=SYMBOL][,FILE...] serves genuine captures (shared/data/binance format); files of
one symbol are played in the order given. A feeder's recording (ldc/record.py) replays the same way: a
file, or its directory (every file in it, in time order). --replay-copies N serves each also as SYMBOL2..SYMBOLN.
--replay-pace recorded | client (as fast as the slowest subscriber reads) | xF (F times recorded speed).
--replay-loops N plays an OKX / Bybit recording N times (ids running on; with --replay-copies: benchmarks).
A genuine OKX, Bybit, HTX, Kraken or Coinbase recording (shared/data/venues, known by its header line) is replayed by that
venue's family instead.

OKX v5 and Bybit v5 (each on its own port, URLs under "okx" and "bybit" in the first line):
--okx-symbols BTC-USDT,BTC-USDT-SWAP,BTC-USD-250926 serves /ws/v5/public (books, books-l2-tbt,
books50-l2-tbt) and /api/v5/market/books, /api/v5/public/instruments; --bybit-spot-symbols,
--bybit-linear-symbols, --bybit-inverse-symbols serve /v5/public/{spot,linear,inverse}
(orderbook.{1,50,200,1000}.SYMBOL) and /v5/market/orderbook, /v5/market/instruments-info. Both answer
/_sim/book (Bybit adds category= and depth=), /_sim/faults, /_sim/stats, /_sim/connections.
--htx-symbols btcusdt serves /feed (market.SYM.mbp.{5,20,150,400}, req), /ws (market.SYM.depth.step0),
/market/depth and /v1/common/symbols, gzip binary frames, server pings.
--kraken-symbols BTC/USD serves /v2 (book depth 10/25/100/500/1000 with the top-10 checksum, heartbeat,
instrument), /0/public/AssetPairs and /0/public/Depth. --coinbase-symbols BTC-USD serves / (level2 as
l2_data, heartbeats, sequence_num per connection), /api/v3/brokerage/market/product_book and /products.
--okx-fault / --bybit-fault / --htx-fault / --kraken-fault / --coinbase-fault KIND:key=value,... (repeatable): drop, duplicate, reorder,
disconnect, checksum (OKX, Kraken), reset (OKX, Bybit), stale_snapshot (behind), rest_error (status); selectors
conn, symbol.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ldc sim", description="Local Binance exchange simulator (127.0.0.1 only).", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    p.add_argument("--tls", action="store_true", help="every port speaks TLS (https://, wss://): a CA and a certificate for 127.0.0.1 "
                   "are made at start, the CA file's path is \"ca_file\" in the first line")
    p.add_argument("--symbols", default="", help="spot symbols, comma separated")
    p.add_argument("--usdm-symbols", default="", help="USD-M futures symbols")
    p.add_argument("--coinm-symbols", default="", help="COIN-M futures symbols")
    p.add_argument("--markets", type=int, default=0, help="add N generated spot markets")
    p.add_argument("--usdm-markets", type=int, default=0, help="add N generated USD-M markets")
    p.add_argument("--coinm-markets", type=int, default=0, help="add N generated COIN-M markets")
    p.add_argument("--seed", type=int, default=1, help="seed of the market model and the faults (default 1)")
    p.add_argument("--rate", type=float, default=20.0, help="model events per simulated second per market (default 20)")
    p.add_argument("--changes", type=int, default=4, help="mean level changes per model event (default 4)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    p.add_argument("--history", type=int, default=2000, help="model events per market the truth endpoint can rewind")
    p.add_argument("--weight-limit", type=int, default=6000, help="spot REQUEST_WEIGHT per window (default 6000)")
    p.add_argument("--futures-weight-limit", type=int, default=2400, help="fapi/dapi weight per window (default 2400)")
    p.add_argument("--weight-window-s", type=float, default=60.0, help="weight window length (default 60)")
    p.add_argument("--ban-after", type=int, default=5, help="requests answered 429 before a 418 ban (default 5)")
    p.add_argument("--ban-s", type=float, default=120.0, help="418 ban length (default 120)")
    p.add_argument("--ping-interval-s", type=float, default=None, help="server ping interval (default 20 spot, 180 futures)")
    p.add_argument("--pong-timeout-s", type=float, default=None, help="pong deadline (default 60 spot, 600 futures)")
    p.add_argument("--max-lifetime-s", type=float, default=86400.0, help="connection lifetime (default 24 h)")
    p.add_argument("--max-streams", type=int, default=1024, help="streams per connection (default 1024)")
    p.add_argument("--fault", action="append", default=[], help="a fault rule active from the start (repeatable)")
    p.add_argument("--replay", default="", help="capture files to replay, FILE[=SYMBOL],...")
    p.add_argument("--replay-copies", type=int, default=1, help="serve each replayed market N times under other names")
    p.add_argument("--replay-loops", type=int, default=1, help="OKX / Bybit recordings played N times, ids running on")
    p.add_argument("--replay-pace", default="recorded", help="recorded | client | xF (default recorded)")
    p.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    add_venue_options(p)
    return p


def add_venue_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--okx-symbols", default="", help="OKX instIds: BTC-USDT, BTC-USDT-SWAP, BTC-USD-250926")
    p.add_argument("--okx-port", type=int, default=0, help="OKX port; 0 picks a free one")
    p.add_argument("--okx-no-checksum", action="store_true", help="OKX checksum 0, as production since 2026-06-23")
    p.add_argument("--okx-no-ws-snapshot", action="store_true", help="no OKX websocket snapshot (REST book with seqId)")
    p.add_argument("--okx-idle-s", type=float, default=30.0, help="OKX closes a connection with nothing pushed this long (default 30)")
    p.add_argument("--okx-fault", action="append", default=[], help="an OKX fault rule active from the start (repeatable)")
    p.add_argument("--bybit-spot-symbols", default="", help="Bybit spot symbols")
    p.add_argument("--bybit-linear-symbols", default="", help="Bybit linear (USDT perpetual) symbols")
    p.add_argument("--bybit-inverse-symbols", default="", help="Bybit inverse symbols (BTCUSD)")
    p.add_argument("--bybit-port", type=int, default=0, help="Bybit port; 0 picks a free one")
    p.add_argument("--bybit-ping-timeout-s", type=float, default=600.0, help="Bybit closes a client silent this long (default 600)")
    p.add_argument("--bybit-fault", action="append", default=[], help="a Bybit fault rule active from the start (repeatable)")
    p.add_argument("--htx-symbols", default="", help="HTX spot symbols, lower case: btcusdt,ethusdt")
    p.add_argument("--htx-port", type=int, default=0, help="HTX port; 0 picks a free one")
    p.add_argument("--htx-ping-interval-s", type=float, default=5.0, help="HTX server ping interval; two unanswered close (default 5)")
    p.add_argument("--htx-fault", action="append", default=[], help="an HTX fault rule active from the start (repeatable)")
    p.add_argument("--kraken-symbols", default="", help="Kraken v2 symbols: BTC/USD,ETH/USD")
    p.add_argument("--kraken-port", type=int, default=0, help="Kraken port; 0 picks a free one")
    p.add_argument("--kraken-fault", action="append", default=[], help="a Kraken fault rule active from the start (repeatable)")
    p.add_argument("--coinbase-symbols", default="", help="Coinbase Advanced Trade product ids: BTC-USD,ETH-USD")
    p.add_argument("--coinbase-port", type=int, default=0, help="Coinbase port; 0 picks a free one")
    p.add_argument("--coinbase-idle-s", type=float, default=60.0, help="Coinbase closes a connection sent nothing this long (default 60)")
    p.add_argument("--coinbase-fault", action="append", default=[], help="a Coinbase fault rule active from the start (repeatable)")


def venue_fields(args: argparse.Namespace, recordings: list[str]) -> dict[str, Any]:
    """The SimConfig fields of the OKX and Bybit families (ldc.sim.families)."""
    return {
        "okx_symbols": tuple(parse_symbols(args.okx_symbols)),
        "okx_port": args.okx_port,
        "okx_checksum": not args.okx_no_checksum,
        "okx_ws_snapshot": not args.okx_no_ws_snapshot,
        "okx_idle_s": args.okx_idle_s,
        "okx_faults": tuple(venue_fault_from_cli(text) for text in args.okx_fault),
        "bybit_spot_symbols": tuple(parse_symbols(args.bybit_spot_symbols)),
        "bybit_linear_symbols": tuple(parse_symbols(args.bybit_linear_symbols)),
        "bybit_inverse_symbols": tuple(parse_symbols(args.bybit_inverse_symbols)),
        "bybit_port": args.bybit_port,
        "bybit_ping_timeout_s": args.bybit_ping_timeout_s,
        "bybit_faults": tuple(venue_fault_from_cli(text) for text in args.bybit_fault),
        "htx_symbols": tuple(s.lower() for s in parse_symbols(args.htx_symbols)),
        "htx_port": args.htx_port,
        "htx_ping_interval_s": args.htx_ping_interval_s,
        "htx_faults": tuple(venue_fault_from_cli(text) for text in args.htx_fault),
        "kraken_symbols": tuple(parse_symbols(args.kraken_symbols)),
        "kraken_port": args.kraken_port,
        "kraken_faults": tuple(venue_fault_from_cli(text) for text in args.kraken_fault),
        "coinbase_symbols": tuple(parse_symbols(args.coinbase_symbols)),
        "coinbase_port": args.coinbase_port,
        "coinbase_idle_s": args.coinbase_idle_s,
        "coinbase_faults": tuple(venue_fault_from_cli(text) for text in args.coinbase_fault),
        "venue_replay": tuple(recordings),
    }


def config_from_args(args: argparse.Namespace) -> SimConfig:
    families = {
        Family.SPOT: parse_symbols(args.symbols),
        Family.USDM: parse_symbols(args.usdm_symbols),
        Family.COINM: parse_symbols(args.coinm_symbols),
    }
    for family, count in ((Family.SPOT, args.markets), (Family.USDM, args.usdm_markets), (Family.COINM, args.coinm_markets)):
        if count < 0:
            raise SimError(f"market count must be >= 0, found {count}")
        families[family] += [s for s in generated_symbols(family, count) if s not in families[family]]
    replay = tuple(_replay_source(item) for item in args.replay.split(",") if item.strip())
    recordings = [source.path for source in replay if recording_venue(source.path) is not None]
    replay = tuple(source for source in replay if source.path not in recordings)
    venues = venue_fields(args, recordings)
    venue_asked = any(venues[k] for k in ("okx_symbols", "bybit_spot_symbols", "bybit_linear_symbols", "bybit_inverse_symbols", "htx_symbols", "kraken_symbols", "coinbase_symbols", "venue_replay"))
    if not any(families.values()) and not replay and not venue_asked:
        families[Family.SPOT] = ["BTCUSDT"]
    faults: tuple[FaultRule, ...] = tuple(rule_from_cli(text) for text in args.fault)
    if args.rate <= 0 or args.speed <= 0:
        raise SimError(f"rate and speed must be > 0, found rate={args.rate} speed={args.speed}")
    return SimConfig(
        port=args.port,
        tls=args.tls,
        spot_symbols=tuple(families[Family.SPOT]),
        usdm_symbols=tuple(families[Family.USDM]),
        coinm_symbols=tuple(families[Family.COINM]),
        seed=args.seed,
        rate=args.rate,
        changes_per_event=max(1, args.changes),
        speed=args.speed,
        history_events=max(1, args.history),
        weights=WeightConfig(
            spot_limit=args.weight_limit,
            futures_limit=args.futures_weight_limit,
            window_s=args.weight_window_s,
            requests_after_429_before_ban=args.ban_after,
            ban_s=args.ban_s,
        ),
        ping_interval_s=args.ping_interval_s,
        pong_timeout_s=args.pong_timeout_s,
        max_lifetime_s=args.max_lifetime_s,
        max_streams_per_connection=args.max_streams,
        faults=faults,
        replay=replay,
        replay_copies=max(1, args.replay_copies),
        replay_pace=args.replay_pace,
        replay_loops=args.replay_loops,
        **venues,
    )


def _replay_source(item: str) -> ReplaySource:
    path, _, symbol = item.strip().partition("=")
    return ReplaySource(path=path, symbol=symbol.upper() or None)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except SimError as exc:
        print(f"ldc sim: {exc}", file=sys.stderr)
        return 2
    sim = Simulator(config)

    def ready() -> None:
        print(orjson.dumps(sim.urls()).decode(), flush=True)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sim.request_stop)
        await sim.serve(on_ready=ready)

    try:
        asyncio.run(run())
    except SimError as exc:
        print(f"ldc sim: {exc}", file=sys.stderr)
        return 2
    return 0
