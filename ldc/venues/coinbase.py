"""Coinbase Advanced Trade ``level2`` (received on channel ``l2_data``) with ``heartbeats``.

Sources (``shared/reference/exchanges.md`` §5): docs.cdp.coinbase.com "Advanced Trade WebSocket channels",
"WebSocket rate limits" and the AsyncAPI spec (level2, heartbeats); cryptofeed ``exchanges/coinbase.py``, ccxt
``ts/src/pro/coinbase.ts``.

A message as Coinbase sends it (the snapshot event is the whole book in one frame, 5 MB for BTC-USD)::

    {"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,
     "events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid",
       "event_time":"2026-08-09T21:05:48.210883Z","price_level":"65062.5","new_quantity":"0.00583"}]}]}

``new_quantity`` is absolute (``"0"`` deletes); sides are ``bid`` and ``offer``. ``sequence_num`` counts every
message of a connection, all channels together (heartbeats, subscriptions, other products): it is
``SequenceScope.CONNECTION``. A market has no sequence of its own (rule ``NONE``; its update id is the
connection's ``sequence_num``), and the feeder checks ``+1`` per connection: a gap resyncs every market on that
connection (it reconnects: new snapshots, the numbers start again at 0). ``streams_per_connection`` bounds how
many markets one gap costs. Keep-alive: the ``heartbeats`` channel (one a second; channels close after 60-90 s
without traffic otherwise), subscribed on every connection.

Prices and sizes are decimal strings of at most ~10 significant digits: float64 keeps them apart exactly.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson

from ldc.depth import NO_ID, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError, ProtocolError
from ldc.venues._parse import ControlKind, VenueControl, decimal, expect_dict, int_field, load, show, sorted_levels
from ldc.venues.base import SequenceRule, SequenceScope, SnapshotSource, StreamDefaults, VenueTable

__all__ = ["CHANNEL", "TABLES", "BookEvent", "CoinbaseStream", "parse_message", "subscribe_messages", "symbol_error"]

NAME = "coinbase"
# Endpoints
REST_BASE_URL = "https://api.coinbase.com"
WS_BASE_URL = "wss://advanced-trade-ws.coinbase.com"
WS_PATH = ""  # the socket is the host's root
CHANNEL = "level2"
DATA_CHANNEL = "l2_data"  # what level2 messages are received as
HEARTBEATS = "heartbeats"
SEQUENCE_RULE = SequenceRule.NONE  # per market: nothing; per connection: +1 (SCOPE)
SCOPE = SequenceScope.CONNECTION
SNAPSHOT_SOURCE = SnapshotSource.STREAM
# The snapshot is the whole book: no side is cut (a window no book reaches)
WHOLE_BOOK_LEVELS = 1 << 30
# Keep-alive: the heartbeats subscription keeps channels open; nothing to send
PING_INTERVAL_S = math.inf
# Limits
MESSAGES_PER_S = 8  # unauthenticated messages per second per IP
REQUEST_SPACING_S = 1.5 / MESSAGES_PER_S  # ours: one subscribe a product, well inside that rate
CONNECTIONS_PER_S = 8.0  # per IP
MAX_PRODUCTS_PER_CONNECTION = 100  # ours: a gap costs every market of a connection; lower it to bound that
SYMBOL_PATTERN = r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}"
SYMBOL_FORM = "'BTC-USD'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_PRODUCT_RE = re.compile(r"\b([A-Z0-9]{1,20}-[A-Z0-9]{1,20})\b")

TABLES: tuple[VenueTable, ...] = (
    VenueTable(
        name=NAME, family=NAME, module=__name__, rest_base_url=REST_BASE_URL, ws_base_url=WS_BASE_URL,
        ws_path=WS_PATH, symbol_pattern=SYMBOL_PATTERN, symbol_form=SYMBOL_FORM,
        channels=(CHANNEL,), channel_levels=(WHOLE_BOOK_LEVELS,), default_channel=CHANNEL,
        weight_limit_per_min=10 * 60,  # public REST: 10 requests/s per IP; ldc asks Coinbase for no snapshot
        max_streams_per_connection=MAX_PRODUCTS_PER_CONNECTION,
    ),
)  # fmt: skip


def symbol_error(symbol: str) -> str:
    """Why ``symbol`` is not a Coinbase product id ("" when it is one)."""
    if _SYMBOL_RE.fullmatch(symbol):
        return ""
    return f"expected a Coinbase product id like {SYMBOL_FORM}, found {symbol!r}"


def _request(kind: str, channel: str, products: Sequence[str]) -> list[bytes]:
    if channel != CHANNEL:
        raise ConfigError(f"channel {channel!r} not offered by Coinbase, expected {CHANNEL!r}")
    # one product a request: an unknown product refuses its own request only, and its error names it alone
    return [orjson.dumps({"type": kind, "product_ids": [product], "channel": CHANNEL}) for product in products]


def subscribe_messages(channel: str, products: Sequence[str]) -> list[bytes]:
    """``{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}`` a product, then ``heartbeats``."""
    return _request("subscribe", channel, products) + [orjson.dumps({"type": "subscribe", "channel": HEARTBEATS})]


def unsubscribe_messages(channel: str, products: Sequence[str]) -> list[bytes]:
    return _request("unsubscribe", channel, products)


@dataclass(frozen=True, slots=True)
class BookEvent:
    product: str
    event: DepthSnapshot | DepthDiff


def _time_ms(text: Any) -> int:
    """``2026-08-09T21:05:48.505350477Z`` -> ms since the epoch; NO_ID when absent or unreadable."""
    if type(text) is not str or len(text) < 20:
        return NO_ID
    try:
        seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return NO_ID
    fraction = text[20:23] if text[19] == "." else ""
    return seconds * 1000 + (int(fraction.ljust(3, "0")) if fraction.isdigit() else 0)


def _updates(value: Any, product: str) -> tuple[list[Level], list[Level]]:
    if not isinstance(value, list):
        raise ProtocolError(f"field 'updates' of {product}: expected a list, found {show(value)}")
    bids: list[Level] = []
    asks: list[Level] = []
    for index, update in enumerate(value):
        if not isinstance(update, dict):
            raise ProtocolError(f"field 'updates'[{index}] of {product}: expected an object, found {show(update)}")
        side = update.get("side")
        if side != "bid" and side != "offer":
            raise ProtocolError(f"field 'updates'[{index}].side of {product}: expected 'bid' or 'offer', found {show(side)}")
        level = (decimal(update.get("price_level"), "price_level", index), decimal(update.get("new_quantity"), "new_quantity", index))
        (bids if side == "bid" else asks).append(level)
    return bids, asks


def parse_message(raw: bytes | str) -> list[BookEvent] | VenueControl:
    """A message of an Advanced Trade connection. ProtocolError names the offending field."""
    msg = expect_dict(load(raw, "message"), "message")
    channel = msg.get("channel")
    if channel is None:
        if msg.get("type") == "error":
            text = str(msg.get("message", ""))
            found = _PRODUCT_RE.search(text)
            return VenueControl(ControlKind.ERROR, message=text, topic=found.group(1) if found else "")
        raise ProtocolError(f"field 'channel': expected a channel name, found nothing in {show(msg)}")
    sequence = int_field(msg, "sequence_num")
    if channel != DATA_CHANNEL:
        control = ControlKind.ACK if channel == "subscriptions" else ControlKind.OTHER
        return VenueControl(control, topic=str(channel), sequence=sequence)
    events = msg.get("events")
    if not isinstance(events, list) or not events:
        raise ProtocolError(f"field 'events': expected a non-empty list, found {show(events)}")
    event_time_ms = _time_ms(msg.get("timestamp"))
    out: list[BookEvent] = []
    for item in events:
        event = expect_dict(item, "events[]")
        product, kind = event.get("product_id"), event.get("type")
        if type(product) is not str or not product:
            raise ProtocolError(f"field 'product_id': expected a product id, found {show(product)}")
        bids, asks = _updates(event.get("updates"), product)
        if kind == "snapshot":
            bids.sort(reverse=True)
            asks.sort()
            book: DepthSnapshot | DepthDiff = DepthSnapshot(sequence, sorted_levels(bids, "updates (bid)", True),
                                                            sorted_levels(asks, "updates (offer)", False), WHOLE_BOOK_LEVELS, event_time_ms)  # fmt: skip
        elif kind == "update":
            book = DepthDiff(product, sequence, sequence, NO_ID, event_time_ms, NO_ID, bids, asks)
        else:
            raise ProtocolError(f"field 'type' of {product}: expected 'snapshot' or 'update', found {show(kind)}")
        out.append(BookEvent(product, book))
    return out


class CoinbaseStream(StreamDefaults):
    """``ldc.venues.base.StreamVenue`` for Coinbase Advanced Trade ``level2``: stream keys are product ids."""

    name = NAME
    ping_interval_s = PING_INTERVAL_S
    rule = SEQUENCE_RULE
    scope = SCOPE
    snapshot_source = SNAPSHOT_SOURCE
    requests_per_hour = 0
    connections_per_s = CONNECTIONS_PER_S
    request_spacing_s = REQUEST_SPACING_S

    def stream(self, channel: str, symbol: str) -> str:
        return symbol

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return subscribe_messages(channel, streams)

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return unsubscribe_messages(channel, streams)

    def ping_message(self, request_id: str) -> bytes:
        raise ConfigError("Coinbase is kept alive by its heartbeats channel: no ping")

    @property
    def fast_parse(self) -> Callable[[bytes | str], list[tuple[str, Any]] | None]:
        """The C dialect of :func:`parse_message` (``ldc._fastbook.parse_coinbase``): an ``l2_data`` message's
        ``[(product_id, ParsedDiff | DepthSnapshot)]`` (a snapshot event sorted and checked as the reference does),
        value for value what :meth:`parse` gives; None for everything it leaves to :meth:`parse` (control, other
        channels); ValueError on any doubt (then :meth:`parse`, which names any fault)."""
        from ldc._fastbook import parse_coinbase  # here: the venue table imports without the C extension

        return parse_coinbase

    def parse(self, raw: bytes | str) -> list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl:
        parsed = parse_message(raw)
        return parsed if isinstance(parsed, VenueControl) else [(event.product, event.event) for event in parsed]

