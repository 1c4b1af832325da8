"""The hot path's two NATS operations, done leaner than nats-py's general ones, on nats-py's connection.

nats-py stays the client: it connects (TLS, user / password, token, nkey, creds), reconnects,
answers pings, serves requests and heartbeats. Only the relay's batch publish and the mirror's batch
delivery take a shorter way through the same connection, measured in ``scripts/bench_mirror.py``
(docs/FANOUT.md):

- ``publish_now`` writes ``PUB <subject> <n>\\r\\n<payload>\\r\\n`` (the protocol's own command, with
  anything nats-py had queued first, in order) straight to the connection's transport, instead of
  queueing it for nats-py's flusher task, which costs a loop iteration, a queue and a future per
  message. While the connection is down, or the transport holds more than ``MAX_UNSENT_BYTES``
  (a slow server: nats-py's own publish then buffers and waits as it always does), it returns False
  and the caller publishes through nats-py.
- ``DirectDelivery`` takes a subscription's messages from nats-py's parser as they are parsed: the
  last one read is handled at once, and while more bytes wait to be parsed they go to a bounded
  backlog that one loop callback drains, instead of a ``Msg`` object, an ``asyncio.Queue`` and a task
  wake-up per message. The backlog keeps nats-py's client-side slow-consumer rule: messages
  beyond ``pending_msgs`` (or ``PENDING_BYTES``) waiting are dropped and reported (the mirror sees the sequence gaps); the
  server's own slow-consumer cut is untouched.

Both use nats-py internals (``Client._transport``, ``_pending``, ``_process_msg``, ``_ps.buf``): ``supported``
checks they are there, and without them everything goes through nats-py's public API as before
(``tests/test_fanout_lean.py`` fails if the installed nats-py no longer takes the lean path).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger(__name__)

# bytes a DirectDelivery backlog may hold, as nats-py's own subscription limit (DEFAULT_SUB_PENDING_BYTES_LIMIT)
PENDING_BYTES: Final = 64 * 1024 * 1024
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


Handler = Callable[[bytes, bytes], None]  # (subject, payload)


class DirectDelivery:
    """Messages of the subscriptions ``add``-ed go to ``handler(subject, payload)`` without a ``Msg``,
    a queue or a task; any other message goes through nats-py as before. ``on_drop(dropped_so_far)``
    is called when the backlog is full and a message is dropped."""

    def __init__(self, nc: Any, handler: Handler, pending_msgs: int, on_drop: Callable[[int], None]) -> None:
        self._nc = nc
        self._handler = handler
        self._limit = pending_msgs
        self._on_drop = on_drop
        self._sids: set[int] = set()
        self._backlog: deque[tuple[bytes, bytes]] = deque()
        self._backlog_bytes = 0
        self._scheduled = False
        self.dropped = 0
        self.delivered = 0
        self._loop = asyncio.get_running_loop()
        self._original = nc._process_msg
        nc._process_msg = self._process_msg  # the parser calls self.nc._process_msg for every MSG

    def add(self, sub: Any) -> None:
        self._sids.add(sub._id)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if sid not in self._sids or headers:
            await self._original(sid, subject, reply, data, headers)
            return
        nc = self._nc
        nc.stats["in_msgs"] += 1
        nc.stats["in_bytes"] += len(data)
        if len(self._backlog) >= self._limit or self._backlog_bytes + len(data) > PENDING_BYTES:
            self.dropped += 1
            self._on_drop(self.dropped)
            return
        self._backlog.append((subject, data))
        self._backlog_bytes += len(data)
        if not self._nc._ps.buf and not self._unread():
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
        backlog, handler = self._backlog, self._handler
        while backlog:
            subject, data = backlog.popleft()
            self._backlog_bytes -= len(data)
            self.delivered += 1
            try:
                handler(subject, data)
            except Exception:  # noqa: BLE001  (as nats-py reports a failing callback and goes on)
                log.exception("handling a message on %s failed", subject.decode(errors="replace"))

    def close(self) -> None:
        if self._nc._process_msg == self._process_msg:
            self._nc._process_msg = self._original
