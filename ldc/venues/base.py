"""The venue seam: what every exchange module declares, and the sequence rules in one place.

Pure data and pure functions: no I/O, no clock, no C extension (``config`` and the simulator import the
venue tables without it). ``ldc.sync.BookSync`` takes a venue's :class:`SequenceRule`,
:class:`SnapshotSource` and optional :class:`Checksum` as policies; the feeder asks the venue for URLs,
stream names, control messages and limits. Nothing outside ``ldc/venues/`` names an exchange.

Sequence rules (one function, :func:`verdict`, decides a diff against a book id; ``BookSync``'s fast paths
and the C ``HotPath`` repeat its APPLY case inline and are differential-tested against it):

========================  =========================================================  ====================
rule                      a diff continues the book at id ``b`` when                 venues
========================  =========================================================  ====================
``RANGE`` (``SPOT``)      ``U <= b + 1 < u + 1`` (``U == b+1`` once synced)          Binance spot
``PREV_LINK`` (FUTURES)   ``pu == b`` (and ``u > b``)                                Binance USD-M/COIN-M
``PREV_LINK_RESET``       ``prevSeqId == b``; also ``seqId < prevSeqId == b``        OKX ``seqId``
                          (the documented maintenance reset); a message without
                          ``seqId`` (before 2023) is applied, its checksum the proof
``PLUS_ONE``              ``u == b + 1`` (the parser sets ``U = u``)                 Bybit ``u``
``NONE``                  always (no sequence: the venue's checksum is the proof,    Kraken; Coinbase
                          or the sequence is the connection's, checked by the        (``sequence_num``,
                          feeder: :class:`SequenceScope`)                            per connection)
========================  =========================================================  ====================

A diff ending at or before the book (``u <= b``) is old on every rule (ignored and counted, never a gap),
except the PREV_LINK_RESET reset, which is the one way an id may go down.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Protocol, Sequence

from ldc.depth import NO_ID, Book, DepthDiff, DepthSnapshot
from ldc.errors import ProtocolError

if TYPE_CHECKING:
    from ldc.venues._parse import VenueControl

__all__ = [
    "Checksum",
    "JoinWait",
    "Precision",
    "RestProtocol",
    "SequenceRule",
    "SequenceScope",
    "SnapshotSource",
    "StreamEvent",
    "StreamDefaults",
    "StreamProtocol",
    "StreamVenue",
    "VenueTable",
    "Verdict",
    "hot_path_links_prev",
    "hot_path_unsequenced",
    "join_index",
    "verdict",
]


class SequenceRule(enum.IntEnum):
    """How consecutive diffs chain (see the module's table). SPOT and FUTURES are Binance's names."""

    RANGE = 1
    PREV_LINK = 2
    PREV_LINK_RESET = 3
    PLUS_ONE = 4
    NONE = 5  # no per-market sequence: Kraken (checksum only), Coinbase (its sequence is per connection)
    SPOT = 1  # alias of RANGE
    FUTURES = 2  # alias of PREV_LINK


class SnapshotSource(enum.Enum):
    """Where a market's book starts: a REST request (``FetchSnapshot``), or the stream itself (the venue
    sends a snapshot after subscribing, and again at will: each one resets the book; a gap resubscribes)."""

    REST = "rest"
    STREAM = "stream"
    # the stream's snapshot when the venue sends one, else REST with the stream's ids (OKX: the 2026 procedure,
    # for a channel without its initial snapshot: buffer, GET /api/v5/market/books, join by seqId / prevSeqId)
    STREAM_OR_REST = "stream or rest"


class SequenceScope(enum.Enum):
    """What a venue's sequence numbers count: one market's messages (every venue but one), or every message
    of a connection, all channels together (Coinbase's ``sequence_num``): then a gap resyncs every market on
    that connection, and the group's ``streams_per_connection`` bounds how many that is."""

    MARKET = "market"
    CONNECTION = "connection"


class Verdict(enum.Enum):
    """A diff against the id of the book (or of the last buffered diff) it would continue."""

    OLD = "old"  # ends at or before the book: ignored and counted, never a gap
    APPLY = "apply"  # continues the book
    GAP = "gap"  # something was lost: resync
    RESET = "reset"  # the venue restarted its ids (OKX seqId < prevSeqId == book id): apply, the id goes down


def verdict(rule: SequenceRule, first_id: int, final_id: int, prev_final_id: int, book_id: int) -> Verdict:
    """The sequence rule, in one place. Ids as :class:`ldc.depth.DepthDiff` names them."""
    if rule is SequenceRule.NONE:  # nothing to check per market (a message without ids is numbered by the book)
        return Verdict.APPLY
    if rule is SequenceRule.PREV_LINK_RESET:
        if final_id == NO_ID:  # a venue message without ids (OKX before seqId): the checksum proves it
            return Verdict.APPLY
        if prev_final_id == book_id and final_id < prev_final_id:
            return Verdict.RESET
    if final_id <= book_id:
        return Verdict.OLD
    if rule is SequenceRule.RANGE:
        return Verdict.GAP if first_id > book_id + 1 else Verdict.APPLY
    if rule is SequenceRule.PLUS_ONE:
        return Verdict.APPLY if final_id == book_id + 1 else Verdict.GAP
    return Verdict.APPLY if prev_final_id == book_id else Verdict.GAP


def hot_path_links_prev(rule: SequenceRule) -> bool:
    """The C HotPath's ``futures`` flag for ``rule``: it checks ``pu == book id`` (True) or ``U == book id + 1``
    (False; PLUS_ONE diffs carry ``U == u``). Either way it applies only the APPLY case of :func:`verdict`;
    anything else (an OKX reset, an id-less message) goes to BookSync."""
    return rule is SequenceRule.PREV_LINK or rule is SequenceRule.PREV_LINK_RESET


def hot_path_unsequenced(rule: SequenceRule) -> bool:
    """The C HotPath's ``unsequenced`` flag for ``rule``: NONE (Kraken) has no per-market sequence, so every
    update with an id is :func:`verdict`'s APPLY and the book's id becomes the larger of the two (a clock that
    may repeat never goes back, as ``BookSync._apply_diff``); an id-less update goes to BookSync."""
    return rule is SequenceRule.NONE


class JoinWait(enum.Enum):
    """Where a REST snapshot joins a buffered stream, when it does not (yet)."""

    NOT_YET = "the stream has not reached the snapshot"
    TOO_OLD = "the snapshot is older than the stream"


class Ids(Protocol):  # pragma: no cover - a protocol
    """What a join reads of a diff (``DepthDiff``, the C parser's ``ParsedDiff``)."""

    @property
    def first_id(self) -> int: ...

    @property
    def final_id(self) -> int: ...


def join_index(rule: SequenceRule, diffs: Sequence[Ids], last_update_id: int) -> int | JoinWait:
    """Where a snapshot at ``last_update_id`` joins a contiguous buffered stream of ``diffs``:
    the index of the first diff to apply on top of it (``len`` when the snapshot is exactly at the stream's
    end), or why not. Binance's documented rules: spot drops ``u <= lastUpdateId`` and the first kept diff
    must have ``U <= lastUpdateId + 1``; futures keep ``u >= lastUpdateId`` and need ``U <= lastUpdateId``;
    OKX (``U`` = prevSeqId) drops ``seqId <= snapshot seqId`` and needs ``prevSeqId <= snapshot seqId``; all:
    ``lastUpdateId`` below the first buffered ``U`` is too old."""
    links_prev = rule is not SequenceRule.RANGE and rule is not SequenceRule.PLUS_ONE
    keeps_equal = rule is SequenceRule.PREV_LINK  # Binance futures apply the event whose u == lastUpdateId;
    # OKX drops every buffered event with seqId <= the snapshot's and needs prevSeqId <= seqId(snapshot) < seqId
    if last_update_id < diffs[0].first_id:
        return JoinWait.TOO_OLD
    if diffs[-1].final_id < last_update_id:
        return JoinWait.NOT_YET  # (checked first: a buffer waiting for its stream costs O(1) a diff)
    for index, diff in enumerate(diffs):
        if diff.final_id > last_update_id or (keeps_equal and diff.final_id == last_update_id):
            if diff.first_id > (last_update_id if links_prev else last_update_id + 1):
                return JoinWait.TOO_OLD
            return index
    return len(diffs)  # spot: the last buffered u equals lastUpdateId


@dataclass(frozen=True, slots=True)
class Precision:
    """Decimals of a market's prices and sizes, from the venue's instrument list (tick and lot sizes)."""

    price_decimals: int
    size_decimals: int


def window_limit(levels: int) -> int:
    """``DepthSnapshot.limit`` of a snapshot in a windowed stream (OKX ``books`` 400, Bybit ``orderbook.200``):
    the venue keeps the window exact, deleting the levels that fall out of it and sending the ones that come in,
    so every side held is whole (a side shorter than the limit is whole) and nothing is pruned."""
    return levels + 1


# ``HotPath.set_checksum``'s arguments: (levels, price decimals, size decimals), and the kind when not OKX's
HotChecksum = tuple[int, int, int] | tuple[int, int, int, int]


class Checksum(Protocol):  # pragma: no cover - a protocol
    """A venue's book checksum over its top levels (OKX / Bitget top 25 signed CRC32, Kraken top 10)."""

    levels: int  # per side

    def compute(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], precision: Precision) -> int:
        """The checksum of a book's top ``levels`` bids (best first) and asks, its numbers written with the
        market's precision as the venue writes them."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueTable:
    """What the configuration and the feeder's wiring need of one exchange name, as data (each venue module
    builds one per name it serves; ``ldc.venues.venue_table`` finds it)."""

    name: str  # the TOML ``exchange`` value
    family: str  # the API family whose rules and limits apply (binance "spot" / "usdm" / "coinm", "okx", "bybit-linear"...)
    module: str  # the venue module, e.g. "ldc.venues.okx"
    # Endpoints: defaults, and the paths the venue adds to a configured base (``ws://127.0.0.1:PORT``)
    rest_base_url: str
    ws_base_url: str
    ws_path: str  # e.g. "/ws/v5/public", "/v5/public/linear", Binance's "/stream" after its route
    channel_paths: tuple[tuple[str, str], ...] = ()  # (channel, path) where a channel has its own (HTX mbp on /feed)
    # Symbols, in the venue's own syntax
    symbol_pattern: str  # a regular expression the whole (upper-cased) symbol must match
    symbol_form: str  # the expected form, said when a symbol does not match: "'BTC-USDT', 'BTC-USDT-SWAP' or ..."
    symbols_lower_case: bool = False  # the venue names markets in lower case (HTX ``btcusdt``); others upper
    # Streams: Binance chooses an update speed, the others a book channel
    update_speeds_ms: tuple[int, ...] = ()
    default_update_speed_ms: int = 0
    channels: tuple[str, ...] = ()
    channel_levels: tuple[int, ...] = ()  # levels a side each channel keeps: the most a group may publish
    default_channel: str = ""
    # Limits
    weight_limit_per_min: int
    max_streams_per_connection: int

    def levels_of(self, channel: str) -> int:
        """Levels a side ``channel`` keeps (``channel_levels``)."""
        return self.channel_levels[self.channels.index(channel)]

    def path_of(self, channel: str) -> str:
        """The websocket path serving ``channel``."""
        return dict(self.channel_paths).get(channel, self.ws_path)


StreamEvent = tuple[str, "DepthSnapshot | DepthDiff"]  # (the market's stream key, its event)


class SnapshotTier(Protocol):  # pragma: no cover - a protocol
    """A REST snapshot size the venue allows and what it costs."""

    @property
    def limit(self) -> int: ...
    @property
    def weight(self) -> int: ...


class RestSnapshotVenue(Protocol):  # pragma: no cover - a protocol
    """A venue whose books start from REST snapshots joined to a diff stream (Binance): what the REST-snapshot
    feeder (``ldc.feeder``) asks of it. Its diff stream is read in C by the Router (that venue's C dialect)."""

    @property
    def name(self) -> str: ...
    @property
    def sequence_rule(self) -> SequenceRule: ...
    @property
    def snapshot_path(self) -> str: ...
    @property
    def exchange_info_path(self) -> str: ...
    @property
    def exchange_info_weight(self) -> int: ...
    @property
    def rest_protocol(self) -> RestProtocol: ...
    @property
    def snapshot_limits(self) -> Sequence[SnapshotTier]:
        """The snapshot sizes the venue allows, smallest (cheapest) first."""
    @property
    def unknown_symbol_code(self) -> int:
        """The error code of a REST answer refusing an unknown symbol."""

    def depth_stream(self, symbol: str, update_speed_ms: int | None = None) -> str: ...
    def snapshot_weight(self, limit: int) -> int: ...
    def snapshot_limit_for(self, depth: int) -> SnapshotTier:
        """The first snapshot's size for a book published ``depth`` levels deep."""
    def snapshot_ladder(self, depth: int) -> Sequence[SnapshotTier]:
        """The snapshot sizes to climb when coverage is lost, smallest first."""
    def stream_protocol(self) -> StreamProtocol: ...
    def parse_message(self, raw: bytes) -> object:
        """The reference parser: a depth event or a control message; ProtocolError naming the fault."""
    def control_error(self, raw: bytes) -> str | None:
        """The error a control message reports, in the venue's words (None: no error)."""
    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot: ...
    def listed_symbols(self, body: bytes) -> set[str]:
        """Every symbol of the venue's listing (exchangeInfo's body)."""
    def symbol_hint(self, raw: bytes) -> str | None:
        """The market a (possibly malformed) message names, found without parsing it."""


class StreamVenue(Protocol):  # pragma: no cover - a protocol
    """A venue whose books start from its websocket (a snapshot in the stream, or one requested on the same
    connection as HTX's ``req``): what the stream feeder asks of it. Stream keys are what the venue's messages
    name a market by (an OKX instId, a Bybit topic)."""

    name: str
    ping_interval_s: float  # send ``ping_message`` when nothing was sent for this long (inf: the server pings)
    rule: SequenceRule
    scope: SequenceScope  # CONNECTION: the feeder checks ``VenueControl.sequence`` / the events' ids +1 per connection
    # STREAM; STREAM_OR_REST with ``snapshot_request``; REST with ``ws_snapshot_request`` (HTX ``req``, asked on
    # the market's own connection)
    snapshot_source: SnapshotSource
    # True: the server keeps the book whole to the channel's depth (it sends the level that comes into the window
    # when one leaves, Kraken), so every level within it is known although the snapshot was cut at that depth:
    # no coverage flag (``SyncConfig.window_kept_whole``). False: the snapshot's ``limit`` says what is known.
    keeps_window_whole: bool
    # Limits
    requests_per_hour: int  # subscribe / unsubscribe requests a connection may send in any hour (0: no limit)
    request_spacing_s: float  # between two requests on one connection (the venue's message rate)
    connections_per_s: float  # new connections per second per IP

    def stream(self, channel: str, symbol: str) -> str: ...

    def subscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]:
        """Subscribe requests for ``streams``, split to the venue's per-request limit."""
        ...

    def unsubscribe_messages(self, channel: str, streams: Sequence[str], request_id: str) -> list[bytes]: ...

    def ping_message(self, request_id: str) -> bytes: ...

    def snapshot_request(self, symbol: str, limit: int) -> "tuple[str, dict[str, str | int]] | None":
        """The REST path and query of a snapshot joining the stream's ids (None: the venue has none that does)."""
        ...

    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot:
        """A REST snapshot answer (ProtocolError carries the venue's own error message)."""
        ...

    def parse(self, raw: bytes | str) -> "list[StreamEvent] | VenueControl":
        """Book events of one message (ProtocolError names a malformed field), or what else it is."""
        ...

    def checksum_for(self, symbol: str, precision: Precision | None) -> "Callable[[Book, int], bool] | None":
        """``SyncConfig.checksum`` for one market: whether a book's checksum is the venue's (None: none sent)."""
        ...

    def hot_checksum(self, symbol: str, precision: Precision | None) -> HotChecksum | None:
        """The same checksum as ``HotPath.set_checksum`` arguments (None: the C hot path cannot verify it)."""
        ...

    def instrument_requests(self, symbols: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        """REST (path, params) whose answers give the markets' precision for the checksum ([]: none needed)."""
        ...

    def instruments(self, body: bytes | str) -> dict[str, Precision]:
        """Symbol -> precision, from the answer to one of ``instrument_requests``."""
        ...

    def ws_snapshot_request(self, stream: str) -> bytes | None:
        """The websocket request for a market's snapshot, sent on its connection (HTX ``req``; None: REST)."""
        ...

    def stream_of(self, raw: bytes | str) -> str:
        """The stream a message the parser refused was for, when that can still be read ("": unknown)."""
        ...


class StreamDefaults:
    """What most stream venues answer for the optional parts of :class:`StreamVenue`: no checksum, no
    instrument list, no snapshot request (their books start in the stream). A venue overrides what it has."""

    name: str
    keeps_window_whole = False  # the snapshot's limit says what is known (OKX, Bybit: base.window_limit)

    def checksum_for(self, symbol: str, precision: Precision | None) -> "Callable[[Book, int], bool] | None":
        return None

    def hot_checksum(self, symbol: str, precision: Precision | None) -> HotChecksum | None:
        """``HotPath.set_checksum``'s (levels, price decimals, size decimals[, kind]) when the C hot path can
        verify ``checksum_for``'s checksum itself (OKX's CRC32, Kraken's with ``HOT_CRC_KRAKEN``); None: it
        cannot, so the market stays on BookSync."""
        return None

    def snapshot_request(self, symbol: str, limit: int) -> "tuple[str, dict[str, str | int]] | None":
        return None  # no REST snapshot joins the stream's ids

    def parse_snapshot(self, body: bytes, limit: int) -> DepthSnapshot:
        raise ProtocolError(f"{self.name} books start from the stream: no REST snapshot")

    def ws_snapshot_request(self, stream: str) -> bytes | None:
        return None

    def instrument_requests(self, symbols: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        return []

    def instruments(self, body: bytes | str) -> dict[str, Precision]:
        return {}

    def stream_of(self, raw: bytes | str) -> str:
        return ""  # the venue's sequence shows a lost message as a gap


# ---------------------------------------------------------------------------------------------
# What the I/O layer asks of a venue (``ldc.io`` imports nothing of ``ldc.venues``: it declares the same
# shapes as its own protocols, and the feeder hands the venue's instances over)

FrameKind = Literal["answer", "refused", "shutdown"]  # a small frame that is not data (see StreamProtocol.classify)
ControlAction = Literal["subscribe", "unsubscribe", "list"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamProtocol:
    """How a venue carries many streams on one websocket connection, as the socket layer (``ldc.io.ws.WsPool``)
    needs it: the URL that opens a connection with its first streams, the live subscription requests, which
    small frames are answers or notices rather than data, and the connection limits."""

    # (endpoint, streams carried in the URL) -> the URL to connect to; endpoint as configured, without a query
    stream_url: Callable[[str, Sequence[str]], str]
    # (action, streams, request id) -> the request to send ("list": streams empty)
    control_request: Callable[[ControlAction, Sequence[str], int], bytes]
    # a frame of at most ``small_frame_bytes``: None when it is data (handed to the consumer), else its kind and a
    # few words for the log: "answer" (consumed), "refused" (consumed, logged), "shutdown" (the server will close
    # the connection soon: the pool opens the successor now)
    classify: Callable[[bytes], "tuple[FrameKind, str] | None"]
    small_frame_bytes: int  # larger frames are data, never classified
    # Limits
    max_streams_per_connection: int
    url_streams_max: int  # streams carried in the URL at connect; the rest go by subscribe requests
    subscribe_batch: int  # streams per subscribe / unsubscribe request
    control_msgs_per_s: float  # our messages per second per connection (requests and pings), below the venue's limit
    connection_lifetime_s: float  # the server cuts a connection this old (inf: never)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestProtocol:
    """What the REST client (``ldc.io.rest.RestClient``) reads of a venue's answers beyond HTTP: its count of the
    request weight used (folded into the host's governor), and the code and message of an error body."""

    used_weight_header: str | None  # the weight the venue counts for this IP in the current window (None: not sent)
    error_of: Callable[[bytes], "tuple[int | None, str]"]  # an error body's code and message; (None, ""): none readable
    # seconds to wait after a 429 (or a ban), as delta-seconds; an HTTP-date is not read
    retry_after_header: str = "Retry-After"
