"""OKX v5 public order books: spot, swaps and futures on one websocket endpoint.

Sources (``shared/reference/exchanges.md`` §2): OKX v5 docs "Order book channel" (WebSocket public), the
changelog "Delist initial snapshot and checksum field" (2026-02-12), the checksum deprecation notice
(2026-05-21); ccxt ``ts/src/pro/okx.ts`` and cryptofeed ``exchanges/okx.py`` for the checksum loop.

A book message as OKX sends it (``books``: a snapshot after the subscribe, then updates)::

    {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update",
     "data":[{"asks":[["8476.98","0","0","0"]],"bids":[],"ts":"1597026383185",
              "checksum":-855196043,"prevSeqId":123456,"seqId":123457}]}

Levels are ``[price, size, "0" (deprecated), orders]``; a size of ``"0"`` deletes the level. ``data`` is a
list. The sequence rule is ``PREV_LINK_RESET`` (``prevSeqId`` == the book's ``seqId``; ``seqId <
prevSeqId`` is the documented maintenance reset; an empty update with ``prevSeqId == seqId`` is the
no-change keep-alive). Recordings from before 2023 carry no ``seqId``: those messages are applied in
order and proved by their checksum, which OKX sent on every message then (since 2026-06-23 production
sends 0: the rule alone proves the book, as documented). The checksum is a signed CRC32 of the top 25
bids and asks interleaved, ``price:size`` as OKX writes them (no trailing zeros): :func:`checksum` writes
the book's floats back with the market's tick and lot decimals from the instrument list.

Prices become float64: OKX prices carry at most ~9 significant digits and sizes at most 8 decimals (lot
sizes in the instrument list), well inside the 15 digits a double keeps apart.
"""

from __future__ import annotations

import re
import zlib
from decimal import Decimal
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import orjson

from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.venues._parse import ControlKind, VenueControl, expect_dict, int_field, levels, load, show, sorted_levels
from ldc.venues.base import Precision, SequenceRule, SequenceScope, SnapshotSource, StreamDefaults, VenueTable, window_limit

__all__ = [
    "CHANNELS",
    "CHECKSUM_LEVELS",
    "PING",
    "TABLES",
    "BookEvent",
    "book_checksum",
    "checksum",
    "parse_instruments",
    "parse_message",
    "subscribe_message",
    "symbol_error",
    "unsubscribe_message",
]

NAME = "okx"
# Endpoints
REST_BASE_URL = "https://www.okx.com"
WS_BASE_URL = "wss://ws.okx.com:8443"
WS_PATH = "/ws/v5/public"
INSTRUMENTS_PATH = "/api/v5/public/instruments"  # ?instType=SPOT|SWAP|FUTURES
REST_BOOKS_PATH = "/api/v5/market/books"  # ?instId=&sz=: the book with its seqId (the 2026 procedure)
REST_BOOKS_MAX_SZ = 400
# Channels: name -> levels a side the server keeps (it deletes what falls out: the window is exact)
CHANNELS: dict[str, int] = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50}
DEFAULT_CHANNEL = "books"  # the public one; the tbt channels need a login (VIP tiers)
SEQUENCE_RULE = SequenceRule.PREV_LINK_RESET
SNAPSHOT_SOURCE = SnapshotSource.STREAM
CHECKSUM_LEVELS = 25  # per side
# Keep-alive: the server cuts a connection with nothing received for 30 s; send the text "ping" sooner
IDLE_CUT_S = 30.0
PING_AFTER_IDLE_S = 20.0
PING = b"ping"
PONG = b"pong"
# Limits
SUBSCRIBE_OPS_PER_HOUR = 480  # subscribe / unsubscribe / login per connection (one request, many args: 1)
CONNECTIONS_PER_S = 3  # per IP
MAX_CHANNELS_PER_CONNECTION = 30  # advised for 50- and 400-level channels
MAX_ARGS_PER_SUBSCRIBE = 30
MAX_REQUEST_ID_CHARS = 32  # "id": up to 32 alphanumerics
# Symbols: BTC-USDT (spot), BTC-USDT-SWAP (perpetual), BTC-USD-250926 (delivery futures)
SYMBOL_PATTERN = r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}(-SWAP|-[0-9]{6})?"
SYMBOL_FORM = "'BTC-USDT', 'BTC-USDT-SWAP' or 'BTC-USD-250926'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_ERROR_INST_RE = re.compile(r"instId:?\s*\"?([A-Z0-9]+-[A-Z0-9-]+)")

TABLES: tuple[VenueTable, ...] = (
    VenueTable(
        name=NAME, family=NAME, module=__name__, rest_base_url=REST_BASE_URL, ws_base_url=WS_BASE_URL,
        ws_path=WS_PATH, symbol_pattern=SYMBOL_PATTERN, symbol_form=SYMBOL_FORM,
        channels=tuple(CHANNELS), channel_levels=tuple(CHANNELS.values()), default_channel=DEFAULT_CHANNEL,
        weight_limit_per_min=20 * 30,  # market/books: 20 requests per 2 s per IP
        max_streams_per_connection=MAX_CHANNELS_PER_CONNECTION,
    ),
)  # fmt: skip


def symbol_error(symbol: str) -> str:
    """Why ``symbol`` is not an OKX instrument id ("" when it is one)."""
    if _SYMBOL_RE.fullmatch(symbol):
        return ""
    return f"expected an OKX instrument id like {SYMBOL_FORM}, found {symbol!r}"


# ---------------------------------------------------------------------------------------------
# Requests


def _request(op: str, channel: str, inst_ids: Sequence[str], request_id: str) -> bytes:
    if channel not in CHANNELS:
        raise ConfigError(f"channel {channel!r} not offered by OKX, expected one of {list(CHANNELS)}")
    if not inst_ids or len(inst_ids) > MAX_ARGS_PER_SUBSCRIBE:
        raise ConfigError(f"{op} with {len(inst_ids)} instruments, expected 1..{MAX_ARGS_PER_SUBSCRIBE}")
    if not (request_id.isalnum() and len(request_id) <= MAX_REQUEST_ID_CHARS):
        raise ConfigError(f"request id {request_id!r}, expected 1-{MAX_REQUEST_ID_CHARS} letters or digits")
    args = [{"channel": channel, "instId": inst_id} for inst_id in inst_ids]
    return orjson.dumps({"id": request_id, "op": op, "args": args})


def subscribe_message(channel: str, inst_ids: Sequence[str], request_id: str) -> bytes:
    """``{"id":"1","op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}``; OKX answers each arg
    with ``{"id":"1","event":"subscribe","arg":{...},"connId":...}``, then the book's snapshot."""
    return _request("subscribe", channel, inst_ids, request_id)


def unsubscribe_message(channel: str, inst_ids: Sequence[str], request_id: str) -> bytes:
    return _request("unsubscribe", channel, inst_ids, request_id)


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class BookEvent:
    """One element of a book message's ``data``: a snapshot (resets the book) or an update."""

    symbol: str
    event: DepthSnapshot | DepthDiff


def parse_message(raw: bytes | str) -> list[BookEvent] | VenueControl:
    """A message of an OKX public connection: its book events (``data`` may hold several), or what else it is.
    ProtocolError names the offending field."""
    if raw == PONG or raw == "pong":
        return VenueControl(ControlKind.PONG)
    msg = expect_dict(load(raw, "message"), "message")
    if "event" in msg:
        return _control(msg)
    arg = expect_dict(msg.get("arg"), "arg")
    channel = arg.get("channel")
    if channel not in CHANNELS:
        return VenueControl(ControlKind.OTHER, topic=str(channel))
    depth = CHANNELS[channel]
    symbol = arg.get("instId")
    if type(symbol) is not str or not symbol:
        raise ProtocolError(f"field 'arg.instId': expected an instrument id, found {show(symbol)}")
    action = msg.get("action", "update")  # books5-like pushes have no action; ours always do
    if action not in ("snapshot", "update"):
        raise ProtocolError(f"field 'action': expected 'snapshot' or 'update', found {show(action)}")
    data = msg.get("data")
    if not isinstance(data, list) or not data:
        raise ProtocolError(f"field 'data': expected a non-empty list, found {show(data)}")
    return [BookEvent(symbol, _book_data(expect_dict(item, "data[]"), symbol, depth, action == "snapshot")) for item in data]


def _book_data(item: dict[str, Any], symbol: str, depth: int, snapshot: bool) -> DepthSnapshot | DepthDiff:
    bids = levels(item.get("bids"), "bids", 4)
    asks = levels(item.get("asks"), "asks", 4)
    seq_id = int_field(item, "seqId", optional=True)
    prev_seq_id = int_field(item, "prevSeqId", optional=True)
    checksum_value = item.get("checksum", 0)  # absent or 0: none to verify (production sends 0 since 2026-06-23)
    if type(checksum_value) is not int:
        raise ProtocolError(f"field 'checksum': expected an integer, found {show(checksum_value)}")
    ts = int_field(item, "ts", text=True)
    if snapshot:
        if len(bids) > depth or len(asks) > depth:
            raise ProtocolError(f"snapshot of {symbol}: expected at most {depth} levels a side, found {len(bids)} bids, {len(asks)} asks")
        return DepthSnapshot(seq_id, sorted_levels(bids, "bids", True), sorted_levels(asks, "asks", False),
                             window_limit(depth), ts, checksum_value)  # fmt: skip
    # U = prevSeqId: a REST snapshot joins where prevSeqId <= its seqId < seqId (the 2026 procedure)
    return DepthDiff(symbol, prev_seq_id, seq_id, prev_seq_id, ts, NO_ID, bids, asks, checksum_value)


def _control(msg: dict[str, Any]) -> VenueControl:
    event = msg.get("event")
    if event in ("subscribe", "unsubscribe"):
        arg = msg.get("arg")
        inst = arg.get("instId", "") if isinstance(arg, dict) else ""
        return VenueControl(ControlKind.ACK, topic=str(inst))
    if event == "error":
        text = str(msg.get("msg", ""))
        found = _ERROR_INST_RE.search(text)
        return VenueControl(ControlKind.ERROR, message=text, code=str(msg.get("code", "")), topic=found.group(1) if found else "")
    if event == "notice":  # e.g. code 64008: "the connection will soon be closed for a service upgrade"
        return VenueControl(ControlKind.SHUTDOWN, message=str(msg.get("msg", "")), code=str(msg.get("code", "")))
    return VenueControl(ControlKind.OTHER, message=str(event))


def parse_rest_books(body: bytes | str, limit: int) -> DepthSnapshot:
    """``GET /api/v5/market/books?instId=&sz=limit``: ``{"code":"0","msg":"","data":[{"asks":..,"bids":..,"ts":..,
    "seqId":..}]}``. Its levels are the channel's window (``limit`` is the channel's depth), so it is whole as a
    stream snapshot is; an error answer raises ProtocolError with OKX's code and message."""
    msg = expect_dict(load(body, "books"), "books")
    if msg.get("code") != "0":
        raise ProtocolError(f"OKX error {msg.get('code')}: {msg.get('msg')}")
    data = msg.get("data")
    if not isinstance(data, list) or len(data) != 1:
        raise ProtocolError(f"field 'data': expected one book, found {show(data)}")
    item = expect_dict(data[0], "data[0]")
    bids = sorted_levels(levels(item.get("bids"), "bids", 4), "bids", True)
    asks = sorted_levels(levels(item.get("asks"), "asks", 4), "asks", False)
    return DepthSnapshot(int_field(item, "seqId"), bids, asks, window_limit(limit), int_field(item, "ts", text=True))


# ---------------------------------------------------------------------------------------------
# Instruments and the checksum


def parse_instruments(body: bytes | str) -> dict[str, Precision]:
    """instId -> the decimals of its tick size and lot size, from ``GET /api/v5/public/instruments``."""
    msg = expect_dict(load(body, "instruments"), "instruments")
    if msg.get("code") != "0":
        raise ProtocolError(f"instruments answer is an error: code {show(msg.get('code'))}, msg {show(msg.get('msg'))}")
    out: dict[str, Precision] = {}
    for entry in msg.get("data") or ():
        if isinstance(entry, dict) and isinstance(entry.get("instId"), str):
            out[entry["instId"]] = Precision(_decimals(entry.get("tickSz")), _decimals(entry.get("lotSz")))
    return out


def _decimals(step: Any) -> int:
    if type(step) is not str or not step:
        raise ProtocolError(f"instrument step: expected a decimal string, found {show(step)}")
    return len(step.split(".", 1)[1].rstrip("0")) if "." in step else 0


def _texts(values: Sequence[float], decimals: int) -> list[str]:
    """Numbers as OKX writes them: fixed to the market's decimals, trailing zeros (and point) dropped; with no
    decimals known (-1), the shortest decimal that reads back as the value, without an exponent."""
    if decimals < 0:
        texts = [format(Decimal(repr(value)), "f") for value in values]
        return [text.rstrip("0").rstrip(".") if "." in text else text for text in texts]
    form = f"%.{decimals}f"
    if not decimals:
        return [form % value for value in values]
    return [(form % value).rstrip("0").rstrip(".") for value in values]


def _crc_of(bid_px: list[str], bid_sz: list[str], ask_px: list[str], ask_sz: list[str]) -> int:
    parts: list[str] = []
    n_bids, n_asks = len(bid_px), len(ask_px)
    for index in range(max(n_bids, n_asks)):
        if index < n_bids:
            parts += (bid_px[index], bid_sz[index])
        if index < n_asks:
            parts += (ask_px[index], ask_sz[index])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def checksum(bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]], precision: Precision) -> int:
    """OKX's signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top 25 of each side (a shorter
    side simply ends). The documented worked example: bids [3366.1,7],[3366,6] and asks [3366.8,9],[3368,8]
    give -1881014294."""
    bids, asks = bids[:CHECKSUM_LEVELS], asks[:CHECKSUM_LEVELS]
    p, s = precision.price_decimals, precision.size_decimals
    return _crc_of(_texts([b[0] for b in bids], p), _texts([b[1] for b in bids], s),
                   _texts([a[0] for a in asks], p), _texts([a[1] for a in asks], s))  # fmt: skip


def book_checksum(precision: Precision) -> Callable[[Book, int], bool]:
    """``SyncConfig.checksum`` for one OKX market: whether the checksum of a book's top 25, its numbers written
    with the market's tick and lot decimals, is ``expected``. When it is not, the numbers are written once more
    in their shortest round-trip form (OKX's own for every value of up to 15 significant digits): a tick size in
    the instrument list finer or coarser than the prices streamed must not make every message a mismatch."""
    bids_out, asks_out = np.zeros((CHECKSUM_LEVELS, 2)), np.zeros((CHECKSUM_LEVELS, 2))
    p, s = precision.price_decimals, precision.size_decimals

    def holds(book: Book, expected: int) -> bool:
        fast = getattr(book, "top_crc32", None)  # FastBook writes the same texts in C
        if fast is not None:
            first = fast(CHECKSUM_LEVELS, p, s)
            if first == expected:
                return True
            again = None if first is None or precision == SHORTEST else fast(CHECKSUM_LEVELS, -1, -1)
            if first is not None and (precision == SHORTEST or again is not None):
                return bool(again == expected)
            # None: a number C hands back (an exponent in its shortest form): written here
        n_bids, n_asks = book.top(CHECKSUM_LEVELS, bids_out, asks_out)
        bids, asks = bids_out[:n_bids].T.tolist(), asks_out[:n_asks].T.tolist()
        if _crc_of(_texts(bids[0], p), _texts(bids[1], s), _texts(asks[0], p), _texts(asks[1], s)) == expected:
            return True
        shortest = SHORTEST.price_decimals
        return precision != SHORTEST and expected == _crc_of(
            _texts(bids[0], shortest), _texts(bids[1], shortest), _texts(asks[0], shortest), _texts(asks[1], shortest))

    return holds


class OkxStream(StreamDefaults):
    """The stream feeder's view of OKX (``ldc.venues.base.StreamVenue``): stream keys are instIds."""

    name = NAME
    ping_interval_s = PING_AFTER_IDLE_S
    rule = SEQUENCE_RULE
    scope = SequenceScope.MARKET
    requests_per_hour = SUBSCRIBE_OPS_PER_HOUR
    request_spacing_s = 0.05  # between two requests on one connection: well under the venue's rate limit
    connections_per_s = float(CONNECTIONS_PER_S)
    snapshot_source = SnapshotSource.STREAM_OR_REST

    def snapshot_request(self, symbol: str, limit: int) -> tuple[str, dict[str, str | int]] | None:
        return REST_BOOKS_PATH, {"instId": symbol, "sz": min(limit, REST_BOOKS_MAX_SZ)}

    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot:
        return parse_rest_books(body, limit)

    def stream(self, channel: str, symbol: str) -> str:
        return symbol

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return [subscribe_message(channel, streams[i : i + MAX_ARGS_PER_SUBSCRIBE], request_id)
                for i in range(0, len(streams), MAX_ARGS_PER_SUBSCRIBE)]  # fmt: skip

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return [unsubscribe_message(channel, streams[i : i + MAX_ARGS_PER_SUBSCRIBE], request_id)
                for i in range(0, len(streams), MAX_ARGS_PER_SUBSCRIBE)]  # fmt: skip

    def ping_message(self, request_id: str) -> bytes:
        return PING

    def parse(self, raw: bytes | str) -> list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl:
        parsed = parse_message(raw)
        return parsed if isinstance(parsed, VenueControl) else [(event.symbol, event.event) for event in parsed]

    @property
    def fast_parse(self) -> Callable[[bytes | str], list[tuple[str, Any]] | None]:
        """The C dialect of :func:`parse_message` (``ldc._fastbook.parse_okx``): a book update's
        ``[(instId, ParsedDiff)]``, value for value what :meth:`parse` gives; None for everything it leaves to
        :meth:`parse` (control, snapshots, other channels); ValueError on any doubt (then :meth:`parse` reads it)."""
        from ldc._fastbook import parse_okx  # here: the venue table imports without the C extension

        return parse_okx

    def checksum_for(self, symbol: str, precision: Precision | None) -> Callable[[Book, int], bool] | None:
        return book_checksum(precision if precision is not None else SHORTEST)

    def hot_checksum(self, symbol: str, precision: Precision | None) -> tuple[int, int, int] | None:
        """:func:`book_checksum`'s first two tries, in C (``FastBook.top_crc32``): the top 25 written with the
        market's decimals, then in the shortest form; a number only Python writes comes back to it."""
        p = precision if precision is not None else SHORTEST
        return CHECKSUM_LEVELS, p.price_decimals, p.size_decimals

    def instrument_requests(self, symbols: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        return [(INSTRUMENTS_PATH, {"instType": kind}) for kind in sorted({instrument_type(s) for s in symbols})]

    def instruments(self, body: bytes | str) -> dict[str, Precision]:
        return parse_instruments(body)


# No instrument list: each number in its shortest round-trip form, which is OKX's own form for every price and
# size of up to 15 significant digits (OKX sends no trailing zeros)
SHORTEST = Precision(-1, -1)


def instrument_type(symbol: str) -> str:
    """``SPOT``, ``SWAP`` or ``FUTURES``: the ``instType`` of the instrument list holding ``symbol``."""
    last = symbol.rsplit("-", 1)[-1]
    if last == "SWAP":
        return "SWAP"
    return "FUTURES" if last.isdigit() and symbol.count("-") == 2 else "SPOT"
