"""Websocket connections of one feeder: streams spread over connections of up to the venue's
``max_streams_per_connection`` each, one reader thread per connection, frames handed over as raw bytes.

    pool = WsPool("wss://stream.example.com/stream", handler, protocol=venue_stream_protocol)
    pool.start(["btc@depth", ...])                 # returns at once; connections open in their threads
    ...
    pool.stop()                                    # from any thread

The venue speaks through ``protocol`` (a ``StreamRules``: ``ldc.venues.base.StreamProtocol``, built by the
venue module): the URL that opens a connection with its first streams, the subscribe / unsubscribe requests,
which small frames are answers and shutdown notices, the connection limits and lifetime. Nothing here names
an exchange.

The handler (``WsHandler``) is called from the connection threads; with several connections, from several
threads at once:

- ``on_open(conn_id, streams, replaces)`` after the handshake, before any of that connection's frames.
  ``replaces`` is the id of a connection being rolled over (age, or the server's shutdown notice): both deliver the
  same streams until the consumer has moved its markets and calls ``pool.release(replaces)`` (or
  ``ROLLOVER_OVERLAP_MAX_S`` passes), so no market needs to go out of sync. (If the old connection died
  first, its ``on_close`` came already: treat the open as a plain one.)
- ``on_message(conn_id, raw, recv_time_ns)`` for every data message (fragments reassembled), its raw
  payload bytes, UTF-8 not validated (parsing validates anyway; websocket-client's pure-Python check costs
  ~155 us per 1.3 KB frame). ``recv_time_ns`` is on the wall clock (compare with the exchange's event
  time), stamped once per socket read: the frames of one read share it. Malformed payloads are passed
  through; only the answers to our requests and shutdown notices (``protocol.classify``) are consumed here.
- ``on_close(conn_id, reason, streams)`` once per opened connection; the markets of ``streams`` must resync
  unless ``reason`` is ``ROLLED_OVER`` (their successor is already open). A dropped connection is reopened
  with jittered exponential backoff under a new id.

The pieces of the read path are reusable on their own (the stream venues' connections read through them):
``FrameParser`` splits the bytes of bulk socket reads into messages and control frames, ``FrameReader`` is the
frame loop over it (a read's messages handed over in one call, pings answered, a close echoed),
``close_handshake`` closes a connection read that way.

websocket-client opens the connection (handshake, TLS, proxies) and sends our frames; the frames received
are read off its socket in ``RECV_CHUNK_BYTES`` chunks and parsed here (``FrameParser``, RFC 6455 5.2):
~5x cheaper per frame than its ``recv_data_frame`` (scripts/bench_ws.py). Every server ping is answered with a pong echoing its
payload, a server close with a close echoing its status code. A protocol violation (a masked frame,
reserved bits or opcodes, a stray continuation) drops the connection (``CloseReason.ERROR``).
A silent connection is probed with our own ping and dropped when nothing answers (``PONG_TIMEOUT_S``).
Control messages (subscribe, unsubscribe, our pings) are spaced below the venue's per-connection rate.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import websocket
from websocket import ABNF

from ldc.errors import ConfigError, ProtocolError
from ldc.io._frames import split_frames

log = logging.getLogger(__name__)

# Limits (the venue's own come with its StreamRules)
RECV_CHUNK_BYTES = 65_536  # socket reads: ~50 spot diff frames per read, websocket-client makes 2-3 per frame
MIN_READ_BYTES = 4096  # the buffer is compacted when less than this is free after a cut frame
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a frame or fragmented message larger than this is a protocol error
MAX_CONTROL_PAYLOAD_BYTES = 125  # RFC 6455 5.5
MAX_16BIT_FRAME_BYTES = 65_535
CLOSE_NORMAL = 1000  # RFC 6455 7.4.1 status codes
CLOSE_PROTOCOL_ERROR = 1002
# Timeouts
CONNECT_TIMEOUT_S = 10.0
READ_POLL_S = 0.2  # the reader wakes at least this often to notice stop, rollover and pending subscriptions
IDLE_PING_AFTER_S = 30.0  # nothing received for this long: send a ping
PONG_TIMEOUT_S = 15.0  # then nothing at all for this long: the connection is dead
CLOSE_TIMEOUT_S = 1.0
# Rollover (a venue may cut every connection at an age: StreamRules.connection_lifetime_s)
ROLLOVER_LEAD_S = 1800.0  # open the successor 30 min before the cut
ROLLOVER_OVERLAP_MAX_S = 120.0  # close the old connection this long after its successor opened, released or not
# Backoff
BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0  # 300 connection attempts per 5 min per IP: a capped lane tries at most 10 times
BACKOFF_RESET_AFTER_S = 30.0  # a connection that stayed up this long starts the backoff afresh


_CONTROL_OPCODES = frozenset((ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING, ABNF.OPCODE_PONG))
_CLOSE_OPCODE, _PING_OPCODE = ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING


class CloseReason(str, enum.Enum):
    STOPPED = "stopped"  # pool.stop()
    REMOVED = "removed"  # every stream of the connection was removed
    ROLLED_OVER = "rolled over"  # its successor carries its streams
    SERVER_CLOSED = "server closed"  # a close frame or EOF from the server
    SERVER_SHUTDOWN = "server shutdown"  # closed after the server's shutdown notice before the successor took over
    PING_TIMEOUT = "ping timeout"  # silent and did not answer our ping
    ERROR = "error"  # a socket or protocol error


_GRACEFUL = frozenset((CloseReason.STOPPED, CloseReason.REMOVED, CloseReason.ROLLED_OVER))  # a silent path gets no close handshake


class WsHandler(Protocol):
    """A handler may also define ``on_messages(conn_id, raws: list[bytes], recv_time_ns)``: it then gets the
    data messages of each socket read in one call, in order, instead of one ``on_message`` call each; and
    ``on_connect_failed(streams, error: str)``: a connection for those streams could not be opened (refused,
    an HTTP error in the handshake, a timeout); the pool retries with backoff."""

    def on_open(self, conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None: ...

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None: ...

    def on_close(self, conn_id: int, reason: CloseReason, streams: tuple[str, ...]) -> None: ...


FrameKind = Literal["answer", "refused", "shutdown"]  # ldc.venues.base.FrameKind
ControlAction = Literal["subscribe", "unsubscribe", "list"]  # ldc.venues.base.ControlAction


class StreamRules(Protocol):
    """What the pool asks of the venue: ``ldc.venues.base.StreamProtocol`` has these fields, the venue module
    builds the instance (declared here again, read-only, so that ``ldc.io`` imports nothing of the venues)."""

    @property
    def stream_url(self) -> Callable[[str, Sequence[str]], str]: ...  # (endpoint, streams) -> connect URL

    @property
    def control_request(self) -> Callable[[ControlAction, Sequence[str], int], bytes]: ...

    @property
    def classify(self) -> Callable[[bytes], tuple[FrameKind, str] | None]: ...  # None: data

    @property
    def small_frame_bytes(self) -> int: ...

    @property
    def max_streams_per_connection(self) -> int: ...

    @property
    def url_streams_max(self) -> int: ...

    @property
    def subscribe_batch(self) -> int: ...

    @property
    def control_msgs_per_s(self) -> float: ...

    @property
    def connection_lifetime_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class WsOptions:
    """Per-pool settings. None: the venue's (``StreamRules``; ``rollover_after_s``: ``ROLLOVER_LEAD_S`` before
    its connection lifetime); ``WsPool.limits`` holds the values in force."""

    max_streams_per_connection: int | None = None
    control_msgs_per_s: float | None = None
    url_streams_max: int | None = None
    subscribe_batch: int | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_poll_s: float = READ_POLL_S
    idle_ping_after_s: float = IDLE_PING_AFTER_S
    pong_timeout_s: float = PONG_TIMEOUT_S
    rollover_after_s: float | None = None
    rollover_overlap_max_s: float = ROLLOVER_OVERLAP_MAX_S
    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_cap_s: float = BACKOFF_CAP_S
    backoff_reset_after_s: float = BACKOFF_RESET_AFTER_S


def backoff_delay(attempt: int, *, initial_s: float, cap_s: float, rand: float) -> float:
    """Delay before reconnect number ``attempt`` (0-based): exponential, capped, jittered into its upper
    half by ``rand`` in [0, 1) so that many feeders do not reconnect in step."""
    base = min(cap_s, initial_s * 2.0 ** min(attempt, 62))
    return base * (0.5 + 0.5 * rand)


@dataclass(frozen=True, slots=True)
class _Limits:
    """The options in force: ``WsOptions`` with every None replaced by the venue's value."""

    max_streams_per_connection: int
    control_msgs_per_s: float
    url_streams_max: int
    subscribe_batch: int
    rollover_after_s: float


def _limits(options: WsOptions, rules: StreamRules) -> _Limits:
    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    return _Limits(
        max_streams_per_connection=given(options.max_streams_per_connection, rules.max_streams_per_connection),
        control_msgs_per_s=given(options.control_msgs_per_s, rules.control_msgs_per_s),
        url_streams_max=given(options.url_streams_max, rules.url_streams_max),
        subscribe_batch=given(options.subscribe_batch, rules.subscribe_batch),
        rollover_after_s=given(options.rollover_after_s, rules.connection_lifetime_s - ROLLOVER_LEAD_S),
    )


class FrameParser:
    """RFC 6455 frames from a server, parsed from bytes read into its own buffer; it does no I/O.

    The reader ``recv_into(parser.space())``, then ``parser.feed(n)`` returns the complete messages and
    control frames those bytes finished, as ``(opcode, payload)``; a frame cut by the read stays buffered
    until the next. Fragmented messages come back reassembled under their first frame's opcode; control
    frames between their fragments come back in wire order. A masked frame, reserved bits or opcodes, a
    misplaced continuation or an oversized message is a ``ProtocolError`` (see ``feed``): the caller must
    drop the connection."""

    def __init__(self, *, chunk_bytes: int = RECV_CHUNK_BYTES, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 c_split: bool = True) -> None:  # fmt: skip
        if max_message_bytes < MAX_16BIT_FRAME_BYTES:  # 16-bit lengths are not checked against it
            raise ConfigError(f"max_message_bytes must be >= {MAX_16BIT_FRAME_BYTES}, found {max_message_bytes}")
        self._split = split_frames if c_split else None  # None: every frame in Python (the reference)
        self._chunk = chunk_bytes
        self._max = max_message_bytes
        self._buf = bytearray(chunk_bytes)
        self._view = memoryview(self._buf)
        self._start = 0  # first byte not parsed yet
        self._end = 0  # end of the bytes read
        self._want = 0  # size of the frame cut at _start (header included), once its header is in
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_bytes = 0
        self.error: ProtocolError | None = None  # the violation that ended parsing, if any

    def space(self) -> memoryview:
        """The free tail of the buffer, for the next read: at least ``MIN_READ_BYTES``, and room for the
        whole of a frame larger than the buffer."""
        pending = self._end - self._start
        if not pending:
            self._start = self._end = 0
            if len(self._buf) > self._chunk:  # a large message has gone: give its memory back
                self._resize(self._chunk)
        elif len(self._buf) - self._end < MIN_READ_BYTES or self._start + self._want > len(self._buf):
            needed = max(self._want, pending) + MIN_READ_BYTES
            if needed > len(self._buf):
                self._resize(max(self._chunk, needed))
            else:  # move the cut frame to the front (the slices have equal sizes: no resize)
                self._buf[:pending] = self._buf[self._start : self._end]
                self._start, self._end = 0, pending
        return self._view[self._end :]

    def _resize(self, size: int) -> None:
        pending = self._end - self._start
        buf = bytearray(size)
        buf[:pending] = self._view[self._start : self._end]
        self._buf, self._view = buf, memoryview(buf)
        self._start, self._end = 0, pending

    def feed(self, nbytes: int) -> list[tuple[int, bytes]]:
        """Account for ``nbytes`` just read into ``space()``; the messages and control frames completed.
        After a protocol violation the frames before it are still returned and the violation is left in
        ``error``: the caller handles them, then drops the connection (a further ``feed`` raises it).

        Whole text / binary frames (every depth message) are split by ``ldc.io._frames`` in C; any other
        frame, and everything when ``split`` is None, goes through ``_frame`` here, one at a time."""
        if self.error is not None:
            raise self.error
        self._end += nbytes
        end, pos, split = self._end, self._start, self._split
        self._want = 0
        out: list[tuple[int, bytes]] = []
        try:
            while True:
                if split is not None and not self._fragment_opcode:
                    pos, self._want, uncommon = split(self._buf, pos, end, out)
                    if not uncommon:
                        break
                stop = self._frame(pos, end, out)
                if stop < 0:
                    break
                pos = stop
        except ProtocolError as exc:
            self.error = exc
        self._start = pos
        return out

    def _frame(self, pos: int, end: int, out: list[tuple[int, bytes]]) -> int:
        """The frame at ``pos``: appended to ``out`` (or held as a fragment); where the next one starts, or
        -1 when the frame is not complete yet (``_want`` set once its header is in)."""
        buf, view = self._buf, self._view
        if end - pos < 2:
            return -1
        b0, size = buf[pos], buf[pos + 1]
        if size < 126:
            head = pos + 2
        elif size == 126:  # 16-bit length: most diff frames (~1.3 KB)
            if end - pos < 4:
                return -1
            size, head = buf[pos + 2] << 8 | buf[pos + 3], pos + 4
        else:  # the mask bit, or a 64-bit length
            if size & 0x80:
                raise ProtocolError(f"expected an unmasked server frame, found a masked one (byte 1 = {size:#04x})")
            if end - pos < 10:
                return -1
            size, head = int.from_bytes(view[pos + 2 : pos + 10], "big"), pos + 10
            if size > self._max:
                raise ProtocolError(f"frame of {size} bytes, expected at most {self._max}")
        stop = head + size
        if stop > end:
            self._want = stop - pos
            return -1
        if (b0 == 0x81 or b0 == 0x82) and not self._fragment_opcode:  # a whole text / binary message
            out.append((b0 & 0x0F, view[head:stop].tobytes()))
        else:
            self._uncommon(b0, view[head:stop].tobytes(), out)
        return stop

    def _uncommon(self, b0: int, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolError(f"expected no reserved bits (no extension was negotiated), found byte 0 = {b0:#04x}")
        if opcode >= ABNF.OPCODE_CLOSE:
            if opcode not in _CONTROL_OPCODES:
                raise ProtocolError(f"expected a known control opcode, found {opcode:#x}")
            if not fin or len(payload) > MAX_CONTROL_PAYLOAD_BYTES:
                raise ProtocolError(f"expected a final control frame of <= 125 bytes, found fin={bool(fin)} with {len(payload)} bytes")
            out.append((opcode, payload))
        elif opcode == ABNF.OPCODE_CONT:
            if not self._fragment_opcode:
                raise ProtocolError("expected a new message, found a continuation frame")
            self._add_fragment(payload)
            if fin:
                out.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments, self._fragment_opcode, self._fragment_bytes = [], 0, 0
        elif opcode == ABNF.OPCODE_TEXT or opcode == ABNF.OPCODE_BINARY:
            if self._fragment_opcode:
                raise ProtocolError(f"expected a continuation frame, found a new message (opcode {opcode:#x})")
            self._fragment_opcode = opcode
            self._add_fragment(payload)
        else:
            raise ProtocolError(f"expected a known data opcode, found {opcode:#x}")

    def _add_fragment(self, payload: bytes) -> None:
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > self._max:
            raise ProtocolError(f"fragmented message of {self._fragment_bytes} bytes, expected at most {self._max}")
        self._fragments.append(payload)


class _ControlRate:
    """Spacing of control messages on one connection: at least ``1 / per_s`` apart, no bursts, so any
    one-second window holds at most ``per_s`` of ours and room remains for the pongs."""

    def __init__(self, per_s: float, now: float) -> None:
        self._gap_s = 1.0 / per_s
        self._next = now

    def take(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self._gap_s
        return True


# FrameReader.read's answers beside a read's time (a positive ns stamp)
READ_IDLE = -1  # nothing came within the socket's timeout
READ_EOF = -2  # the server went without a close frame
READ_CLOSED = -3  # the server's close frame (its status echoed)


def _data(raw: bytes) -> tuple[FrameKind, str] | None:
    return None


class FrameReader:
    """The frame loop of one connection, one socket read a ``read()`` call (``WsPool``'s connections and the
    stream venues' read through it).

    websocket-client did the handshake and sends our frames (masked, as RFC 6455 wants); reading is ours: one
    ``recv_into`` of up to ``RECV_CHUNK_BYTES`` yields up to ~50 diff frames at ~1 us of parsing each, where
    websocket-client's ``recv_data_frame`` costs ~12 us per frame. The socket's own timeout (not a ``select`` on
    the descriptor) ends an idle read, so bytes already decrypted in a TLS socket's buffer are returned by the
    next read, never stranded.

    A read's data messages (text or binary, fragments reassembled) go to ``deliver(conn_id, messages,
    recv_time_ns)`` in one call, then ``done(count, ns spent delivering)`` when given; a frame of at most
    ``small_bytes`` that ``classify`` names (an answer, a refusal, a shutdown notice) goes to
    ``notice(kind, text)`` instead (``small_bytes`` -1: every frame is data). A server ping is answered with a
    pong, a server close with a close echoing its status (after the read's messages before it); a protocol
    violation raises the parser's ProtocolError after the messages before it.

    ``recv_time_ns`` is stamped once per read: every frame of a read carries the time its bytes reached this
    process, so a frame's wait behind the earlier frames of its read counts in its receive-to-publish time (a
    stamp per frame would hide that queueing). Time spent in the kernel's socket buffer before the read is not
    seen either way."""

    def __init__(self, ws: websocket.WebSocket, parser: FrameParser, conn_id: int,
                 deliver: Callable[[int, list[bytes], int], None], *, done: Callable[[int, int], None] | None = None,
                 classify: Callable[[bytes], tuple[FrameKind, str] | None] = _data, small_bytes: int = -1,
                 notice: Callable[[FrameKind, str], None] | None = None) -> None:  # fmt: skip
        sock = ws.sock
        if sock is None:
            raise ProtocolError("expected an open socket after the handshake, found none")
        self.ws, self.sock, self.parser, self.conn_id = ws, sock, parser, conn_id
        self.deliver, self.done, self.classify, self.small_bytes = deliver, done, classify, small_bytes
        self.notice = notice

    def read(self) -> int:
        """One read: the time it was stamped (ns since the epoch) when bytes came, else ``READ_IDLE``,
        ``READ_EOF`` or ``READ_CLOSED``."""
        parser = self.parser
        try:
            nbytes = self.sock.recv_into(parser.space())
        except TimeoutError:
            return READ_IDLE
        if nbytes == 0:
            return READ_EOF
        recv_time_ns = time.time_ns()
        small_bytes, classify, close_opcode = self.small_bytes, self.classify, _CLOSE_OPCODE  # locals: read per frame
        batch: list[bytes] = []  # the read's data messages, handed over in one call
        closing: bytes | None = None
        for opcode, raw in parser.feed(nbytes):
            if opcode < close_opcode:  # text or binary (continuations come reassembled)
                if len(raw) > small_bytes or (kind := classify(raw)) is None:
                    batch.append(raw)
                elif self.notice is not None:
                    self.notice(*kind)
            elif opcode == _PING_OPCODE:
                self.ws.pong(raw)
            elif opcode == close_opcode:
                closing = raw
                break
            # a pong needs nothing more: any bytes received proved the connection alive
        if batch:
            self.deliver(self.conn_id, batch, recv_time_ns)
            if self.done is not None:
                self.done(len(batch), time.time_ns() - recv_time_ns)
        if closing is not None:
            send_close(self.ws, closing[:2] if len(closing) >= 2 else b"")  # RFC 6455 5.5.1: echo its status code
            return READ_CLOSED
        if parser.error is not None:
            raise parser.error
        return recv_time_ns


class _Lane:
    """A set of streams meant to share one connection, and the reader currently serving it."""

    def __init__(self, lane_id: int, streams: list[str]) -> None:
        self.lane_id = lane_id
        self.streams: list[str] = streams  # desired, in subscription order; guarded by the pool lock
        self.version = 0  # bumped on every change, so readers reconcile only when needed


class _Conn:
    """One reader thread: opens a connection for its lane, reads it, reopens it with backoff."""

    def __init__(self, pool: WsPool, lane: _Lane, replaces: _Conn | None) -> None:
        self.pool, self.lane, self.replaces = pool, lane, replaces
        self.conn_id = 0  # of the current physical connection; 0 while connecting
        self.subscribed: list[str] = []
        self.retire_at = 0.0  # monotonic; set when a successor opened, or inf once released
        self.released = False
        self.successor: _Conn | None = None
        self._pending: list[str] = []  # streams to subscribe on the open connection
        self._unwanted: list[str] = []  # streams to unsubscribe
        self._seen_version = -1
        self.shutdown_seen = False  # the server's shutdown notice came on the current connection
        self.thread = threading.Thread(target=self._run, name=f"ldc-ws-lane{lane.lane_id}", daemon=True)

    # thread body ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self.pool._stop.is_set() and self._lane_streams():
            ws = self._connect()
            if ws is None:
                if not self._wait(attempt):
                    return
                attempt += 1
                continue
            opened = time.monotonic()
            reason = self._serve(ws)
            if reason in (CloseReason.STOPPED, CloseReason.REMOVED, CloseReason.ROLLED_OVER, CloseReason.SERVER_SHUTDOWN):
                return
            if self.successor is not None:  # died while handing over: the successor carries on
                return
            attempt = 0 if time.monotonic() - opened >= self.pool.options.backoff_reset_after_s else attempt
            if not self._wait(attempt):
                return
            attempt += 1

    def _lane_streams(self) -> list[str]:
        with self.pool._lock:
            return list(self.lane.streams)

    def _connect(self) -> websocket.WebSocket | None:
        opts, in_url = self.pool.options, self.pool.limits.url_streams_max
        streams = self._lane_streams()
        if not streams:
            return None
        url = self.pool.protocol.stream_url(self.pool.endpoint, streams[:in_url])
        try:
            ws = websocket.create_connection(
                url,
                timeout=opts.connect_timeout_s,
                enable_multithread=False,
                sslopt=self.pool.sslopt,
            )
        except (OSError, websocket.WebSocketException) as exc:
            log.warning("ws lane %d: connect to %s failed: %s", self.lane.lane_id, self.pool.endpoint, exc)
            failed = getattr(self.pool.handler, "on_connect_failed", None)
            if failed is not None:
                failed(tuple(streams), f"{type(exc).__name__}: {exc}")
            return None
        ws.settimeout(opts.read_poll_s)
        self.conn_id = next(self.pool._ids)
        self.subscribed = streams[:in_url]
        replaces = self.replaces.conn_id if self.replaces is not None else None
        log.info("ws %d open: lane %d, %d streams%s", self.conn_id, self.lane.lane_id, len(streams),
                 f", replacing ws {replaces}" if replaces else "")  # fmt: skip
        self.pool.handler.on_open(self.conn_id, tuple(streams), replaces)
        if self.replaces is not None:
            self.replaces._successor_open(self.pool.options.rollover_overlap_max_s)
            self.replaces = None
        self._pending, self._unwanted = streams[in_url:], []
        self._seen_version = -1
        return ws

    def _serve(self, ws: websocket.WebSocket) -> CloseReason:
        parser = FrameParser()
        try:
            reason = self._read(ws, parser)
        except ProtocolError as exc:
            log.warning("ws %d: protocol error: %s", self.conn_id, exc)
            reason = CloseReason.ERROR
            _send_quietly(ws, ABNF.create_frame(CLOSE_PROTOCOL_ERROR.to_bytes(2, "big"), ABNF.OPCODE_CLOSE))
        except (OSError, websocket.WebSocketException) as exc:
            reason = CloseReason.STOPPED if self.pool._stop.is_set() else CloseReason.ERROR
            if reason is CloseReason.ERROR:
                log.warning("ws %d: %s: %s", self.conn_id, type(exc).__name__, exc)
        except Exception:  # a consumer bug must not end the lane silently: log it, reconnect, resync
            log.exception("ws %d: the handler raised", self.conn_id)
            reason = CloseReason.ERROR
        if reason in _GRACEFUL:
            close_handshake(ws, parser)
        ws.shutdown()  # type: ignore[no-untyped-call]
        log.info("ws %d closed: %s", self.conn_id, reason.value)
        self.pool.handler.on_close(self.conn_id, reason, tuple(self.subscribed))
        return reason

    def _read(self, ws: websocket.WebSocket, parser: FrameParser) -> CloseReason:
        """Read frames off the socket (``FrameReader``) until the connection must close; the reason. The
        checks of ``_housekeeping`` run every ``read_poll_s``, whether frames come or not."""
        opts, protocol = self.pool.options, self.pool.protocol
        self.shutdown_seen = False
        reader = FrameReader(ws, parser, self.conn_id, _deliverer(self.pool.handler), classify=protocol.classify,
                             small_bytes=protocol.small_frame_bytes, notice=self._notice)  # fmt: skip
        rate = _ControlRate(self.pool.limits.control_msgs_per_s, time.monotonic())
        opened = time.monotonic()
        last_rx_ns = time.time_ns()  # the wall clock already read per read; a jump only shifts one ping
        pinged = 0.0
        next_check_ns = 0
        while True:
            now_ns = reader.read()
            if now_ns == READ_EOF or now_ns == READ_CLOSED:
                return CloseReason.SERVER_SHUTDOWN if self.shutdown_seen else CloseReason.SERVER_CLOSED
            if now_ns == READ_IDLE:
                now_ns = time.time_ns()
            else:
                last_rx_ns, pinged = now_ns, 0.0
                if now_ns < next_check_ns:
                    continue
            next_check_ns = now_ns + int(opts.read_poll_s * 1e9)
            reason = self._housekeeping(ws, rate, opened, now_ns - last_rx_ns, pinged)
            if isinstance(reason, CloseReason):
                return reason
            pinged = reason

    def _notice(self, kind: FrameKind, text: str) -> None:
        """A small frame the venue's rules name: a shutdown notice rolls the connection over (once), a refusal
        is logged, an answer needs nothing."""
        if kind == "shutdown":
            if not self.shutdown_seen:
                self.shutdown_seen = True
                log.info("ws %d: the server's shutdown notice (%s), rolling over", self.conn_id, text)
                self._start_successor()
        elif kind == "refused":
            log.warning("ws %d: %s", self.conn_id, text)

    def _housekeeping(self, ws: websocket.WebSocket, rate: _ControlRate, opened: float, idle_ns: int,
                      pinged: float) -> CloseReason | float:  # fmt: skip
        """Checks made every ``read_poll_s``: a reason to close, or when our unanswered ping went (0: none)."""
        opts, now = self.pool.options, time.monotonic()
        if self.pool._stop.is_set():
            return CloseReason.STOPPED
        if self.retire_at and now >= self.retire_at:
            return CloseReason.ROLLED_OVER
        if self.successor is None and (now - opened >= self.pool.limits.rollover_after_s or self._rollover_requested()):
            log.info("ws %d: %.0f s old, rolling over", self.conn_id, now - opened)
            self._start_successor()
        if not self._lane_streams():
            return CloseReason.REMOVED
        if self.successor is None:
            self._reconcile(ws, rate, now)
        if idle_ns >= opts.idle_ping_after_s * 1e9:
            if pinged and now - pinged >= opts.pong_timeout_s:
                return CloseReason.PING_TIMEOUT
            if not pinged and rate.take(now):
                ws.ping(b"ldc")
                return now
        return pinged

    # control frames ---------------------------------------------------------------------------------------

    def _reconcile(self, ws: websocket.WebSocket, rate: _ControlRate, now: float) -> None:
        """Send the subscribe / unsubscribe requests the lane's desired streams call for, one at a time."""
        with self.pool._lock:
            version = self.lane.version
            desired = list(self.lane.streams) if version != self._seen_version else None
        if desired is not None:
            wanted = set(desired)
            have = set(self.subscribed) | set(self._pending)
            self._pending = [s for s in self._pending if s in wanted] + [s for s in desired if s not in have]
            self._unwanted = [s for s in self.subscribed if s not in wanted]
            self._seen_version = version
        batch = self.pool.limits.subscribe_batch
        if self._unwanted and rate.take(now):
            streams, self._unwanted = self._unwanted[:batch], self._unwanted[batch:]
            ws.send(self.pool._control_message("unsubscribe", streams))
            dropped = set(streams)
            self.subscribed = [s for s in self.subscribed if s not in dropped]
        if self._pending and rate.take(now):
            streams, self._pending = self._pending[:batch], self._pending[batch:]
            ws.send(self.pool._control_message("subscribe", streams))
            self.subscribed += streams

    # rollover ---------------------------------------------------------------------------------------------

    def _rollover_requested(self) -> bool:
        with self.pool._lock:
            return self.pool._rollover_requests.pop(self.conn_id, False)

    def _start_successor(self) -> None:
        if self.successor is not None:
            return
        self.successor = self.pool._spawn(self.lane, replaces=self)

    def _successor_open(self, overlap_max_s: float) -> None:
        if not self.released:
            self.retire_at = time.monotonic() + overlap_max_s

    def _wait(self, attempt: int) -> bool:
        opts = self.pool.options
        delay = backoff_delay(attempt, initial_s=opts.backoff_initial_s, cap_s=opts.backoff_cap_s, rand=random.random())
        log.info("ws lane %d: reconnect in %.2f s (attempt %d)", self.lane.lane_id, delay, attempt + 1)
        return not self.pool._stop.wait(delay)


def _deliverer(handler: WsHandler) -> Callable[[int, list[bytes], int], None]:
    """The handler's ``on_messages``, or one ``on_message`` call per message when it has none."""
    on_messages: Callable[[int, list[bytes], int], None] | None = getattr(handler, "on_messages", None)
    if on_messages is not None:
        return on_messages
    on_message = handler.on_message

    def one_by_one(conn_id: int, raws: list[bytes], recv_time_ns: int) -> None:
        for raw in raws:
            on_message(conn_id, raw, recv_time_ns)

    return one_by_one


def _send_quietly(ws: websocket.WebSocket, frame: ABNF) -> None:
    """Send a frame on a connection about to be dropped: a failure changes nothing."""
    try:
        ws.send_frame(frame)
    except (OSError, websocket.WebSocketException):
        pass


def send_close(ws: websocket.WebSocket, status: bytes) -> None:
    """Send a close frame with ``status`` (two bytes, or none) on a connection about to be dropped; a failure
    changes nothing. Echoes a server's close (RFC 6455 5.5.1) as the caller's read loop meets it."""
    _send_quietly(ws, ABNF.create_frame(status, ABNF.OPCODE_CLOSE))


def close_handshake(ws: websocket.WebSocket, parser: FrameParser) -> None:
    """Our side of a clean close (RFC 6455 7.1.2): send CLOSE, read until the server's CLOSE, EOF or
    ``CLOSE_TIMEOUT_S``. Frames arriving meanwhile are dropped: the caller has already closed the stream.
    websocket-client's ``close`` cannot do this: it would read from the middle of a frame we buffered."""
    _send_quietly(ws, ABNF.create_frame(CLOSE_NORMAL.to_bytes(2, "big"), ABNF.OPCODE_CLOSE))
    deadline, sock = time.monotonic() + CLOSE_TIMEOUT_S, ws.sock
    try:
        while sock is not None and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            nbytes = sock.recv_into(parser.space())
            if nbytes == 0 or any(opcode == ABNF.OPCODE_CLOSE for opcode, _ in parser.feed(nbytes)):
                return
    except (OSError, ProtocolError):
        pass


def tls_options(ca_file: str | None) -> dict[str, str]:
    """websocket-client's ``sslopt`` for wss://: trust ``ca_file`` (None: the system's store). Its defaults stay:
    CERT_REQUIRED and the host name checked."""
    return {"ca_certs": ca_file} if ca_file else {}


class WsPool:
    """The websocket connections of one feeder, ``endpoint`` being the venue's combined-stream URL without
    a query (``wss://stream.example.com/stream``), ``protocol`` the venue's ``StreamRules``."""

    def __init__(self, endpoint: str, handler: WsHandler, *, protocol: StreamRules, options: WsOptions | None = None,
                 ca_file: str | None = None) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.handler = handler
        self.protocol = protocol
        self.options = options or WsOptions()
        self.limits = _limits(self.options, protocol)
        self.sslopt = tls_options(ca_file)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._lane_ids = itertools.count(1)
        self._lanes: list[_Lane] = []
        self._conns: list[_Conn] = []
        self._rollover_requests: dict[int, bool] = {}
        self._started = False

    def start(self, streams: Iterable[str]) -> None:
        """Open connections for ``streams``; returns at once."""
        self._started = True
        self.add_streams(streams)

    def add_streams(self, streams: Iterable[str]) -> None:
        """Subscribe more streams: into a connection with room, else on a new connection."""
        new_lanes = []
        with self._lock:
            present = {s for lane in self._lanes for s in lane.streams}
            for stream in dict.fromkeys(streams):
                if stream in present:
                    continue
                lane = next((ln for ln in self._lanes if len(ln.streams) < self.limits.max_streams_per_connection), None)
                if lane is None:
                    lane = _Lane(next(self._lane_ids), [])
                    self._lanes.append(lane)
                    new_lanes.append(lane)
                lane.streams.append(stream)
                lane.version += 1
                present.add(stream)
        if self._started:
            for lane in new_lanes:
                self._spawn(lane, replaces=None)

    def remove_streams(self, streams: Iterable[str]) -> None:
        """Unsubscribe ``streams``; a connection left with none closes (``CloseReason.REMOVED``)."""
        gone = set(streams)
        with self._lock:
            for lane in self._lanes:
                kept = [s for s in lane.streams if s not in gone]
                if len(kept) != len(lane.streams):
                    lane.streams, lane.version = kept, lane.version + 1
            self._lanes = [lane for lane in self._lanes if lane.streams]

    def request_rollover(self, conn_id: int) -> None:
        """Roll connection ``conn_id`` over now, as at its 24-hour mark (open a successor; see ``release``)."""
        with self._lock:
            self._rollover_requests[conn_id] = True

    def release(self, conn_id: int) -> None:
        """The consumer has moved every market off ``conn_id`` (after ``on_open(..., replaces=conn_id)``):
        close it now."""
        for conn in self._live_conns():
            if conn.conn_id == conn_id:
                conn.released = True
                conn.retire_at = time.monotonic()

    def connections(self) -> dict[int, tuple[str, ...]]:
        """Open connection ids and the streams each has subscribed."""
        return {c.conn_id: tuple(c.subscribed) for c in self._live_conns() if c.conn_id}

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close every connection (``CloseReason.STOPPED``) and join the reader threads; any thread."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for conn in list(self._conns):
            if conn.thread is not threading.current_thread():
                conn.thread.join(max(0.0, deadline - time.monotonic()))

    def _live_conns(self) -> list[_Conn]:
        with self._lock:
            self._conns = [c for c in self._conns if c.thread.is_alive() or not c.thread.ident]
            return list(self._conns)

    def _spawn(self, lane: _Lane, *, replaces: _Conn | None) -> _Conn | None:
        conn = _Conn(self, lane, replaces)
        with self._lock:
            if self._stop.is_set():
                return None
            self._conns.append(conn)
            conn.thread.start()
        return conn

    def _control_message(self, action: ControlAction, streams: list[str]) -> bytes:
        return self.protocol.control_request(action, streams, next(self._request_ids))


_FrameParser = FrameParser  # its former name (benchmarks and tests)

