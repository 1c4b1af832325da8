"""Binance: spot, USD-M and COIN-M futures, Binance.US and the testnets.

Everything Binance-specific lives here, as data where it can be: one frozen :class:`Exchange` per
exchange name (URLs, stream names per update speed, snapshot limits and their request weights,
connection limits), the control messages, and the reference parsers for ``depthUpdate`` events and
REST depth snapshots. No I/O: callers send what these functions build and feed back what they receive.

Sources (see ``shared/reference/binance-and-peers.md`` §1): binance-spot-api-docs
``web-socket-streams.md`` / ``rest-api.md`` / ``CHANGELOG.md`` @ a5e0bc3 (2026-07-21), the derivatives
pages for USD-M and COIN-M, the USD-M "Base URL Split & Migration" notice (2026-03-06).

A spot diff on a combined stream, as Binance documents and sends it::

    {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT",
     "U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],"a":[]}}

USD-M adds ``"T"`` (transaction time) and ``"pu"`` (the previous event's ``u``); COIN-M also ``"ps"``.

Prices become float64: two different decimal strings of up to 15 significant digits map to different
doubles, which holds for every Binance market today (prices carry at most 8 decimals and ~12 digits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import orjson

from ldc.depth import NO_ID, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError, ProtocolError
from ldc.venues.base import ControlAction, FrameKind, RestProtocol, SequenceRule, StreamProtocol, VenueTable

__all__ = [
    "EXCHANGES",
    "ControlKind",
    "ControlMessage",
    "Exchange",
    "MarketType",
    "SnapshotLimit",
    "exchange",
    "list_subscriptions_message",
    "parse_control",
    "parse_depth_update",
    "parse_message",
    "parse_snapshot",
    "snapshot_ladder",
    "snapshot_limit_for",
    "subscribe_message",
    "unsubscribe_message",
]

# Limits
# Ask for at least this many times the published depth: as the price moves, the levels a snapshot
# vouches for run out and the book needs a refresh. Replaying the captures at depth 20 with each
# refresh answered at once: USD-M BTCUSDT lost coverage 138 times in 6 min with limit 50 (2.1% of
# diffs unsynced, 46 weight/min), 50 times with limit 100 (0.8%, 42 weight/min); spot 72 times in
# 11 min with limit 100 (1.1%). Larger limits cost more on a cold start of many markets.
SNAPSHOT_DEPTH_MARGIN = 5
# Largest limit a market that keeps losing coverage escalates to (sync.SyncConfig.escalation_limits).
# Replaying the 6-minute captures at depth 20, limit 1000 left the top uncovered for 1 USD-M diff and
# no COIN-M diff; spot's next tier (5000) costs 250 weight, five times limit 1000.
SNAPSHOT_LADDER_CAP = 1000  # levels per side
MAX_REQUEST_ID = 2**63 - 1  # Binance accepts an int64 id


class MarketType(str, Enum):
    SPOT = "spot"
    USDM = "usdm"
    COINM = "coinm"


@dataclass(frozen=True, slots=True)
class SnapshotLimit:
    """One allowed ``limit`` of the REST depth request and the request weight it costs."""

    limit: int
    weight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One Binance exchange endpoint family. ``ws_route`` is the path prefix of the stream endpoints
    (``/public`` for USD-M depth since the 2026 URL split)."""

    name: str
    market_type: MarketType
    # Endpoints
    rest_base_url: str
    ws_base_url: str
    ws_route: str
    snapshot_path: str
    exchange_info_weight: int  # GET <api prefix>/exchangeInfo (all symbols): spot 20, futures 1
    # Streams: update speed in ms -> stream name suffix after "<symbol>"
    depth_streams: tuple[tuple[int, str], ...]
    default_update_speed_ms: int
    # Snapshots, smallest limit first
    snapshot_limits: tuple[SnapshotLimit, ...]
    default_snapshot_limit: int
    # Limits
    weight_limit_per_minute: int
    control_messages_per_s: int
    max_streams_per_connection: int
    connection_lifetime_s: int
    # Timeouts: the server pings every ping_interval_s and drops us without a pong within pong_timeout_s
    ping_interval_s: float
    pong_timeout_s: float

    @property
    def sequence_rule(self) -> SequenceRule:
        return SequenceRule.SPOT if self.market_type is MarketType.SPOT else SequenceRule.FUTURES

    @property
    def update_speeds_ms(self) -> tuple[int, ...]:
        return tuple(speed for speed, _ in self.depth_streams)

    def depth_stream(self, symbol: str, update_speed_ms: int | None = None) -> str:
        """The diff-depth stream name, e.g. ``btcusdt@depth@100ms``. Stream names are lowercase."""
        speed = self.default_update_speed_ms if update_speed_ms is None else update_speed_ms
        for allowed, suffix in self.depth_streams:
            if allowed == speed:
                return f"{symbol.lower()}{suffix}"
        raise ConfigError(f"update speed {speed} ms not offered by {self.name}, expected one of {list(self.update_speeds_ms)}")

    def stream_url(self, streams: Sequence[str]) -> str:
        """Combined-stream URL (messages wrapped as ``{"stream":..,"data":..}``)."""
        if not streams:
            raise ConfigError("streams is empty, expected at least 1 stream")
        if len(streams) > self.max_streams_per_connection:
            raise ConfigError(f"{len(streams)} streams on one connection, expected at most {self.max_streams_per_connection}")
        return f"{self.ws_base_url}{self.ws_route}/stream?streams={'/'.join(streams)}"

    def stream_urls(self, streams: Sequence[str]) -> list[str]:
        """Combined-stream URLs carrying ``streams``, at most ``max_streams_per_connection`` each."""
        size = self.max_streams_per_connection
        return [self.stream_url(streams[i : i + size]) for i in range(0, len(streams), size)]

    def raw_stream_url(self, stream: str) -> str:
        """Raw-stream URL for one stream (messages unwrapped)."""
        return f"{self.ws_base_url}{self.ws_route}/ws/{stream}"

    @property
    def exchange_info_path(self) -> str:
        """``/api/v3/exchangeInfo``, ``/fapi/v1/exchangeInfo``...: beside the snapshot path."""
        return self.snapshot_path.rsplit("/", 1)[0] + "/exchangeInfo"

    def snapshot_url(self, symbol: str, limit: int) -> str:
        self.snapshot_weight(limit)  # validates the limit
        return f"{self.rest_base_url}{self.snapshot_path}?symbol={symbol.upper()}&limit={limit}"

    # -- the REST-snapshot feeder's seam (ldc.venues.base.RestSnapshotVenue): this module's functions --

    @property
    def rest_protocol(self) -> RestProtocol:
        return REST_PROTOCOL

    @property
    def unknown_symbol_code(self) -> int:
        return INVALID_SYMBOL_CODE

    def snapshot_limit_for(self, depth: int) -> SnapshotLimit:
        return snapshot_limit_for(self, depth)

    def snapshot_ladder(self, depth: int) -> tuple[SnapshotLimit, ...]:
        return snapshot_ladder(self, depth)

    def stream_protocol(self) -> StreamProtocol:
        return stream_protocol(self)

    def parse_message(self, raw: bytes) -> DepthDiff | ControlMessage:
        return parse_message(raw)

    def control_error(self, raw: bytes) -> str | None:
        message = parse_message(raw)
        if isinstance(message, ControlMessage) and message.kind is ControlKind.ERROR:
            return f"exchange error {message.error_code} {message.error_message!r} for request {message.request_id!r}"
        return None

    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot:
        return parse_snapshot(body, limit)

    def listed_symbols(self, body: bytes) -> set[str]:
        return listed_symbols(body)

    def symbol_hint(self, raw: bytes) -> str | None:
        return symbol_hint(raw)

    def snapshot_weight(self, limit: int) -> int:
        """Request weight of a snapshot with ``limit`` levels; ConfigError for a limit not allowed."""
        if self.market_type is MarketType.SPOT:
            # spot accepts any limit 1..5000; the weight is that of the smallest tier holding it
            for tier in self.snapshot_limits:
                if 1 <= limit <= tier.limit:
                    return tier.weight
        else:
            for tier in self.snapshot_limits:
                if tier.limit == limit:
                    return tier.weight
        allowed = [tier.limit for tier in self.snapshot_limits]
        raise ConfigError(f"snapshot limit {limit} not allowed on {self.name}, expected one of {allowed}")


def snapshot_limit_for(exchange: Exchange, depth: int) -> SnapshotLimit:
    """The snapshot to ask for when publishing ``depth`` levels: the smallest allowed limit holding
    ``depth * SNAPSHOT_DEPTH_MARGIN`` levels, raised to the largest limit that costs the same weight
    (on spot ``limit=100`` costs what ``limit=5`` costs)."""
    if depth < 1:
        raise ConfigError(f"depth {depth} too small, expected at least 1")
    wanted = depth * SNAPSHOT_DEPTH_MARGIN
    tiers = exchange.snapshot_limits
    largest = tiers[-1].limit
    if depth > largest:
        raise ConfigError(f"depth {depth} exceeds the largest snapshot of {exchange.name}, expected at most {largest}")
    chosen = next((tier for tier in tiers if tier.limit >= wanted), tiers[-1])
    same_weight = [tier for tier in tiers if tier.weight == chosen.weight]
    return same_weight[-1]


def snapshot_ladder(exchange: Exchange, depth: int, *, cap: int = SNAPSHOT_LADDER_CAP) -> tuple[SnapshotLimit, ...]:
    """The limits a market climbs as it keeps losing coverage: ``snapshot_limit_for(depth)`` first
    (every cold start stays this cheap), then each larger allowed tier up to ``cap``."""
    first = snapshot_limit_for(exchange, depth)
    larger = tuple(tier for tier in exchange.snapshot_limits if first.limit < tier.limit <= cap)
    return (first, *larger)


# Spot weights since 2023-10-19 (rest-api.md): 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250.
_SPOT_LIMITS = (SnapshotLimit(100, 5), SnapshotLimit(500, 25), SnapshotLimit(1000, 50), SnapshotLimit(5000, 250))
# USD-M: limit in {5,10,20,50,100,500,1000}; 5-50 -> 2, 100 -> 5, 500 -> 10, 1000 -> 20.
# COIN-M uses the same table: not verified in dapi's own documents, see the reference notes §1c.
_FUTURES_LIMITS = (
    SnapshotLimit(5, 2), SnapshotLimit(10, 2), SnapshotLimit(20, 2), SnapshotLimit(50, 2),
    SnapshotLimit(100, 5), SnapshotLimit(500, 10), SnapshotLimit(1000, 20),
)  # fmt: skip
_SPOT_STREAMS = ((1000, "@depth"), (100, "@depth@100ms"))
# "@depth@0ms" (real time) is only in the derivatives change log of 2020-01-06; the captures use it.
_FUTURES_STREAMS = ((250, "@depth"), (500, "@depth@500ms"), (100, "@depth@100ms"), (0, "@depth@0ms"))

_SPOT_COMMON: dict[str, Any] = dict(
    market_type=MarketType.SPOT,
    ws_route="",
    snapshot_path="/api/v3/depth",
    exchange_info_weight=20,
    depth_streams=_SPOT_STREAMS,
    default_update_speed_ms=100,
    snapshot_limits=_SPOT_LIMITS,
    default_snapshot_limit=100,
    weight_limit_per_minute=6000,
    control_messages_per_s=5,
    max_streams_per_connection=1024,
    connection_lifetime_s=24 * 3600,
    ping_interval_s=20.0,  # since 2025-01-28
    pong_timeout_s=60.0,
)
_FUTURES_COMMON: dict[str, Any] = dict(
    exchange_info_weight=1,
    depth_streams=_FUTURES_STREAMS,
    default_update_speed_ms=100,
    snapshot_limits=_FUTURES_LIMITS,
    default_snapshot_limit=500,
    weight_limit_per_minute=2400,
    control_messages_per_s=10,
    max_streams_per_connection=1024,
    connection_lifetime_s=24 * 3600,
    ping_interval_s=180.0,
    pong_timeout_s=600.0,
)

EXCHANGES: Mapping[str, Exchange] = MappingProxyType({
    e.name: e
    for e in (
        Exchange(name="binance.com", rest_base_url="https://api.binance.com", ws_base_url="wss://stream.binance.com:9443", **_SPOT_COMMON),
        Exchange(
            name="binance.com-testnet",
            rest_base_url="https://testnet.binance.vision",
            ws_base_url="wss://stream.testnet.binance.vision",
            **_SPOT_COMMON,
        ),
        # Binance.US: URLs from cryptofeed and UBWA; its limits are not verified, binance.com's are
        # assumed (its snapshot weights can only be lower, so the governor stays on the safe side).
        Exchange(name="binance.us", rest_base_url="https://api.binance.us", ws_base_url="wss://stream.binance.us:9443", **_SPOT_COMMON),
        Exchange(
            name="binance.com-futures",
            market_type=MarketType.USDM,
            rest_base_url="https://fapi.binance.com",
            ws_base_url="wss://fstream.binance.com",
            ws_route="/public",  # depth moved to the /public route in the 2026 URL split
            snapshot_path="/fapi/v1/depth",
            **_FUTURES_COMMON,
        ),
        Exchange(
            name="binance.com-futures-testnet",
            market_type=MarketType.USDM,
            rest_base_url="https://testnet.binancefuture.com",
            ws_base_url="wss://fstream.binancefuture.com",
            ws_route="",  # the split notice names production hosts only
            snapshot_path="/fapi/v1/depth",
            **_FUTURES_COMMON,
        ),
        Exchange(
            name="binance.com-coin_futures",
            market_type=MarketType.COINM,
            rest_base_url="https://dapi.binance.com",
            ws_base_url="wss://dstream.binance.com",
            ws_route="",
            snapshot_path="/dapi/v1/depth",
            **_FUTURES_COMMON,
        ),
    )
})  # read-only: the table is the single source of every exchange's endpoints and limits


def exchange(name: str) -> Exchange:
    """The exchange called ``name`` (UNICORN's names), or ConfigError listing the known ones."""
    try:
        return EXCHANGES[name]
    except KeyError:
        raise ConfigError(f"unknown exchange {name!r}, expected one of {sorted(EXCHANGES)}") from None


# ---------------------------------------------------------------------------------------------
# Control messages (web-socket-streams.md "Live Subscribing/Unsubscribing to streams")


def _control(method: str, request_id: int, params: Sequence[str] | None) -> bytes:
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ConfigError(f"request id {request_id} out of range, expected 0..{MAX_REQUEST_ID}")
    message: dict[str, Any] = {"method": method}
    if params is not None:
        if not params:
            raise ConfigError(f"{method.lower()} with no streams, expected at least 1")
        message["params"] = list(params)
    message["id"] = request_id
    return orjson.dumps(message)


def subscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    """``{"method":"SUBSCRIBE","params":[...],"id":N}``; Binance answers ``{"result":null,"id":N}``."""
    return _control("SUBSCRIBE", request_id, streams)


def unsubscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    return _control("UNSUBSCRIBE", request_id, streams)


def list_subscriptions_message(request_id: int) -> bytes:
    """Binance answers ``{"result":["btcusdt@depth@100ms", ...],"id":N}``."""
    return _control("LIST_SUBSCRIPTIONS", request_id, None)


class ControlKind(IntEnum):
    RESULT = 1  # answer to SUBSCRIBE / UNSUBSCRIBE (result null) or LIST_SUBSCRIPTIONS (a list)
    ERROR = 2  # {"error":{"code":..,"msg":..},"id":..}
    SERVER_SHUTDOWN = 3  # the server will close this connection: reconnect elsewhere now


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A message of the stream that is not a depth event."""

    kind: ControlKind
    request_id: int | str | None = None
    result: tuple[str, ...] | None = None
    error_code: int | None = None
    error_message: str = ""
    event_time_ms: int = NO_ID


# ---------------------------------------------------------------------------------------------
# Parsing (reference parsers: clear errors first, speed second; the hot path parses in C)


def _load(raw: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not valid json: {exc}") from None


def _expect_dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"field {field!r}: expected an object, found {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_field(msg: dict[str, Any], field: str) -> int:
    value = msg.get(field)
    if type(value) is not int:
        found = "nothing" if field not in msg else _show(value)
        raise ProtocolError(f"field {field!r}: expected an integer, found {found}")
    return value


def _opt_int_field(msg: dict[str, Any], field: str) -> int:
    return _int_field(msg, field) if field in msg else NO_ID


def _levels(value: Any, field: str) -> list[Level]:
    if not isinstance(value, list):
        raise ProtocolError(f"field {field!r}: expected a list of [price, quantity], found {_show(value)}")
    out: list[Level] = []
    for index, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            raise ProtocolError(f"field {field!r}[{index}]: expected [price string, quantity string], found {_show(pair)}")
        out.append((_decimal(pair[0], field, index), _decimal(pair[1], field, index)))
    return out


def _decimal(text: str, field: str, index: int) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (number >= 0.0 and number != math.inf):  # catches nan, inf and negatives
        raise ProtocolError(f"field {field!r}[{index}]: expected a non-negative decimal string, found {text!r}")
    return number


def _unwrap(msg: Any) -> dict[str, Any]:
    """The payload of a combined-stream message (``{"stream":..,"data":..}``) or the message itself."""
    payload = _expect_dict(msg, "message")
    if "stream" in payload and "data" in payload:
        return _expect_dict(payload["data"], "data")
    return payload


def parse_depth_update(raw: bytes | str) -> DepthDiff:
    """Parse one ``depthUpdate`` (raw or combined stream) of any market type. Futures events carry
    ``pu``; spot events get ``prev_final_id=NO_ID``. ProtocolError names the offending field."""
    return _depth_update(_unwrap(_load(raw, "depth update")))


def _depth_update(data: dict[str, Any]) -> DepthDiff:
    event = data.get("e")
    if event != "depthUpdate":
        raise ProtocolError(f"field 'e': expected 'depthUpdate', found {_show(event) if 'e' in data else 'nothing'}")
    symbol = data.get("s")
    if type(symbol) is not str or not symbol:
        raise ProtocolError(f"field 's': expected a symbol string, found {_show(symbol)}")
    first_id = _int_field(data, "U")
    final_id = _int_field(data, "u")
    if final_id < first_id:
        raise ProtocolError(f"field 'u': expected at least U={first_id}, found {final_id}")
    return DepthDiff(
        symbol=symbol,
        first_id=first_id,
        final_id=final_id,
        prev_final_id=_opt_int_field(data, "pu"),
        event_time_ms=_int_field(data, "E"),
        transaction_time_ms=_opt_int_field(data, "T"),
        bids=_levels(data.get("b"), "b"),
        asks=_levels(data.get("a"), "a"),
    )


def parse_snapshot(body: bytes | str, limit: int) -> DepthSnapshot:
    """Parse a REST depth response (``/api/v3/depth``, ``/fapi/v1/depth``, ``/dapi/v1/depth``)
    requested with ``limit``. Bids must be strictly descending and asks strictly ascending.

    The C parser takes every body it can vouch for (the same values as the reference parser, float
    for float); the reference parser takes the rest and names the fault in its ProtocolError."""
    from ldc._fastbook import parse_snapshot_levels  # here: the venue table imports without the C extension

    try:
        last_update_id, event_time_ms, bids, asks = parse_snapshot_levels(body, limit)
    except (ValueError, TypeError):
        return _parse_snapshot_reference(body, limit)
    return DepthSnapshot(last_update_id=last_update_id, bids=bids, asks=asks, limit=limit, event_time_ms=event_time_ms)


def _parse_snapshot_reference(body: bytes | str, limit: int) -> DepthSnapshot:
    """parse_snapshot in Python: the specification of the C parser, and the one that explains a refusal."""
    if limit < 1:
        raise ProtocolError(f"snapshot limit {limit} too small, expected at least 1")
    msg = _expect_dict(_load(body, "snapshot"), "snapshot")
    if "code" in msg and "lastUpdateId" not in msg:
        raise ProtocolError(f"snapshot is an error response: code {msg.get('code')!r}, msg {_show(msg.get('msg'))}")
    bids = _levels(msg.get("bids"), "bids")
    asks = _levels(msg.get("asks"), "asks")
    for field, side, sign in (("bids", bids, -1.0), ("asks", asks, 1.0)):
        if len(side) > limit:
            raise ProtocolError(f"field {field!r}: expected at most {limit} levels, found {len(side)}")
        for index in range(1, len(side)):
            if (side[index][0] - side[index - 1][0]) * sign <= 0.0:
                order = "descending" if sign < 0 else "ascending"
                raise ProtocolError(f"field {field!r}[{index}]: expected prices strictly {order}, found {side[index - 1][0]!r} then {side[index][0]!r}")
    return DepthSnapshot(
        last_update_id=_int_field(msg, "lastUpdateId"),
        bids=bids,
        asks=asks,
        limit=limit,
        event_time_ms=_opt_int_field(msg, "E"),
    )


def parse_control(raw: bytes | str) -> ControlMessage:
    """Classify a non-depth message: a control-message result, an error, or ``serverShutdown``.
    Anything else raises ProtocolError (ldc subscribes to depth streams only)."""
    return _control_message(_expect_dict(_load(raw, "message"), "message"))


def _control_message(msg: dict[str, Any]) -> ControlMessage:
    if "result" in msg and "id" in msg:
        result = msg["result"]
        if result is not None and not (isinstance(result, list) and all(type(s) is str for s in result)):
            raise ProtocolError(f"field 'result': expected null or a list of stream names, found {_show(result)}")
        return ControlMessage(ControlKind.RESULT, request_id=msg["id"], result=None if result is None else tuple(result))
    if "error" in msg or ("code" in msg and "msg" in msg):
        # the document's table shows {"code":..,"msg":..,"id":..}; servers wrap it in "error"
        error = _expect_dict(msg["error"], "error") if "error" in msg else msg
        code = error.get("code")
        return ControlMessage(
            ControlKind.ERROR,
            request_id=msg.get("id"),
            error_code=code if type(code) is int else None,
            error_message=str(error.get("msg", "")),
        )
    data = msg["data"] if "stream" in msg and isinstance(msg.get("data"), dict) else msg
    if data.get("e") == "serverShutdown":
        return ControlMessage(ControlKind.SERVER_SHUTDOWN, event_time_ms=_opt_int_field(data, "E"))
    found = data.get("e", msg.get("stream", sorted(msg)))
    raise ProtocolError(f"message: expected a depthUpdate, a result, an error or serverShutdown, found {_show(found)}")


def parse_message(raw: bytes | str) -> DepthDiff | ControlMessage:
    """Parse any message of a depth connection: a :class:`DepthDiff` or a :class:`ControlMessage`."""
    msg = _expect_dict(_load(raw, "message"), "message")
    data = _unwrap(msg)
    if data.get("e") == "depthUpdate":
        return _depth_update(data)
    return _control_message(msg)


# ---------------------------------------------------------------------------------------------
# The seam's table (ldc.venues.VENUES): what configuration needs of each exchange name

SYMBOL_PATTERN = r"[A-Z0-9][A-Z0-9_]{1,31}"  # COIN-M symbols carry an underscore: BTCUSD_PERP

TABLES: tuple[VenueTable, ...] = tuple(
    VenueTable(
        name=e.name,
        family=e.market_type.value,
        module=__name__,
        rest_base_url=e.rest_base_url,
        ws_base_url=e.ws_base_url,
        ws_path=f"{e.ws_route}/stream",
        symbol_pattern=SYMBOL_PATTERN,
        symbol_form="'BTCUSDT'",
        update_speeds_ms=tuple(sorted(e.update_speeds_ms)),
        default_update_speed_ms=e.default_update_speed_ms,
        weight_limit_per_min=e.weight_limit_per_minute,
        max_streams_per_connection=e.max_streams_per_connection,
    )
    for e in EXCHANGES.values()
)


# ---------------------------------------------------------------------------------------------
# What the socket layer, the REST client and the feeder ask of Binance (they name no exchange themselves):
# the venue's StreamProtocol and RestProtocol instances, built from the table above

SHUTDOWN_MARKER = b"serverShutdown"  # in a small frame: the server will close this connection
DATA_PREFIX = b'{"stream"'  # a combined-stream data message (never a control answer)
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"  # the IP's request weight used in the current minute
INVALID_SYMBOL_CODE = -1121  # "Invalid symbol."
SMALL_FRAME_BYTES = 512  # control answers and serverShutdown are shorter; a diff frame this short is classified
URL_STREAMS_MAX = 100  # streams carried in the URL at connect; more go by SUBSCRIBE (keeps the URL short)
SUBSCRIBE_BATCH = 100  # streams per SUBSCRIBE / UNSUBSCRIBE message
_CONTROL_METHODS = {"subscribe": "SUBSCRIBE", "unsubscribe": "UNSUBSCRIBE", "list": "LIST_SUBSCRIPTIONS"}
_SHUTDOWN: tuple[FrameKind, str] = ("shutdown", "serverShutdown")
_ANSWER: tuple[FrameKind, str] = ("answer", "")


def combined_stream_url(endpoint: str, streams: Sequence[str]) -> str:
    """``wss://host/stream`` + streams -> ``wss://host/stream?streams=a/b`` (messages wrapped as
    ``{"stream":..,"data":..}``)."""
    return f"{endpoint}?streams={'/'.join(streams)}"


def control_request(method: str, streams: Sequence[str], request_id: int) -> bytes:
    """``{"method":"SUBSCRIBE","params":[...],"id":N}`` (SUBSCRIBE / UNSUBSCRIBE), as the socket layer sends it."""
    return orjson.dumps({"method": method, "params": list(streams), "id": request_id})


def stream_control_request(action: ControlAction, streams: Sequence[str], request_id: int) -> bytes:
    """``StreamProtocol.control_request``: subscribe / unsubscribe ``streams``, or list the subscriptions."""
    if action == "list":
        return orjson.dumps({"method": _CONTROL_METHODS[action], "id": request_id})
    return control_request(_CONTROL_METHODS[action], streams, request_id)


def classify_frame(raw: bytes) -> tuple[FrameKind, str] | None:
    """``StreamProtocol.classify`` of a small frame: serverShutdown (raw or wrapped in the combined stream), an
    answer to SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS (``{"result":..,"id":N}``, ``{"error":..,"id":N}``),
    or None: data, malformed payloads included (the consumer decides what to do with them)."""
    if SHUTDOWN_MARKER in raw:
        return _SHUTDOWN
    if raw.startswith(DATA_PREFIX) or b'"id"' not in raw:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "id" not in doc or not ("result" in doc or "error" in doc):
        return None
    if "error" in doc:
        return "refused", f"control message {doc.get('id')} refused: {doc['error']}"
    return _ANSWER


def stream_protocol(exchange: Exchange) -> StreamProtocol:
    """The combined-stream protocol of ``exchange`` for ``ldc.io.ws.WsPool``: our control messages stay one a
    second below the venue's limit (pongs count too), and every connection is cut at 24 h."""
    return StreamProtocol(
        stream_url=combined_stream_url,
        control_request=stream_control_request,
        classify=classify_frame,
        small_frame_bytes=SMALL_FRAME_BYTES,
        max_streams_per_connection=exchange.max_streams_per_connection,
        url_streams_max=URL_STREAMS_MAX,
        subscribe_batch=SUBSCRIBE_BATCH,
        control_msgs_per_s=max(1.0, exchange.control_messages_per_s - 1.0),
        connection_lifetime_s=float(exchange.connection_lifetime_s),
    )


def error_of(body: bytes) -> tuple[int | None, str]:
    """The ``{"code": -1121, "msg": "Invalid symbol."}`` of a REST error answer, or (None, "")."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    if isinstance(doc, dict) and type(doc.get("code")) is int:
        return doc["code"], str(doc.get("msg", ""))
    return None, ""


REST_PROTOCOL = RestProtocol(used_weight_header=USED_WEIGHT_HEADER, error_of=error_of)
STREAM_PROTOCOL = stream_protocol(EXCHANGES["binance.com"])  # spot's (the tests' and benchmarks' default)


def listed_symbols(body: bytes | str) -> set[str]:
    """The symbols of an exchangeInfo answer; ProtocolError when it has none."""
    msg = _expect_dict(_load(body, "exchangeInfo"), "exchangeInfo")
    entries = msg.get("symbols")
    if not isinstance(entries, list):
        raise ProtocolError(f"field 'symbols': expected a list, found {_show(entries)}")
    return {entry["symbol"] for entry in entries if isinstance(entry, dict) and type(entry.get("symbol")) is str}


def symbol_hint(raw: bytes) -> str | None:
    """The `"s":"SYMBOL"` of a frame too broken to parse, to charge the fault to its market."""
    start = raw.find(b'"s":"')
    if start < 0:
        return None
    end = raw.find(b'"', start + 5)
    return raw[start + 5 : end].decode("ascii", "replace") if end > 0 else None
