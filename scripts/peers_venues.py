"""Other projects' OKX, Bybit, HTX, Kraken and Coinbase book clients against ``ldc sim``'s venue families.

The venue half of ``scripts/peers_vs_sim.py`` (which imports this module): cryptofeed's feed classes and
ccxt.pro's ``watch_order_book``, unchanged but for their URLs, each keeping its books with its own code.
A sample is the peer's book read with the update id of the last book message the peer had taken in when
the book was read; the parent compares it with the venue's ``/_sim/book`` at that id.

How the id is known without touching the peer's book code: the peer's message entry point (cryptofeed's
``Feed.message_handler``, ccxt's ``Exchange.handle_message``) is wrapped so that each raw message is read
once more, here, before the peer handles it (:class:`Ids`). The peer's own handling is unchanged; the
book and the id are read together in one step of the event loop, so they belong to the same message.
Each venue keys its truth differently (``docs/SIM_VENUES.md``): OKX ``seqId``; Bybit ``u`` (and the
category and depth of the topic); HTX ``seqNum`` / ``version``; Kraken v2 the message ``timestamp`` in
microseconds (and the subscribed depth); Coinbase the connection's ``sequence_num`` (and the client's
local port, which names the connection).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

# What the simulator serves for the venue peers, and so what each peer follows.
OKX = ("BTC-USDT", "BTC-USDT-SWAP")
BYBIT_SPOT, BYBIT_LINEAR = ("BTCUSDT",), ("ETHUSDT",)
HTX = ("btcusdt",)
KRAKEN = ("BTC/USD",)
COINBASE = ("BTC-USD",)
VENUES = ("okx", "bybit", "htx", "kraken", "coinbase")
KRAKEN_DEPTH = 100  # the depth both peers subscribe (ccxt: its limit; cryptofeed: max_depth)
# Fake credentials for a peer that insists on signing a public subscription (cryptofeed's Coinbase): the
# simulator checks a signature's form only, never a secret; these are not anyone's keys.
FAKE_KEY_ID, FAKE_KEY_SECRET = "ldc-sim-key", "ldc-sim-secret"

V2_NAMES = {"XBT": "BTC", "XDG": "DOGE"}  # Kraken v1's asset names -> v2's

Record = Callable[[str, str, dict[str, Any], int, list[Any], list[Any]], None]


def sim_args() -> list[str]:
    """``ldc sim`` options serving every venue market the peers follow."""
    return [
        "--okx-symbols", ",".join(OKX), "--bybit-spot-symbols", ",".join(BYBIT_SPOT), "--bybit-linear-symbols", ",".join(BYBIT_LINEAR),
        "--htx-symbols", ",".join(HTX), "--kraken-symbols", ",".join(KRAKEN), "--coinbase-symbols", ",".join(COINBASE),
    ]  # fmt: skip


def peer_venue(peer: str) -> tuple[str, str] | None:
    """``"ccxt-okx"`` -> ("ccxt", "okx"); None for a Binance peer."""
    library, _, venue = peer.partition("-")
    return (library, venue) if venue in VENUES and library in ("cryptofeed", "ccxt") else None


# -- the update id of each book message, read from the raw message before the peer handles it


def _kraken_us(text: str) -> int:
    """``2026-12-07T06:30:00.123456Z`` -> microseconds since the epoch (the simulator's truth key)."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(stamp.timestamp()) * 1_000_000 + stamp.microsecond


@dataclasses.dataclass
class Ids:
    """The last book message's id per market, and the truth query parameters that go with it."""

    venue: str
    last: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def see(self, raw: Any, *, path: str = "", port: int | None = None) -> None:
        if isinstance(raw, bytes):
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        msg = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if isinstance(msg, dict):
            getattr(self, f"_{self.venue}")(msg, path, port)
        elif isinstance(msg, list) and self.venue == "kraken":
            self._kraken_v1(msg)

    def _kraken_v1(self, msg: list[Any]) -> None:
        """``[id, {"a": [[price, qty, "seconds.micros"], ...]}, ..., "book-100", "XBT/USD"]``: the message's
        time is its levels' (the simulator stamps them all with it)."""
        if len(msg) < 4 or not str(msg[-2]).startswith("book-"):
            return
        stamps = [level[2] for part in msg[1:-2] for key, levels in part.items() if key in ("a", "b", "as", "bs") for level in levels]
        if stamps:
            us = max(int(Decimal(stamp) * 1_000_000) for stamp in stamps)
            symbol = "/".join(V2_NAMES.get(part, part) for part in str(msg[-1]).split("/"))
            self.last[symbol] = (us, {"depth": int(str(msg[-2])[len("book-") :])})

    def _okx(self, msg: dict[str, Any], path: str, port: int | None) -> None:
        arg, data = msg.get("arg") or {}, msg.get("data") or [{}]
        if str(arg.get("channel", "")).startswith("books") and "seqId" in data[-1]:
            self.last[arg["instId"]] = (int(data[-1]["seqId"]), {})

    def _bybit(self, msg: dict[str, Any], path: str, port: int | None) -> None:
        parts = str(msg.get("topic", "")).split(".")
        if len(parts) == 3 and parts[0] == "orderbook":
            category = path.rstrip("/").rsplit("/", 1)[-1]
            self.last[f"{category}:{parts[2]}"] = (int(msg["data"]["u"]), {"category": category, "depth": parts[1]})

    def _htx(self, msg: dict[str, Any], path: str, port: int | None) -> None:
        parts, tick = str(msg.get("ch") or msg.get("rep") or "").split("."), msg.get("tick") or msg.get("data") or {}
        key = tick.get("seqNum", tick.get("version")) if isinstance(tick, dict) else None
        if len(parts) >= 3 and parts[0] == "market" and key is not None:
            self.last[parts[1]] = (int(key), {})

    def _kraken(self, msg: dict[str, Any], path: str, port: int | None) -> None:
        if msg.get("channel") == "book":
            for item in msg.get("data") or []:
                self.last[item["symbol"]] = (_kraken_us(item["timestamp"]), {"depth": KRAKEN_DEPTH})

    def _coinbase(self, msg: dict[str, Any], path: str, port: int | None) -> None:
        if msg.get("channel") == "l2_data":
            for event in msg.get("events") or []:
                self.last[event["product_id"]] = (int(msg["sequence_num"]), {"port": port})


# -- cryptofeed


def _cryptofeed_endpoints(feed_class: Any, urls: dict[str, Any]) -> dict[str, Any]:
    """The feed class's own endpoints with the simulator's scheme and host in place of the exchange's."""
    ws_base, rest_base = urls["ws"], urls["rest"]

    def moved(address: str, base: str) -> str:
        parts = urlsplit(address)
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    ws = [dataclasses.replace(ep, address=moved(ep.address, ws_base)) for ep in feed_class.websocket_endpoints]
    rest = [dataclasses.replace(ep, address=moved(ep.address, rest_base)) for ep in feed_class.rest_endpoints]
    return {"websocket_endpoints": ws, "rest_endpoints": rest}


def run_cryptofeed(venue: str, urls: dict[str, Any], seconds: float, levels: int, record: Record) -> None:
    from cryptofeed import FeedHandler
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import OKX as CfOkx, Bybit, Coinbase, Huobi, Kraken

    feed_class, markets, config = {
        "okx": (CfOkx, [("okx", s) for s in OKX], {}),
        "bybit": (Bybit, [("spot", s) for s in BYBIT_SPOT] + [("linear", s) for s in BYBIT_LINEAR], {}),
        "htx": (Huobi, [("htx", s) for s in HTX], {}),
        "kraken": (Kraken, [("kraken", s) for s in KRAKEN], {}),
        "coinbase": (Coinbase, [("coinbase", s) for s in COINBASE], {"coinbase": {"key_id": FAKE_KEY_ID, "key_secret": FAKE_KEY_SECRET}}),
    }[venue]
    ids = Ids(venue)

    async def message_handler(self: Any, msg: Any, conn: Any, timestamp: float) -> None:
        local = getattr(getattr(conn, "conn", None), "local_address", None)
        ids.see(msg, path=urlsplit(conn.address).path, port=local[1] if local else None)
        await feed_class.message_handler(self, msg, conn, timestamp)

    attrs = {"message_handler": message_handler, **_cryptofeed_endpoints(feed_class, urls[venue])}
    sim_class: Any = type(f"Sim{feed_class.__name__}", (feed_class,), attrs)
    if venue == "coinbase":  # its documented way: the product list is read signed with the configured key
        sim_class.symbols(config)
    std_of = {exchange: std for std, exchange in sim_class.symbol_mapping().items()}
    by_std = {std_of[_cryptofeed_exchange_symbol(venue, family, s)]: (family, s) for family, s in markets}

    async def on_book(book: Any, receipt: float) -> None:
        family, symbol = by_std[book.symbol]
        key = ids.last.get(f"{family}:{symbol}" if venue == "bybit" else symbol)
        if key is not None:
            record(family, symbol, key[1], key[0], book.book.bids.to_list()[:levels], book.book.asks.to_list()[:levels])

    handler = FeedHandler(config={"log": {"disabled": True}, **config})
    kwargs = {"max_depth": KRAKEN_DEPTH} if venue == "kraken" else {}
    handler.add_feed(sim_class(symbols=list(by_std), channels=[L2_BOOK], callbacks={L2_BOOK: on_book}, config=config or None, **kwargs))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler.run(start_loop=False, install_signal_handlers=False)
    loop.run_until_complete(asyncio.sleep(seconds))
    handler.stop(loop=loop)


def _cryptofeed_exchange_symbol(venue: str, family: str, symbol: str) -> str:
    """The name cryptofeed's symbol table gives the market (Bybit spot is written ``BTC/USDT`` there)."""
    if venue == "bybit" and family == "spot":
        return f"{symbol[:-4]}/{symbol[-4:]}"
    if venue == "kraken":  # its Kraken speaks v1, whose pairs are AssetPairs' wsname (XBT/USD)
        return "/".join({v: k for k, v in V2_NAMES.items()}.get(part, part) for part in symbol.split("/"))
    return symbol


# -- ccxt.pro


def _ccxt_exchange(venue: str, urls: dict[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    """The ccxt.pro exchange with the simulator's URLs, and (family, symbol, unified symbol) per market."""
    import ccxt.pro

    rest, ws = urls[venue]["rest"], urls[venue]["ws"]
    if venue == "okx":
        exchange = ccxt.pro.okx({"options": {"fetchMarkets": {"types": ["spot", "swap"]}, "fetchCurrencies": False}})
        exchange.urls["api"] = {**exchange.urls["api"], "rest": rest, "ws": f"{ws}/ws/v5"}
        markets = [("okx", "BTC-USDT", "BTC/USDT"), ("okx", "BTC-USDT-SWAP", "BTC/USDT:USDT")]
    elif venue == "bybit":
        exchange = ccxt.pro.bybit({"options": {"fetchMarkets": {"types": ["spot", "linear"]}, "fetchCurrencies": False}})
        public = {c: f"{ws}/v5/public/{c}" for c in ("spot", "linear", "inverse", "option")}
        exchange.urls["api"] = {**{k: rest for k, v in exchange.urls["api"].items() if isinstance(v, str)}, "ws": {"public": public}}
        markets = [("spot", s, f"{s[:-4]}/{s[-4:]}") for s in BYBIT_SPOT] + [("linear", s, f"{s[:-4]}/{s[-4:]}:{s[-4:]}") for s in BYBIT_LINEAR]
    elif venue == "htx":
        exchange = ccxt.pro.htx({"options": {"fetchMarkets": {"types": {"spot": True, "linear": False, "inverse": False}}}})
        api = exchange.urls["api"]
        for key, value in list(api.items()):
            if isinstance(value, str):
                api[key] = rest
        api["ws"]["api"]["spot"] = {"public": f"{ws}/ws", "private": f"{ws}/ws/v2", "feed": f"{ws}/feed"}
        markets = [("htx", s, f"{s[:-4].upper()}/{s[-4:].upper()}") for s in HTX]
    elif venue == "kraken":
        exchange = ccxt.pro.kraken({"options": {"fetchCurrencies": False}})
        exchange.urls["api"] = {**{k: rest for k, v in exchange.urls["api"].items() if isinstance(v, str)}, "ws": {"public": ws, "publicV2": f"{ws}/v2"}}
        markets = [("kraken", s, s) for s in KRAKEN]
    else:
        exchange = ccxt.pro.coinbase({"options": {"fetchCurrencies": False}})
        exchange.urls["api"] = {**{k: rest for k, v in exchange.urls["api"].items() if isinstance(v, str)}, "ws": ws}
        markets = [("coinbase", s, s.replace("-", "/")) for s in COINBASE]
    # Currencies are no book data and the simulator lists none: ccxt's has-flag (its own switch for a venue
    # without the endpoint) keeps load_markets to the markets, as options["fetchCurrencies"] does for OKX.
    exchange.has["fetchCurrencies"] = False
    return exchange, markets


def _ccxt_port(client: Any) -> int | None:
    connection = getattr(client, "connection", None)
    sockname = connection.get_extra_info("sockname") if connection is not None and hasattr(connection, "get_extra_info") else None
    return int(sockname[1]) if sockname else None


def run_ccxt(venue: str, urls: dict[str, Any], seconds: float, levels: int, record: Record) -> None:
    import ccxt

    exchange, markets = _ccxt_exchange(venue, urls)
    ids = Ids(venue)
    handle = exchange.handle_message

    def handle_message(client: Any, message: Any) -> Any:
        ids.see(message, path=urlsplit(client.url).path, port=_ccxt_port(client))
        return handle(client, message)

    exchange.handle_message = handle_message
    limit = KRAKEN_DEPTH if venue == "kraken" else None

    async def follow(family: str, symbol: str, unified: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                book = await exchange.watch_order_book(unified, limit)
            except (ccxt.ChecksumError, ccxt.InvalidNonce, ccxt.NetworkError):
                continue  # a gap or a lost connection: ccxt's documented remedy is to call watch again
            key = ids.last.get(f"{family}:{symbol}" if venue == "bybit" else symbol)
            if key is not None:
                record(family, symbol, key[1], key[0], book["bids"], book["asks"])

    async def main() -> None:
        deadline = time.monotonic() + seconds
        try:
            await asyncio.gather(*(follow(f, s, u, deadline) for f, s, u in markets))
        finally:
            await exchange.close()

    asyncio.run(main())
