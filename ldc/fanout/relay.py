"""``ldc relay``: publish every market of a group's segment to NATS, and serve newcomers.

The loop thread sleeps on the segment's notify word, collects the markets whose slot changed and
publishes them together, one batch message on ``ldc.<group>._batch`` (split at
``codec.MAX_BATCH_BYTES``); the per-update and per-send work is C (``ldc.fanout._relay`` through
``Origin``: scan, seqlock copy, encode, ``PUB`` frames, and on a plain TCP connection the sleep and
the ``send()`` themselves, see ``Relay._pump``). After a send it looks again only once
``coalesce_s`` has passed, so a busy origin costs one send per window whatever its rate, and an
update waits at most that window (plus the send) before it leaves: a quiet origin's next change
goes at once. The loop also answers ``_state`` requests from the last entry of each market (kept
in memory: a newcomer costs one reply, the stream nothing), and publishes the heartbeat
(``codec.Info``) every ``HEARTBEAT_INTERVAL_S``.

Request/reply rather than a JetStream key-value bucket: a bucket would store every update a second
time on the server (``scripts/bench_mirror.py`` measures the relay's CPU per update both ways);
here a newcomer's request is the only extra cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from typing import Any, Final

from ldc.errors import ConfigError, LdcError, SegmentError
from ldc.fanout import _relay, codec, lean
from ldc.fanout.conn import NatsConnectError, NatsOptions, connect_until, connected_url, freeze_heap, load_options, options_from_url
from ldc.fanout.origin import PUMP_DIRECTORY, PUMP_ERROR, PUMP_READABLE, Origin
from ldc.shm.layout import NAME_SIZE

log = logging.getLogger("ldc.relay")

HEARTBEAT_INTERVAL_S: Final = 0.5
# The loop blocks in the origin's notify futex at most this long (the writer wakes every sleeper after each
# publish batch, layout 2.0: a sleeping relay costs the feeder nothing), so NATS callbacks run in between.
WAIT_SLICE_S: Final = 0.002
# On the direct path (Relay._pump_direct) C sleeps and sends this long before the loop runs again,
# unless the socket turns readable (a ping, a _state request, a heartbeat: nats-py's at once); the
# heartbeat's and the liveness check's timers wait at most this.
PUMP_SLICE_S: Final = 0.05
# That is the slice after a return for readable bytes (nats-py's callbacks may have more to do in the
# next rounds); otherwise the slice lasts until the loop's next timer of ours is due (the heartbeat, the
# liveness check), at most PUMP_SLICE_MAX_S (nats-py's own timers, a ping every 2 minutes, and a stop wait
# at most that): a return costs ~90 us of Python, and 50 ms slices made ~22 returns a second (13 now; an
# idle relay's CPU 6.9 -> 5.9 ms a second, issue 16).
PUMP_SLICE_MAX_S: Final = 0.25
PUMP_SLICE_MIN_S: Final = 0.001
# ... and sleeps on the notify futex at most this long at a time while nothing changes (the socket is
# looked at between: a request to an idle relay waits at most this; 2 ms cost an idle relay 10-12 ms
# of CPU a second on the test host, 10 ms about 3)
PUMP_IDLE_WAIT_S: Final = 0.01
TIMER_SLACK_NS: Final = 1000  # the default 50 us would stretch every window by up to that
ATTACH_RETRY_S: Final = 0.5  # origin segment missing or being replaced: look again this often
LIVENESS_CHECK_S: Final = 0.25  # origin writer probe and replacement check
RIVAL_LISTEN_S: Final = 1.5 * HEARTBEAT_INTERVAL_S  # before publishing: is another relay's heartbeat heard?
# After a send, changes wait this long for the next one. A send costs the relay ~25-30 us of CPU on the
# 2-core test host, nearly all of it the kernel's (the wake-up, and loopback TCP delivering to the
# server inside send()), an entry well under 1 us (C), so the relay's CPU per update falls with the
# window and the window bounds the added latency (docs/FANOUT.md has the trade). 0: send on every wake.
# By default the window is the origin's pace (its writer's notify_paced_us, LAYOUT.md section 11), slept
# out on the notify_paced futex word the writer's own publish moves, not on a timer: a timer's expiry
# costs ~17 us a send on the test host, a futex wake ~3 (docs/FANOUT.md, issue 16). A writer that does
# not pace (layout < 2.2, notify_paced_us = 0): a timer window of DEFAULT_COALESCE_US, the longest whose
# p99 stayed under 1 ms there (0.92-0.94 ms at 10 / 200 markets).
DEFAULT_COALESCE_US: Final = 800
MAX_COALESCE_US: Final = 100_000  # a tenth of a second: beyond it a mirror's books lag visibly
# room for the envelope and the longest group name within the server's max_payload
_BATCH_OVERHEAD: Final = codec.ENVELOPE.size + 1 + NAME_SIZE


class RelayConflict(LdcError):
    """Another relay already publishes the group."""


class Relay:
    def __init__(self, group: str, options: NatsOptions, coalesce_us: int | None = None, io_uring: bool = True) -> None:
        """``coalesce_us``: the window after a send; None: the origin's pace (``Origin.paced_us``), or
        ``DEFAULT_COALESCE_US`` when its writer does not pace. A window shorter than a pacing origin's
        pace is that pace (the paced word moves no faster). ``io_uring``: False keeps the paced sends
        and sleeps on send() and futex() even where the kernel offers io_uring (``Origin.io_uring``)."""
        self.group = codec.check_group(group)
        self.options = options
        if coalesce_us is not None and not 0 <= coalesce_us <= MAX_COALESCE_US:
            raise ValueError(f"coalescing window must be 0..{MAX_COALESCE_US} us, got {coalesce_us}")
        self.coalesce_us = coalesce_us
        self.io_uring = io_uring
        self._ring_told: bool | None = None  # what the paced path last said: True through io_uring (None: nothing yet)
        self.coalesce_s = (DEFAULT_COALESCE_US if coalesce_us is None else coalesce_us) / 1e6  # set per origin (_attach)
        self._wait_s = WAIT_SLICE_S
        self.epoch = secrets.randbits(63) | 1  # new at every start: mirrors resync from it
        self.origin: Origin | None = None
        self._seqs: dict[str, int] = {}  # the last origin file's sequences: the epoch's go on in the next
        self.origin_alive = False
        self.published = 0  # entries (market updates) published
        self.batches = 0  # messages they travelled in
        self.dropped = 0  # updates not published (NATS unreachable and its buffer full)
        self._failed_sends = 0
        self._nc: Any = None
        self._closing = False
        self._started = False
        self.rival = 0  # epoch of another relay heard on this group's heartbeat subject
        self.batch_seq = 0
        self._group_b = self.group.encode()
        self._subject = codec.data_subject(self.group)
        self._subject_b = self._subject.encode()
        self._lean = False  # lean.publish_now for the batches (the installed nats-py supports it)
        self._heartbeat_due = 0.0  # time.monotonic() of the next heartbeat
        self._last_pump = -1  # the last pump's code

    # ------------------------------------------------------------------ the pump

    async def _pump(self) -> None:
        """Sleep on the origin's notify word, publish each batch of changes, let the loop run.

        The loop thread itself sleeps and sends: on a plain TCP connection with nothing queued
        before (``lean.direct_fd``), ``Origin.pump`` (C, the GIL released) sleeps on the notify
        futex or out the coalescing window, collects and ``send()``s the batches as ``PUB`` frames
        until our next timer is due (the heartbeat, the liveness check; at most ``PUMP_SLICE_MAX_S``,
        ``PUMP_SLICE_S`` after bytes came in) or the socket has bytes to read, then returns so nats-py's
        callbacks run (pings, ``_state`` requests, the heartbeat, the rival check); a short send's
        tail goes to the transport, in order. Otherwise (TLS, a websocket, a reconnect, nats-py has queued something) C collects
        and encodes and Python writes, sleeping on the futex for at most ``WAIT_SLICE_S`` and out
        the window in the same thread. Requests, pings and the heartbeat wait at most one slice
        (a ``_state`` request's bytes end the slice at once)."""
        next_check = 0.0
        while True:
            origin = self.origin
            if origin is None:
                if not self._attach():
                    await asyncio.sleep(ATTACH_RETRY_S)
                continue
            now = time.monotonic()
            if now >= next_check:
                next_check = now + LIVENESS_CHECK_S
                self.origin_alive = origin.alive()
                if not self.origin_alive and origin.replaced():
                    log.warning("origin segment of %s was replaced: attaching to the new one", self.group)
                    self._detach()
                    continue
            nc = self._nc
            limit = min(codec.MAX_BATCH_BYTES, nc.max_payload - _BATCH_OVERHEAD)
            fd = lean.direct_fd(nc) if self._lean else -1
            if fd >= 0:
                if self._last_pump == PUMP_READABLE:  # nats-py's callbacks may have work for the next rounds
                    slice_s = PUMP_SLICE_S
                else:
                    due = min(next_check, self._heartbeat_due) - time.monotonic()
                    slice_s = min(PUMP_SLICE_MAX_S, max(PUMP_SLICE_MIN_S, due))
                self._pump_direct(origin, fd, limit, slice_s)
                await asyncio.sleep(0)  # callbacks run
                continue
            word = origin.notify_word()
            try:
                payloads = origin.collect(limit)
            except SegmentError as exc:
                log.warning("origin %s: %s", self.group, exc)
                payloads = []
            if not payloads:
                origin.wait(word, self._wait_s)
                await asyncio.sleep(0)  # callbacks run
                continue
            sent_at = time.monotonic()
            await self._send(payloads)
            await asyncio.sleep(0)  # the flusher writes what was published; callbacks run
            hold = sent_at + self.coalesce_s - time.monotonic()
            if hold > 0:
                time.sleep(hold)  # asyncio's timers are whole milliseconds: a window is finer

    def _pump_direct(self, origin: Origin, fd: int, limit: int, slice_s: float = PUMP_SLICE_S) -> None:
        before = origin.published
        code, rest, messages, payload_bytes, errno, unsent = origin.pump(fd, limit, slice_s, self.coalesce_s, PUMP_IDLE_WAIT_S)
        self._last_pump = code
        if origin.paced_us and self._ring_told != (origin.io_uring or not self.io_uring):
            # said once an origin, and again if the ring is given up later (another thread, a wait refused)
            ring, refused = origin.io_uring, origin.io_uring_refused
            level = logging.WARNING if self._ring_told is True and not ring else logging.INFO
            log.log(level, "relay %s: paced sends %s", self.group, "and the sleeps after them through io_uring" if ring else
                    f"with send() and futex() (io_uring {'refused: ' + refused if refused else 'turned off'})")
            self._ring_told = ring or not self.io_uring
        entries = origin.published - before
        if rest is not None:  # built, not (all) sent: the transport takes it, after what C sent
            if code == PUMP_ERROR or not lean.write_frames(self._nc, rest, tail=True):
                lost = unsent  # a tail may start inside a frame: C counted the frames it touches
                entries -= lost
                self.dropped += lost
                self._failed_sends += 1
                log_count(log, self._failed_sends, "relay %s: %d updates not sent (%s); %d updates dropped in all",
                          self.group, lost, os.strerror(errno) if errno else "connection not writable", self.dropped)
        self.published += entries
        self.batches += messages
        self.batch_seq = origin.batch_seq
        lean.count_sent(self._nc, messages, payload_bytes)
        if code == PUMP_DIRECTORY:
            try:
                if not origin.refresh():  # being changed: look again shortly, not at once
                    origin.wait(origin.notify_word(), self._wait_s)
            except SegmentError as exc:
                log.warning("origin %s: %s", self.group, exc)
                origin.wait(origin.notify_word(), self._wait_s)

    async def _send(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            count = codec.batch_count(payload)
            try:
                if not (self._lean and lean.publish_now(self._nc, self._subject_b, payload)):
                    await self._nc.publish(self._subject, payload)
                self.published += count
                self.batches += 1
            except Exception as exc:  # noqa: BLE001  (nats-py raises several kinds while reconnecting)
                self.dropped += count
                self._failed_sends += 1
                log_count(log, self._failed_sends, "relay %s: a batch of %d updates not sent (%s); %d updates dropped in all",
                          self.group, count, exc, self.dropped)
        if self.origin is not None:
            self.batch_seq = self.origin.batch_seq

    def _attach(self) -> bool:
        try:
            self.origin = Origin(self.group, self.epoch, self._seqs, self.batch_seq)
        except SegmentError as exc:
            log.info("waiting for the origin segment of %s: %s", self.group, exc)
            return False
        self.origin_alive = self.origin.alive()
        if not self.io_uring:
            self.origin.io_uring = False
        self._ring_told = None
        paced_us = self.origin.paced_us
        window_us = max(self.coalesce_us if self.coalesce_us is not None else (paced_us or DEFAULT_COALESCE_US), paced_us)
        self.coalesce_s = window_us / 1e6
        log.info("attached to %s (depth %d, capacity %d); window %d us, %s", self.origin.reader.name,
                 self.origin.geometry.depth, self.origin.geometry.capacity, window_us,
                 "on its writer's paced notify word" if paced_us else "on a timer (its writer does not pace)")
        return True

    def _detach(self) -> None:
        origin, self.origin = self.origin, None
        if origin is not None:
            self._seqs = origin.seqs
            origin.close()

    # ------------------------------------------------------------------ asyncio side

    async def run(self, stop: asyncio.Event) -> None:
        self._nc = await connect_until(stop, self.options, on_wait=lambda cause: log.warning("%s", cause),
                                       disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect)
        if self._nc is None:
            return
        log.info("relay %s connected to %s (epoch %x)", self.group, connected_url(self._nc), self.epoch)
        await self._nc.subscribe(codec.control_subject(self.group, codec.HEARTBEAT_TOKEN), cb=self._on_heartbeat)
        await asyncio.sleep(RIVAL_LISTEN_S)  # a running relay of the group is heard within this
        if self.rival:
            await self._nc.close()
            raise RelayConflict(f"group {self.group} already has a relay on NATS server {self.options.describe()} "
                                f"(epoch {self.rival:x}): one relay per group, or mirrors follow two epochs")
        await self._nc.subscribe(codec.control_subject(self.group, codec.STATE_TOKEN), cb=self._on_state)
        self._started = True
        self._lean = lean.supported(self._nc)
        if not self._lean:
            log.warning("relay %s: this nats-py lacks what ldc.fanout.lean uses: batches go through nc.publish", self.group)
        _relay.set_timer_slack_ns(TIMER_SLACK_NS)  # the loop thread's sleeps end within a few us of their time
        freeze_heap()
        tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._heartbeat())]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            self._detach()
            self._closing = True
            await self._nc.close()

    def info(self) -> codec.Info:
        origin = self.origin
        if origin is None:
            return codec.Info(self.group, "", 0, 0, self.epoch, False, {}, codec.VERSION)
        return codec.Info(self.group, origin.exchange, origin.geometry.depth, origin.geometry.capacity,
                          self.epoch, self.origin_alive, dict(origin.seqs), codec.VERSION)

    async def _heartbeat(self) -> None:
        subject = codec.control_subject(self.group, codec.HEARTBEAT_TOKEN)
        while True:
            try:
                await self._nc.publish(subject, self.info().encode())
            except Exception as exc:  # noqa: BLE001
                log.debug("heartbeat not sent: %s", exc)
            self._heartbeat_due = time.monotonic() + HEARTBEAT_INTERVAL_S
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _on_heartbeat(self, msg: Any) -> None:
        try:
            epoch = codec.Info.decode(msg.data).epoch
        except codec.DecodeError:
            return
        if epoch != self.epoch and epoch != self.rival:
            if self.rival == 0 and self._started:
                log.error("relay %s: another relay (epoch %x) publishes this group: stop one of them", self.group, epoch)
            self.rival = epoch

    async def _on_state(self, msg: Any) -> None:
        origin = self.origin
        symbol = msg.data.decode(errors="replace")
        last = origin.last_entry(symbol) if origin is not None else None
        await msg.respond(codec.encode_batch(self.epoch, 0, self._group_b, [last]) if last else b"")

    async def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("relay %s: lost the NATS connection; reconnecting", self.group)

    async def _on_reconnect(self) -> None:
        log.info("relay %s: reconnected to %s", self.group, connected_url(self._nc))


def frames_entries(frames: bytes) -> int:
    """Entries in ``PUB`` frames of batches (a pump's unsent tail), from each envelope's count."""
    total, pos = 0, 0
    while pos < len(frames):
        eol = frames.index(b"\r\n", pos)
        size = int(frames[frames.rindex(b" ", pos, eol) + 1 : eol])
        total += codec.batch_count(frames[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2
    return total


def log_count(logger: logging.Logger, count: int, fmt: str, *args: object) -> None:
    """Log at the 1st, 2nd, 4th, 8th ... occurrence: a flood is visible without flooding the log."""
    if count & (count - 1) == 0:
        logger.warning(fmt + f" ({count} so far)", *args)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ldc relay", description="publish a group's books to NATS for mirrors on other hosts")
    p.add_argument("config", nargs="?", help="TOML file with a [nats] table (servers, TLS, credentials)")
    p.add_argument("--group", required=True, help="the group whose segment /dev/shm/ldc-GROUP is relayed")
    p.add_argument("--nats", help="NATS URL(s), comma-separated, instead of a config file")
    p.add_argument("--coalesce-us", type=int, default=None,
                   help="after a send, changes wait this long for the next one: one message per window carries every "
                        "market that changed (default: the feeder's notify_paced_us, its segment's pace; "
                        f"{DEFAULT_COALESCE_US} for a feeder that does not pace). A window shorter than the pace is the "
                        "pace; with a feeder that does not pace, 0 sends on every wake")
    p.add_argument("--no-io-uring", action="store_true",
                   help="send and sleep with send() and futex() even where the kernel offers io_uring (by default a paced "
                        "relay submits each send with the sleep after it: one syscall, no preemption in between)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def nats_options(config: str | None, url: str | None, name: str) -> NatsOptions:
    if config and url:
        raise ConfigError("give a config file or --nats URL, not both")
    if config:
        options = load_options(config)
        return options if options.name else NatsOptions(**{**options.__dict__, "name": name})
    return options_from_url(url or "nats://127.0.0.1:4222", name)


def run_command(argv: list[str], prog: str, build: Any) -> int:
    """Shared main of relay and mirror: parse, log, run until SIGTERM / SIGINT, clear errors."""
    args = build.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {prog}[%(process)d] %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await build.make(args).run(stop)

    try:
        asyncio.run(main())
    except NatsConnectError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (LdcError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0


class _Command:
    parse_args = staticmethod(parse_args)

    @staticmethod
    def make(args: argparse.Namespace) -> Relay:
        return Relay(args.group, nats_options(args.config, args.nats, f"ldc-relay-{args.group}"), args.coalesce_us,
                     io_uring=not args.no_io_uring)


def main(argv: list[str]) -> int:
    return run_command(argv, "ldc relay", _Command)
