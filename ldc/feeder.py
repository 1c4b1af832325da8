"""`ldc feed CONFIG --group NAME`: one group's markets from the exchange into its shared-memory segment.

Glue only; every decision is made elsewhere:

    WsPool thread ── a read's frames ──► _fastbook.Router ──► each market's HotPath (C: diff applied, top published)
                                                     └─ anything else ──► BookSync ──► FastBook ──► SegmentWriter
    snapshot workers ◄── FetchSnapshot ── BookSync ◄── SnapshotResult / SnapshotFailed ◄── RestClient (+ governor)
    main thread: ticks (staleness, retries, refresh audits), counters, heartbeat, systemd watchdog, signals
    jobs thread: SIGHUP reloads and symbol checks (REST requests that may wait for weight), one at a time

One lock serialises every market event (websocket threads, snapshot workers, ticks): the GIL allows one
at a time anyway, and the slot seqlock needs a single writer. BookSync makes every decision; a market's
``HotPath`` (C) only repeats what ``BookSync.fast_path()`` allows (a diff continuing a book in sync or
flagged uncovered: apply, record for a pending refresh, publish), and BookSync is told what it applied
before anything else reaches it: ``ldc.handoff.Handoff`` owns that hand-over (an exception in C while the
HotPath holds a book resyncs that market: fail closed). A fault in one market — a gap, an unknown
symbol, a REST error, a malformed frame — changes only that market's slot. A slot's status flags always
follow its book's sync state: a book is shown in sync only while BookSync says SYNCED.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from logging.handlers import QueueHandler, QueueListener
from typing import TYPE_CHECKING
from queue import SimpleQueue

import numpy as np

from ldc._fastbook import (
    ROUTE_CONTROL,
    ROUTE_DIFF,
    ROUTE_END,
    ROUTE_MALFORMED,
    ROUTE_TOP_FAULT,
    FastBook,
    HotPath,
    ParsedDiff,
    Router,
)
from ldc.catalogue import Listing, SymbolCatalogue
from ldc.config import GroupConfig, endpoints, load_config, reload_group, restart_keys, symbol_changes
from ldc.control import serve_feeder
from ldc.errors import ConfigError, LdcError, ProtocolError, RateLimitError, RestError, SegmentError
from ldc.io.governor import RateGovernor, governor_key
from ldc.io.rest import RestClient
from ldc.io.ws import CloseReason, WsOptions, WsPool
from ldc.handoff import Handoff, HotTimes
from ldc.logjournal import StructuredFields, stderr_handler
from ldc.publish import SlotPublisher
from ldc.record import Recorder, book_snapshot_line, config_for
from ldc.sdnotify import Notifier
from ldc.shm.layout import Counter, Status
from ldc.shm.writer import SegmentWriter
from ldc.lifecycle import SystemdReport, status_line
from ldc.standby import exit_status, standby_for
from ldc.sync import (
    BOOK_STATES,
    DISCONNECT,
    PUBLISH_CHANGED,
    PUBLISH_UNCHANGED,
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
from ldc.venues import rest_venue, stream_venue
from ldc.venues.base import RestSnapshotVenue, Verdict, hot_path_links_prev, verdict

if TYPE_CHECKING:
    from ldc.stream_feeder import StreamFeeder

log = logging.getLogger("ldc.feeder")
_monotonic = time.monotonic

# Timers
TICK_INTERVAL_S = 0.25  # staleness, retries, refreshes, counters, heartbeat
LAG_WARN_MS = 1000  # receive time minus exchange event time above this: the feeder is falling behind
LAG_WARN_EVERY_S = 30.0
BAD_FRAME_LOG_EVERY_S = 10.0  # malformed frames are counted; one log line per market per interval at most
# Limits
SNAPSHOT_WORKERS = 8  # snapshot requests in flight at once; the governor paces them within the weight budget
WORKERS_STOP_TIMEOUT_S = 5.0  # close() waits this long at most for snapshot requests in flight
# The websocket thread waits for the GIL while another thread (a snapshot worker, the tick) runs Python, and
# CPython hands the GIL over only every switch interval: 5 ms by default, a 5 ms receive-to-publish stall.
# Set for the feeder process (``main``); a switch costs a few microseconds, and only while two threads want it.
# Latency bench, 3 alternated pairs: p99 0.2 ms -> 251 / 236 / 214 us, 50 us -> 214 / 207 / 204 us; diffs per
# CPU-second unchanged within noise (1 market 89k / 102k / 86k vs 91k / 91k / 96k). 20 us: no better.
GIL_SWITCH_INTERVAL_S = 0.00005
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

# slot counter <- BookSync attribute (cumulative; the feeder adds the difference). SNAPSHOTS is the feeder's
# own count of snapshots loaded (answered and parsed), as the layout defines it; BookSync counts requests.
_COUNTERS = (
    (Counter.RESYNCS, "resyncs"),
    (Counter.GAPS, "gaps"),
    (Counter.IGNORED, "diffs_ignored"),
    (Counter.AUDIT_MISMATCHES, "audit_differences"),
)


@dataclass(eq=False)
class Market(HotTimes):
    """One market's sync engine, slot and connection bookkeeping."""

    symbol: str
    stream: str
    slot: int
    sync: BookSync
    hot: HotPath  # armed as sync.fast_path() allows; holds conn and the last diff's times too (the Router reads them)
    bids: np.ndarray
    asks: np.ndarray
    successor: int | None = None  # a rollover successor carrying the same stream
    shown_state: SyncState | None = None  # the state whose text the slot message shows
    error: str = ""  # a market-level failure (unknown symbol...): the slot says so, nothing is fetched
    published: dict[Counter, int] = field(default_factory=dict)
    fetching: set[SnapshotPurpose] = field(default_factory=set)
    bad_frames: int = 0
    snapshots_loaded: int = 0
    bad_frame_logged_at: float = -1e18
    lag_warned_at: float = -1e18
    handoff: Handoff = field(init=False)  # the one owner of the book's hand-over between sync and hot

    def __post_init__(self) -> None:
        self.handoff = Handoff(self.sync, self.hot)

    @property
    def conn(self) -> int | None:
        """The connection whose diffs feed the book."""
        conn = self.hot.conn
        return None if conn < 0 else conn

    @conn.setter
    def conn(self, conn_id: int | None) -> None:
        self.hot.conn = -1 if conn_id is None else conn_id


class Feeder:
    """Keeps every market of one group synced and published until ``stop()``."""

    def __init__(self, group: GroupConfig, *, config_path: str | None = None, notifier: Notifier | None = None,
                 ws_options: WsOptions | None = None, standby: bool = False) -> None:  # fmt: skip
        self.group = group
        self.config_path = config_path
        venue = rest_venue(group.exchange)
        if venue is None:
            raise LdcError(f"group {group.name!r}: {group.exchange} books start from its websocket: use ldc.stream_feeder.StreamFeeder")
        self.venue: RestSnapshotVenue = venue
        self.endpoints = endpoints(group)
        self.limit = self.venue.snapshot_limit_for(group.depth)
        self._notifier = notifier or Notifier()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        # exchangeInfo: which symbols the exchange lists (checked before a stream goes into a connection URL)
        self.catalogue = SymbolCatalogue(group.exchange, exchange_info_listing(self.venue), self._rest_get, log=log)
        self.markets: dict[str, Market] = {}  # exchange symbol (upper case) -> market
        self._by_stream: dict[str, Market] = {}
        self._router = Router()  # symbol -> HotPath: takes each socket read's frames (on_messages)
        self._route = self._router.feed
        self._conns: dict[int, set[Market]] = {}
        self.writer = SegmentWriter(group.name, depth=group.depth, capacity=group.capacity, exchange=group.exchange,
                                    notify_paced_us=group.notify_paced_us,
                                    markets=group.symbols, standby=standby)  # a symbol no longer configured is not carried over  # fmt: skip
        # None: this process is the group's writer; a standby's recording starts at its takeover
        self.standby = standby_for(self.writer, self.request_stop, self._record_takeover)
        # bound once: on_message runs per diff
        self._slots = SlotPublisher(self.writer, group.depth)  # BookSync's answers into the slots
        self._wake_readers = self.writer.notify
        self._stats = self.writer.stats  # the feeder's own figures in the segment (LAYOUT.md section 16)
        self._stats.set("rest_weight_limit", group.weight_budget_per_min)
        self._governor = RateGovernor(governor_key(self.endpoints.rest_url), budget=group.weight_budget_per_min)
        recording = config_for(group.record, group.name, group.record_rotate_mb, group.record_rotate_s)
        # raw frames and snapshots; a standby's held until its takeover (ldc/record.py)
        self._recorder = Recorder(recording, held=self.standby is not None) if recording is not None else None
        self._rest = RestClient(self.endpoints.rest_url, governor=self._governor,
                                connect_timeout_s=group.rest_timeout_s, read_timeout_s=group.rest_timeout_s,
                                ca_file=group.ca_file, on_answer=self._stats.rest_answer,
                                protocol=self.venue.rest_protocol)  # fmt: skip
        self._workers = ThreadPoolExecutor(SNAPSHOT_WORKERS, thread_name_prefix=f"ldc-snap-{group.name}")
        self._in_flight: set[futures.Future[None]] = set()
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix=f"ldc-jobs-{group.name}")
        self._background: futures.Future[None] | None = None  # the reload or symbol check running, if any
        protocol = self.venue.stream_protocol()  # control messages one a second below the venue's limit
        options = ws_options or WsOptions(
            max_streams_per_connection=min(group.streams_per_connection, protocol.max_streams_per_connection),
        )
        self.pool = WsPool(self.endpoints.ws_stream_url, self, protocol=protocol, options=options, ca_file=group.ca_file)
        self._sync_config = SyncConfig(
            rule=self.venue.sequence_rule,
            depth=group.depth,
            snapshot_limit=self.limit.limit,
            escalation_limits=tuple(tier.limit for tier in self.venue.snapshot_ladder(group.depth)[1:]),
            stale_after_s=group.stale_after_s,
            refresh_interval_s=group.refresh_interval_s or None,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Validate the symbols, claim slots and open the connections; returns at once."""
        if self._recorder is not None:
            self._recorder.start()
        unknown = self.catalogue.check(self.group.symbols)
        for symbol in self.group.symbols:
            self._add_market(symbol, error=unknown.get(symbol, ""))
        self.pool.start([m.stream for m in self.markets.values() if not m.error])
        if self.standby is not None:
            self.standby.start()
        log.info("group %s: %d markets on %s, depth %d, snapshot limit %d (weight %d)", self.group.name,
                 len(self.markets), self.endpoints.ws_stream_url, self.group.depth, self.limit.limit, self.limit.weight)  # fmt: skip

    def run(self) -> int:
        """Tick until stopped; the caller installed the signal handlers. Returns the exit status."""
        self.start()
        control = serve_feeder(self) if self.writer.active else None  # ldc ctl / ldc.Control: its own thread
        report = SystemdReport(self._notifier)
        report.ready(len(self.markets))
        while not self._stop.wait(TICK_INTERVAL_S):
            if self._reload.is_set():
                self._reload.clear()
                self._in_background(self.reload)
            if self.catalogue.due():
                self._in_background(self._revalidate)
            self.tick()
            if control is None and self.writer.active:  # a standby took over: the group's socket is its now
                control = serve_feeder(self)
            report.ticked(self._status_line())
        report.stopping()
        if control is not None:
            control.close()
        self.close()
        return exit_status(self.standby)

    def _in_background(self, job: Callable[[], None]) -> None:
        """Reloads and symbol checks make REST requests, which may wait for weight: they run one at a time on
        their own thread, so that ticks, the heartbeat and the systemd watchdog never wait for them."""
        if self._background is not None and not self._background.done():
            if job == self.reload:
                self._reload.set()  # after the running job
            return
        self._background = self._jobs.submit(self._logged, job)

    @staticmethod
    def _logged(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a failed reload must not go unnoticed, nor stop the feeder
            log.exception("%s failed", getattr(job, "__name__", "background job"))

    def _status_line(self) -> str:
        """What ``systemctl status`` shows: how many markets readers can trust right now."""
        with self._lock:
            return status_line(self.writer, self.markets.values())

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def close(self) -> None:
        """Stop the connections and workers, then mark the segment stopped. Snapshot requests in flight
        are waited for (bounded): they still use the governor's ledger when their answer comes."""
        self._stop.set()
        self.pool.stop()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._jobs.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            in_flight = list(self._in_flight) + ([self._background] if self._background is not None else [])
        _, unfinished = futures.wait(in_flight, timeout=min(WORKERS_STOP_TIMEOUT_S, self.group.rest_timeout_s + 1.0))
        if self._recorder is not None:
            self._recorder.close()  # every frame and snapshot is in: finish the file
        with self._lock:
            self._rest.close()
            if not unfinished:  # else the process exit releases it; a stuck worker must not touch a closed fd
                self._governor.close()
            self.writer.close()

    # -- markets --------------------------------------------------------------------------------

    def _add_market(self, symbol: str, *, error: str = "") -> Market:
        slot = self.writer.add_market(symbol)
        sync = BookSync(symbol, self._new_book, self._sync_config)
        depth = self.group.depth
        hot = HotPath(self.writer.segment, slot, futures=hot_path_links_prev(self.venue.sequence_rule))
        market = Market(symbol, self.venue.depth_stream(symbol, self.group.update_speed_ms), slot, sync, hot,
                        np.zeros((depth, 2)), np.zeros((depth, 2)), error=error)  # fmt: skip
        market.published = {counter: 0 for counter in Counter if counter is not Counter.UPDATES}
        self.markets[symbol] = market
        self._by_stream[market.stream] = market
        self._router.paths[symbol] = hot
        if error:
            log.error("market %s: %s", symbol, error)
            self.writer.set_status(slot, Status.ERROR, error)
        else:
            self.writer.set_status(slot, Status.RESYNCING, "waiting for the first diff")
        return market

    def _new_book(self) -> FastBook:
        return FastBook(depth=self.group.depth)

    def reload(self) -> None:
        """SIGHUP: re-read this group's symbols and add / remove markets live. A broken file changes nothing."""
        if self.config_path is None:
            return
        try:
            new = reload_group(self.config_path, self.group.name)
        except ConfigError as exc:
            log.error("reload ignored, the running markets stay as they are: %s", exc)
            return
        self.apply_group(new)

    def apply_group(self, new: GroupConfig, unknown: dict[str, str] | None = None) -> None:
        """Make the running set ``new``'s symbols (SIGHUP, ldc.control); ``unknown``: errors already known."""
        added, removed = symbol_changes(self.group, new)
        later = restart_keys(self.group, new)
        if later:
            log.warning("reload: %s changed; those take effect at the next restart", ", ".join(later))
        unknown = unknown if unknown is not None else self.catalogue.check(added)  # REST: not under the lock
        fresh: list[Market] = []
        with self._lock:
            for symbol in removed:
                market = self.markets.pop(symbol)
                del self._by_stream[market.stream]
                del self._router.paths[symbol]
                for members in self._conns.values():
                    members.discard(market)
                self.writer.remove_market(symbol)
            for symbol in added:
                try:
                    fresh.append(self._add_market(symbol, error=unknown.get(symbol, "")))
                except SegmentError as exc:  # the segment is full: its capacity was fixed at creation
                    log.error("reload: market %s not added: %s", symbol, exc)
            # the running set, so that a market refused now is tried again at the next reload
            self.group = _with_symbols(self.group, tuple(s for s in new.symbols if s in self.markets))
        self.pool.remove_streams(self._stream_of(removed))
        self.pool.add_streams(m.stream for m in fresh if not m.error)
        log.info("reload: %d markets added, %d removed, %d running", len(fresh), len(removed), len(self.markets))

    def _stream_of(self, symbols: Iterable[str]) -> list[str]:
        return [self.venue.depth_stream(s, self.group.update_speed_ms) for s in symbols]

    def _revalidate(self) -> None:
        """Background thread, outside the lock (a REST request): the symbols exchangeInfo could not check before
        are checked again (``SymbolCatalogue.recheck``); an unknown one fails its market."""
        unknown = self.catalogue.recheck()
        with self._lock:
            for symbol, error in unknown.items():
                market = self.markets.get(symbol)
                if market is not None and not market.error:
                    self._fail(market, error)

    def _fail(self, market: Market, error: str) -> None:
        """A market-level failure (unknown symbol): its slot says why, its stream goes; no diff in flight
        touches its book again (the HotPath stops, ``_rearm`` and ``_routed_diff`` refuse it). Caller holds the lock."""
        market.handoff.settle()
        market.error = error
        self.pool.remove_streams([market.stream])
        self.writer.set_status(market.slot, Status.ERROR, error)
        log.error("market %s: %s", market.symbol, error)

    def _rest_get(self, path: str, params: dict[str, str], weight: int) -> bytes:
        """A REST request of the symbol catalogue: through the group's client and governor, given up on stop."""
        return self._rest.get(path, params=params, weight=weight, stop=self._stop).body

    # -- websocket events (connection threads) --------------------------------------------------

    def on_open(self, conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None:
        self._stats.connection_opened()
        with self._lock:
            members = self._conns.setdefault(conn_id, set())
            for stream in streams:
                market = self._by_stream.get(stream)
                if market is None:
                    continue
                members.add(market)
                if replaces is not None and market.conn == replaces:
                    market.successor = conn_id  # moves over once the successor's diffs continue the book
                else:
                    market.conn = conn_id
            if replaces is not None:
                self._release_if_moved(replaces)

    def on_connect_failed(self, streams: tuple[str, ...], error: str) -> None:
        """Say why in the slots of the markets that wait for this connection (their flags stay as they are)."""
        with self._lock:
            for stream in streams:
                market = self._by_stream.get(stream)
                if market is None or market.error or market.sync.state is SyncState.SYNCED:
                    continue
                self._slots.say(market, f"websocket connection failed, retrying: {error}")

    def on_close(self, conn_id: int, reason: CloseReason, streams: tuple[str, ...]) -> None:
        self._stats.connection_closed(lost=reason is not CloseReason.ROLLED_OVER and reason is not CloseReason.STOPPED)
        with self._lock:
            members = self._conns.pop(conn_id, set())
            now = time.monotonic()
            for market in members:
                if market.successor == conn_id:
                    market.successor = None
                if market.conn != conn_id:
                    continue
                market.conn = None
                if market.successor is not None:  # died during rollover: the successor takes over as is
                    market.conn, market.successor = market.successor, None
                if reason is not CloseReason.ROLLED_OVER and reason is not CloseReason.STOPPED:
                    self._feed(market, DISCONNECT, now)
        if reason is not CloseReason.STOPPED:
            log.info("connection %d closed (%s) carrying %d streams", conn_id, reason.value, len(streams))

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None:
        self.on_messages(conn_id, [raw], recv_time_ns)

    def on_messages(self, conn_id: int, raws: list[bytes], recv_time_ns: int) -> None:
        """The data messages of one socket read, in order. The Router (C) parses, applies and publishes every
        diff its market's HotPath takes, and stops at the first one Python must see."""
        if self._recorder is not None:
            self._recorder.frames(raws, recv_time_ns)
        try:
            self._route_all(conn_id, raws, recv_time_ns)
        finally:  # receive-to-publish: the read's last publish (or decision) is done
            self._stats.read_done(len(raws), time.time_ns() - recv_time_ns)

    def _route_all(self, conn_id: int, raws: list[bytes], recv_time_ns: int) -> None:
        start, count = 0, len(raws)
        while start < count:
            with self._lock:
                try:
                    index, kind, value = self._route(raws, start, conn_id, recv_time_ns)
                except Exception as exc:  # raised in C while a HotPath held a book: fail closed
                    self._route_failed(raws[start:], exc)
                    return
                if kind == ROUTE_END:
                    return
                if kind == ROUTE_DIFF or kind == ROUTE_TOP_FAULT:
                    self._routed_diff(conn_id, value, kind == ROUTE_TOP_FAULT, recv_time_ns)
                    self._wake_readers()
            if kind == ROUTE_CONTROL:
                self._control(conn_id, raws[index])
            elif kind == ROUTE_MALFORMED:
                self._bad_frame(raws[index])  # the reference parser names the fault
            start = index + 1

    def _routed_diff(self, conn_id: int, diff: ParsedDiff, top_fault: bool, recv_time_ns: int) -> None:
        """A diff the Router left to BookSync. Caller holds the lock."""
        market = self.markets.get(diff.symbol)
        if market is None or market.error:
            return  # a stream just removed by SIGHUP, or a failed market's diffs still in flight
        handoff = market.handoff
        handoff.settle()  # BookSync holds the book: the connection checks below read its id
        if top_fault:  # applied by the HotPath: the top is crossed, or its coverage changed
            self._carry_out(market, handoff.top_fault(_monotonic()))
        elif self._carries(market, conn_id, diff, recv_time_ns):
            self._slow_diff(market, diff, diff.event_time_ms, recv_time_ns)
        self._rearm(market)

    def _carries(self, market: Market, conn_id: int, diff: ParsedDiff, recv_time_ns: int) -> bool:
        """Whether ``conn_id`` feeds the market (the Router stamped the diff of the market's own connection; a
        successor or a newly subscribed connection taking over is stamped here)."""
        if market.conn == conn_id:
            return True
        if not self._from_successor(market, conn_id, diff) and not self._adopt(market, conn_id):
            return False
        market.stamp(diff.event_time_ms, recv_time_ns)
        return True

    def _route_failed(self, raws: list[bytes], exc: Exception) -> None:
        """The Router raised (a HotPath's apply or publish failed in C): the book it held may be half-applied.
        Every market named in the unfinished frames whose HotPath held its book resyncs (BookSync logs the
        fault); the lost diffs of any other market show as a gap at its next diff. Caller holds the lock."""
        for symbol in {self.venue.symbol_hint(raw) for raw in raws}:
            market = self.markets.get(symbol) if symbol else None
            if market is not None and not market.error and market.handoff.armed:
                self._carry_out(market, market.handoff.fault(exc, "a diff in the hot path"))
                self._rearm(market)
        self._wake_readers()

    def _slow_diff(self, market: Market, diff: ParsedDiff, event_time_ms: int, recv_time_ns: int) -> None:
        """A diff BookSync decides on (the market is settled). Caller holds the lock."""
        # ParsedDiff carries DepthDiff's attributes (ldc/_fastbook.pyi); BookSync reads only those
        actions = market.handoff.on_diff(diff, _monotonic())  # type: ignore[arg-type]
        # BookSync's two preallocated answers come in every book state (an UNCOVERED book publishes too): the
        # flags follow the state (SlotPublisher), or a book with possible holes would be shown as exact
        if actions is PUBLISH_CHANGED or actions is PUBLISH_UNCHANGED:
            self._slots.top(market, update_id=diff.final_id, event_time_ms=event_time_ms, recv_time_ns=recv_time_ns,
                            changed=actions is PUBLISH_CHANGED)  # fmt: skip
        elif actions:
            self._carry_out(market, actions)

    def _rearm(self, market: Market) -> None:
        """After BookSync's actions are carried out: the HotPath takes the market's diffs again if BookSync allows
        it (``Handoff.rearm``: the slot must already show the state the HotPath publishes with)."""
        market.handoff.rearm(None if market.error else market.shown_state)

    def _feed(self, market: Market, event: Event, now: float) -> None:
        """A non-diff event to BookSync and its actions carried out. Caller holds the lock."""
        self._carry_out(market, market.handoff.feed(event, now))
        self._rearm(market)

    def _from_successor(self, market: Market, conn_id: int, diff: ParsedDiff) -> bool:
        """During a rollover: move the market to its successor once the successor's diff continues the book
        (or is older than it); until then the old connection keeps feeding it. A book flagged uncovered or
        stale is a book all the same: a successor ahead of it would only make a gap."""
        if market.successor != conn_id:
            return False
        sync = market.sync
        if sync.state in BOOK_STATES:
            found = verdict(sync.config.rule, diff.first_id, diff.final_id, diff.prev_final_id, sync.update_id)
            if found is Verdict.GAP:  # ahead of the book
                return False
        old = market.conn
        market.conn, market.successor = conn_id, None
        if old is not None:
            self._release_if_moved(old)
        return True

    def _adopt(self, market: Market, conn_id: int) -> bool:
        """A stream subscribed on a running connection (SIGHUP, resubscribe) gets no ``on_open``: its first diff
        names the connection. Diffs of a connection that no longer carries the market's stream are refused
        until then. Rare path: only the first diff of such a market comes here."""
        if market.successor is not None or conn_id not in self._conns:
            return False
        if market.conn is not None and market.stream in self.pool.connections().get(market.conn, ()):
            return False  # its own connection still carries it: a stray diff of a stream on its way out
        if market.conn is not None:
            self._conns.get(market.conn, set()).discard(market)
        market.conn = conn_id
        self._conns[conn_id].add(market)
        return True

    def _release_if_moved(self, old: int) -> None:
        if not any(m.conn == old for m in self._conns.get(old, ())):
            self.pool.release(old)

    def _control(self, conn_id: int, raw: bytes) -> None:
        try:
            error = self.venue.control_error(raw)
        except ProtocolError as exc:
            log.warning("connection %d: %s", conn_id, exc)
            return
        if error is not None:
            log.error("connection %d: %s", conn_id, error)

    def _bad_frame(self, raw: bytes) -> None:
        """A depth message the fast parser refused: the reference parser names the fault; that market only
        counts it (its next diff then shows a gap if one was lost)."""
        try:
            self.venue.parse_message(raw)
            why = "the fast parser refused a message the reference parser accepts"
        except ProtocolError as exc:
            why = str(exc)
        symbol = self.venue.symbol_hint(raw)
        market = self.markets.get(symbol) if symbol else None
        now = time.monotonic()
        if market is None:
            log.warning("malformed frame: %s: %r", why, raw[:120])
            return
        market.bad_frames += 1
        if now - market.bad_frame_logged_at >= BAD_FRAME_LOG_EVERY_S:
            market.bad_frame_logged_at = now
            log.warning("market %s: malformed frame (%d so far): %s", market.symbol, market.bad_frames, why)

    # -- actions --------------------------------------------------------------------------------

    def _carry_out(self, market: Market, actions: Actions) -> None:
        """Everything but the two preallocated hot-path answers (SlotPublisher writes the slot). Caller holds the lock."""
        self._slots.carry_out(market, actions, self._act)
        self._publish_counters(market)

    def _act(self, market: Market, action: Action) -> None:
        """What BookSync asks beyond the slot: a snapshot, a resubscription."""
        if type(action) is FetchSnapshot:
            self._fetch(market, action)
        elif type(action) is Resubscribe:
            self.pool.remove_streams([market.stream])
            self.pool.add_streams([market.stream])

    def _fetch(self, market: Market, action: FetchSnapshot) -> None:
        if market.error or action.purpose in market.fetching:
            return
        market.fetching.add(action.purpose)
        try:
            future = self._workers.submit(self._snapshot_worker, market, action)
        except RuntimeError:  # shut down: the feeder is stopping
            market.fetching.discard(action.purpose)
            return
        self._in_flight.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def _snapshot_worker(self, market: Market, action: FetchSnapshot) -> None:
        event: SnapshotResult | SnapshotFailed
        error = ""
        try:
            response = self._rest.snapshot(self.venue.snapshot_path, symbol=market.symbol, limit=action.limit,
                                           weight=self.venue.snapshot_weight(action.limit), stop=self._stop)  # fmt: skip
            event = SnapshotResult(self.venue.parse_snapshot(response.body, action.limit), action.purpose)
            if self._recorder is not None:
                self._recorder.snapshot(self.venue.snapshot_path, {"symbol": market.symbol, "limit": action.limit},
                                        response.body, response.recv_time_ns)  # fmt: skip
        except RateLimitError as exc:
            event = SnapshotFailed(action.purpose, str(exc), exc.retry_after_s)
        except (RestError, ProtocolError) as exc:
            event = SnapshotFailed(action.purpose, str(exc))
            if getattr(exc, "code", None) == self.venue.unknown_symbol_code:
                error = f"unknown symbol {market.symbol}: {exc}"
        except Exception as exc:  # a worker must always hand its market back
            log.exception("market %s: snapshot worker failed", market.symbol)
            event = SnapshotFailed(action.purpose, f"{type(exc).__name__}: {exc}")
        with self._lock:
            market.fetching.discard(action.purpose)
            if self.markets.get(market.symbol) is not market or self._stop.is_set():
                return  # removed meanwhile
            if error:
                self._fail(market, error)
                return
            if isinstance(event, SnapshotResult):
                market.snapshots_loaded += 1
            else:
                log.warning("market %s: %s snapshot failed: %s", market.symbol, action.purpose.name.lower(), event.reason)
            self._feed(market, event, time.monotonic())
            self.writer.notify()

    # -- ticks (main thread) --------------------------------------------------------------------

    def tick(self) -> None:
        """One market at a time under the lock: the websocket thread's diffs wait for one market's tick
        (microseconds), not for a whole group's (milliseconds for hundreds of markets)."""
        now = time.monotonic()
        with self._lock:
            markets = list(self.markets.values())
        for market in markets:
            with self._lock:
                if market.error or self.markets.get(market.symbol) is not market:  # failed or removed meanwhile
                    continue
                self._feed(market, TICK, now)
                self._check_lag(market, now)
        with self._lock:
            self.writer.heartbeat()
            self.writer.notify()
        self._recorder_stats()

    def _recorder_stats(self) -> None:
        """The recorder's own counts into the segment, once per tick (they only go up)."""
        if self._recorder is not None:
            self._recorder.publish(self._stats.set)

    def _record_takeover(self) -> None:
        """This standby took the segment over (its standby thread): its recording starts with a snapshot line
        of every book in sync (``ldc/record.py``, "A hot standby's recording"), one market under the lock
        at a time; the lines are made outside it."""
        if self._recorder is None:
            return
        with self._lock:
            markets = list(self.markets.values())
        books = []
        for market in markets:
            with self._lock:
                if market.error or market.sync.state is not SyncState.SYNCED or market.sync.book is None:
                    continue
                market.handoff.settle()  # the HotPath's applied diffs into BookSync: its update id is the book's
                books.append((market.symbol, market.sync.update_id, *market.sync.book.levels(), time.time_ns()))
                self._rearm(market)
        self._recorder.take_over([book_snapshot_line(self.venue.snapshot_path, symbol, self.limit.limit, update_id, bids, asks, now)
                                  for symbol, update_id, bids, asks, now in books])  # fmt: skip

    def _check_lag(self, market: Market, now: float) -> None:
        """Say so when diffs arrive late (a slow socket reader, a starved host); readers see the same
        figure as recv_time - event_time in the slot."""
        if market.last_event_ms < 0 or now - market.lag_warned_at < LAG_WARN_EVERY_S:
            return
        lag_ms = market.last_recv_ns // 1_000_000 - market.last_event_ms
        if lag_ms > LAG_WARN_MS:
            market.lag_warned_at = now
            log.warning("market %s: %d ms behind the exchange (receive time - event time)", market.symbol, lag_ms)

    def _publish_counters(self, market: Market) -> None:
        sync = market.sync
        for counter, attribute in _COUNTERS:
            self._bump_to(market, counter, getattr(sync, attribute))
        self._bump_to(market, Counter.SNAPSHOTS, market.snapshots_loaded)

    def _bump_to(self, market: Market, counter: Counter, value: int) -> None:
        delta = value - market.published[counter]
        if delta:
            self.writer.bump(market.slot, counter, delta)
            market.published[counter] = value


def exchange_info_listing(venue: RestSnapshotVenue) -> Listing:
    """A REST-snapshot venue's whole listing: one exchangeInfo request; a symbol it lacks does not exist."""
    path, weight = venue.exchange_info_path, venue.exchange_info_weight
    return Listing(name="exchangeInfo", requests=lambda symbols: [(path, {}, weight)],
                   read=lambda body: dict.fromkeys(venue.listed_symbols(body)), complete=True)  # fmt: skip


def _with_symbols(group: GroupConfig, symbols: tuple[str, ...]) -> GroupConfig:
    import dataclasses

    return dataclasses.replace(group, symbols=symbols)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc feed", description="Run the feeder of one group.")
    parser.add_argument("config", help="path of the TOML configuration file")
    parser.add_argument("--group", required=True, help="the [[group]] name to feed")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--standby", action="store_true",
                        help="hot standby: when the group has a writer, keep books in sync unpublished and take the "
                             "segment over when that writer dies; else become the writer")  # fmt: skip
    args = parser.parse_args(argv)
    listener = _log_through_a_queue(args.log_level.upper(), args.group)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        try:
            group = load_config(args.config).group(args.group)
            feeder = _feeder_for(group, args.config, standby=args.standby)
        except (ConfigError, SegmentError) as exc:
            print(f"ldc feed: {exc}", file=sys.stderr)
            return 2
        signal.signal(signal.SIGTERM, lambda *_: feeder.request_stop())
        signal.signal(signal.SIGINT, lambda *_: feeder.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: feeder.request_reload())
        return feeder.run()
    finally:
        listener.stop()  # writes what is queued


def _feeder_for(group: GroupConfig, config_path: str, *, standby: bool = False) -> Feeder | StreamFeeder:
    """A venue whose books start in the stream (OKX, Bybit) has its own feeder; REST-snapshot venues this one."""
    from ldc.stream_feeder import StreamFeeder

    if stream_venue(group.exchange) is not None:
        return StreamFeeder(group, config_path=config_path, standby=standby)
    return Feeder(group, config_path=config_path, standby=standby)


def _log_through_a_queue(level: str, group: str = "") -> QueueListener:
    """Log records below ERROR go through a queue to a listener thread that writes them to stderr: a thread
    holding the feeder's lock (a snapshot joining, a state change) pays for the record, not for the write
    (measured in the latency bench: ~0.1-0.2 ms per line written under the lock, a stall for every market's
    diffs). Errors are written at once, so that the lines before a crash are not left in the queue (they
    may then come out a few milliseconds ahead of queued lines)."""
    formatter = logging.Formatter(LOG_FORMAT)
    # journald's native protocol with fields (group, symbol, ...) when stderr is the journal, else plain lines
    queued, direct = stderr_handler(formatter), stderr_handler(formatter)
    direct.setLevel(logging.ERROR)
    records: SimpleQueue[logging.LogRecord] = SimpleQueue()
    to_queue = QueueHandler(records)
    to_queue.addFilter(lambda record: record.levelno < logging.ERROR)
    fields = StructuredFields(group)  # before the queue, which merges a record's arguments into its message
    to_queue.addFilter(fields)
    direct.addFilter(fields)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(to_queue)
    root.addHandler(direct)
    listener = QueueListener(records, queued)
    listener.start()
    return listener
