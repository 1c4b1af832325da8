"""HTX (Huobi) spot books: ``market.$symbol.mbp.$levels`` on ``/feed`` and ``market.$symbol.depth.step0`` on ``/ws``.

Sources (``shared/reference/exchanges.md`` §1): huobiapi.github.io/docs/spot/v1/en "Market By Price
(incremental update)", "Market Depth", the REQ/SUB alignment notice (900001078223); ccxt ``ts/src/pro/htx.ts``
and cryptofeed ``exchanges/huobi.py``.

Every server frame is binary, gzip-compressed JSON; prices and sizes are JSON numbers, some in scientific
notation (``9.121E-7``), read here as exact decimals (``parse_float=Decimal``, never a float first), the book
keeping ``float(Decimal)``, the correctly rounded double. The server pings ``{"ping": 1492420473027}`` about
every 5 s and closes after two unanswered: the answer is ``{"pong": 1492420473027}``.

``mbp`` (5, 20, 150 levels; REQ refreshes are served for these only, so 400 is not offered)::

    {"ch":"market.btcusdt.mbp.150","ts":1573199608679,
     "tick":{"seqNum":100020146795,"prevSeqNum":100020146794,"bids":[[9058.27,0]],"asks":[[645.14,26.75]]}}

A diff links to the one before by ``prevSeqNum == seqNum`` of the last (``seqNum`` is not +1): rule
``PREV_LINK`` with ``U = pu = prevSeqNum``, ``u = seqNum``. The book starts from a refresh requested on the
same connection (``{"req": topic, "id": ...}``, answered ``{"rep": topic, "data": {"seqNum": ..}}``; HTX
only aligns ``seqNum`` with the stream of the connection that asked): ``snapshot_source`` REST for BookSync,
which joins it to the buffered diffs (the first applied has ``prevSeqNum <= seqNum < its seqNum``). A gap
asks again. A side left out of a message (150 levels send ``{}`` for an unchanged side) changes nothing.

``depth.step0`` is a whole 150-level book per message (``tick.version`` its id): each one is a stream snapshot.

Request ids carry the topic (``sub:market.btcusdt.mbp.150``), so HTX's error answer, which echoes the id,
names the market: a refused subscription lands in that market's slot in HTX's words, a refused refresh is a
failed snapshot (BookSync retries it).
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson

from ldc.depth import NO_ID, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError, ProtocolError
from ldc.venues._parse import ControlKind, VenueControl, exact_number, expect_dict, int_field, load_exact, show, sorted_levels
from ldc.venues.base import SequenceRule, SequenceScope, SnapshotSource, StreamDefaults, VenueTable

__all__ = ["CHANNELS", "TABLES", "BookEvent", "HtxStream", "decompress", "parse_message", "symbol_error", "topic"]

NAME = "htx"
# Endpoints
REST_BASE_URL = "https://api.huobi.pro"
WS_BASE_URL = "wss://api.huobi.pro"
WS_PATH = "/ws"  # depth.step0 (and every other public channel)
MBP_PATH = "/feed"  # mbp and its req
# Channels: name -> levels a side the channel keeps
CHANNELS: dict[str, int] = {"mbp.5": 5, "mbp.20": 20, "mbp.150": 150, "depth.step0": 150}
DEFAULT_CHANNEL = "mbp.150"
WHOLE_BOOK_CHANNEL = "depth.step0"
SEQUENCE_RULE = SequenceRule.PREV_LINK
# Keep-alive: the server pings; the client answers and never needs to ping
PING_INTERVAL_S = math.inf
# Limits
REQ_SPACING_S = 0.1  # "the limitation of single connection is 100 ms" for req (the feeder's OUTBOX_SPACING_S)
SUB_SPACING_S = 0.02  # ours: none documented; short, as nothing is read (no ping answered) while subscribing
MAX_TOPICS_PER_CONNECTION = 100  # ours: HTX advises few topics a connection and documents no figure
CONNECTIONS_PER_S = 2.0  # ours: none documented
MAX_INFLATED_BYTES = 16 * 1024 * 1024  # a frame inflating beyond this is refused (a 150-level book is ~10 kB)
SYMBOL_PATTERN = r"[a-z0-9]{2,30}"
SYMBOL_FORM = "'btcusdt'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_TOPIC_RE = re.compile(r"market\.[a-z0-9]+\.(?:mbp\.\d+|depth\.step0)")
_GZIP_MAGIC = b"\x1f\x8b"

TABLES: tuple[VenueTable, ...] = (
    VenueTable(
        name=NAME, family=NAME, module=__name__, rest_base_url=REST_BASE_URL, ws_base_url=WS_BASE_URL,
        ws_path=WS_PATH, channel_paths=tuple((channel, MBP_PATH) for channel in CHANNELS if channel.startswith("mbp.")),
        symbol_pattern=SYMBOL_PATTERN, symbol_form=SYMBOL_FORM, symbols_lower_case=True,
        channels=tuple(CHANNELS), channel_levels=tuple(CHANNELS.values()), default_channel=DEFAULT_CHANNEL,
        weight_limit_per_min=60,  # REST: ldc asks HTX for nothing by REST (its refreshes come by websocket)
        max_streams_per_connection=MAX_TOPICS_PER_CONNECTION,
    ),
)  # fmt: skip


def symbol_error(symbol: str) -> str:
    """Why ``symbol`` is not an HTX symbol ("" when it is one)."""
    if _SYMBOL_RE.fullmatch(symbol):
        return ""
    return f"expected an HTX symbol like {SYMBOL_FORM}, found {symbol!r}"


def topic(channel: str, symbol: str) -> str:
    """``market.btcusdt.mbp.150`` for channel ``mbp.150``."""
    if channel not in CHANNELS:
        raise ConfigError(f"channel {channel!r} not offered by HTX, expected one of {list(CHANNELS)}")
    return f"market.{symbol}.{channel}"


def _inflate_module() -> Any:
    """ISA-L's zlib-compatible inflate (isal is a dependency: the recorder's compressor): the same bytes, the same
    gzip trailer checks, 1.8x faster than zlib on HTX's recorded frames (8.7 vs 15.5 us a 1.5 kB depth.step0
    frame; scripts/bench_venues.py's htx paths); zlib when it is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the portable fallback
        return zlib
    return isal_zlib


_INFLATE = _inflate_module()
_ONE_CALL_FRAME_BYTES = MAX_INFLATED_BYTES // 1032  # deflate's largest expansion: such a frame stays under the limit
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _INFLATE.error)


def decompress(raw: bytes | str) -> bytes:
    """A server frame's JSON: every frame is gzip; anything else (or a broken stream) is a ProtocolError."""
    if isinstance(raw, str) or not raw.startswith(_GZIP_MAGIC):
        raise ProtocolError(f"frame: expected gzip-compressed JSON, found {show(raw[:20])}")
    inflater = _INFLATE.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text: bytes = inflater.decompress(raw, MAX_INFLATED_BYTES)
    except _INFLATE_ERRORS as exc:
        raise ProtocolError(f"frame: expected gzip-compressed JSON, found a broken gzip stream ({exc})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ProtocolError(f"frame: expected a whole gzip stream of at most {MAX_INFLATED_BYTES} bytes inflated, found {'more' if inflater.unconsumed_tail else 'a truncated one'}")
    return text


@dataclass(frozen=True, slots=True)
class BookEvent:
    topic: str
    event: DepthSnapshot | DepthDiff


def _levels(tick: dict[str, Any], field: str) -> list[Level]:
    # 150 / 400-level diffs leave an unchanged side out, send it empty, or (HTX's documents) as a blank object
    value = tick.get(field, [])
    if value == {}:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"field {field!r}: expected a list of levels, found {show(value)}")
    out: list[Level] = []
    for index, level in enumerate(value):
        if not isinstance(level, list) or len(level) != 2:
            raise ProtocolError(f"field {field!r}[{index}]: expected [price, size] numbers, found {show(level)}")
        out.append((exact_number(level[0], field, index), exact_number(level[1], field, index)))
    return out


def _channel_of(name: Any, field: str) -> tuple[str, int]:
    """(the topic, its channel's levels) for a book topic; ProtocolError for another market topic."""
    if type(name) is not str or not _TOPIC_RE.fullmatch(name):
        raise ProtocolError(f"field {field!r}: expected 'market.SYMBOL.mbp.N' or 'market.SYMBOL.depth.step0', found {show(name)}")
    channel = name.split(".", 2)[2]
    if channel not in CHANNELS:
        raise ProtocolError(f"field {field!r}: channel {channel!r} not offered, expected one of {list(CHANNELS)}")
    return name, CHANNELS[channel]


def parse_message(raw: bytes | str) -> list[BookEvent] | VenueControl:
    """A frame of an HTX market connection. ProtocolError names what is wrong (a bad gzip frame included)."""
    msg = expect_dict(load_exact(decompress(raw), "message"), "message")
    if "ping" in msg:
        return VenueControl(ControlKind.PING, reply=orjson.dumps({"pong": msg["ping"]}))
    if "status" in msg and "rep" not in msg:
        return _control(msg)
    if "rep" in msg:
        name, levels = _channel_of(msg["rep"], "rep")
        if msg.get("status") != "ok":
            return _control(msg)
        data = expect_dict(msg.get("data"), "data")
        return [BookEvent(name, _snapshot(data, int_field(data, "seqNum"), levels, int_field(msg, "ts", optional=True)))]
    ch = msg.get("ch")
    if type(ch) is not str or not ch.startswith("market.") or not (".mbp." in ch or ch.endswith(".depth.step0")):
        return VenueControl(ControlKind.OTHER, topic=str(ch))
    name, levels = _channel_of(ch, "ch")
    tick = expect_dict(msg.get("tick"), "tick")
    ts = int_field(msg, "ts", optional=True)
    if name.endswith(WHOLE_BOOK_CHANNEL):
        return [BookEvent(name, _snapshot(tick, int_field(tick, "version"), levels, ts))]
    seq, prev = int_field(tick, "seqNum"), int_field(tick, "prevSeqNum")
    return [BookEvent(name, DepthDiff(name, prev, seq, prev, ts, NO_ID, _levels(tick, "bids"), _levels(tick, "asks")))]


def _snapshot(data: dict[str, Any], update_id: int, levels: int, ts: int) -> DepthSnapshot:
    bids, asks = _levels(data, "bids"), _levels(data, "asks")
    if len(bids) > levels or len(asks) > levels:
        raise ProtocolError(f"book: expected at most {levels} levels a side, found {len(bids)} bids, {len(asks)} asks")
    return DepthSnapshot(update_id, sorted_levels(bids, "bids", True), sorted_levels(asks, "asks", False), levels, ts)


def _control(msg: dict[str, Any]) -> VenueControl:
    request = str(msg.get("id", ""))
    kind, _, name = request.partition(":")
    if msg.get("status") == "ok":
        return VenueControl(ControlKind.ACK, topic=name)
    text = str(msg.get("err-msg", ""))
    if not name:  # an id that is not ours: the text may still name the topic
        found = _TOPIC_RE.search(text)
        name = found.group(0) if found else ""
    # a refused refresh is a failed snapshot (BookSync asks again); a refused subscription is the market's error
    failed = ControlKind.SNAPSHOT_FAILED if kind == "req" else ControlKind.ERROR
    return VenueControl(failed, message=text, code=str(msg.get("err-code", "")), topic=name)


class HtxStream(StreamDefaults):
    """``ldc.venues.base.StreamVenue`` for one HTX book channel: stream keys are topics."""

    name = NAME
    ping_interval_s = PING_INTERVAL_S
    rule = SEQUENCE_RULE
    scope = SequenceScope.MARKET
    requests_per_hour = 0
    request_spacing_s = SUB_SPACING_S
    connections_per_s = CONNECTIONS_PER_S

    def __init__(self, channel: str = DEFAULT_CHANNEL) -> None:
        if channel not in CHANNELS:
            raise ConfigError(f"channel {channel!r} not offered by HTX, expected one of {list(CHANNELS)}")
        self.channel = channel
        # depth.step0: every message a whole book; mbp: the refresh is asked for on the connection
        self.snapshot_source = SnapshotSource.STREAM if channel == WHOLE_BOOK_CHANNEL else SnapshotSource.REST

    def stream(self, channel: str, symbol: str) -> str:
        return topic(channel, symbol)

    @property
    def fast_parse(self) -> Callable[[bytes | str], list[tuple[str, Any]] | None] | None:
        """The C dialect of :func:`parse_message` (``ldc._fastbook.parse_htx`` on the frame gunzipped here): an
        mbp update's ``[(topic, ParsedDiff)]``, a depth.step0 book's ``[(topic, DepthSnapshot)]``, value for value
        what :meth:`parse` gives; None for what it leaves to :meth:`parse` (pings, acks, refused refreshes, a frame that
        is not whole gzip); ValueError on any doubt."""
        from ldc._fastbook import parse_htx  # here: the venue table imports without the C extension

        inflate, errors = _INFLATE.decompress, _INFLATE_ERRORS

        def fast_parse(raw: bytes | str) -> list[tuple[str, Any]] | None:
            # a frame short enough that it cannot inflate beyond the limit (deflate expands at most 1032:1) is
            # inflated in one call, 0.6 us less a ~250-byte mbp frame than decompress's stream object; the same
            # bytes (the first gzip member), the same refusals (tests/test_fastbook_dialects.py)
            if type(raw) is not bytes or len(raw) > _ONE_CALL_FRAME_BYTES or not raw.startswith(_GZIP_MAGIC):
                try:
                    text = decompress(raw)
                except ProtocolError:
                    return None  # the reference parser names the fault
                return parse_htx(text)
            try:
                return parse_htx(inflate(raw, 16 + zlib.MAX_WBITS))
            except errors:
                return None

        return fast_parse

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return [orjson.dumps({"sub": stream, "id": f"sub:{stream}"}) for stream in streams]

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        return [orjson.dumps({"unsub": stream, "id": f"unsub:{stream}"}) for stream in streams]

    def ping_message(self, request_id: str) -> bytes:
        raise ConfigError("HTX's server pings: the client only answers")

    def parse(self, raw: bytes | str) -> list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl:
        parsed = parse_message(raw)
        return parsed if isinstance(parsed, VenueControl) else [(event.topic, event.event) for event in parsed]

    def stream_of(self, raw: bytes | str) -> str:
        """The topic of a frame the parser refused (a depth.step0 book has no sequence to show the loss)."""
        try:
            msg = load_exact(decompress(raw), "message")
            return str(msg.get("ch") or msg.get("rep") or "") if isinstance(msg, dict) else ""
        except ProtocolError:
            return ""

    def ws_snapshot_request(self, stream: str) -> bytes | None:
        """``{"req":"market.btcusdt.mbp.150","id":"req:market.btcusdt.mbp.150"}``, on the market's connection
        (None for depth.step0: its books are whole in every message)."""
        if self.snapshot_source is not SnapshotSource.REST:
            return None
        return orjson.dumps({"req": stream, "id": f"req:{stream}"})
