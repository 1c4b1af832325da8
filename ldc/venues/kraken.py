"""Kraken spot websocket v2 ``book``: snapshot and updates proved by a CRC32 of the top 10 (and v1's ``book``).

Sources (``shared/reference/exchanges.md`` §4): docs.kraken.com "WebSocket v2 book", "Spot WS book checksum v2",
"heartbeat", "ping"; cryptofeed ``exchanges/kraken.py`` and bmoscon/orderbook ``kraken_checksum`` for v1.

A v2 update as Kraken sends it (one element in ``data``; prices and quantities are JSON numbers written to
the pair's precision, trailing zeros kept)::

    {"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],
     "asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}

``qty`` 0 deletes; one message may change a price several times (applied in order). There is no sequence
number (rule ``NONE``): the checksum after every message is the only proof, and a mismatch resubscribes that
market alone. Nor is there an update id: a book is keyed by its message's ``timestamp`` in microseconds (the
id published, ``first_id = final_id``; ``event_time_ms`` in milliseconds), as the simulator and any replay key it. Kraken never deletes a level that falls out of the subscribed depth: the client cuts each side to
its depth after every message (the snapshot's ``limit`` is the depth: ``FastBook``'s retention window).

Numbers: the text is read as ``Decimal`` (``json`` with ``parse_float=Decimal``), never through a binary float
first; the book keeps ``float(Decimal)``, the correctly rounded double. The checksum writes the book's numbers
back with the pair's ``price_precision`` / ``qty_precision`` (v2 hashes values at the pair's precision; the
instrument channel or REST AssetPairs ``pair_decimals`` / ``lot_decimals`` give them): exact for numbers of up
to 15 significant digits; a pair beyond that would fail its checksum and resync (counted), never drift silently.

v1 (the shared recording, ``book-1000``): ``[channelID, {"as":[[price, volume, ts],...],"bs":[...]}, "book-1000",
"XBT/CHF"]``, updates ``{"a":[...]}`` / ``{"b":[...], "c":"checksum"}`` (two objects when both sides change;
``[p, v, ts, "r"]`` republishes a level coming into the depth). Prices are strings with the pair's v1 decimals,
and v1 hashes that padded text: :func:`v1_precision` reads the decimals off the snapshot.
"""

from __future__ import annotations

import calendar
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

import numpy as np
import orjson

from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError, ProtocolError
from ldc.venues._parse import ControlKind, VenueControl, exact_number, expect_dict, load, load_exact, show, sorted_levels
from ldc.venues.base import HotChecksum, Precision, SequenceRule, SequenceScope, SnapshotSource, StreamDefaults, VenueTable

__all__ = [
    "CHANNELS",
    "CHECKSUM_LEVELS",
    "TABLES",
    "BookEvent",
    "KrakenStream",
    "book_checksum",
    "checksum",
    "parse_asset_pairs",
    "parse_message",
    "parse_v1_message",
    "subscribe_message",
    "symbol_error",
    "v1_precision",
]

NAME = "kraken"
# Endpoints
REST_BASE_URL = "https://api.kraken.com"
WS_BASE_URL = "wss://ws.kraken.com"
WS_PATH = "/v2"
ASSET_PAIRS_PATH = "/0/public/AssetPairs"
# Channels: book.{depth}; the client keeps exactly that many levels a side
DEPTHS = (10, 25, 100, 500, 1000)
CHANNELS: dict[str, int] = {f"book.{depth}": depth for depth in DEPTHS}
DEFAULT_CHANNEL = "book.25"  # covers the default published depth (20) with the least traffic
SEQUENCE_RULE = SequenceRule.NONE
SNAPSHOT_SOURCE = SnapshotSource.STREAM
CHECKSUM_LEVELS = 10  # per side
# Keep-alive: the server sends {"channel":"heartbeat"} about every second once subscribed; we ping as well
PING_INTERVAL_S = 20.0
# Limits (none documented for public subscriptions; the message rate is "dynamic")
MAX_SYMBOLS_PER_SUBSCRIBE = 50  # ours: keeps one request well under any frame limit
MAX_SYMBOLS_PER_CONNECTION = 200  # ours
CONNECTIONS_PER_S = 1.0  # ours: none documented
SYMBOL_PATTERN = r"[A-Z0-9]{1,16}/[A-Z0-9]{1,16}"
SYMBOL_FORM = "'BTC/USD'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_V1_BOOK_RE = re.compile(r"book-(\d+)")
# v2 ``timestamp``: RFC 3339 in UTC, microseconds (read to the microsecond; finer digits are cut, never rounded up)
_TIMESTAMP_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
US_PER_S = 1_000_000
US_PER_MS = 1_000

TABLES: tuple[VenueTable, ...] = (
    VenueTable(
        name=NAME, family=NAME, module=__name__, rest_base_url=REST_BASE_URL, ws_base_url=WS_BASE_URL,
        ws_path=WS_PATH, symbol_pattern=SYMBOL_PATTERN, symbol_form=SYMBOL_FORM,
        channels=tuple(CHANNELS), channel_levels=tuple(CHANNELS.values()), default_channel=DEFAULT_CHANNEL,
        weight_limit_per_min=60,  # REST: ldc asks only AssetPairs (public calls cost 1 of a 15 budget, -0.33/s)
        max_streams_per_connection=MAX_SYMBOLS_PER_CONNECTION,
    ),
)  # fmt: skip


def symbol_error(symbol: str) -> str:
    """Why ``symbol`` is not a Kraken v2 pair ("" when it is one)."""
    if _SYMBOL_RE.fullmatch(symbol):
        return ""
    return f"expected a Kraken pair like {SYMBOL_FORM}, found {symbol!r}"


# ---------------------------------------------------------------------------------------------
# Requests


def _request(method: str, channel: str, symbols: Sequence[str], request_id: str) -> bytes:
    if channel not in CHANNELS:
        raise ConfigError(f"channel {channel!r} not offered by Kraken, expected one of {list(CHANNELS)}")
    if not symbols or len(symbols) > MAX_SYMBOLS_PER_SUBSCRIBE:
        raise ConfigError(f"{method} with {len(symbols)} pairs, expected 1..{MAX_SYMBOLS_PER_SUBSCRIBE}")
    if not request_id.isdigit():
        raise ConfigError(f"request id {request_id!r}, expected digits (Kraken's req_id is an integer)")
    params = {"channel": "book", "symbol": list(symbols), "depth": CHANNELS[channel], "snapshot": True}
    return orjson.dumps({"method": method, "params": params, "req_id": int(request_id)})


def subscribe_message(channel: str, symbols: Sequence[str], request_id: str) -> bytes:
    """``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25,"snapshot":true},
    "req_id":1}``: Kraken acknowledges each symbol, then sends its snapshot."""
    return _request("subscribe", channel, symbols, request_id)


def unsubscribe_message(channel: str, symbols: Sequence[str], request_id: str) -> bytes:
    return _request("unsubscribe", channel, symbols, request_id)


# ---------------------------------------------------------------------------------------------
# v2 messages


def timestamp_us(value: Any) -> int:
    """A v2 book message's ``timestamp`` (``"2023-10-06T17:35:55.440295Z"``) in microseconds since the epoch:
    Kraken has no update id, so this is the id a Kraken book is published and replayed at (read from the text,
    exactly: no float on the way)."""
    found = _TIMESTAMP_RE.fullmatch(value) if type(value) is str else None
    if found is None:
        raise ProtocolError(f"field 'timestamp': expected an RFC 3339 UTC time like '2023-10-06T17:35:55.440295Z', found {show(value)}")
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60 and second < 60):
        raise ProtocolError(f"field 'timestamp': expected a valid UTC date and time, found {show(value)}")
    fraction = (found.group(7) or "").ljust(6, "0")[:6]
    return calendar.timegm((year, month, day, hour, minute, second)) * US_PER_S + int(fraction)


@dataclass(frozen=True, slots=True)
class BookEvent:
    symbol: str
    event: DepthSnapshot | DepthDiff


def _v2_levels(value: Any, field: str) -> list[Level]:
    if not isinstance(value, list):
        raise ProtocolError(f"field {field!r}: expected a list of levels, found {show(value)}")
    out: list[Level] = []
    for index, level in enumerate(value):
        if not isinstance(level, dict) or "price" not in level or "qty" not in level:
            raise ProtocolError(f"field {field!r}[{index}]: expected {{\"price\": number, \"qty\": number}}, found {show(level)}")
        out.append((exact_number(level["price"], field, index), exact_number(level["qty"], field, index)))
    return out


def parse_message(raw: bytes | str, depth: int) -> list[BookEvent] | VenueControl:
    """A message of a Kraken v2 connection subscribed to ``book`` at ``depth``. ProtocolError names the field."""
    msg = expect_dict(load_exact(raw, "message"), "message")
    channel = msg.get("channel")
    if channel != "book":
        if "method" in msg:
            return _control(msg)
        words = msg.get("Error", msg.get("error")) if channel is None else None
        if isinstance(words, str):  # {"Error":"Exceeded msg rate"}: Kraken's answer to too many messages
            return VenueControl(ControlKind.ERROR, message=words)
        return VenueControl(ControlKind.OTHER, topic=str(channel))  # heartbeat, status, instrument...
    kind = msg.get("type")
    if kind not in ("snapshot", "update"):
        raise ProtocolError(f"field 'type': expected 'snapshot' or 'update', found {show(kind)}")
    data = msg.get("data")
    if not isinstance(data, list) or len(data) != 1:
        raise ProtocolError(f"field 'data': expected a list of one book, found {show(data)}")
    item = expect_dict(data[0], "data[0]")
    symbol = item.get("symbol")
    if type(symbol) is not str or not symbol:
        raise ProtocolError(f"field 'symbol': expected a pair, found {show(symbol)}")
    crc = item.get("checksum")
    if type(crc) is not int or not 0 <= crc < 1 << 32:
        raise ProtocolError(f"field 'checksum': expected an unsigned 32-bit integer, found {show(crc)}")
    bids, asks = _v2_levels(item.get("bids"), "bids"), _v2_levels(item.get("asks"), "asks")
    us = timestamp_us(item.get("timestamp"))
    if kind == "snapshot":
        return [BookEvent(symbol, _snapshot(symbol, bids, asks, depth, crc, us))]
    # the update id is the timestamp (first = final: one message); BookSync keeps a pair's id from going back
    return [BookEvent(symbol, DepthDiff(symbol, us, us, NO_ID, us // US_PER_MS, NO_ID, bids, asks, crc))]


def _snapshot(symbol: str, bids: list[Level], asks: list[Level], depth: int, crc: int, us: int = NO_ID) -> DepthSnapshot:
    if len(bids) > depth or len(asks) > depth:
        raise ProtocolError(f"snapshot of {symbol}: expected at most {depth} levels a side, found {len(bids)} bids, {len(asks)} asks")
    # limit = the subscribed depth: a side with fewer levels is the whole side; the book is cut to it
    event_ms = us // US_PER_MS if us != NO_ID else NO_ID
    return DepthSnapshot(us, sorted_levels(bids, "bids", True), sorted_levels(asks, "asks", False), depth, event_ms, crc)


def _control(msg: dict[str, Any]) -> VenueControl:
    method = msg.get("method")
    if method == "pong":
        return VenueControl(ControlKind.PONG)
    if method in ("subscribe", "unsubscribe"):
        result = msg.get("result")
        symbol = msg.get("symbol") or (result.get("symbol") if isinstance(result, dict) else "") or ""
        if msg.get("success") is True:
            return VenueControl(ControlKind.ACK, topic=str(symbol))
        return VenueControl(ControlKind.ERROR, message=str(msg.get("error", "")), topic=str(symbol))
    if msg.get("success") is False:
        return VenueControl(ControlKind.ERROR, message=str(msg.get("error", "")))
    return VenueControl(ControlKind.OTHER, message=str(method))


# ---------------------------------------------------------------------------------------------
# Checksum and precision


def _crc(bids: np.ndarray, asks: np.ndarray, precision: Precision) -> int:
    """The CRC32 of the asks then the bids given as (n, 2) arrays, best first. A number written with ``d``
    decimals, its point and leading zeros removed, is the integer ``round(value * 10**d)`` in decimal: exact
    while that integer is below 2**51 (15 significant digits, what the float64 book keeps anyway)."""
    scale = np.array((10.0**precision.price_decimals, 10.0**precision.size_decimals))
    numbers = np.rint(np.concatenate((asks, bids)) * scale).astype(np.int64).ravel().tolist()
    return zlib.crc32("".join(map(str, numbers)).encode())


def checksum(bids: Sequence[Level], asks: Sequence[Level], precision: Precision) -> int:
    """Kraken's unsigned CRC32 of the top 10 asks (ascending) then bids (descending), each price and quantity
    written with the pair's decimals, the point removed and leading zeros stripped. The documented example
    (MATIC/USD, precisions 4 and 8) gives 2439117997 for the snapshot."""
    top = [np.array(side[:CHECKSUM_LEVELS], dtype=np.float64).reshape(-1, 2) for side in (bids, asks)]
    return _crc(top[0], top[1], precision)


def book_checksum(precision: Precision) -> Callable[[Book, int], bool]:
    """``SyncConfig.checksum`` for one Kraken pair: whether the checksum of a book's top 10 is ``expected``. On a
    ``FastBook`` it is computed in C (``FastBook.kraken_crc32``: the same integers, the same CRC32; None, so here,
    for decimals beyond 22 or a number beyond 2^62)."""
    bids_out, asks_out = np.zeros((CHECKSUM_LEVELS, 2)), np.zeros((CHECKSUM_LEVELS, 2))
    try:
        from ldc._fastbook import FastBook
    except ImportError:  # the venue table imports without the C extension
        FastBook = None  # type: ignore[misc,assignment]  # noqa: N806
    price_decimals, size_decimals = precision.price_decimals, precision.size_decimals

    def holds(book: Book, expected: int) -> bool:
        if type(book) is FastBook:
            found = book.kraken_crc32(CHECKSUM_LEVELS, price_decimals, size_decimals)
            if found is not None:
                return bool(found == expected)
        n_bids, n_asks = book.top(CHECKSUM_LEVELS, bids_out, asks_out)
        return _crc(bids_out[:n_bids], asks_out[:n_asks], precision) == expected

    return holds


def v2_symbol(wsname: str) -> str:
    """AssetPairs' ``wsname`` (``XBT/USD``) as v2 names the pair (``BTC/USD``)."""
    return "/".join("BTC" if part == "XBT" else "DOGE" if part == "XDG" else part for part in wsname.split("/"))


def parse_asset_pairs(body: bytes | str) -> dict[str, Precision]:
    """v2 pair -> (``pair_decimals``, ``lot_decimals``) from ``GET /0/public/AssetPairs``."""
    msg = expect_dict(load(body, "AssetPairs"), "AssetPairs")
    if msg.get("error"):
        raise ProtocolError(f"AssetPairs answer is an error: {show(msg.get('error'))}")
    out: dict[str, Precision] = {}
    for entry in expect_dict(msg.get("result"), "result").values():
        if isinstance(entry, dict) and isinstance(entry.get("wsname"), str):
            price, lot = entry.get("pair_decimals"), entry.get("lot_decimals")
            if type(price) is int and type(lot) is int:
                out[v2_symbol(entry["wsname"])] = Precision(price, lot)
    return out


# ---------------------------------------------------------------------------------------------
# v1 (the shared recording)


def _v1_levels(value: Any, field: str) -> list[Level]:
    if not isinstance(value, list):
        raise ProtocolError(f"field {field!r}: expected a list of levels, found {show(value)}")
    out: list[Level] = []
    for index, level in enumerate(value):
        if not isinstance(level, list) or not 3 <= len(level) <= 4 or type(level[0]) is not str or type(level[1]) is not str:
            raise ProtocolError(f"field {field!r}[{index}]: expected [price, volume, time(, \"r\")] strings, found {show(level)}")
        try:
            price, volume = Decimal(level[0]), Decimal(level[1])
        except ArithmeticError:
            raise ProtocolError(f"field {field!r}[{index}]: expected decimal strings, found {show(level)}") from None
        if not (price.is_finite() and volume.is_finite() and price >= 0 and volume >= 0):
            raise ProtocolError(f"field {field!r}[{index}]: expected non-negative decimals, found {show(level)}")
        out.append((float(price), float(volume)))
    return out


def parse_v1_message(raw: bytes | str) -> list[BookEvent] | VenueControl:
    """A v1 message: ``[id, {..}, ({..},) "book-N", pair]`` book data, or an event object (control)."""
    msg = load(raw, "message")
    if isinstance(msg, dict):
        event = msg.get("event")
        if event == "subscriptionStatus" and msg.get("status") == "error":
            return VenueControl(ControlKind.ERROR, message=str(msg.get("errorMessage", "")), topic=str(msg.get("pair", "")))
        return VenueControl(ControlKind.PONG if event == "pong" else ControlKind.ACK if event == "subscriptionStatus" else ControlKind.OTHER)
    if not isinstance(msg, list) or len(msg) < 4 or type(msg[-2]) is not str:
        raise ProtocolError(f"message: expected [channelID, {{...}}, channel, pair], found {show(msg)}")
    found = _V1_BOOK_RE.fullmatch(msg[-2])
    if found is None:
        return VenueControl(ControlKind.OTHER, topic=msg[-2])
    depth, pair = int(found.group(1)), str(msg[-1])
    sides: dict[str, Any] = {}
    for part in msg[1:-2]:
        sides.update(expect_dict(part, "book data"))
    if "as" in sides or "bs" in sides:
        return [BookEvent(pair, _snapshot(pair, _v1_levels(sides.get("bs", []), "bs"), _v1_levels(sides.get("as", []), "as"), depth, 0))]
    text = sides.get("c", "")
    if type(text) is not str or not text.isdigit():
        raise ProtocolError(f"field 'c': expected a checksum string, found {show(text)}")
    bids, asks = _v1_levels(sides.get("b", []), "b"), _v1_levels(sides.get("a", []), "a")
    return [BookEvent(pair, DepthDiff(pair, NO_ID, NO_ID, NO_ID, NO_ID, NO_ID, bids, asks, int(text)))]


def v1_precision(raw: bytes | str) -> Precision:
    """The decimals v1 writes a pair's prices and volumes with (read off its snapshot's first ask or bid)."""
    msg = load(raw, "message")
    sides = {k: v for part in msg[1:-2] if isinstance(part, dict) for k, v in part.items()}
    level = (sides.get("as") or sides.get("bs") or [[]])[0]
    if len(level) < 2:
        raise ProtocolError(f"v1 snapshot: expected levels to read the decimals from, found {show(sides)}")
    return Precision(*(len(text.split(".", 1)[1]) if "." in text else 0 for text in level[:2]))


# ---------------------------------------------------------------------------------------------
# The stream feeder's view


class KrakenStream(StreamDefaults):
    """``ldc.venues.base.StreamVenue`` for Kraken v2 ``book`` at one depth: stream keys are pairs."""

    name = NAME
    ping_interval_s = PING_INTERVAL_S
    rule = SEQUENCE_RULE
    scope = SequenceScope.MARKET
    snapshot_source = SNAPSHOT_SOURCE
    # the server keeps the book whole to the subscribed depth (it sends the level entering the window when one
    # leaves; the client cuts what falls out): the levels within it are always known, never "uncovered"
    keeps_window_whole = True
    requests_per_hour = 0
    request_spacing_s = 0.05  # between two requests on one connection: well under the venue's rate limit
    connections_per_s = CONNECTIONS_PER_S

    def __init__(self, channel: str = DEFAULT_CHANNEL) -> None:
        if channel not in CHANNELS:
            raise ConfigError(f"channel {channel!r} not offered by Kraken, expected one of {list(CHANNELS)}")
        self.depth = CHANNELS[channel]

    def stream(self, channel: str, symbol: str) -> str:
        return symbol

    def _batches(self, method: str, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return [_request(method, channel, streams[i : i + MAX_SYMBOLS_PER_SUBSCRIBE], request_id)
                for i in range(0, len(streams), MAX_SYMBOLS_PER_SUBSCRIBE)]  # fmt: skip

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return self._batches("subscribe", channel, streams, request_id)

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return self._batches("unsubscribe", channel, streams, request_id)

    def ping_message(self, request_id: str) -> bytes:
        return orjson.dumps({"method": "ping", "req_id": int(request_id)})

    @property
    def fast_parse(self) -> Callable[[bytes | str], list[tuple[str, Any]] | None]:
        """The C dialect of :func:`parse_message` at this depth (``ldc._fastbook.parse_kraken``): a book message's
        ``[(symbol, ParsedDiff | DepthSnapshot)]``, value for value what :meth:`parse` gives (JSON numbers read
        exactly, the timestamp in microseconds the update id); None for what it leaves to :meth:`parse` (other
        channels, control); ValueError on any doubt."""
        from ldc._fastbook import parse_kraken  # here: the venue table imports without the C extension

        depth = self.depth
        return lambda raw: parse_kraken(raw, depth)

    @property
    def router_dialect(self) -> tuple[Callable[..., Any], int]:
        """``StreamRouter``'s arguments: the C dialect and the subscribed depth it reads snapshots against (the
        router calls ``parse_kraken(raw, depth)`` itself, with no Python call a message)."""
        from ldc._fastbook import parse_kraken

        return parse_kraken, self.depth

    def parse(self, raw: bytes | str) -> list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl:
        parsed = parse_message(raw, self.depth)
        return parsed if isinstance(parsed, VenueControl) else [(event.symbol, event.event) for event in parsed]

    def checksum_for(self, symbol: str, precision: Precision | None) -> Callable[[Book, int], bool] | None:
        if precision is None:
            raise ConfigError(f"Kraken pair {symbol}: no precision known (AssetPairs did not list it): its checksum cannot be verified")
        return book_checksum(precision)

    def hot_checksum(self, symbol: str, precision: Precision | None) -> HotChecksum | None:
        """:func:`book_checksum` in the C HotPath (``FastBook.kraken_crc32``, ``HOT_CRC_KRAKEN``): the top 10 with
        the pair's decimals; a book it cannot write (decimals beyond 22, a product beyond 2^62) comes back to
        :func:`book_checksum` (``BookSync.checksum_fault``)."""
        if precision is None:
            return None  # checksum_for refused the pair: its slot says why
        from ldc._fastbook import HOT_CRC_KRAKEN

        return CHECKSUM_LEVELS, precision.price_decimals, precision.size_decimals, HOT_CRC_KRAKEN

    def instrument_requests(self, symbols: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        return [(ASSET_PAIRS_PATH, {})]

    def instruments(self, body: bytes | str) -> dict[str, Precision]:
        return parse_asset_pairs(body)

    def stream_of(self, raw: bytes | str) -> str:
        """The pair of a book message the parser refused: without a sequence, nothing else would show that a
        change was lost (the checksum covers the top 10 only)."""
        try:
            data = load_exact(raw, "message")["data"][0]
            return str(data["symbol"]) if isinstance(data, dict) else ""
        except (ProtocolError, LookupError, TypeError):
            return ""
