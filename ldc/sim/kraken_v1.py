"""Kraken's websocket v1 ``book`` on the Kraken family's port, at ``/`` (``wss://ws.kraken.com``).

Kraken still serves v1 beside v2, and the genuine recording and other projects' clients (cryptofeed's
Kraken) speak it. Written from Kraken's v1 documents as summarised in ``ldc/venues/kraken.py`` (the shared
recording's shapes), not from any client:

- on connect ``{"connectionID":N,"event":"systemStatus","status":"online","version":"1.9.0"}``;
  ``{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":100},"reqid":1}`` is
  answered once per pair ``{"channelID":C,"channelName":"book-100","event":"subscriptionStatus",
  "pair":"XBT/USD","status":"subscribed","subscription":{"depth":100,"name":"book"},"reqid":1}`` (an error:
  ``"status":"error"`` with ``"errorMessage"``); pairs are v1's names (``XBT`` for BTC, ``XDG`` for DOGE).
- a snapshot ``[C,{"as":[["65000.1","0.50000000","1765000000.123456"],...],"bs":[...]},"book-100","XBT/USD"]``
  and updates ``[C,{"a":[...],"c":"CRC"},"book-100","XBT/USD"]``, or two objects ``{"a":[...]},{"b":[...],
  "c":"CRC"}`` when both sides changed. Levels are strings padded to the pair's decimals; the timestamp is
  the message's (seconds with six decimals: the simulator's truth key, in microseconds). The checksum is v2's
  (the same top 10 text), as a string, on updates only.
- ``{"event":"heartbeat"}`` every second on a subscribed connection; ``{"event":"ping","reqid":N}`` is
  answered ``{"event":"pong","reqid":N}``.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from ldc.sim.kraken_market import KrakenMarket
from ldc.sim.venue_book import Levels
from ldc.sim.venue_transport import VenueConn

CATEGORY = "v1"
PATHS = ("", "/")
VERSION = "1.9.0"
DEFAULT_DEPTH = 10
HEARTBEAT = b'{"event":"heartbeat"}'
US_PER_S = 1_000_000
V1_NAMES = {"BTC": "XBT", "DOGE": "XDG"}  # v1 (and AssetPairs' wsname) name these assets so


def v1_pair(symbol: str) -> str:
    """``BTC/USD`` -> ``XBT/USD``."""
    return "/".join(V1_NAMES.get(part, part) for part in symbol.split("/"))


def channel_id(symbol: str, depth: int) -> int:
    """One number per pair and depth (the frame is encoded once for every subscriber)."""
    return zlib.crc32(f"{symbol}:{depth}".encode()) & 0x7FFFFFFF


def seconds_text(us: int) -> str:
    return f"{us // US_PER_S}.{us % US_PER_S:06d}"


def book_message(kind: str, symbol: str, depth: int, bids: Levels, asks: Levels, *, checksum: int, us: int) -> bytes:
    """A v1 snapshot or update of ``symbol`` (its v2 name) at ``depth``."""
    ts = seconds_text(us)

    def side(levels: Levels) -> list[list[str]]:
        return [[price, qty, ts] for price, qty in levels]

    if kind == "snapshot":
        parts: list[Any] = [{"as": side(asks), "bs": side(bids)}]
    else:
        parts = [{"a": side(asks)}] if asks else []
        parts += [{"b": side(bids)}] if bids else []
        parts[-1]["c"] = str(checksum)
    return orjson.dumps([channel_id(symbol, depth), *parts, f"book-{depth}", v1_pair(symbol)])


def on_open(conn: VenueConn) -> None:
    conn.send_text(orjson.dumps({"connectionID": conn.id, "event": "systemStatus", "status": "online", "version": VERSION}))


def on_text(conn: VenueConn, text: str, markets: dict[str, KrakenMarket]) -> None:
    """A v1 client's request: ping, subscribe or unsubscribe of ``book``."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        msg = None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        conn.send_text(orjson.dumps({"errorMessage": "Malformed request", "event": "error"}))
        return
    event, reqid = msg["event"], ({"reqid": msg["reqid"]} if "reqid" in msg else {})
    if event == "ping":
        conn.send_text(orjson.dumps({"event": "pong", **reqid}))
    elif event in ("subscribe", "unsubscribe"):
        _subscription(conn, event, msg, reqid, markets)
    else:
        conn.send_text(orjson.dumps({"errorMessage": f"Unsupported event {event}", "event": "error", **reqid}))


def _subscription(conn: VenueConn, event: str, msg: dict[str, Any], reqid: dict[str, Any], markets: dict[str, KrakenMarket]) -> None:
    subscription, pairs = msg.get("subscription"), msg.get("pair")
    depth = subscription.get("depth", DEFAULT_DEPTH) if isinstance(subscription, dict) else None
    if not isinstance(subscription, dict) or subscription.get("name") != "book" or not isinstance(pairs, list) or not pairs:
        _status(conn, None, reqid, {"name": subscription.get("name") if isinstance(subscription, dict) else None}, error="Malformed request: expected a book subscription and a list of pairs")
        return
    by_pair = {v1_pair(symbol): market for symbol, market in markets.items()}
    for pair in map(str, pairs):
        market = by_pair.get(pair)
        sub = {"depth": depth, "name": "book"}
        if market is None:
            _status(conn, pair, reqid, sub, error=f"Currency pair not supported {pair}")
        elif not isinstance(depth, int) or depth not in market.depths():
            _status(conn, pair, reqid, sub, error=f"Subscription depth not supported: expected one of {', '.join(map(str, market.depths()))}, found {depth!r}")
        else:
            _one(conn, event, market, depth, pair, reqid)


def _one(conn: VenueConn, event: str, market: KrakenMarket, depth: int, pair: str, reqid: dict[str, Any]) -> None:
    topic, sub = f"book:{depth}:{market.symbol}", {"depth": depth, "name": "book"}
    if event == "subscribe" and topic in conn.topics:
        _status(conn, pair, reqid, sub, error="Subscription already exists")
        return
    if event == "unsubscribe" and topic not in conn.topics:
        _status(conn, pair, reqid, sub, error="Subscription Not Found")
        return
    _status(conn, pair, reqid, sub, channel=(channel_id(market.symbol, depth), f"book-{depth}"), status="subscribed" if event == "subscribe" else "unsubscribed")
    hold_book(conn, event == "subscribe", market, depth, snapshot=True)


def hold_book(conn: VenueConn, subscribe: bool, market: KrakenMarket, depth: int, *, snapshot: bool) -> None:
    """The connection takes (or leaves) the pair's book at ``depth``, after its ack (v1 and v2 alike)."""
    topic = f"book:{depth}:{market.symbol}"
    if subscribe:
        conn.topics[topic] = market.symbol
        market.subscribe(conn, depth, snapshot)
    else:
        del conn.topics[topic]
        market.unsubscribe(conn, depth)


def _status(conn: VenueConn, pair: str | None, reqid: dict[str, Any], sub: dict[str, Any], *, error: str = "", channel: tuple[int, str] | None = None, status: str = "error") -> None:
    body: dict[str, Any] = {"channelID": channel[0], "channelName": channel[1]} if channel is not None else {"errorMessage": error}
    body.update(event="subscriptionStatus", **({"pair": pair} if pair is not None else {}), status=status, subscription=sub, **reqid)
    conn.send_text(orjson.dumps(body))
