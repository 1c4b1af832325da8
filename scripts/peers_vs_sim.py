#!/usr/bin/env python3
"""Other projects' own Binance clients pointed at ``ldc sim``, unchanged but for their base URLs.

Each peer (python-binance, UNICORN Binance Local Depth Cache, cryptofeed, ccxt.pro) runs in a child
process of this script for ``--seconds``, keeps its books with its own code, and reports samples
(update id + top levels) taken from its book. The parent compares every sample with the simulator's
truth at the same update id (``/_sim/book?update_id=...``): a sample matches when its top ``--levels``
levels per side equal the truth's, price and quantity. The report is one JSON object per peer:
``{"peer", "markets", "checked", "matched", "unverifiable", "mismatches", "error"}``.

    pip install -e '.[peers]'         # the peers (see pyproject.toml)
    python scripts/peers_vs_sim.py                      # every installed peer, 20 s each
    python scripts/peers_vs_sim.py --peers ccxt --seconds 60 --fault drop:probability=0.01

A peer that is not installed is reported as ``"skipped"``. Every child refuses to resolve or connect to
anything but the loopback (a guard on ``socket.getaddrinfo``), so a URL the script did not redirect
fails loudly instead of reaching an exchange. How each peer reads the update id of its book:
python-binance ``DepthCacheManager._last_update_id``; UNICORN ``depth_caches[market]["last_update_id"]``
(read twice around the levels, kept only when stable: its book is updated from another thread);
cryptofeed the ``sequence_number`` its book callback gets; ccxt.pro the order book's ``nonce``.

The same peers' OKX, Bybit, HTX, Kraken and Coinbase clients (``cryptofeed-okx``, ``ccxt-okx``, ...) run
against the simulator's venue families the same way; ``scripts/peers_venues.py`` has them and says how
their update ids are read. ``--fault`` then takes a venue fault rule (``drop:probability=0.01``,
``disconnect:every_s=5``), given to every venue.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers_venues  # noqa: E402  (beside this script: the venue peers)

SPOT = ("BTCUSDT", "ETHUSDT")
USDM = ("BTCUSDT",)
COINM = ("BTCUSD_PERP",)
DEFAULT_SECONDS = 20.0
DEFAULT_LEVELS = 20
SAMPLE_EVERY_S = 0.25  # per market: a few hundred truth checks per peer and run
CHILD_GRACE_S = 60.0  # start-up (UNICORN waits ~6 s before its first snapshot) and shutdown
HISTORY_EVENTS = 100_000  # the truth must still know every sampled update id at the end
PEER_MODULES = {"python-binance": "binance", "unicorn": "unicorn_binance_local_depth_cache", "cryptofeed": "cryptofeed", "ccxt": "ccxt"}
PEER_MODULES.update({f"{library}-{venue}": library for venue in peers_venues.VENUES for library in ("cryptofeed", "ccxt")})
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# peers that refuse ws://: they get `ldc sim --tls` (every peer may: see simulator())
WSS_ONLY = ("cryptofeed", *(f"cryptofeed-{venue}" for venue in peers_venues.VENUES))

Sample = dict[str, Any]


# -- the child side: one peer, its samples as JSON lines on stdout


def guard_loopback() -> None:
    """Refuse every name but the loopback: no peer may reach an exchange from here."""
    real = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            raise OSError(f"peers_vs_sim: refusing to resolve {name!r}, only the loopback is allowed")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = loopback_only
    # aiohttp resolves with c-ares when aiodns is installed (it is, with cryptofeed): guard the connect too.
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(f"peers_vs_sim: refusing to connect to {address[0]}, only the loopback is allowed")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]


class Recorder:
    """Samples of one market, at most one per SAMPLE_EVERY_S, written as JSON lines."""

    def __init__(self, family: str, symbol: str, levels: int, venue: str | None = None) -> None:
        self.family, self.symbol, self.levels, self.venue = family, symbol, levels, venue
        self._last = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() - self._last >= SAMPLE_EVERY_S

    def record(self, update_id: int, bids: list[Any], asks: list[Any], query: dict[str, Any] | None = None) -> None:
        """``bids`` / ``asks``: best first, [price, qty] as str, float or Decimal; ``query``: a venue's further
        truth parameters (Bybit's category and depth, Kraken's depth, Coinbase's port)."""
        with self._lock:
            self._last = time.monotonic()
            line: dict[str, Any] = {
                "family": self.family,
                "symbol": self.symbol,
                "update_id": int(update_id),
                "bids": [[str(p), str(q)] for p, q in bids[: self.levels]],
                "asks": [[str(p), str(q)] for p, q in asks[: self.levels]],
            }
            if self.venue is not None:
                line.update(venue=self.venue, query=query or {})
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()


async def _until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def run_python_binance(urls: dict[str, Any], seconds: float, levels: int) -> None:
    from binance import AsyncClient, BinanceSocketManager, DepthCacheManager

    rest, ws = urls["rest"], urls["ws"]
    client_class: Any = type("SimAsyncClient", (AsyncClient,), {"API_URL": f"{rest}/api", "FUTURES_URL": f"{rest}/fapi", "FUTURES_COIN_URL": f"{rest}/dapi"})

    async def follow(client: Any, bm: Any, symbol: str, deadline: float) -> None:
        recorder = Recorder("spot", symbol, levels)
        async with DepthCacheManager(client, symbol, bm=bm, ws_interval=100) as dcm:
            while time.monotonic() < deadline:
                cache = await dcm.recv()
                if recorder.due():
                    recorder.record(dcm._last_update_id, cache.get_bids(), cache.get_asks())

    async def main() -> None:
        client = await client_class.create()
        bm = BinanceSocketManager(client)
        bm.STREAM_URL = f"{ws}/"
        deadline = time.monotonic() + seconds
        try:
            await asyncio.gather(*(follow(client, bm, s, deadline) for s in SPOT))
        finally:
            await client.close_connection()

    asyncio.run(main())


def run_unicorn(urls: dict[str, Any], seconds: float, levels: int) -> None:
    from unicorn_binance_local_depth_cache import BinanceLocalDepthCacheManager
    from unicorn_binance_rest_api import BinanceRestApiManager

    rest = urls["rest"]

    def fixed(url: str) -> property:
        """Its constructor assigns the exchange's URLs and calls /api/v3/time at once: a base URL that
        stays the simulator's whatever the constructor assigns."""
        return property(lambda self: url, lambda self, value: None)

    sim_ubra = type("SimRestApiManager", (BinanceRestApiManager,), {"API_URL": fixed(f"{rest}/api"), "FUTURES_URL": fixed(f"{rest}/fapi")})
    managers = []
    plan = [("binance.com", "spot", SPOT, urls["ws"]), ("binance.com-futures", "usdm", USDM, urls["ws_usdm"])]
    for exchange, family, symbols, ws in plan:
        ubra = sim_ubra(exchange=exchange, warn_on_update=False, disable_colorama=True)
        manager = BinanceLocalDepthCacheManager(exchange=exchange, ubra_manager=ubra, warn_on_update=False, disable_colorama=True)
        manager.ubwa.websocket_base_uri = f"{ws}/"
        manager.create_depthcache(markets=[s.lower() for s in symbols])
        managers.append((manager, family, symbols))
    recorders = {(f, s): Recorder(f, s, levels) for _, f, symbols in managers for s in symbols}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(SAMPLE_EVERY_S)
            for manager, family, symbols in managers:
                for symbol in symbols:
                    sample = _unicorn_stable_read(manager, symbol, levels)
                    if sample is not None:
                        recorders[(family, symbol)].record(*sample)
    finally:
        for manager, _, _ in managers:
            manager.stop_manager()


def _unicorn_stable_read(manager: Any, symbol: str, levels: int) -> tuple[int, list[Any], list[Any]] | None:
    """The book read twice, 10 ms apart; kept only if both reads agree (its writer is another thread)."""
    reads = []
    symbol = symbol.lower()  # its markets are named as the streams are
    for _ in range(2):
        try:
            if not manager.is_depth_cache_synchronized(symbol):
                return None
            first = manager.depth_caches[symbol]["last_update_id"]
            bids = manager.get_bids(symbol, limit_count=levels)
            asks = manager.get_asks(symbol, limit_count=levels)
            last = manager.depth_caches[symbol]["last_update_id"]
        except Exception:  # out of sync between the check and the read: no sample this time
            return None
        if first is None or first != last:
            return None
        reads.append((int(first), bids, asks))
        time.sleep(0.01)
    return reads[0] if reads[0] == reads[1] else None


def run_cryptofeed(urls: dict[str, Any], seconds: float, levels: int) -> None:
    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, WebsocketEndpoint
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Binance, BinanceDelivery, BinanceFutures

    # cryptofeed refuses a websocket address that is not wss:// (as every live exchange is): its simulator
    # runs with --tls (WSS_ONLY), REST over https too, the CA trusted through the environment (run_child)
    rest, wss = urls["rest"], urls["ws"]
    plan = [(Binance, "spot", SPOT, wss), (BinanceFutures, "usdm", USDM, f"{wss}/usdm"), (BinanceDelivery, "coinm", COINM, f"{wss}/coinm")]
    handler = FeedHandler(config={"log": {"disabled": True}})
    for feed_class, family, symbols, ws in plan:
        routes = feed_class.rest_endpoints[0].routes
        sim_class: Any = type(f"Sim{feed_class.__name__}", (feed_class,), {"websocket_endpoints": [WebsocketEndpoint(ws)], "rest_endpoints": [RestEndpoint(rest, routes=routes)]})
        std_of = {exchange_name: std for std, exchange_name in sim_class.symbol_mapping().items()}  # its exchangeInfo
        by_pair = {std_of[symbol]: Recorder(family, symbol, levels) for symbol in symbols}

        async def on_book(book: Any, receipt: float, by_pair: dict[str, Recorder] = by_pair) -> None:
            recorder = by_pair[book.symbol]
            if recorder.due() and book.sequence_number is not None:
                bids = book.book.bids.to_list()[:levels]
                asks = book.book.asks.to_list()[:levels]
                recorder.record(book.sequence_number, bids, asks)

        handler.add_feed(sim_class(symbols=list(by_pair), channels=[L2_BOOK], callbacks={L2_BOOK: on_book}))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler.run(start_loop=False, install_signal_handlers=False)
    loop.run_until_complete(asyncio.sleep(seconds))
    handler.stop(loop=loop)


def run_ccxt(urls: dict[str, Any], seconds: float, levels: int) -> None:
    import ccxt
    import ccxt.pro

    rest = urls["rest"]
    exchange = ccxt.pro.binance({"options": {"fetchMarkets": {"types": ["spot", "linear", "inverse"]}, "fetchCurrencies": False}})
    api = exchange.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str):  # every REST base; only the three market-data ones are served
            path = value.split("binance.com", 1)[-1] if "binance.com" in value else "/unserved"
            api[key] = rest + path
    # ccxt.pro tells spot from futures by the host in the URL ("/stream" in it: spot), so the simulator
    # is given Binance's host names as the first path segment, which it accepts for this.
    ws = urls["ws"]
    spot_ws = f"{ws}/stream.binance.com/ws"
    api["ws"] = {"spot": spot_ws, "margin": spot_ws, "linear": f"{ws}/fstream.binance.com/ws", "inverse": f"{ws}/dstream.binance.com/ws"}
    markets = [("spot", s, f"{s[:-4]}/{s[-4:]}") for s in SPOT]
    markets += [("usdm", s, f"{s[:-4]}/{s[-4:]}:{s[-4:]}") for s in USDM]
    markets += [("coinm", s, f"{s[:-8]}/USD:{s[:-8]}") for s in COINM]

    async def follow(family: str, symbol: str, unified: str, deadline: float) -> None:
        recorder = Recorder(family, symbol, levels)
        while time.monotonic() < deadline:
            try:
                book = await exchange.watch_order_book(unified)
            except ccxt.ChecksumError:  # a gap: its documented remedy is to call watchOrderBook again
                continue
            if recorder.due() and book.get("nonce") is not None:
                recorder.record(book["nonce"], book["bids"], book["asks"])

    async def main() -> None:
        deadline = time.monotonic() + seconds
        try:
            await asyncio.gather(*(follow(f, s, u, deadline) for f, s, u in markets))
        finally:
            await exchange.close()

    asyncio.run(main())


def venue_runner(library: str, venue: str) -> Callable[[dict[str, Any], float, int], None]:
    """The child of ``cryptofeed-okx``, ``ccxt-kraken``, ...: the peer in ``peers_venues``, one Recorder per market."""

    def run(urls: dict[str, Any], seconds: float, levels: int) -> None:
        recorders: dict[tuple[str, str], Recorder] = {}

        def record(family: str, symbol: str, query: dict[str, Any], update_id: int, bids: list[Any], asks: list[Any]) -> None:
            recorder = recorders.setdefault((family, symbol), Recorder(family, symbol, levels, venue))
            if recorder.due():
                recorder.record(update_id, bids, asks, query)

        getattr(peers_venues, f"run_{library}")(venue, urls, seconds, levels, record)

    return run


RUNNERS: dict[str, Callable[[dict[str, Any], float, int], None]] = {
    "python-binance": run_python_binance,
    "unicorn": run_unicorn,
    "cryptofeed": run_cryptofeed,
    "ccxt": run_ccxt,
}
RUNNERS.update({f"{library}-{venue}": venue_runner(library, venue) for venue in peers_venues.VENUES for library in ("cryptofeed", "ccxt")})


# -- the parent side: the simulator, the children, the truth


@contextmanager
def simulator(extra: list[str], *, tls: bool = False, venues: bool = False) -> Iterator[dict[str, Any]]:
    """``ldc sim`` for one peer; with ``tls`` every URL is https:// / wss:// and ``urls["ca_file"]`` is its CA;
    with ``venues`` the venue families serve the markets of ``peers_venues``."""
    args = [sys.executable, "-m", "ldc.cli", "sim", "--port", "0", "--symbols", ",".join(SPOT), "--usdm-symbols", ",".join(USDM)]
    args += ["--coinm-symbols", ",".join(COINM), "--history", str(HISTORY_EVENTS), *(["--tls"] if tls else []), *extra]
    args += peers_venues.sim_args() if venues else []
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ldc sim exited without printing its urls (exit {proc.wait()})")
        yield dict(json.loads(line))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_child(peer: str, urls: dict[str, Any], seconds: float, levels: int) -> tuple[list[Sample], str | None]:
    args = [sys.executable, os.path.abspath(__file__), "--child", peer, "--urls", json.dumps(urls), "--seconds", str(seconds), "--levels", str(levels)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + CHILD_GRACE_S, env=trusting(urls.get("ca_file")))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return _samples(out), f"did not stop within {seconds + CHILD_GRACE_S:.0f} s"
    error = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-600:]}"
    return _samples(done.stdout), error


def trusting(ca_file: str | None) -> dict[str, str]:
    """The child's environment: with a TLS simulator its CA is what the peer's unchanged code trusts, the way a
    user points any Python client at a private CA: the ssl module's default paths (SSL_CERT_FILE: aiohttp,
    websockets) and requests' bundle (REQUESTS_CA_BUNDLE). Verification stays on."""
    env = dict(os.environ)
    if ca_file is not None:
        env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = ca_file
    return env


def _samples(text: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        if line.startswith('{"family"'):
            out.append(json.loads(line))
    return out


def _same(mine: list[list[str]], truth: list[list[str]]) -> bool:
    """Equal level for level; prices and sizes compared as numbers (peers print floats or Decimals)."""
    return len(mine) == len(truth) and all(float(a) == float(c) and float(b) == float(d) for (a, b), (c, d) in zip(mine, truth))


def check(urls: dict[str, Any], samples: list[Sample], levels: int) -> dict[str, Any]:
    """Each sample against the truth at its update id: Binance's (``urls["rest"]``) or its venue's."""
    result: dict[str, Any] = {"checked": 0, "matched": 0, "bids_matched": 0, "asks_matched": 0, "unverifiable": 0, "mismatches": []}
    session = requests.Session()
    verify = urls.get("ca_file") or True  # per request: a REQUESTS_CA_BUNDLE in the environment overrides Session.verify
    for sample in samples:
        params = {"symbol": sample["symbol"], "family": sample["family"], "update_id": sample["update_id"], "limit": levels}
        params.update(sample.get("query", {}))
        base = urls[sample["venue"]]["rest"] if "venue" in sample else urls["rest"]
        answer = session.get(f"{base}/_sim/book", params=params, timeout=10, verify=verify)
        if answer.status_code == 404:  # older than the kept history
            result["unverifiable"] += 1
            continue
        truth = answer.json()
        result["checked"] += 1
        bids, asks = _same(sample["bids"], truth["bids"]), _same(sample["asks"], truth["asks"])
        result["bids_matched"] += bids
        result["asks_matched"] += asks
        if bids and asks:
            result["matched"] += 1
        elif len(result["mismatches"]) < 3:
            result["mismatches"].append({"sample": sample, "truth": truth})
    return result


def compare_peer(peer: str, urls: dict[str, Any], seconds: float, levels: int) -> dict[str, Any]:
    if importlib.util.find_spec(PEER_MODULES[peer]) is None:
        return {"peer": peer, "skipped": f"module {PEER_MODULES[peer]!r} is not installed (pip install -e '.[peers]')"}
    samples, error = run_child(peer, urls, seconds, levels)
    report: dict[str, Any] = {"peer": peer, "markets": sorted({f"{s['family']}:{s['symbol']}" for s in samples}), "error": error}
    report.update(check(urls, samples, levels))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=",".join(RUNNERS), help=f"comma separated, of {', '.join(RUNNERS)}")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="how long each peer follows its books")
    parser.add_argument("--levels", type=int, default=DEFAULT_LEVELS, help="levels per side compared with the truth")
    parser.add_argument("--fault", action="append", default=[], help="a simulator fault rule (ldc sim --fault)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        guard_loopback()
        RUNNERS[args.child](json.loads(args.urls), args.seconds, args.levels)
        return 0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in RUNNERS]
    if unknown:
        parser.error(f"unknown peers {unknown}, expected some of {list(RUNNERS)}")
    failed = False
    for peer in peers:
        venue = peers_venues.peer_venue(peer)
        faults = [f"--{venue[1]}-fault={f}" if venue else f"--fault={f}" for f in args.fault]
        with simulator(faults, tls=peer in WSS_ONLY, venues=venue is not None) as urls:
            report = compare_peer(peer, urls, args.seconds, args.levels)
        print(json.dumps(report), flush=True)
        failed |= "skipped" not in report and (report["checked"] == 0 or report["matched"] != report["checked"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
