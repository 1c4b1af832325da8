"""The feeder of a group on a venue whose books start from its websocket (OKX, Bybit, Kraken, Coinbase, HTX).

Glue only, on the venue seam (``ldc.venues.base.StreamVenue``): no exchange is named here.

    StreamConnection threads ── a read's messages ──► StreamRouter (C) ──► each market's HotPath (C: applied, checked, published)
                                                     └─ what it leaves ──► venue.parse ──► BookSync ──► FastBook ──► SegmentWriter
    main thread: ticks (staleness), counters, heartbeat, systemd notifications, signals

Each connection subscribes its markets' streams (split to the venue's per-request and per-connection limits),
sends the venue's keep-alive, and reconnects with a doubling backoff. BookSync decides everything: a stream
snapshot (re)starts a book, a gap, a checksum mismatch or a crossed book resubscribes that market alone.
A venue's error answer naming a market lands in that market's slot, in the venue's own words. A venue whose
snapshot is requested on the websocket (HTX ``req``: ``ws_snapshot_request``) gets BookSync's FetchSnapshot as
that request on the market's connection. A venue whose sequence counts the whole connection (Coinbase:
``SequenceScope.CONNECTION``) is checked here, per connection: a gap (or an unreadable message, whose number
is lost with it) counts a gap on every market of that connection and reconnects it (new snapshots, the
sequence starts again). A message the parser refuses resyncs its market when the venue can still name it
(``stream_of``: Kraken, HTX, whose sequences would not show the loss). A server's ping is answered with the
venue's reply. A venue with a C dialect (``fast_parse``: every stream venue: OKX, Bybit, Coinbase, HTX, Kraken v2) has its books read in C
(``ldc/fastbook/dialect_*.c``, the same values as its reference parser); everything else, any message the dialect
doubts, and every message of a venue without one, is read by the venue's reference parser (correct, slower).

The hot path (OKX, Bybit, Kraken: ``_fastbook.StreamRouter`` runs their dialects; per-market sequences, or none): as the Binance
feeder's Router, ``on_messages`` hands one read's messages to the StreamRouter, which feeds each book update to
its market's C ``HotPath`` while BookSync lets that path hold the book (``BookSync.fast_path``, through the
market's ``ldc.handoff.Handoff``): the sequence rule's APPLY case (OKX ``prevSeqId == seqId`` of the book,
Bybit ``u == id + 1``, Kraken none: every update, the id never back), the update applied, the venue's CRC32
(OKX's top 25, Kraken's top 10) verified in C when the message carries one, the top N published; an old update (OKX's keep-alive ``prevSeqId == seqId``, a duplicate) is counted and
dropped there (``verdict``'s OLD). It stops at the first message Python must see (a snapshot, a control message,
a gap, a reset, a checksum not confirmed, a crossed top, anything the dialect doubts), which takes the
path above, in order, after the Handoff settled the book back into BookSync. An exception in C resyncs that
market (fail closed). Coinbase (its sequence is the connection's) and HTX stay on the Python path.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import websocket

from ldc._fastbook import (
    ROUTE_CHECKSUM_FAULT,
    ROUTE_CONTROL,
    ROUTE_DIFF,
    ROUTE_END,
    ROUTE_TOP_FAULT,
    FastBook,
    HotPath,
    StreamRouter,
)
from ldc.config import GroupConfig, endpoints, reload_group, restart_keys, symbol_changes
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, LdcError, ProtocolError, RateLimitError
from ldc.feeder import _COUNTERS
from ldc.handoff import Handoff, HotTimes
from ldc.io.rest import RestClient
from ldc.io.ws import CLOSE_PROTOCOL_ERROR, READ_IDLE, FrameParser, FrameReader, close_handshake, send_close, tls_options
from ldc.publish import SlotPublisher
from ldc.record import Recorder, config_for
from ldc.sdnotify import Notifier
from ldc.shm.layout import Counter, Status
from ldc.shm.writer import SegmentWriter
from ldc.lifecycle import SystemdReport, status_line
from ldc.standby import exit_status, standby_for
from ldc.sync import (
    DISCONNECT,
    MESSAGE_LOST,
    TICK,
    Action,
    Actions,
    BookSync,
    Event,
    FetchSnapshot,
    Resubscribe,
    SnapshotFailed,
    SnapshotPurpose,
    SnapshotResult,
    SyncConfig,
    SyncState,
)
from ldc.venues import stream_venue, venue_table
from ldc.venues._parse import ControlKind, VenueControl
from ldc.venues.base import Precision, SequenceScope, SnapshotSource, StreamEvent, hot_path_links_prev, hot_path_unsequenced

log = logging.getLogger("ldc.feeder")

# Timers
TICK_INTERVAL_S = 0.25
RECV_POLL_S = 0.5  # a read waits this long at most, so pings and resubscriptions go out on time
CONNECT_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 0.5  # doubling up to the cap, with jitter
RECONNECT_CAP_S = 30.0
OUTBOX_SPACING_S = 0.1  # between two queued requests (pongs, snapshot requests): HTX's req limit, the strictest
SILENT_CONNECTION_S = 60.0  # nothing received for this long (pongs included): the connection is dead
REQUEST_WINDOW_S = 3600.0  # the venue's requests-per-hour window
# Limits
SNAPSHOT_WORKERS = 2  # REST snapshot requests in flight at once (only without the stream's snapshot)


@dataclass(eq=False)
class StreamMarket(HotTimes):
    symbol: str
    stream: str
    slot: int
    sync: BookSync
    hot: HotPath  # armed as sync.fast_path() allows (a venue with a StreamRouter); holds conn and the last times
    bids: np.ndarray
    asks: np.ndarray
    shown_state: SyncState | None = None
    error: str = ""
    published: dict[Counter, int] = field(default_factory=dict)
    fetching: bool = False  # a REST snapshot request is in flight
    snapshot_purpose: SnapshotPurpose = SnapshotPurpose.LIVE  # of the websocket snapshot requested last (HTX req)
    handoff: Handoff = field(init=False)  # the one owner of the book's hand-over between sync and hot

    def __post_init__(self) -> None:
        self.handoff = Handoff(self.sync, self.hot)

    @property
    def conn(self) -> int:
        """The connection carrying the market's stream (-1: none yet): the StreamRouter routes only its updates."""
        return self.hot.conn

    @conn.setter
    def conn(self, conn_id: int) -> None:
        self.hot.conn = conn_id


class StreamFeeder:
    """Keeps every market of one stream-snapshot group synced and published until ``request_stop()``."""

    def __init__(self, group: GroupConfig, *, config_path: str | None = None, notifier: Notifier | None = None,
                 standby: bool = False) -> None:  # fmt: skip
        venue = stream_venue(group.exchange, group.channel)
        if venue is None:
            raise LdcError(f"group {group.name!r}: {group.exchange} books start from REST snapshots: use ldc.feeder.Feeder")
        self.group, self.venue, self.config_path = group, venue, config_path
        self.table = venue_table(group.exchange)
        self.endpoints = endpoints(group)
        self._notifier = notifier or Notifier()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.writer = SegmentWriter(group.name, depth=group.depth, capacity=group.capacity, exchange=group.exchange,
                                    notify_paced_us=group.notify_paced_us,
                                    standby=standby)  # fmt: skip
        # None: this process is the group's writer; a standby's recording starts at its takeover (no snapshot lines)
        self.standby = standby_for(self.writer, self.request_stop, self._record_takeover)
        self._slots = SlotPublisher(self.writer, group.depth)  # BookSync's answers into the slots
        self.markets: dict[str, StreamMarket] = {}  # stream key -> market
        self.connections: list[StreamConnection] = []
        self.malformed = 0  # messages the venue's parser refused (each logged)
        # the venue's C dialect, if it has one: None from it (or a ValueError) hands the message to venue.parse
        self._fast_parse: Callable[[bytes], list[tuple[str, Any]] | None] | None = getattr(venue, "fast_parse", None)
        # a venue whose C dialect the StreamRouter runs (OKX, Bybit, Kraken) and whose sequences are per market has each
        # read's book updates applied and published in C (on_messages) while a market's HotPath holds its book
        # (a dialect with arguments names them in ``router_dialect``: Kraken's subscribed depth)
        dialect = getattr(venue, "router_dialect", self._fast_parse)
        self._router = _stream_router(dialect) if venue.scope is SequenceScope.MARKET else None
        self.connection_gaps = 0  # connection-scoped sequence gaps (each resyncs that connection's markets)
        # REST snapshots, for a channel without its stream snapshot (OKX's 2026 procedure)
        self.stats = self.writer.stats  # the feeder's own figures in the segment (LAYOUT.md section 16)
        self._rest = RestClient(self.endpoints.rest_url, governor=None, connect_timeout_s=group.rest_timeout_s,
                                read_timeout_s=group.rest_timeout_s, ca_file=group.ca_file,
                                on_answer=self.stats.rest_answer)  # fmt: skip
        self._workers = ThreadPoolExecutor(SNAPSHOT_WORKERS, thread_name_prefix=f"ldc-snap-{group.name}")
        recording = config_for(group.record, group.name, group.record_rotate_mb, group.record_rotate_s)
        # raw frames and snapshots; a standby's held until its takeover (ldc/record.py)
        self._recorder = Recorder(recording, held=self.standby is not None) if recording is not None else None

    def _record_takeover(self) -> None:
        """This standby took the segment over: its recording starts with what it holds (ldc/record.py)."""
        if self._recorder is not None:
            self._recorder.take_over()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._recorder is not None:
            self._recorder.start()
        # the slots first: readers and ``ldc status`` see every market while the instrument list is read
        slots = {symbol: self.writer.add_market(symbol) for symbol in self.group.symbols}
        for slot in slots.values():
            self.writer.set_status(slot, Status.RESYNCING, "reading the instrument list")
        precision = self._precision()
        for symbol in self.group.symbols:
            self._add_market(symbol, precision.get(symbol), slots[symbol])
        streams = list(self.markets)
        size = self.group.streams_per_connection
        for conn_id, start in enumerate(range(0, len(streams), size)):
            connection = StreamConnection(self, conn_id, streams[start : start + size])
            for stream in connection.streams:  # its connection from the start: a resubscription needs one
                self.markets[stream].conn = conn_id
            self.connections.append(connection)
            connection.start()
        if self.standby is not None:
            self.standby.start()
        log.info("group %s: %d markets on %s (%s), depth %d", self.group.name, len(self.markets),
                 self.endpoints.ws_stream_url, self.group.channel, self.group.depth)  # fmt: skip

    def run(self) -> int:
        """Tick until stopped (the caller installed the signal handlers), telling systemd as ``Feeder`` does:
        ready, a status line of the markets in sync, the watchdog."""
        self.start()
        report = SystemdReport(self._notifier)
        report.ready(len(self.markets))
        while not self._stop.wait(TICK_INTERVAL_S):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self.tick()
            with self._lock:
                line = status_line(self.writer, self.markets.values())
            report.ticked(line)
        report.stopping()
        self.close()
        return exit_status(self.standby)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def reload(self) -> None:
        """SIGHUP: re-read this group's symbols and add / remove markets live. A broken file changes nothing."""
        if self.config_path is None:
            return
        try:
            new = reload_group(self.config_path, self.group.name)
        except ConfigError as exc:
            log.error("reload ignored, the running markets stay as they are: %s", exc)
            return
        added, removed = symbol_changes(self.group, new)
        later = restart_keys(self.group, new)
        if later:
            log.warning("reload: %s changed; those take effect at the next restart", ", ".join(later))
        with self._lock:
            for symbol in removed:
                market = self.markets.pop(self.venue.stream(self.group.channel, symbol))
                market.handoff.settle()  # no update in flight touches its book again
                if self._router is not None:
                    self._router.paths.pop(market.stream, None)
                self.connections[market.conn].remove(market.stream)
                self.writer.remove_market(symbol)
            for symbol in added:
                try:
                    market = self._add_market(symbol, None)  # no instrument list read: see _precision
                except LdcError as exc:  # the segment is full: its capacity was fixed at creation
                    log.error("reload: market %s not added: %s", symbol, exc)
                    continue
                connection = self._connection_with_room()
                connection.add(market.stream)
                market.conn = connection.conn_id
            self.group = dataclasses.replace(self.group, symbols=tuple(s for s in new.symbols if s in self._symbols()))
        log.info("reload: %d markets added, %d removed, %d running", len(added), len(removed), len(self.markets))

    def _symbols(self) -> set[str]:
        return {market.symbol for market in self.markets.values()}

    def _connection_with_room(self) -> StreamConnection:
        """The last connection while it carries fewer than streams_per_connection streams, else a new one."""
        if self.connections and len(self.connections[-1].streams) < self.group.streams_per_connection:
            return self.connections[-1]
        connection = StreamConnection(self, len(self.connections), [])
        self.connections.append(connection)
        connection.start()
        return connection

    def close(self) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.join(timeout=CONNECT_TIMEOUT_S)
        self._workers.shutdown(wait=True, cancel_futures=True)
        if self._recorder is not None:
            self._recorder.close()  # every frame and snapshot is in: its spool goes to the compressor
        with self._lock:
            self._rest.close()
            self.writer.close()

    def _fetch(self, market: StreamMarket, action: FetchSnapshot) -> None:
        message = self.venue.ws_snapshot_request(market.stream)
        if message is not None:  # asked on the market's own connection (HTX aligns req only with that stream)
            market.snapshot_purpose = action.purpose
            if 0 <= market.conn < len(self.connections):
                self.connections[market.conn].send_soon(message)
            return
        request = self.venue.snapshot_request(market.symbol, action.limit)
        if request is None or market.fetching:
            return
        market.fetching = True
        try:
            self._workers.submit(self._snapshot_worker, market, action, *request)
        except RuntimeError:  # shut down: the feeder is stopping
            market.fetching = False

    def _snapshot_worker(self, market: StreamMarket, action: FetchSnapshot, path: str, params: dict[str, str | int]) -> None:
        event: SnapshotResult | SnapshotFailed
        try:
            body = self._rest.get(path, params=params, weight=1, stop=self._stop).body
            if self._recorder is not None:
                self._recorder.snapshot(path, params, body, time.time_ns())
            event = SnapshotResult(self.venue.parse_snapshot(body, action.limit), action.purpose)
        except RateLimitError as exc:
            event = SnapshotFailed(action.purpose, str(exc), exc.retry_after_s)
        except LdcError as exc:
            event = SnapshotFailed(action.purpose, str(exc))
        with self._lock:
            market.fetching = False
            if self._stop.is_set() or self.markets.get(market.stream) is not market:
                return
            if isinstance(event, SnapshotFailed):
                log.warning("market %s: snapshot failed: %s", market.symbol, event.reason)
            self._feed(market, event, time.monotonic())
            self.writer.notify()

    def _precision(self) -> dict[str, Precision]:
        """Price and size decimals for the venue's checksum, from its instrument list (OKX, Kraken; the symbol
        catalogue reads it); best effort: without it OKX writes each number in its shortest form, and a Kraken
        pair says why in its slot."""
        from ldc.catalogue import SymbolCatalogue, stream_venue_listing

        def get(path: str, params: dict[str, str], weight: int) -> bytes:
            return self._rest.get(path, params=params, weight=weight).body

        catalogue = SymbolCatalogue(self.group.exchange, stream_venue_listing(self.venue), get, log=log)
        return catalogue.precision(self.group.symbols)

    def _add_market(self, symbol: str, precision: Precision | None, slot: int | None = None) -> StreamMarket:
        depth = self.group.depth
        try:
            checksum, error = self.venue.checksum_for(symbol, precision), ""
        except ConfigError as exc:  # a checksum that cannot be verified (Kraken without the pair's precision)
            checksum, error = None, str(exc)
        hot_checksum = self.venue.hot_checksum(symbol, precision) if checksum is not None else None
        config = SyncConfig(rule=self.venue.rule, depth=depth, snapshot_limit=max(depth, self.table.levels_of(self.group.channel)),
                            snapshot_source=self.venue.snapshot_source, refresh_interval_s=None,
                            stale_after_s=self.group.stale_after_s, checksum=checksum, checksum_in_c=hot_checksum is not None,
                            window_kept_whole=self.venue.keeps_window_whole)  # fmt: skip
        slot = self.writer.add_market(symbol) if slot is None else slot
        hot = HotPath(self.writer.segment, slot, futures=hot_path_links_prev(self.venue.rule),
                      unsequenced=hot_path_unsequenced(self.venue.rule))  # fmt: skip
        hot.skips_old = True  # an old update (OKX's keep-alive, a duplicate) is counted in C, not handed back
        if hot_checksum is not None:
            hot.set_checksum(*hot_checksum)
        market = StreamMarket(symbol, self.venue.stream(self.group.channel, symbol), slot,
                              BookSync(symbol, lambda: FastBook(depth=depth), config), hot, np.zeros((depth, 2)), np.zeros((depth, 2)))  # fmt: skip
        market.published = {counter: 0 for counter in Counter if counter is not Counter.UPDATES}
        self.markets[market.stream] = market
        if self._router is not None and not error:
            self._router.paths[market.stream] = hot
        if error:
            market.error = error
            self.writer.set_status(slot, Status.ERROR, error)
            log.error("market %s: %s", symbol, error)
            return market
        self.writer.set_status(slot, Status.RESYNCING, "waiting for the stream's snapshot")
        return market

    # -- connection events (connection threads) --------------------------------------------------

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None:
        self.on_messages(conn_id, [raw], recv_time_ns)

    def on_messages(self, conn_id: int, raws: list[bytes], recv_time_ns: int) -> None:
        """The messages of one socket read, in order. With a StreamRouter (C), every book update that continues
        its market's book while the market's HotPath holds it is applied, checked (OKX's and Kraken's checksums) and published
        in C; the router stops at the first message Python must see (a snapshot, a control message, a gap, a
        reset, a checksum not confirmed, anything its dialect doubts), which takes the reference path below."""
        if self._recorder is not None:
            self._recorder.stream_frames(raws, recv_time_ns)
        router = self._router
        if router is None:
            for raw in raws:
                self._on_message(conn_id, raw, recv_time_ns, self._parse)
            return
        start, count, lock = 0, len(raws), self._lock
        while start < count:
            # acquire / try / finally release is what `with lock:` does, in half its time (~50 vs ~105 ns: the
            # context protocol's two method lookups and calls), once a read
            lock.acquire()
            try:
                try:
                    index, kind, value = router.feed(raws, start, conn_id, recv_time_ns)
                except Exception as exc:  # raised in C while a HotPath held a book: fail closed
                    self._route_failed(raws[start:], exc)
                    if router.fault_stream is None:
                        return
                    start = router.fault_index + 1  # that market resyncs; the read goes on after its message
                    continue
                if kind == ROUTE_END:
                    return
                if kind == ROUTE_DIFF or kind == ROUTE_TOP_FAULT or kind == ROUTE_CHECKSUM_FAULT:
                    self._routed(kind, value, recv_time_ns)
                    self.writer.notify()
            finally:
                lock.release()
            if kind != ROUTE_DIFF and kind != ROUTE_TOP_FAULT and kind != ROUTE_CHECKSUM_FAULT:
                # ROUTE_CONTROL: the dialect leaves it to the reference parser; ROUTE_MALFORMED: the dialect
                # doubts it, and the reference parser reads it or names the fault (read_message's fallback)
                self._on_message(conn_id, raws[index], recv_time_ns, self.venue.parse)
            start = index + 1

    def _routed(self, kind: int, events: list[tuple[str, Any]], recv_time_ns: int) -> None:
        """A message's events the StreamRouter left to Python, from the first one it did not finish: on
        ROUTE_TOP_FAULT / ROUTE_CHECKSUM_FAULT that first one is an update applied in C already, BookSync's to
        answer; the rest (and everything on ROUTE_DIFF) take the reference path. Caller holds the lock."""
        if kind == ROUTE_DIFF:
            self._events(events, recv_time_ns)
            return
        stream, diff = events[0]
        market = self.markets.get(stream)
        if market is not None and not market.error:
            now = time.monotonic()
            if kind == ROUTE_TOP_FAULT:
                self._carry_out(market, market.handoff.top_fault(now))
            else:
                self._carry_out(market, market.handoff.checksum_fault(diff, now))
            self._rearm(market)
        if len(events) > 1:
            self._events(events[1:], recv_time_ns)

    def _route_failed(self, raws: list[bytes], exc: Exception) -> None:
        """The StreamRouter raised: a HotPath's apply or publish failed in C, and that market's book may be
        half-applied, so it resyncs (BookSync logs the fault). The router names it (``fault_stream``); when it
        cannot (a failure outside any HotPath), every market named in the unfinished messages whose HotPath held
        its book resyncs. The lost updates of any other market show as a gap at its next one. Caller holds the lock."""
        router = self._router
        fault = router.fault_stream if router is not None else None
        streams: set[str] = set()
        if fault is not None:
            streams.add(fault)
        else:
            for raw in raws:
                try:
                    events = self._fast_parse(raw) if self._fast_parse is not None else None
                except ValueError:
                    continue
                streams.update(stream for stream, _ in events or ())
        for stream in streams:
            market = self.markets.get(stream)
            if market is not None and not market.error and market.handoff.armed:
                self._carry_out(market, market.handoff.fault(exc, "an update in the hot path"))
                self._rearm(market)
        self.writer.notify()

    def _on_message(self, conn_id: int, raw: bytes, recv_time_ns: int,
                    parse: Callable[[bytes], list[tuple[str, Any]] | VenueControl]) -> None:  # fmt: skip
        """One message on the reference path (``parse``: read_message with the C dialect, or the venue's own);
        ``on_messages`` recorded it with its read."""
        connection_scope = self.venue.scope is SequenceScope.CONNECTION
        if connection_scope and self.connections[conn_id].resyncing:
            return  # what follows a connection gap is not read: the reconnect starts the connection's books again
        try:
            parsed = parse(raw)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("connection %d: malformed message: %s: %r", conn_id, exc, raw[:120])
            if connection_scope:  # its sequence number is lost with it: the connection's books cannot be proved
                self._connection_gap(conn_id, f"unreadable message ({exc})")
            else:
                self._message_lost(self.venue.stream_of(raw))
            return
        if connection_scope and not self.connections[conn_id].sequence_continues(_sequence_of(parsed)):
            self._connection_gap(conn_id, f"sequence {_sequence_of(parsed)} after {self.connections[conn_id].sequence}")
            return
        if isinstance(parsed, VenueControl):
            self._control(conn_id, parsed)
            return
        with self._lock:
            self._events(parsed, recv_time_ns)
            self.writer.notify()

    def _events(self, parsed: list[tuple[str, Any]], recv_time_ns: int) -> None:
        """A message's snapshots and updates to their markets' BookSyncs. Caller holds the lock."""
        # a snapshot in the stream, or the answer to the websocket snapshot request (HTX req) with its purpose
        requested = self.venue.snapshot_source is SnapshotSource.REST
        for stream, event in parsed:
            market = self.markets.get(stream)
            if market is None or market.error:
                continue
            market.stamp(event.event_time_ms, recv_time_ns)
            now = time.monotonic()
            if isinstance(event, DepthSnapshot):
                self._feed(market, SnapshotResult(event, market.snapshot_purpose if requested else SnapshotPurpose.STREAM), now)
            else:
                self._carry_out(market, market.handoff.on_diff(event, now))
                self._rearm(market)

    def _parse(self, raw: bytes) -> list[tuple[str, Any]] | VenueControl:
        return read_message(self._fast_parse, self.venue.parse, raw)

    def _message_lost(self, stream: str) -> None:
        """A message of ``stream`` was refused: its market resyncs (counted as a gap), the others go on."""
        with self._lock:
            market = self.markets.get(stream)
            if market is not None and not market.error:
                self._feed(market, MESSAGE_LOST, time.monotonic())
                self.writer.notify()

    def _connection_gap(self, conn_id: int, why: str) -> None:
        """A connection-scoped sequence broke: every market on the connection counts a gap; the reconnect
        brings new snapshots (on_close flags the books meanwhile)."""
        connection = self.connections[conn_id]
        connection.resyncing = True
        with self._lock:
            self.connection_gaps += 1
            for stream in connection.streams:
                market = self.markets.get(stream)
                if market is not None and not market.error:
                    self.writer.bump(market.slot, Counter.GAPS, 1)
        log.warning("connection %d: %s: resyncing its %d markets by reconnecting", conn_id, why, len(connection.streams))
        connection.reconnect_soon()

    def _control(self, conn_id: int, control: VenueControl) -> None:
        if control.kind is ControlKind.ERROR:
            with self._lock:
                market = self.markets.get(control.topic) if control.topic else None
                if market is not None:
                    market.handoff.settle()  # the HotPath stops: the slot shows the error from now on
                    market.error = f"{self.venue.name} refused {market.stream}: {control.message}"
                    self.writer.set_status(market.slot, Status.ERROR, market.error)
                    log.error("market %s: %s", market.symbol, market.error)
                    return
            log.error("connection %d: %s error %s: %s", conn_id, self.venue.name, control.code, control.message)
        elif control.kind is ControlKind.SNAPSHOT_FAILED:
            with self._lock:
                market = self.markets.get(control.topic)
                if market is not None and not market.error:
                    log.warning("market %s: %s refused the snapshot request: %s", market.symbol, self.venue.name, control.message)
                    self._feed(market, SnapshotFailed(market.snapshot_purpose, f"{self.venue.name}: {control.message}"), time.monotonic())
        elif control.kind is ControlKind.PING:
            self.connections[conn_id].send_soon(control.reply, first=True)
        elif control.kind is ControlKind.SHUTDOWN:
            log.info("connection %d: %s notice %s, reconnecting: %s", conn_id, self.venue.name, control.code, control.message)
            self.connections[conn_id].reconnect_soon()

    def on_connect_failed(self, streams: list[str], error: str) -> None:
        with self._lock:
            for stream in streams:
                market = self.markets.get(stream)
                if market is not None and not market.error:
                    self._slots.say(market, f"websocket connection failed, retrying: {error}")

    def on_close(self, conn_id: int, streams: list[str]) -> None:
        with self._lock:
            now = time.monotonic()
            for stream in streams:
                market = self.markets.get(stream)
                if market is not None and not market.error:
                    self._feed(market, DISCONNECT, now)

    # -- BookSync's actions ----------------------------------------------------------------------

    def _feed(self, market: StreamMarket, event: Event, now: float) -> None:
        """A non-diff event to BookSync (the book settled first) and its actions carried out. Caller holds the lock."""
        self._carry_out(market, market.handoff.feed(event, now))
        self._rearm(market)

    def _rearm(self, market: StreamMarket) -> None:
        """After BookSync's actions are carried out: the HotPath takes the market's updates again if BookSync
        allows it and the slot shows the state it publishes with (``Handoff.rearm``; only with a StreamRouter)."""
        if self._router is not None:
            market.handoff.rearm(None if market.error else market.shown_state)

    def _carry_out(self, market: StreamMarket, actions: Actions) -> None:
        """Caller holds the lock. The slot's flags always follow BookSync's state (SlotPublisher)."""
        self._slots.carry_out(market, actions, self._act)
        sync = market.sync
        for counter, attribute in _COUNTERS:
            value = getattr(sync, attribute)
            if value != market.published[counter]:
                self.writer.bump(market.slot, counter, value - market.published[counter])
                market.published[counter] = value

    def _act(self, market: StreamMarket, action: Action) -> None:
        """What BookSync asks beyond the slot: a resubscription, a snapshot."""
        if type(action) is Resubscribe:
            if 0 <= market.conn < len(self.connections):
                self.connections[market.conn].resubscribe(market.stream)
        elif type(action) is FetchSnapshot:
            self._fetch(market, action)

    def settle(self) -> None:
        """Every market's book taken back from its HotPath (BookSync adopts what C applied: its counters are
        current) and handed over again. ``tick`` does as much every TICK_INTERVAL_S; a caller reading
        ``market.sync`` between ticks (a test, a benchmark) calls this first."""
        with self._lock:
            for market in self.markets.values():
                if not market.error:
                    market.handoff.settle()
                    self._rearm(market)

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for market in self.markets.values():
                if not market.error:
                    self._feed(market, TICK, now)
            self.writer.heartbeat()
            self.writer.notify()
        if self._recorder is not None:
            self._recorder.publish(self.stats.set)


def _stream_router(dialect: Callable[..., Any] | tuple[Callable[..., Any], int] | None) -> StreamRouter | None:
    """A StreamRouter running the venue's C dialect (with its argument: ``(parse_kraken, depth)``), or None when
    it routes no such dialect (or there is none)."""
    if dialect is None:
        return None
    try:
        return StreamRouter(*dialect) if isinstance(dialect, tuple) else StreamRouter(dialect)
    except (TypeError, ValueError):  # a dialect the router does not run (Coinbase, HTX): the reference path
        return None


def read_message(
    fast_parse: Callable[[bytes], list[tuple[str, Any]] | None] | None,
    parse: Callable[[bytes], list[StreamEvent] | VenueControl],
    raw: bytes,
) -> list[tuple[str, Any]] | VenueControl:
    """A message's book updates as the venue's C dialect reads them (ParsedDiff carries DepthDiff's attributes:
    BookSync reads only those), or the reference parser's reading of anything else (ProtocolError from it)."""
    if fast_parse is not None:
        try:
            events = fast_parse(raw)
        except ValueError:  # a doubt or a fault: the reference parser reads it and names any fault
            events = None
        if events is not None:
            return events
    return parse(raw)


def _sequence_of(parsed: list[tuple[str, DepthSnapshot | DepthDiff]] | VenueControl) -> int:
    """The connection sequence number a parsed message carried (NO_ID: none)."""
    if isinstance(parsed, VenueControl):
        return parsed.sequence
    if not parsed:
        return NO_ID
    event = parsed[0][1]
    return event.last_update_id if isinstance(event, DepthSnapshot) else event.final_id


class StreamConnection(threading.Thread):
    """One websocket connection carrying some markets' streams, reconnecting until the feeder stops.

    websocket-client opens the connection (handshake, TLS, proxies) and sends our frames; the frames received
    are read off its socket in bulk (``ldc.io.ws.FrameReader``, the frame loop the REST-snapshot feeder's pool
    uses: one ``recv_into`` of up to 64 KB, whole text / binary frames split in C), and each read's data
    messages go to the feeder in one ``on_messages`` call stamped with the read's time. Fragmented messages
    come reassembled; a server ping is answered with a pong, a server close with a close echoing its status;
    a protocol violation (a masked frame, reserved bits, a stray continuation) closes the connection with
    1002 and reconnects. Text keep-alives (OKX ``ping`` / ``pong``) are data to the venue's parser."""

    def __init__(self, feeder: StreamFeeder, conn_id: int, streams: list[str]) -> None:
        super().__init__(name=f"ldc-ws-{feeder.group.name}-{conn_id}", daemon=True)
        self.feeder, self.conn_id, self.streams = feeder, conn_id, streams
        self._resubscribe: list[str] = []
        self._added: list[str] = []  # streams to subscribe on the open connection (SIGHUP)
        self._removed: list[str] = []  # streams to unsubscribe
        self._reconnect = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._sent_at: list[float] = []  # when this connection's subscribe / unsubscribe requests went, last hour
        self._outbox: list[bytes] = []  # replies and requests other threads asked for (pongs, snapshot requests)
        self._outbox_at = 0.0  # when the last of them went
        self.sequence = NO_ID  # the connection-scoped sequence number last seen (Coinbase), NO_ID on a new connection
        self.resyncing = False  # a connection-scoped gap was seen: nothing more is read until the reconnect
        self.connects = 0  # websocket connections opened (1 + reconnects)

    def resubscribe(self, stream: str) -> None:
        with self._lock:
            if stream not in self._resubscribe:
                self._resubscribe.append(stream)

    def add(self, stream: str) -> None:
        with self._lock:
            self.streams = [*self.streams, stream]
            self._added.append(stream)

    def remove(self, stream: str) -> None:
        with self._lock:
            self.streams = [s for s in self.streams if s != stream]
            self._added = [s for s in self._added if s != stream]
            self._resubscribe = [s for s in self._resubscribe if s != stream]
            self._removed.append(stream)

    def reconnect_soon(self) -> None:
        self._reconnect.set()

    def send_soon(self, message: bytes, *, first: bool = False) -> None:
        """Queue ``message`` for this connection (``first``: ahead of the others, as a pong must be)."""
        with self._lock:
            self._outbox.insert(0 if first else len(self._outbox), message)

    def sequence_continues(self, sequence: int) -> bool:
        """A connection-scoped sequence number: the first on a connection starts it, each next must be +1."""
        if sequence == NO_ID:
            return True
        if self.sequence != NO_ID and sequence != self.sequence + 1:
            return False
        self.sequence = sequence
        return True

    def _request_id(self) -> str:
        self._requests += 1
        return str(self._requests)

    def run(self) -> None:
        stop, attempt = self.feeder._stop, 0
        stop.wait(self.conn_id / self.feeder.venue.connections_per_s)  # the venue's connections per second per IP
        while not stop.is_set():
            try:
                ws = websocket.create_connection(self.feeder.endpoints.ws_stream_url, timeout=CONNECT_TIMEOUT_S,
                                                 skip_utf8_validation=True, sslopt=tls_options(self.feeder.group.ca_file))  # fmt: skip
            except (OSError, websocket.WebSocketException) as exc:
                self.feeder.on_connect_failed(self.streams, f"{type(exc).__name__}: {exc}")
                attempt += 1
                stop.wait(min(RECONNECT_CAP_S, RECONNECT_MIN_S * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
                continue
            attempt = 0
            self.connects += 1
            self.feeder.stats.connection_opened()
            parser, graceful = FrameParser(), False
            try:
                graceful = self._serve(ws, parser)
            except ProtocolError as exc:
                log.warning("connection %d: protocol error: %s", self.conn_id, exc)
                send_close(ws, CLOSE_PROTOCOL_ERROR.to_bytes(2, "big"))
            except (OSError, websocket.WebSocketException) as exc:
                log.warning("connection %d: %s: %s", self.conn_id, type(exc).__name__, exc)
            finally:
                try:  # its markets are flagged first: nothing more of this connection reaches them
                    self.feeder.on_close(self.conn_id, self.streams)
                finally:
                    if graceful:  # our close: send CLOSE, read until the server's (bounded)
                        close_handshake(ws, parser)
                    ws.shutdown()  # type: ignore[no-untyped-call]
                    self.feeder.stats.connection_closed(lost=not stop.is_set())
            stop.wait(RECONNECT_MIN_S)

    def _send_all(self, ws: websocket.WebSocket, messages: list[bytes]) -> None:
        for message in messages:
            ws.send(message.decode())
            self._sent_at.append(time.monotonic())
            time.sleep(self.feeder.venue.request_spacing_s)

    def _requests_left(self, now: float) -> int:
        """Requests this connection may still send within the venue's hourly limit (OKX: 480 an hour)."""
        limit = self.feeder.venue.requests_per_hour
        if not limit:
            return 1 << 30
        sent = self._sent_at
        while sent and now - sent[0] >= REQUEST_WINDOW_S:
            del sent[0]
        return limit - len(sent)

    def _serve(self, ws: websocket.WebSocket, parser: FrameParser) -> bool:
        """Read the connection until it must close: True when we close it (stop, reconnect asked: the caller
        does the close handshake), False when the server closed it or it went silent."""
        venue, channel, stop = self.feeder.venue, self.feeder.group.channel, self.feeder._stop
        self._reconnect.clear()
        self.sequence, self.resyncing = NO_ID, False
        with self._lock:
            streams, self._added, self._removed = self.streams, [], []
            self._outbox.clear()  # answers meant for the connection that closed
        if streams:
            self._send_all(ws, venue.subscribe_messages(channel, streams, self._request_id()))
        reader = FrameReader(ws, parser, self.conn_id, self.feeder.on_messages, done=self.feeder.stats.read_done)
        timeout = RECV_POLL_S
        ws.settimeout(timeout)
        conn_id = self.conn_id
        pinged = heard = time.monotonic()
        while not stop.is_set() and not self._reconnect.is_set():
            now = time.monotonic()
            if now - pinged >= venue.ping_interval_s:
                ws.send(venue.ping_message(self._request_id()).decode())
                pinged = now
            if now - heard >= SILENT_CONNECTION_S:
                log.warning("connection %d: nothing received for %.0f s, reconnecting", conn_id, now - heard)
                return False
            with self._lock:
                # a resubscription costs two requests (unsubscribe, subscribe); it waits for room in the hour
                room = self._requests_left(now) >= 2 * len(self._resubscribe)
                again, self._resubscribe = (self._resubscribe, []) if room else ([], self._resubscribe)
                added, removed, self._added, self._removed = self._added, self._removed, [], []
                # pongs and snapshot requests: one a pass, OUTBOX_SPACING_S apart, never blocking the reads
                due = self._outbox[:1] if now - self._outbox_at >= OUTBOX_SPACING_S else []
                del self._outbox[: len(due)]
                wanted = OUTBOX_SPACING_S if self._outbox else RECV_POLL_S
            if wanted != timeout:  # the socket's own timeout ends an idle read (no select: TLS keeps its buffer)
                ws.settimeout(wanted)
                timeout = wanted
            for message in due:
                ws.send(message.decode())
                self._outbox_at = now
            if again:
                self._send_all(ws, venue.unsubscribe_messages(channel, again, self._request_id()))
                self._send_all(ws, venue.subscribe_messages(channel, again, self._request_id()))
            if removed:
                self._send_all(ws, venue.unsubscribe_messages(channel, removed, self._request_id()))
            if added:
                self._send_all(ws, venue.subscribe_messages(channel, added, self._request_id()))
            got = reader.read()  # a read's messages to on_messages, stamped once a read
            if got == READ_IDLE:
                continue
            if got < 0:
                return False  # EOF (the server went without a close frame) or the server's close, echoed
            heard = time.monotonic()
        return True
