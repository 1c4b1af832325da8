"""The hot path's two NATS operations, done leaner than nats-py's general ones, on nats-py's connection.

nats-py stays the client: it connects (TLS, user / password, token, nkey, creds), reconnects,
answers pings, serves requests and heartbeats. Only the relay's batch publish and the mirror's batch
delivery take a shorter way through the same connection, measured in ``scripts/bench_mirror.py``
(docs/FANOUT.md):

- ``direct_fd`` says when the relay's C pump (``ldc.fanout._relay``) may ``send()`` its ready
  ``PUB`` frames straight on the connection's plain TCP socket (nothing queued before them, no
  TLS); ``write_frames`` hands frames (a short send's tail) to the transport, in order.
- ``publish_now`` writes ``PUB <subject> <n>\\r\\n<payload>\\r\\n`` (the protocol's own command, with
  anything nats-py had queued first, in order) straight to the connection's transport, instead of
  queueing it for nats-py's flusher task, which costs a loop iteration, a queue and a future per
  message. While the connection is down, or the transport holds more than ``MAX_UNSENT_BYTES``
  (a slow server: nats-py's own publish then buffers and waits as it always does), it returns False
  and the caller publishes through nats-py.
- ``DirectDelivery`` takes a subscription's messages before nats-py's read loop sees them: the
  bytes the socket delivered are split into ``MSG`` frames where they arrive (the connection's
  ``StreamReader.feed_data``) and each frame of a direct subscription goes to the handler there, so
  a batch costs one loop iteration and no ``Msg`` object, ``asyncio.Queue``, task wake-up or copy
  through nats-py's parser. Anything else (``PING``, ``INFO``, ``-ERR``, other subscriptions, a
  frame split across reads), and everything after it until nats-py has parsed it all, goes to
  nats-py as before; a direct subscription's frame that nats-py parses meanwhile reaches the
  handler from nats-py's ``_process_msg`` (the last one read at once, others through a backlog one
  loop callback drains). nats-py's client-side slow-consumer rule holds: of the messages read
  together, those beyond ``pending_msgs`` (or ``PENDING_BYTES``) are dropped and reported (the
  mirror sees the sequence gaps and resyncs those markets), except on the ``keep`` subjects (the
  relay's heartbeat); the server's own cut is untouched.

- ``LoopReads`` (``DirectDelivery.take_loop_reads``, the mirror on a plain TCP connection): the event
  loop's wait itself reads the socket (``_mirror.wait``) while it is the only file with news, so a
  batch goes from ``recv`` to the handler without an event-loop iteration (docs/FANOUT.md, "The
  mirror's path in C"); the frame split is C too (``_mirror.frames``).

Both use nats-py internals (``Client._transport``, ``_pending``, ``_process_msg``, ``_ps``, the
transport's ``StreamReader``): ``supported`` checks they are there (and ``attach_reader`` the
reader), and without them everything goes through nats-py's public API as before
(``tests/test_fanout_lean.py`` fails if the installed nats-py no longer takes the lean path).
"""

from __future__ import annotations

import asyncio
import logging
import selectors
from asyncio import selector_events
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from ldc.fanout import _mirror

log = logging.getLogger(__name__)

# bytes a DirectDelivery backlog may hold, as nats-py's own subscription limit (DEFAULT_SUB_PENDING_BYTES_LIMIT)
PENDING_BYTES: Final = 64 * 1024 * 1024
_MAX_CONTROL_LINE: Final = 4096  # nats-py's MAX_CONTROL_LINE_SIZE: a longer MSG line is its parser's to refuse
# bytes the transport may hold unsent before publish_now hands over to nats-py's publish (which
# buffers up to its pending_size and drains): a server that does not read is not fed without limit
MAX_UNSENT_BYTES: Final = 1 << 20


def supported(nc: Any) -> bool:
    """True when the installed nats-py has the internals the lean paths use."""
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    return (writer is not None and hasattr(writer, "transport") and isinstance(getattr(nc, "_pending", None), list)
            and hasattr(nc, "_pending_data_size") and callable(getattr(nc, "_process_msg", None))
            and isinstance(getattr(getattr(nc, "_ps", None), "buf", None), bytearray))


def publish_now(nc: Any, subject: bytes, payload: bytes) -> bool:
    """Write one PUB on the connection now; False when the caller must use ``nc.publish`` instead."""
    if not nc.is_connected:
        return False
    try:
        writer = nc._transport._io_writer
        if writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            return False
        pending = nc._pending
    except AttributeError:  # another transport (websocket) or another nats-py
        return False
    command = b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)
    if pending:  # what nats-py queued (a heartbeat, a PING) goes first, as its flusher would send it
        writer.writelines([*pending, command])
        nc._pending = []
        nc._pending_data_size = 0
    else:
        writer.write(command)
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += len(payload)
    return True


def direct_fd(nc: Any) -> int:
    """The connection's plain TCP socket, when the relay's C pump may ``send()`` on it now: connected,
    no TLS (the bytes would have to go through the SSL object), nothing queued by nats-py (its
    flusher's ``_pending``) and nothing the transport holds unsent, so what C sends comes after every
    byte written before it. -1 otherwise (then ``write_frames`` / ``publish_now``, in order)."""
    if not nc.is_connected or nc._pending:
        return -1
    try:
        transport = nc._transport._io_writer.transport
    except AttributeError:
        return -1
    if transport.get_write_buffer_size() or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def write_frames(nc: Any, frames: bytes, tail: bool = False) -> bool:
    """Write ready ``PUB`` frames to the connection's transport now, after whatever nats-py had
    queued; False when the caller must publish through nats-py instead (down, another transport, or
    more than ``MAX_UNSENT_BYTES`` unsent). ``tail``: the unsent rest of a ``_relay`` pump's send,
    which may begin inside a frame whose start the socket took: it is written whatever the transport
    holds (only these bytes keep the stream whole), False only when the connection is down."""
    if not nc.is_connected:
        return False
    try:
        writer = nc._transport._io_writer
        if not tail and writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            return False
        pending = nc._pending
    except AttributeError:
        return False
    if tail:  # it completes frames that went before anything nats-py queued since (the pump ran without it)
        writer.write(frames)
    elif pending:
        writer.writelines([*pending, frames])
        nc._pending = []
        nc._pending_data_size = 0
    else:
        writer.write(frames)
    return True


def count_sent(nc: Any, messages: int, payload_bytes: int) -> None:
    """Count messages sent past nats-py's publish in its statistics, as its own publish would."""
    stats = nc.stats
    stats["out_msgs"] += messages
    stats["out_bytes"] += payload_bytes


Handler = Callable[[bytes, bytes], None]  # (subject, payload)


class DirectDelivery:
    """Messages of the subscriptions ``add``-ed go to ``handler(subject, payload)`` without a ``Msg``,
    a queue or a task; any other message goes through nats-py as before. ``on_drop(dropped_so_far)``
    is called when a message is dropped (more than ``pending_msgs`` read together; never one on a
    subject of ``keep``). Call
    ``attach_reader`` after every (re)connect: each connection has a reader of its own."""

    def __init__(self, nc: Any, handler: Handler, pending_msgs: int, on_drop: Callable[[int], None],
                 keep: frozenset[bytes] = frozenset()) -> None:
        self._nc = nc
        self._keep = keep  # subjects never dropped (the relay's heartbeat: small, and what says it is alive)
        self._handler = handler
        self._limit = pending_msgs
        self._on_drop = on_drop
        self._sids: set[int] = set()
        self._backlog: deque[tuple[bytes, bytes]] = deque()
        self._backlog_bytes = 0
        self._scheduled = False
        self._reader: Any = None
        self.dropped = 0
        self._delivered = 0
        self._framed = 0
        self._loop_reads = 0
        # a read of the mirror's batch frames alone, delivered and applied in C (_mirror.Fast, set by the
        # mirror: its apply is C too); its counters add to the three below
        self.fast: Any = None
        self._loop = asyncio.get_running_loop()
        from nats.protocol.parser import AWAITING_CONTROL_LINE  # nats-py: the optional extra's

        self._idle = AWAITING_CONTROL_LINE  # the parser's state between messages
        self._original = nc._process_msg
        nc._process_msg = self._process_msg  # the parser calls self.nc._process_msg for every MSG

    @property
    def delivered(self) -> int:
        """Messages handed to the handler (or applied by ``fast``)."""
        return self._delivered + (self.fast.frames if self.fast is not None else 0)

    @property
    def framed(self) -> int:
        """Messages taken where they arrived (the rest went through nats-py's parser)."""
        return self._framed + (self.fast.frames if self.fast is not None else 0)

    @property
    def loop_reads(self) -> int:
        """Socket reads taken in the loop's wait (take_loop_reads)."""
        return self._loop_reads + (self.fast.reads if self.fast is not None else 0)

    def add(self, sub: Any) -> None:
        self._sids.add(sub._id)
        self.attach_reader()

    def attach_reader(self) -> bool:
        """Take the current connection's bytes where they arrive; False when this transport has no
        ``StreamReader`` (a websocket): its messages then come through nats-py's parser alone."""
        reader = getattr(getattr(self._nc, "_transport", None), "_io_reader", None)
        if reader is self._reader:
            return True
        if not isinstance(reader, asyncio.StreamReader) or not isinstance(getattr(reader, "_buffer", None), bytearray):
            return False
        original = reader.feed_data

        def feed_data(data: bytes) -> None:
            self._feed(reader, original, data)

        setattr(reader, "feed_data", feed_data)  # the protocol's data_received calls reader.feed_data
        self._reader = reader
        return True

    def _feed(self, reader: Any, original: Callable[[bytes], None], data: bytes) -> None:
        ps = self._nc._ps
        if reader._buffer or ps.buf or ps.state != self._idle or self._backlog or reader is not self._reader:
            original(data)  # nats-py has bytes to parse first: order stays the wire's
            return
        if type(data) is not bytes:
            data = bytes(data)
        # the whole MSG frames of our subscriptions at the start, split in C; it stops at anything else (a
        # reply subject, another subscription, a frame split across reads): nats-py's, from there on
        found, pos = _mirror.frames(data, self._sids, _MAX_CONTROL_LINE)
        taken = 0
        for subject, payload in found:
            taken += 1
            self._deliver(subject, payload, taken)
        if pos < len(data):
            original(data[pos:] if pos else data)

    def _deliver(self, subject: bytes, payload: bytes, waiting: int) -> None:
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(payload)
        self._framed += 1
        if waiting > self._limit and subject not in self._keep:  # read with more than the limit before it: dropped, as nats-py would
            self.dropped += 1
            self._on_drop(self.dropped)
            return
        self._handle(subject, payload)

    def _handle(self, subject: bytes, payload: bytes) -> None:
        self._delivered += 1
        try:
            self._handler(subject, payload)
        except Exception:  # noqa: BLE001  (as nats-py reports a failing callback and goes on)
            log.exception("handling a message on %s failed", subject.decode(errors="replace"))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if sid not in self._sids or headers or reply:
            await self._original(sid, subject, reply, data, headers)
            return
        nc = self._nc
        nc.stats["in_msgs"] += 1
        nc.stats["in_bytes"] += len(data)
        full = len(self._backlog) >= self._limit or self._backlog_bytes + len(data) > PENDING_BYTES
        if full and subject not in self._keep:
            self.dropped += 1
            self._on_drop(self.dropped)
            return
        self._backlog.append((subject, data))
        self._backlog_bytes += len(data)
        if not nc._ps.buf and not self._unread():
            self._drain()  # nothing more has been read: apply now, without another loop iteration
        elif not self._scheduled:  # the parser goes on with what was read; the backlog is applied after
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _unread(self) -> int:
        """Bytes read from the socket that nats-py's read loop has not taken yet (its StreamReader's)."""
        try:
            return len(self._nc._transport._io_reader._buffer)
        except (AttributeError, TypeError):
            return 1  # unknown: defer to the loop callback

    def _drain(self) -> None:
        self._scheduled = False
        backlog = self._backlog
        while backlog:
            subject, data = backlog.popleft()
            self._backlog_bytes -= len(data)
            self._handle(subject, data)

    def take_loop_reads(self) -> bool:
        """Read the connection's socket in the event loop's own wait (``LoopReads``): while a plain TCP
        connection's only news is data, the bytes go from ``recv`` to ``feed_data`` without an event-loop
        iteration. False (nothing changed) on another loop or selector."""
        loop = self._loop
        selector = getattr(loop, "_selector", None)
        if isinstance(selector, LoopReads):
            selector.direct = self
            return True
        if (not isinstance(loop, asyncio.SelectorEventLoop) or type(selector) is not selectors.EpollSelector
                or not hasattr(loop, "_ready") or not hasattr(loop, "_stopping")):
            return False  # another loop, or an asyncio whose internals differ: asyncio reads as before
        setattr(loop, "_selector", LoopReads(selector, self))
        return True

    def fast_fd(self) -> int:
        """The plain TCP socket the loop's wait may read for this connection, or -1 (TLS, closed, paused,
        another transport: asyncio's own read then)."""
        try:
            transport = self._nc._transport._io_writer.transport
            if (type(transport) is not _PLAIN_TRANSPORT or transport._conn_lost or not transport.is_reading()
                    or transport.get_protocol()._stream_reader is not self._reader):
                return -1
            fd: int = transport._sock_fd
        except AttributeError:
            return -1
        return fd

    def take_read(self, data: bytes) -> bool:
        """``LoopReads``' bytes, as the transport hands them over; True when the loop has nothing to do for them."""
        self._loop_reads += 1
        transport = self._nc._transport._io_writer.transport
        try:
            transport.get_protocol().data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # as the transport's own read: the connection fails, not the loop
            self._fast_error(exc)
            return False
        loop: Any = self._loop
        return not loop._ready and not loop._stopping  # work scheduled, or a stop asked: back to the loop

    def _fast_error(self, exc: BaseException) -> None:
        """A read failed in our hands (``take_read``, or ``_mirror.Fast`` after it delivered a frame): the
        connection fails, as asyncio's transport fails it when ``data_received`` raises (nats-py reconnects)."""
        transport = self._nc._transport._io_writer.transport
        transport._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _fast_failed(self, subject: bytes, exc: BaseException | None) -> None:
        """A batch ``_mirror.Fast`` read failed to apply: logged, as ``_handle`` logs a failing handler."""
        log.error("handling a message on %s failed", subject.decode(errors="replace"), exc_info=exc)

    def close(self) -> None:
        if self._nc._process_msg == self._process_msg:
            self._nc._process_msg = self._original
        selector = getattr(self._loop, "_selector", None)
        if isinstance(selector, LoopReads) and selector.direct is self:
            setattr(self._loop, "_selector", selector.inner)


_PLAIN_TRANSPORT: Final = getattr(selector_events, "_SelectorSocketTransport", None)
# bytes one read takes at most, as asyncio's socket transport (its max_size)
_READ_SIZE: Final = getattr(_PLAIN_TRANSPORT, "max_size", 256 * 1024)


class LoopReads(selectors.BaseSelector):
    """The event loop's selector, with the mirror's NATS socket read inside its wait (``_mirror.wait``):
    while the socket is the only file with news and its bytes are the direct subscriptions' messages,
    they are applied there and the wait goes on, so a batch costs a ``recv`` and the mirror's own code,
    not an event-loop iteration (its timers, ready queue, selector call and transport callbacks).
    Anything else (another file, a timer due, a signal, bytes that scheduled work for the loop, an EOF
    or error left for the transport's recv) returns to the loop as its own selector would."""

    def __init__(self, inner: selectors.EpollSelector, direct: DirectDelivery) -> None:
        self.inner = inner
        self.direct = direct
        self._epfd = inner.fileno()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            fd = self.direct.fast_fd()
            if fd >= 0:
                _mirror.wait(self._epfd, fd, -1.0 if timeout is None else timeout, self.direct.take_read, _READ_SIZE,
                             self.direct.fast)
                timeout = 0
        return self.inner.select(timeout)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.modify(fileobj, events, data)

    def close(self) -> None:
        self.inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self.inner.get_map()

    def fileno(self) -> int:
        return self.inner.fileno()
