"""``ldc mirror``: write a relayed group into this host's ``/dev/shm/ldc-<group>``, exact or flagged.

The segment is written with the project's own ``SegmentWriter``, so it is the feeder's layout byte
for byte and every reader works unchanged. Each update carries the origin slot: levels, update id,
event and receive times, status flags, status message and counters are copied as they are (counters
by bumping the difference just before the publish, ``updates`` by the publish itself), so a mirror
slot equals the origin slot at the same update id; only ``publish_time_ns`` and ``status_time_ns``
are this host's clock.

Exact or flagged:

- a sequence gap (a lost or reordered message, or the heartbeat claiming a later sequence twice in a
  row) marks that market alone RESYNCING and re-fetches its state from the relay;
- a lost NATS connection marks every market STALE; the reconnect re-fetches them all;
- a silent relay (no heartbeat for ``RELAY_SILENT_S``) or an origin feeder that is not running (or
  whose heartbeat is older than its ``stale_after_ms``: its own readers see STALE too) marks
  every market STALE until the relay says otherwise, then re-fetches them all;
- a new relay epoch (the relay restarted) is followed from each market's first update.

The common update (in sequence, same generation, ``updates`` + 1, nothing else changed) is applied in
C (``_mirror.apply_batch``); every other entry comes back here, in its place in the batch
(docs/FANOUT.md, "The mirror's path in C").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Final, cast

from ldc.errors import SegmentError
from ldc.fanout import _mirror, codec, lean
from ldc.fanout.conn import NatsOptions, connect_until
from ldc.fanout.conn import connected_url, freeze_heap
from ldc.fanout.relay import log_count, nats_options, run_command
from ldc.shm.layout import (COUNTER_FIELDS, DEFAULT_CAPACITY, DEFAULT_DEPTH, LEVEL_SIZE, MESSAGE_SIZE, NAME_SIZE, SLOT_HEADER,
                            SYMBOL_SIZE, Counter, Status)
from ldc.shm.segment import truncate_utf8
from ldc.shm.writer import Levels, SegmentWriter

log = logging.getLogger("ldc.mirror")

RELAY_SILENT_S: Final = 1.5  # three missed relay heartbeats (codec: every 0.5 s)
WATCH_INTERVAL_S: Final = 0.25  # relay-silence check and the segment's own heartbeat
REQUEST_TIMEOUT_S: Final = 1.0  # an info or state request unanswered this long is retried
STATE_REQUESTS_IN_FLIGHT: Final = 64  # bounded fan-in when hundreds of markets resync at once
# messages (batches) read and waiting for us before the client drops (nats-py's slow-consumer limit, kept
# by lean.DirectDelivery with its 64 MiB byte limit): a dropped batch is a sequence gap in each market it
# carried, so those resync; the server cuts a mirror slower still (a lost connection)
DEFAULT_PENDING_MSGS: Final = 65_536
_UPDATES: Final = int(Counter.UPDATES)
_FIELD: Final = {f.name: i for i, f in enumerate(SLOT_HEADER.fields)}  # Update.fields indices
_GEN, _STATUS, _UPDATE_ID = _FIELD["gen"], _FIELD["status"], _FIELD["update_id"]
_EVENT_TIME, _RECV_TIME = _FIELD["event_time_ms"], _FIELD["recv_time_ns"]
_COUNTERS_AT: Final = _FIELD[COUNTER_FIELDS[0]]
_COUNTERS_END: Final = _COUNTERS_AT + len(COUNTER_FIELDS)
_COUNTERS: Final = tuple(Counter)  # in COUNTER_FIELDS order
_BATCH_B: Final = codec.BATCH_TOKEN.encode()
_HEARTBEAT_B: Final = codec.HEARTBEAT_TOKEN.encode()
assert _UPDATES == 0, "_apply compares the counters after updates as one slice"


# What the mirror knows of one market's slot (slot, epoch, seq, origin_gen, counters, status, message,
# resyncing, newest, behind_once): a C object, so that _mirror.apply_batch reads and updates the same
# state this module does
Market = _mirror.Market
_WIRE: Final = _mirror.offsets()
assert _WIRE == {"envelope": codec.ENVELOPE.size, "entry": codec.ENTRY.size, "counters": len(COUNTER_FIELDS),
                 **{name: 8 + SLOT_HEADER.offset(name) for name in ("gen", "update_id", "event_time_ms", "recv_time_ns",
                                                                    "status", "n_bids", "n_asks", "updates")},
                 "name_max": NAME_SIZE - 1, "symbol_max": SYMBOL_SIZE - 1, "level": LEVEL_SIZE}, _WIRE


@dataclass
class Stats:
    applied: int = 0
    old: int = 0  # duplicates and reordered older updates
    gaps: int = 0
    undecodable: int = 0
    foreign: int = 0  # another group's, or a symbol other than its subject's
    unwanted: int = 0  # a symbol outside --symbols
    batches: int = 0  # messages decoded (each one or more updates)


class Mirror:
    def __init__(self, group: str, options: NatsOptions, *, symbols: list[str] | None = None,
                 local_group: str | None = None, depth: int = DEFAULT_DEPTH,
                 pending_msgs: int = DEFAULT_PENDING_MSGS) -> None:
        self.group = codec.check_group(group)
        self._group_b = self.group.encode()
        self.local_group = codec.check_group(local_group or group)
        self.options = options
        self.pending_msgs = pending_msgs
        self.wanted = set(symbols) if symbols else None
        # the segment is made once the relay says the origin's geometry; with --symbols at once (its
        # slots then say what the mirror waits for), replaced if the origin's geometry differs
        self._writer = self._new_writer(depth, DEFAULT_CAPACITY, "") if symbols else None
        self.markets: dict[str, Market] = {}
        self._stats = Stats()
        self._fast: Any = None  # _mirror.Fast: reads of batch frames alone, applied in C (its counters fold into stats)
        self.relay_epoch = 0
        self.last_heartbeat = 0.0  # monotonic; the connect counts as one (a relay never heard is silent)
        self.stale_reason = ""  # non-empty while every market is flagged STALE for it
        self.exchange = ""  # the origin's, once the relay said it
        self._nc: Any = None
        self._direct: lean.DirectDelivery | None = None
        self._closing = False
        self._stop = asyncio.Event()
        self.failure = ""  # why the mirror gave up (its segment belongs to another writer)
        self._requests = asyncio.Semaphore(STATE_REQUESTS_IN_FLIGHT)
        self.use_c = True  # stream batches through _mirror.apply_batch (False: the Python path alone, for comparisons)
        for symbol in sorted(self.wanted or ()):
            self._add(symbol)

    @property
    def stats(self) -> Stats:
        fast, stats = self._fast, self._stats
        if fast is not None and fast.batches | fast.applied | fast.unwanted:
            stats.batches += fast.batches
            stats.applied += fast.applied
            stats.unwanted += fast.unwanted
            fast.batches = fast.applied = fast.unwanted = 0
        return stats

    # ------------------------------------------------------------------ markets and flags

    def _new_writer(self, depth: int, capacity: int, exchange: str) -> SegmentWriter:
        """The segment, created or taken over from a previous mirror: its markets start afresh (new
        generations, counters 0), since what this mirror knows of each slot starts at nothing."""
        writer = SegmentWriter(self.local_group, depth=depth, capacity=capacity, exchange=exchange)
        for symbol in writer.markets():
            writer.remove_market(symbol)
        return writer

    def _add(self, symbol: str) -> Market:
        market = Market(self.writer.add_market(symbol))
        self.markets[symbol] = market
        return market

    def _readd(self, symbol: str) -> Market:
        """The origin's market restarted (new generation, counters back to 0): so does ours."""
        self.writer.remove_market(symbol)
        return self._add(symbol)

    def _flag(self, market: Market, flag: Status, message: str) -> None:
        self.writer.set_status(market.slot, market.status | flag, message)
        market.message = truncate_utf8(message, MESSAGE_SIZE - 1)  # as set_status stored it

    def flag_all_stale(self, reason: str) -> None:
        if reason != self.stale_reason:
            log.warning("mirror %s: every market STALE: %s", self.local_group, reason)
        self.stale_reason = reason
        for market in self.markets.values():
            self._flag(market, Status.STALE, reason)
        if self._writer is not None:
            self._writer.notify()

    @property
    def writer(self) -> SegmentWriter:
        if self._writer is None:
            raise RuntimeError("the mirror's segment is made at the relay's first heartbeat")
        return self._writer

    # ------------------------------------------------------------------ updates

    async def on_data(self, msg: Any) -> None:
        """nats-py's callback (when ``lean.supported`` is false): as ``on_raw``."""
        self.on_raw(msg.subject.encode(), msg.data)

    def on_raw(self, subject: bytes, data: bytes) -> None:
        """A message of the group's subjects, as ``lean.DirectDelivery`` hands it over."""
        token = subject[subject.rfind(b".") + 1 :]
        if token == _BATCH_B:
            self.handle_batch(data, codec.BATCH_TOKEN, from_stream=True)
        elif token == _HEARTBEAT_B:
            self.handle_heartbeat(data)
        elif not token.startswith(b"_"):  # a symbol's subject: a version 1 relay
            self.handle_batch(data, token.decode(errors="replace"), from_stream=True)
        # other tokens: other mirrors' state requests share the group's subject space

    def on_backlog_drop(self, dropped: int) -> None:
        log_count(log, dropped, "mirror %s: slow consumer: more than %d messages waiting, a batch dropped (its markets resync)",
                  self.local_group, self.pending_msgs)

    def handle_batch(self, data: bytes, token: str, *, from_stream: bool) -> None:
        """Apply every entry of one batch (from the stream, or a state reply), then wake readers once."""
        writer = self._writer
        if writer is None:  # before the relay's first heartbeat: it resyncs everything then
            return
        if from_stream and self.use_c:
            # the common case in C: the batch checked as decode_batch checks it, each in-sequence entry of an
            # unchanged generation, counters and message published there, every other entry handed to
            # _slow_entry in its place; None: refused or another group's, the Python path below says which
            done = _mirror.apply_batch(data, writer.segment, self._group_b, self.markets, self.wanted, bool(self.stale_reason),
                                       self._slow_entry)
            if done is not None:
                stats = self.stats
                stats.batches += 1
                stats.applied += done[0]
                stats.unwanted += done[1]
                return
        self._decode_batch(writer, data, token, from_stream=from_stream)

    def _python_batch(self, data: bytes) -> None:
        """A stream batch ``_mirror.Fast`` read and ``apply_batch`` refused (or another group's): named, counted."""
        if self._writer is not None:
            self._decode_batch(self._writer, data, codec.BATCH_TOKEN, from_stream=True)

    def _decode_batch(self, writer: SegmentWriter, data: bytes, token: str, *, from_stream: bool) -> None:
        try:
            batch = codec.decode_batch(data, writer.geometry.depth, self.wanted)
        except (codec.DecodeError, ValueError) as exc:
            self.stats.undecodable += 1
            log_count(log, self.stats.undecodable, "undecodable message on %s dropped: %s", token, exc)
            return
        if batch.group != self.group:
            self.stats.foreign += 1
            log_count(log, self.stats.foreign, "batch of group %s on subject %s dropped (this mirror follows %s)",
                      batch.group, token, self.group)
            return
        self.stats.batches += 1
        self.stats.unwanted += batch.skipped
        for update in batch.updates:
            self.handle_update(update, from_stream=from_stream)
        writer.notify()

    def _slow_entry(self, data: bytes, pos: int, epoch: int) -> None:
        """An entry of a stream batch that _mirror.apply_batch leaves to the Python path."""
        self.handle_update(codec.decode_entry_at(data, pos, epoch, self.group, self.writer.geometry.depth), from_stream=True)

    def handle_update(self, update: codec.Update, *, from_stream: bool) -> None:
        market = self.markets.get(update.symbol)
        if market is None:
            if self.wanted is not None:
                self.stats.unwanted += 1
                return
            market = self._add(update.symbol)
        if self.stale_reason:  # every market is flagged until the relay is heard again
            market.newest = update
            return
        if market.resyncing:
            if from_stream:
                if market.newest is None or update.seq > market.newest.seq or update.epoch != market.newest.epoch:
                    market.newest = update
                return
            self._finish_resync(market, update)
            return
        if update.epoch == market.epoch and update.seq <= market.seq:
            self.stats.old += 1
            return
        in_sequence = (update.epoch == market.epoch and update.seq == market.seq + 1) or update.seq == 1
        if in_sequence or not from_stream or market.epoch == 0 and market.seq == 0:
            self._apply(market, update)
            return
        self.stats.gaps += 1
        self.start_resync(update.symbol, f"sequence gap: expected {market.seq + 1}, got {update.seq}")
        market.newest = update

    def _finish_resync(self, market: Market, reply: codec.Update) -> None:
        newest = market.newest
        best = reply
        if newest is not None and newest.epoch == reply.epoch and newest.seq > reply.seq:
            best = newest
        market.resyncing, market.newest = False, None
        self._apply(market, best)

    def _apply(self, market: Market, update: codec.Update) -> None:
        fields = update.fields
        counters = fields[_COUNTERS_AT:_COUNTERS_END]
        have = market.counters
        # the common update: the same market generation, one publish (`updates` + 1, which the publish
        # itself does), no other counter moved, the same message: one C call
        if (fields[_GEN] == market.origin_gen and counters[0] == have[0] + 1 and counters[1:] == have[1:]
                and update.message == market.message):
            self._publish(market.slot, update)
            market.epoch, market.seq, market.counters, market.status = update.epoch, update.seq, counters, fields[_STATUS]
            self.stats.applied += 1
            return
        self._apply_slowly(market, update, counters)

    def _publish(self, slot: int, update: codec.Update) -> None:
        # publish is the C method: it takes any C-contiguous (n, 2) float64 buffer, as the views are
        bids, asks, fields = cast(Levels, update.bids), cast(Levels, update.asks), update.fields
        self.writer.publish(slot, update_id=fields[_UPDATE_ID], event_time_ms=fields[_EVENT_TIME], recv_time_ns=fields[_RECV_TIME],
                            status=fields[_STATUS], bids=bids, asks=asks, n_bids=len(bids), n_asks=len(asks))

    def _apply_slowly(self, market: Market, update: codec.Update, counters: tuple[int, ...]) -> None:
        """Counters that jumped or went back, a new generation, a new message: several slot writes."""
        gen = update.gen
        restarted = market.origin_gen and gen != market.origin_gen
        if restarted or (counters != market.counters and any(c < m for c, m in zip(counters, market.counters))):
            market = self._readd(update.symbol)  # the origin re-added it: counters start again
        market.origin_gen, market.epoch, market.seq = gen, update.epoch, update.seq
        writer, slot = self.writer, market.slot
        have = market.counters
        published = counters[_UPDATES] > have[_UPDATES]
        # the common update moves `updates` by one, which the publish itself does: no bump at all
        if counters[_UPDATES] - have[_UPDATES] > 1 or counters[_UPDATES + 1 :] != have[_UPDATES + 1 :]:
            # counters and levels are separate slot writes: flagged in between, a reader never takes
            # the new counters for the old book's (the publish or set_status below clears the flag)
            writer.set_status(slot, market.status | Status.STALE, update.message.decode(errors="replace"))
            market.message = update.message
            for i, counter in enumerate(_COUNTERS):
                delta = counters[i] - have[i] - (1 if i == _UPDATES and published else 0)
                if delta > 0:
                    writer.bump(slot, counter, delta)
        market.counters = counters
        if published:
            self._publish(slot, update)
        # the message after the levels: set first, a new in-sync status would stand over the old book
        if update.message != market.message or not published:
            writer.set_status(slot, update.status, update.message.decode(errors="replace"))
            market.message = update.message
        market.status = update.status
        self.stats.applied += 1  # handle_batch wakes the readers once for the whole batch

    # ------------------------------------------------------------------ resync

    def start_resync(self, symbol: str, reason: str) -> None:
        market = self.markets[symbol]
        if market.resyncing:
            return
        market.resyncing = True
        self._flag(market, Status.RESYNCING, f"{reason}; re-fetching from the relay")
        self.writer.notify()
        log.info("mirror %s: %s %s", self.local_group, symbol, reason)
        asyncio.get_running_loop().create_task(self._fetch(symbol))

    async def _fetch(self, symbol: str) -> None:
        subject = codec.control_subject(self.group, codec.STATE_TOKEN)
        while True:
            market = self.markets.get(symbol)
            if market is None or not market.resyncing:
                return
            async with self._requests:
                try:
                    reply = await self._nc.request(subject, symbol.encode(), timeout=REQUEST_TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001  (timeout, no responders, reconnecting)
                    log.debug("state of %s not fetched: %s", symbol, exc)
                    await asyncio.sleep(REQUEST_TIMEOUT_S)
                    continue
            if reply.data:
                self.handle_batch(reply.data, codec.STATE_TOKEN, from_stream=False)
                return
            await asyncio.sleep(REQUEST_TIMEOUT_S)  # the relay does not know it (yet)

    def resync_all(self, reason: str) -> None:
        self.stale_reason = ""
        for symbol in list(self.markets):
            self.markets[symbol].resyncing = False
            self.start_resync(symbol, reason)

    # ------------------------------------------------------------------ relay heartbeat

    def handle_heartbeat(self, data: bytes) -> None:
        try:
            info = codec.Info.decode(data)
        except codec.DecodeError as exc:
            self.stats.undecodable += 1
            log_count(log, self.stats.undecodable, "undecodable heartbeat dropped: %s", exc)
            return
        if info.group != self.group:
            self.stats.foreign += 1
            return
        if info.wire != codec.VERSION:
            self.stats.undecodable += 1
            self.flag_all_stale(f"the relay of group {self.group} speaks wire version {info.wire}, this mirror "
                                f"version {codec.VERSION}: run the same ldc version on both")
            return
        self.last_heartbeat = time.monotonic()
        if not info.origin_alive or not info.depth:
            self.flag_all_stale(f"origin feeder of group {self.group} is not running or its heartbeat is stale (relay epoch {info.epoch:x})")
            return
        w = self._writer
        if w is None or (info.depth, info.capacity, info.exchange) != (w.geometry.depth, w.geometry.capacity, self.exchange):
            try:
                self._recreate(info)
            except SegmentError as exc:  # another writer has the segment: refuse, as a second feeder does
                self.failure = str(exc)
                self._stop.set()
                return
        new_relay = info.epoch != self.relay_epoch
        self.relay_epoch = info.epoch
        self._follow_directory(info)
        if self.stale_reason or new_relay:
            self.resync_all("relay " + ("started" if new_relay else "heard again") + f" (epoch {info.epoch:x})")
            return
        for symbol, market in self.markets.items():
            claimed = info.seqs.get(symbol, 0)
            behind = market.epoch == info.epoch and claimed > market.seq and not market.resyncing
            if behind and market.behind_once:
                self.stats.gaps += 1
                self.start_resync(symbol, f"heartbeat says sequence {claimed}, last applied {market.seq}")
            market.behind_once = behind

    def _recreate(self, info: codec.Info) -> None:
        """Make the segment with the origin's geometry, replacing ours if it differs (readers follow)."""
        verb = "creating" if self._writer is None else "replacing"
        log.info("mirror %s: origin depth %d capacity %d exchange %r: %s the segment",
                 self.local_group, info.depth, info.capacity, info.exchange, verb)
        symbols = list(self.markets)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._writer = self._new_writer(info.depth, info.capacity, info.exchange)
        self.exchange = info.exchange
        self.markets = {}
        for symbol in symbols:
            self._add(symbol)

    def _follow_directory(self, info: codec.Info) -> None:
        origin = set(info.seqs)
        for symbol in origin - set(self.markets):
            if self.wanted is None:
                self._add(symbol)
                self.start_resync(symbol, "new market at the origin")
        for symbol in set(self.markets) - origin:
            if self.wanted is None:
                self.writer.remove_market(symbol)
                del self.markets[symbol]
            else:
                self._flag(self.markets[symbol], Status.ERROR, f"market {symbol} is not in the origin group {self.group}")

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self._writer is not None:
                self._writer.heartbeat()
            silent = time.monotonic() - self.last_heartbeat
            if silent > RELAY_SILENT_S and self._nc.is_connected and not self.stale_reason:
                self.flag_all_stale(f"no heartbeat from the relay of group {self.group} for {silent:.1f} s")

    # ------------------------------------------------------------------ connection

    async def on_disconnect(self) -> None:
        if self._closing:
            return
        self.flag_all_stale(f"lost the connection to NATS server {self.options.describe()}; reconnecting")

    async def on_reconnect(self) -> None:
        log.info("mirror %s: reconnected to %s", self.local_group, connected_url(self._nc))
        self.last_heartbeat = time.monotonic()  # the next heartbeat resyncs everything (stale_reason)
        if self._direct is not None:
            self._direct.attach_reader()  # the new connection's reader

    def on_wait(self, cause: str) -> None:
        self.flag_all_stale(cause)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            self._nc = await connect_until(stop, self.options, on_wait=self.on_wait, disconnected_cb=self.on_disconnect,
                                           reconnected_cb=self.on_reconnect)
            if self._nc is None:
                return
            log.info("mirror %s of group %s connected to %s", self.local_group, self.group, connected_url(self._nc))
            self.last_heartbeat = time.monotonic()
            # a --symbols mirror takes the group's batches too and skips the other markets' entries: the
            # relay sends one message per window for all of them (docs/FANOUT.md says why)
            subjects = [f"{codec.SUBJECT_PREFIX}.{self.group}.*"] if self.wanted is None else [
                codec.data_subject(self.group), codec.control_subject(self.group, codec.HEARTBEAT_TOKEN)]
            # the group's messages skip nats-py's Msg, queue and task (ldc.fanout.lean), its limit kept
            # (the relay's heartbeats are never dropped: a mirror catching up must not also judge it silent)
            heartbeat = codec.control_subject(self.group, codec.HEARTBEAT_TOKEN).encode()
            direct = self._direct = lean.DirectDelivery(self._nc, self.on_raw, self.pending_msgs, self.on_backlog_drop,
                                                        keep=frozenset((heartbeat,))) if lean.supported(self._nc) else None
            for subject in subjects:
                sub = await self._nc.subscribe(subject, cb=self.on_data, pending_msgs_limit=self.pending_msgs)
                if direct is not None:
                    direct.add(sub)
            if direct is not None and direct.take_loop_reads():  # the socket read in the loop's wait (plain TCP; TLS stays asyncio's)
                # ... and a read of batch frames alone applied there, in C, without a Python frame
                self._fast = direct.fast = _mirror.Fast(direct, self, codec.data_subject(self.group).encode())
            freeze_heap()
            if self.markets:
                self.flag_all_stale(f"connected to NATS; waiting for the relay of group {self.group}")
            watcher = asyncio.create_task(self.watch())
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._stop.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                watcher.cancel()
                self._closing = True
                await self._nc.close()
                if self._direct is not None:
                    self._direct.close()  # the loop's own selector and nats-py's delivery back
        finally:
            if self._writer is not None:
                self._writer.close()
            log.info("mirror %s stopped: %s", self.local_group, self.stats)
        if self.failure:
            raise SegmentError(self.failure)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ldc mirror", description="write a group relayed over NATS into this host's segment")
    p.add_argument("config", nargs="?", help="TOML file with a [nats] table (servers, TLS, credentials)")
    p.add_argument("--group", required=True, help="the relayed group (its relay runs `ldc relay --group GROUP`)")
    p.add_argument("--nats", help="NATS URL(s), comma-separated, instead of a config file")
    p.add_argument("--symbols", help="comma-separated markets to mirror (default: every market of the group)")
    p.add_argument("--local-group", help="segment name on this host (default: the group's own name)")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="depth until the relay says the origin's")
    p.add_argument("--pending-msgs", type=int, default=DEFAULT_PENDING_MSGS,
                   help="messages (batches) read and waiting in the client before it drops some (each drop resyncs the markets it carried)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


class _Command:
    parse_args = staticmethod(parse_args)

    @staticmethod
    def make(args: argparse.Namespace) -> Mirror:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
        for symbol in symbols or ():
            if not codec.symbol_is_token(symbol):
                raise ValueError(f"--symbols: {symbol!r} cannot be a NATS subject token (no '.', '*', '>', spaces, leading '_')")
        options = nats_options(args.config, args.nats, f"ldc-mirror-{args.local_group or args.group}")
        if args.pending_msgs < 1:
            raise ValueError(f"--pending-msgs must be >= 1, got {args.pending_msgs}")
        return Mirror(args.group, options, symbols=symbols, local_group=args.local_group, depth=args.depth,
                      pending_msgs=args.pending_msgs)


def main(argv: list[str]) -> int:
    return run_command(argv, "ldc mirror", _Command)
