"""Bybit v5 public order books: spot, linear and inverse, one websocket URL per category.

Sources (``shared/reference/exchanges.md`` §3): bybit-exchange/docs ``docs/v5/websocket/public/orderbook.mdx``,
``docs/v5/ws/connect`` and ``docs/v5/market/orderbook.mdx`` @ 072c197 (2026-07-24); cryptofeed
``exchanges/bybit.py``.

A delta as Bybit sends it (a ``snapshot`` comes first after the subscribe, and again at will)::

    {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1687940967466,
     "data":{"s":"BTCUSDT","b":[["30247.20","30.028"],["30240.00","0"]],"a":[["30248.70","0"]],
             "u":177400507,"seq":66544703342},"cts":1687940967464}

Levels are ``[price, size]``; a size of ``"0"`` deletes. Every snapshot resets the book, and ``u == 1`` is
snapshot data after a service restart. The sequence rule is ``PLUS_ONE`` on ``u`` (``U = u`` for the core);
a gap resubscribes that market only (the new subscription brings a snapshot). Keep-alive: ``{"op":"ping"}``
every 20 s. A market is a (category, symbol) pair: the same topic exists on the spot and the linear URL.

Prices become float64: Bybit sends fixed tick decimals (``"16493.50"``) or trimmed ones on spot (``"65140"``),
at most ~10 significant digits, well inside the 15 digits a double keeps apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson

from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.venues._parse import ControlKind, VenueControl, expect_dict, int_field, levels, load, show, sorted_levels
from ldc.venues.base import Precision, SequenceRule, SequenceScope, SnapshotSource, StreamDefaults, VenueTable, window_limit

__all__ = [
    "CATEGORIES",
    "DEPTHS",
    "PING_INTERVAL_S",
    "TABLES",
    "BookEvent",
    "parse_message",
    "ping_message",
    "subscribe_message",
    "symbol_error",
    "topic",
    "unsubscribe_message",
]

# Endpoints
REST_BASE_URL = "https://api.bybit.com"
WS_BASE_URL = "wss://stream.bybit.com"
CATEGORIES = ("spot", "linear", "inverse")  # exchange "bybit-<category>", URL /v5/public/<category>
# Channels: orderbook.{depth}; the stream keeps exactly that many levels a side
DEPTHS = (1, 50, 200, 1000)
DEFAULT_DEPTH = 200
SEQUENCE_RULE = SequenceRule.PLUS_ONE
SNAPSHOT_SOURCE = SnapshotSource.STREAM
RESET_UPDATE_ID = 1  # "u == 1 is snapshot data due to a restart of the service: overwrite your book"
# Keep-alive: no ping and no data for 10 min cuts the connection; the documents advise a ping every 20 s
PING_INTERVAL_S = 20.0
# Limits
MAX_ARGS_PER_SUBSCRIBE = {"spot": 10, "linear": 100, "inverse": 100}  # spot: 10 documented
MAX_ARGS_CHARS_PER_CONNECTION = 21_000  # the args of one public connection, in total
NEW_CONNECTIONS_PER_5_MIN = 500  # per IP, per websocket domain
MAX_TOPICS_PER_CONNECTION = 500  # ours: ~28 characters a topic keeps the args well under 21,000
SYMBOL_PATTERN = r"[A-Z0-9]{2,30}"
SYMBOL_FORM = "'BTCUSDT'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_ERROR_TOPIC_RE = re.compile(r"(orderbook\.\d+\.[A-Za-z0-9]+)")

TABLES: tuple[VenueTable, ...] = tuple(
    VenueTable(
        name=f"bybit-{category}", family=f"bybit-{category}", module=__name__, rest_base_url=REST_BASE_URL,
        ws_base_url=WS_BASE_URL, ws_path=f"/v5/public/{category}", symbol_pattern=SYMBOL_PATTERN,
        symbol_form=SYMBOL_FORM, channels=tuple(f"orderbook.{depth}" for depth in DEPTHS), channel_levels=DEPTHS,
        default_channel=f"orderbook.{DEFAULT_DEPTH}",
        weight_limit_per_min=600,  # REST: 600 requests per 5 s per IP; ldc asks Bybit for no snapshot
        max_streams_per_connection=MAX_TOPICS_PER_CONNECTION,
    )
    for category in CATEGORIES
)  # fmt: skip


def symbol_error(symbol: str) -> str:
    """Why ``symbol`` is not a Bybit symbol ("" when it is one)."""
    if _SYMBOL_RE.fullmatch(symbol):
        return ""
    return f"expected a Bybit symbol like {SYMBOL_FORM}, found {symbol!r}"


def topic(channel: str, symbol: str) -> str:
    """``orderbook.200.BTCUSDT`` for channel ``orderbook.200``."""
    if channel not in {f"orderbook.{depth}" for depth in DEPTHS}:
        raise ConfigError(f"channel {channel!r} not offered by Bybit, expected one of {[f'orderbook.{d}' for d in DEPTHS]}")
    return f"{channel}.{symbol}"


def _request(op: str, category: str, topics: Sequence[str], request_id: str) -> bytes:
    most = MAX_ARGS_PER_SUBSCRIBE[category]
    if not topics or len(topics) > most:
        raise ConfigError(f"{op} with {len(topics)} topics on {category}, expected 1..{most}")
    return orjson.dumps({"req_id": request_id, "op": op, "args": list(topics)})


def subscribe_message(category: str, topics: Sequence[str], request_id: str) -> bytes:
    """``{"req_id":"1","op":"subscribe","args":["orderbook.200.BTCUSDT"]}``; at most 10 topics on spot."""
    return _request("subscribe", category, topics, request_id)


def unsubscribe_message(category: str, topics: Sequence[str], request_id: str) -> bytes:
    return _request("unsubscribe", category, topics, request_id)


def ping_message(request_id: str) -> bytes:
    return orjson.dumps({"req_id": request_id, "op": "ping"})


@dataclass(frozen=True, slots=True)
class BookEvent:
    """A book message: a snapshot (resets the book) or a delta; ``topic`` names the market's stream."""

    topic: str
    symbol: str
    event: DepthSnapshot | DepthDiff


def parse_message(raw: bytes | str) -> BookEvent | VenueControl:
    """A message of a Bybit public connection. ProtocolError names the offending field."""
    msg = expect_dict(load(raw, "message"), "message")
    name = msg.get("topic")
    if name is None:
        return _control(msg)
    if type(name) is not str or not name.startswith("orderbook."):
        return VenueControl(ControlKind.OTHER, topic=str(name))
    parts = name.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"field 'topic': expected 'orderbook.DEPTH.SYMBOL', found {show(name)}")
    depth = int(parts[1])
    kind = msg.get("type")
    if kind not in ("snapshot", "delta"):
        raise ProtocolError(f"field 'type': expected 'snapshot' or 'delta', found {show(kind)}")
    data = expect_dict(msg.get("data"), "data")
    symbol = data.get("s")
    if type(symbol) is not str or symbol != parts[2]:
        raise ProtocolError(f"field 's': expected {parts[2]!r} (the topic's symbol), found {show(symbol)}")
    update_id = int_field(data, "u")
    event_time_ms = int_field(msg, "ts")
    bids, asks = levels(data.get("b"), "b", 2), levels(data.get("a"), "a", 2)
    if kind == "snapshot" or update_id == RESET_UPDATE_ID:
        if len(bids) > depth or len(asks) > depth:
            raise ProtocolError(f"snapshot of {name}: expected at most {depth} levels a side, found {len(bids)} bids, {len(asks)} asks")
        event: DepthSnapshot | DepthDiff = DepthSnapshot(
            update_id, sorted_levels(bids, "b", True), sorted_levels(asks, "a", False), window_limit(depth), event_time_ms
        )
    else:
        event = DepthDiff(symbol, update_id, update_id, NO_ID, event_time_ms, int_field(msg, "cts", optional=True), bids, asks)
    return BookEvent(name, symbol, event)


def _control(msg: dict[str, Any]) -> VenueControl:
    op = msg.get("op")
    if op == "pong" or (op == "ping" and msg.get("ret_msg") == "pong"):
        return VenueControl(ControlKind.PONG)
    if op in ("subscribe", "unsubscribe"):
        if msg.get("success") is True:
            return VenueControl(ControlKind.ACK)
        text = str(msg.get("ret_msg", ""))
        found = _ERROR_TOPIC_RE.search(text)
        return VenueControl(ControlKind.ERROR, message=text, topic=found.group(1) if found else "")
    return VenueControl(ControlKind.OTHER, message=str(op))


class BybitStream(StreamDefaults):
    """The stream feeder's view of one Bybit category (``ldc.venues.base.StreamVenue``): stream keys are topics."""

    ping_interval_s = PING_INTERVAL_S
    rule = SEQUENCE_RULE
    scope = SequenceScope.MARKET
    requests_per_hour = 0  # none documented for public subscriptions
    request_spacing_s = 0.05  # between two requests on one connection: well under the venue's rate limit
    connections_per_s = NEW_CONNECTIONS_PER_5_MIN / 300.0
    snapshot_source = SnapshotSource.STREAM

    def snapshot_request(self, symbol: str, limit: int) -> tuple[str, dict[str, str | int]] | None:
        return None  # the REST book's u is the 1000-level topic's: it joins no other depth

    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot:
        raise ProtocolError("Bybit books start from the stream's snapshot only")

    def __init__(self, category: str) -> None:
        if category not in CATEGORIES:
            raise ConfigError(f"Bybit category {category!r}, expected one of {list(CATEGORIES)}")
        self.category = category
        self.name = f"bybit-{category}"

    def stream(self, channel: str, symbol: str) -> str:
        return topic(channel, symbol)

    def _batches(self, op: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        size = MAX_ARGS_PER_SUBSCRIBE[self.category]
        return [_request(op, self.category, streams[i : i + size], request_id) for i in range(0, len(streams), size)]

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return self._batches("subscribe", streams, request_id)

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return self._batches("unsubscribe", streams, request_id)

    def ping_message(self, request_id: str) -> bytes:
        return ping_message(request_id)

    def parse(self, raw: bytes | str) -> list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl:
        parsed = parse_message(raw)
        return parsed if isinstance(parsed, VenueControl) else [(parsed.topic, parsed.event)]

    @property
    def fast_parse(self) -> Callable[[bytes | str], list[tuple[str, Any]] | None]:
        """The C dialect of :func:`parse_message` (``ldc._fastbook.parse_bybit``): a delta's ``[(topic,
        ParsedDiff)]``, value for value what :meth:`parse` gives; None for everything it leaves to :meth:`parse`
        (control, snapshots, the ``u == 1`` reset, other topics); ValueError on any doubt (then :meth:`parse`)."""
        from ldc._fastbook import parse_bybit  # here: the venue table imports without the C extension

        return parse_bybit

    def checksum_for(self, symbol: str, precision: Precision | None) -> Callable[[Book, int], bool] | None:
        return None  # Bybit sends no book checksum
