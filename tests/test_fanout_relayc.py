"""The relay's C collector (ldc/fanout/_relay.c, through ldc.fanout.origin.Origin) against the Python
codec: on random slots its entries, batches and NATS frames are byte for byte what
``codec.encode_entry`` / ``encode_batch`` / ``split_batches`` make of a reader's copy; it splits at
the limit, never sends a torn copy of a slot rewritten under it (and skips, not spins on, a slot a
writer left odd), carries sequences across a replaced origin file and follows removed, re-added and
reused slots. The pump sends the same frames on a real socket."""

from __future__ import annotations

import multiprocessing
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from ldc.fanout import codec
from ldc.fanout.origin import PUMP_DIRECTORY, PUMP_SHORT, PUMP_SLICE, Origin
from ldc.fanout.relay import frames_entries
from ldc.shm import _seqlock
from ldc.shm.layout import SLOT_HEADER, Status
from ldc.shm.reader import Reader, SnapshotBuffer
from ldc.shm.writer import SegmentWriter
from shm_helpers import unique_group, unlink_group

DEPTH = 8
EPOCH = 0x1234567890ABCDEF | 1
STATUSES = [Status.SYNCED, Status.RESYNCING, Status.SYNCED | Status.CROSSED, Status.ERROR, 0]


@pytest.fixture
def group() -> Iterator[str]:
    name = unique_group("rc")
    yield name
    unlink_group(name)


def _ring(origin: Origin, on: bool) -> None:
    """A paced pump's sends and sleeps through io_uring (on: where the kernel allows it) or send() and futex()."""
    origin.io_uring = on


def _ring_used(origin: Origin, on: bool) -> None:
    """After a paced pump: the ring was used when asked for, unless the kernel refused it (then said why)."""
    if on and not origin.io_uring:
        assert origin.io_uring_refused
        pytest.skip(f"io_uring refused here: {origin.io_uring_refused}")
    assert origin.io_uring == on


def _random_publish(writer: SegmentWriter, rng: random.Random, symbol: str, update_id: int) -> None:
    nb, na = rng.randint(0, DEPTH), rng.randint(0, DEPTH)
    bids = np.array([[rng.uniform(1, 1e5), rng.uniform(0, 10)] for _ in range(nb)] or np.zeros((0, 2)), np.float64).reshape(nb, 2)
    asks = np.array([[rng.uniform(1, 1e5), rng.uniform(0, 10)] for _ in range(na)] or np.zeros((0, 2)), np.float64).reshape(na, 2)
    slot = writer.slot(symbol)
    if rng.random() < 0.5:  # a status message of any length the slot holds, some of it multi-byte
        writer.set_status(slot, int(rng.choice(STATUSES)), "é" * rng.randint(0, 40) + "x" * rng.randint(0, 30))
    writer.publish(slot, update_id=update_id, event_time_ms=rng.randint(0, 2**40), recv_time_ns=rng.randint(0, 2**62),
                   status=int(rng.choice(STATUSES)), bids=np.ascontiguousarray(bids), asks=np.ascontiguousarray(asks),
                   n_bids=nb, n_asks=na)


class _Reference:
    """What the relay sent before its C path: a reader's seqlock copy with the status message,
    the stored status, encoded by the Python codec."""

    def __init__(self, group: str) -> None:
        self.reader = Reader(group)
        self.g = self.reader.geometry
        self.seg = self.reader._seg  # the Reader's C Segment (read-only)
        self.buf = SnapshotBuffer(self.seg, self.g)
        self.seqs: dict[str, int] = {}

    def entry(self, writer: SegmentWriter, symbol: str) -> bytes:
        slot = writer.slot(symbol)
        gen = self.seg.read_directory()
        gens = {raw.decode(): g for s, raw, g in gen or []}
        rc = self.seg.read(slot, gens[symbol], self.buf, True)
        assert rc in (_seqlock.READ_OK, _seqlock.READ_OUT_OF_SYNC), rc
        view = bytearray(memoryview(self.buf))
        stored = struct.unpack_from("<I", memoryview(self.buf), SLOT_HEADER.offset("status"))[0] & ~int(Status.STALE)
        struct.pack_into("<I", view, SLOT_HEADER.offset("status"), stored)  # fresh heartbeat: no STALE added
        self.seqs[symbol] = self.seqs.get(symbol, 0) + 1
        return codec.encode_entry(self.seqs[symbol], symbol.encode(), memoryview(view), self.buf.n_bids, self.buf.n_asks,
                                  self.g.bids_offset, self.g.asks_offset, self.buf.message)

    def close(self) -> None:
        self.reader.close()


def _frames(group: str, payloads: list[bytes]) -> bytes:
    subject = codec.data_subject(group).encode()
    return b"".join(b"PUB %s %d\r\n%s\r\n" % (subject, len(p), p) for p in payloads)


@pytest.mark.parametrize("seed", range(4))
def test_entries_batches_and_frames_equal_the_python_codecs_on_random_slots(group: str, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"R{i:02d}{'X' * rng.randint(0, 20)}USDT" for i in range(30)]
    with SegmentWriter(group, depth=DEPTH, capacity=32, exchange="binance.com", markets=names) as writer:
        ref = _Reference(group)
        origins = [Origin(group, EPOCH) for _ in range(3)]  # one per way of taking the changes
        try:
            batch_seq = 0
            for round_ in range(1, 25):
                # the first round every market (a new market's slot counts as changed: it is sent once)
                picked = names if round_ == 1 else rng.sample(names, rng.randint(1, len(names)))
                for name in picked:
                    _random_publish(writer, rng, name, round_)
                order = [n for n in sorted(names, key=writer.slot) if n in picked]
                expected = [ref.entry(writer, n) for n in order]
                changes = origins[0].changes()
                assert [c.symbol for c in changes] == order
                assert [c.entry for c in changes] == expected
                limit = rng.choice([1, 500, 2000, 5000, codec.MAX_BATCH_BYTES])
                runs = codec.split_batches(expected, limit)
                payloads = [codec.encode_batch(EPOCH, batch_seq + k + 1, group.encode(), run) for k, run in enumerate(runs)]
                batch_seq += len(runs)
                assert origins[1].collect(limit) == payloads
                origins[2].refresh()
                frames, messages, payload_bytes = origins[2]._c.collect_frames(limit)
                assert frames == _frames(group, payloads)
                assert (messages, payload_bytes) == (len(payloads), sum(map(len, payloads)))
                assert frames_entries(frames) == len(expected)
                assert origins[0].last_entry(order[-1]) == expected[-1]
                for origin in origins:
                    assert origin.changes() == []
        finally:
            for origin in origins:
                origin.close()
            ref.close()


def test_a_send_splits_at_the_limit_and_an_entry_larger_goes_alone(group: str) -> None:
    names = [f"S{i:02d}USDT" for i in range(12)]  # entries of one size
    full = np.ascontiguousarray(np.ones((DEPTH, 2)))
    with SegmentWriter(group, depth=DEPTH, capacity=16, markets=names) as writer:
        origin = Origin(group, EPOCH)
        try:
            for name in names:
                writer.publish(writer.slot(name), update_id=1, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                               bids=full, asks=full, n_bids=DEPTH, n_asks=DEPTH)
            size = len(names[0]) + 8 + SLOT_HEADER.size + 3 + 2 * DEPTH * 16
            payloads = origin.collect(3 * size)  # three entries a batch
            assert [codec.batch_count(p) for p in payloads] == [3, 3, 3, 3]
            assert [codec.decode_batch(p, DEPTH).batch_seq for p in payloads] == [1, 2, 3, 4]
            for name in names[:5]:
                writer.publish(writer.slot(name), update_id=2, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                               bids=full, asks=full, n_bids=DEPTH, n_asks=DEPTH)
            assert [codec.batch_count(p) for p in origin.collect(size - 1)] == [1] * 5  # each larger than the limit: alone
        finally:
            origin.close()


def _rewrite_forever(group: str, symbol: str, stop: object) -> None:
    """Publish one market as fast as possible; every level of update u is (u, u)."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=[symbol]) as writer:
        slot = writer.slot(symbol)
        u = 0
        while not stop.is_set():  # type: ignore[attr-defined]
            u += 1
            levels = np.full((DEPTH, 2), float(u))
            writer.publish(slot, update_id=u, event_time_ms=u, recv_time_ns=u, status=Status.SYNCED, bids=levels,
                           asks=levels, n_bids=DEPTH, n_asks=DEPTH)


def test_a_slot_rewritten_during_the_copy_is_never_sent_torn(group: str) -> None:
    """A writer process rewrites the slot without pause while the collector copies it: every entry
    sent is one whole publish (its levels all equal its update id), and update ids only grow."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_rewrite_forever, args=(group, "HOTUSDT", stop))
    proc.start()
    try:
        deadline = time.monotonic() + 30
        origin = None
        while origin is None:
            try:
                origin = Origin(group, EPOCH)
            except Exception:  # noqa: BLE001  (the writer's segment is not there yet)
                assert time.monotonic() < deadline, "the writer process never made its segment"
                time.sleep(0.05)
        try:
            seen, last_uid = 0, 0
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                for change in origin.changes():
                    update = codec.decode_entry(change.entry, DEPTH)
                    uid = update.update_id
                    assert uid >= 1 and uid > last_uid
                    assert (np.asarray(update.bids) == uid).all() and (np.asarray(update.asks) == uid).all()
                    last_uid = uid
                    seen += 1
            assert seen > 100
        finally:
            origin.close()
    finally:
        stop.set()
        proc.join(10)


def test_a_slot_left_odd_is_skipped_not_spun_on_and_sent_once_whole(group: str) -> None:
    """A writer that died mid-write leaves the slot's seq odd: the other markets go on, that one is
    looked at again each round without a long spin, and leaves once the seq is even again."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT", "BBBUSDT"]) as writer:
        bids = np.ascontiguousarray(np.ones((DEPTH, 2)))
        for name in ("AAAUSDT", "BBBUSDT"):
            writer.publish(writer.slot(name), update_id=5, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                           bids=bids, asks=bids, n_bids=DEPTH, n_asks=DEPTH)
        origin = Origin(group, EPOCH)
        try:
            seg: _seqlock.Segment = writer.segment  # type: ignore[assignment]
            at = writer.geometry.slot_offset(writer.slot("BBBUSDT")) + SLOT_HEADER.offset("seq")
            even = seg.load_u64(at)
            seg.store_u64(at, even + 1)  # "mid-write"
            t0 = time.monotonic()
            assert [c.symbol for c in origin.changes()] == ["AAAUSDT"]
            assert origin.changes() == []
            assert time.monotonic() - t0 < 0.005  # no milliseconds of spinning
            assert origin._c.skipped_copies >= 2
            seg.store_u64(at, even + 2)
            (change,) = origin.changes()
            assert change.symbol == "BBBUSDT" and change.seq == 1
        finally:
            origin.close()


def test_a_replaced_origin_carries_sequences_and_batch_numbers_but_not_old_entries(group: str) -> None:
    bids = np.ascontiguousarray(np.ones((DEPTH, 2)))
    first = SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT", "BBBUSDT"])
    for u in (1, 2):
        first.publish(first.slot("AAAUSDT"), update_id=u, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                      bids=bids, asks=bids, n_bids=DEPTH, n_asks=DEPTH)
    origin = Origin(group, EPOCH)
    origin.changes()
    first.publish(first.slot("AAAUSDT"), update_id=3, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                  bids=bids, asks=bids, n_bids=DEPTH, n_asks=DEPTH)
    assert codec.batch_count(origin.collect(codec.MAX_BATCH_BYTES)[0]) == 1
    seqs, batch_seq = origin.seqs, origin.batch_seq
    # BBB: its new slot (never published) counts as changed and was sent once, out of sync
    assert seqs == {"AAAUSDT": 2, "BBBUSDT": 1} and batch_seq == 1 and origin.last_entry("AAAUSDT") is not None
    origin.close()
    first.close()
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT", "CCCUSDT"]) as second:
        successor = Origin(group, EPOCH, seqs, batch_seq)
        try:
            assert successor.seqs == seqs  # before its directory is read, too
            assert successor.last_entry("AAAUSDT") is None
            successor.changes()  # the new file's slots, each sent once
            assert successor.seqs == {"AAAUSDT": 3, "CCCUSDT": 1}  # BBB is not in the new directory: dropped
            second.publish(second.slot("AAAUSDT"), update_id=1, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                           bids=bids, asks=bids, n_bids=DEPTH, n_asks=DEPTH)
            (payload,) = successor.collect(codec.MAX_BATCH_BYTES)
            batch = codec.decode_batch(payload, DEPTH)
            assert batch.batch_seq == 2 and [(u.symbol, u.seq, u.update_id) for u in batch.updates] == [("AAAUSDT", 4, 1)]
        finally:
            successor.close()


def test_a_removed_market_leaves_and_a_reused_slot_is_the_new_markets(group: str) -> None:
    bids = np.ascontiguousarray(np.ones((DEPTH, 2)))
    with SegmentWriter(group, depth=DEPTH, capacity=2, markets=["AAAUSDT", "BBBUSDT"]) as writer:
        def publish(name: str, u: int) -> None:
            writer.publish(writer.slot(name), update_id=u, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                           bids=bids, asks=bids, n_bids=DEPTH, n_asks=DEPTH)

        origin = Origin(group, EPOCH)
        try:
            publish("AAAUSDT", 1)
            publish("BBBUSDT", 1)
            assert len(origin.changes()) == 2
            old_slot = writer.slot("BBBUSDT")
            writer.remove_market("BBBUSDT")
            assert writer.add_market("NEWUSDT") == old_slot  # the freed slot, a new generation
            publish("NEWUSDT", 9)
            publish("AAAUSDT", 2)
            found = {c.symbol: (c.seq, codec.decode_entry(c.entry, DEPTH).update_id) for c in origin.changes()}
            assert found == {"AAAUSDT": (2, 2), "NEWUSDT": (1, 9)}
            assert set(origin.seqs) == {"AAAUSDT", "NEWUSDT"} and origin.last_entry("BBBUSDT") is None
            writer.remove_market("NEWUSDT")
            writer.add_market("BBBUSDT")  # back: its sequence starts again (a mirror takes 1 as a new start)
            publish("BBBUSDT", 3)
            (change,) = origin.changes()
            assert (change.symbol, change.seq) == ("BBBUSDT", 1)
        finally:
            origin.close()


# a writer that does not pace (the window on a timer), one that does with the sends and sleeps through io_uring or not
@pytest.mark.parametrize(("paced_us", "ring"), [(0, False), (800, True), (800, False)])
def test_the_pump_sends_the_same_frames_on_a_socket_and_keeps_the_window(group: str, paced_us: int, ring: bool) -> None:
    names = ["AAAUSDT", "BBBUSDT"]
    rng = random.Random(7)
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=names, notify_paced_us=paced_us) as writer:
        ref = _Reference(group)
        origin = Origin(group, EPOCH)
        _ring(origin, ring)
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            code, *_ = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, 0.0, 0.002)
            assert code == PUMP_DIRECTORY  # its markets not read yet: the caller reads the directory
            assert origin.refresh()
            for name in names:
                _random_publish(writer, rng, name, 1)
            writer.notify()
            expected = [ref.entry(writer, n) for n in names]
            window = 0.02
            t0 = time.monotonic()
            code, rest, messages, payload_bytes, errno, unsent = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, window, 0.002)
            assert (code, rest, messages, errno, unsent) == (PUMP_SLICE, None, 1, 0, 0)
            payload = codec.encode_batch(EPOCH, 1, group.encode(), expected)
            assert b.recv(1 << 20) == _frames(group, [payload]) and payload_bytes == len(payload)
            _random_publish(writer, rng, "BBBUSDT", 2)
            writer.notify()
            code, rest, messages, _, _, _ = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.1, window, 0.002)
            assert time.monotonic() - t0 >= window  # the change waited out the window after the first send
            assert messages == 1 and code == PUMP_SLICE and rest is None
            if paced_us:
                _ring_used(origin, ring)
            (update,) = codec.decode_batch(b.recv(1 << 20).split(b"\r\n", 1)[1][:-2], DEPTH).updates
            assert (update.symbol, update.seq, update.update_id) == ("BBBUSDT", 2, 2)
            _random_publish(writer, rng, "AAAUSDT", 3)
            code, rest, messages, _, _, unsent = origin.pump(-1, codec.MAX_BATCH_BYTES, 0.1, 0.0, 0.002)  # no socket: frames back
            assert code == PUMP_SHORT and messages == 1 and rest is not None and frames_entries(rest) == unsent == 1
        finally:
            a.close()
            b.close()
            origin.close()
            ref.close()


def _arrivals(sock: socket.socket, out: list[float], stop: threading.Event) -> None:
    """The arrival time of each PUB frame (one batch each here); frames read together share a time."""
    sock.settimeout(0.01)
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not data:
            return
        out.extend([time.monotonic()] * data.count(b"PUB "))


@pytest.mark.parametrize("ring", [True, False])
def test_a_pacing_origin_s_window_is_slept_on_its_paced_word_with_a_guard(group: str, ring: bool) -> None:
    """LAYOUT.md 2.2: with a writer that paces (100 ms here), the window after a send ends at the writer's
    first publish that moves notify_paced (at least a pace after its last move), never earlier than half
    a pace before the window's end; a change inside the window followed by silence moves nothing, and
    goes at the guard, half a pace after the window's end. Arrival times are taken by a thread of this
    process, so the bounds leave a quarter of a pace for its scheduling on a loaded host."""
    pace = 0.1
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"], notify_paced_us=int(pace * 1e6)) as writer:
        origin = Origin(group, EPOCH)
        _ring(origin, ring)
        assert origin.paced_us == 100_000
        a, b = socket.socketpair()
        got: list[float] = []
        stop = threading.Event()
        reader = threading.Thread(target=_arrivals, args=(b, got, stop))
        reader.start()
        rng = random.Random(3)
        try:
            a.setblocking(False)
            assert origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, 0.0, 0.002)[0] == PUMP_DIRECTORY and origin.refresh()
            _random_publish(writer, rng, "AAAUSDT", 1)
            writer.notify()  # the writer's first paced move
            assert origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, 0.0, 0.002)[2] == 1  # sent at once
            _random_publish(writer, rng, "AAAUSDT", 2)
            writer.notify()  # inside the pace: notify moves, notify_paced does not; then nothing
            code, _, messages, _, _, _ = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.5, 0.0, 0.002)
            assert (code, messages) == (PUMP_SLICE, 1)
            wait_until = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < wait_until:
                time.sleep(0.001)
            assert len(got) == 2 and got[1] - got[0] >= 1.25 * pace  # the guard: the window (one pace) plus half a pace
            got.clear()

            def steady() -> None:  # a publish every 2 ms for ~0.8 s: the writer moves notify_paced every ~100 ms
                for u in range(3, 403):
                    _random_publish(writer, rng, "AAAUSDT", u)
                    writer.notify()
                    time.sleep(0.002)

            publisher = threading.Thread(target=steady)
            started = time.monotonic()
            publisher.start()
            messages = 0
            while publisher.is_alive():
                messages += origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.05, 0.0, 0.002)[2]
            publisher.join()
            took = time.monotonic() - started
            gaps = sorted(later - earlier for earlier, later in zip(got, got[1:]))
            assert 5 <= messages == len(got) and messages <= took / (pace / 2) + 2  # never within half a pace of the last
            assert 0.75 * pace <= gaps[len(gaps) // 2] <= 1.35 * pace  # on the paced word, not the guard's 1.5 paces
            _ring_used(origin, ring)
        finally:
            stop.set()
            reader.join()
            a.close()
            b.close()
            origin.close()


@pytest.mark.parametrize(("paced_us", "ring"), [(0, False), (800, True), (800, False)])
def test_a_short_send_hands_back_the_exact_tail_and_counts_the_entries_it_touches(group: str, paced_us: int, ring: bool) -> None:
    """The socket takes part of a send: what it took and the tail handed back are the frames, in
    order, byte for byte; ``unsent`` counts the entries of every frame not wholly sent. Through
    io_uring the send's result is seen when the sleep submitted with it ends (here the slice's end)."""
    names = [f"T{i:02d}USDT" for i in range(60)]
    rng = random.Random(3)
    with SegmentWriter(group, depth=DEPTH, capacity=64, markets=names, notify_paced_us=paced_us) as writer:
        origin = Origin(group, EPOCH)
        _ring(origin, ring)
        twin = Origin(group, EPOCH)  # takes the same changes the Python way, for the expected bytes
        a, b = socket.socketpair()
        try:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            a.setblocking(False)
            assert origin.refresh() and twin.refresh()
            for name in names:
                _random_publish(writer, rng, name, 1)
            limit = 2000  # many frames
            expected = _frames(group, twin.collect(limit))
            code, rest, messages, _, errno, unsent = origin.pump(a.fileno(), limit, 0.05, 0.0, 0.002)
            assert code == PUMP_SHORT and errno == 0 and rest is not None
            b.setblocking(False)
            taken = b""
            while True:
                try:
                    chunk = b.recv(1 << 20)
                except BlockingIOError:
                    break
                taken += chunk
            assert taken + rest == expected and 0 < len(taken) < len(expected)
            # the frames the tail touches: from the one the cut falls in to the last
            cut = len(taken)
            sizes, pos = [], 0
            while pos < len(expected):
                eol = expected.index(b"\r\n", pos)
                size = int(expected[expected.rindex(b" ", pos, eol) + 1 : eol])
                end = eol + 2 + size + 2
                sizes.append((end, codec.batch_count(expected[eol + 2 : eol + 2 + size])))
                pos = end
            assert unsent == sum(n for end, n in sizes if end > cut)
            assert messages == len(sizes)
            if paced_us:
                _ring_used(origin, ring)
        finally:
            a.close()
            b.close()
            origin.close()
            twin.close()


def test_the_pump_sends_on_nats_py_s_socket_only_when_nothing_goes_before(group: str) -> None:
    """Against a real nats-server: a plain connection with nothing queued gives the pump its socket,
    what nats-py queued (or TLS, tests/test_fanout_hosts.py) takes it away; the pump's frames and a
    tail written to the transport arrive as whole batches, in order, after what went before."""
    nats_client = pytest.importorskip("nats")
    from ldc.fanout import lean
    from ldc.fanout.server import NatsServer

    names = [f"N{i:02d}USDT" for i in range(30)]
    rng = random.Random(5)
    with NatsServer() as server, SegmentWriter(group, depth=DEPTH, capacity=32, markets=names) as writer:
        async def go() -> tuple[list[int], list[bytes], list[int]]:
            import asyncio

            sub = await nats_client.connect(server.url, allow_reconnect=False)
            pub = await nats_client.connect(server.url, allow_reconnect=False)
            got: list[bytes] = []

            async def cb(msg: object) -> None:
                got.append(msg.data)  # type: ignore[attr-defined]

            await sub.subscribe(f"ldc.{group}.>", cb=cb)  # one subscription: one order
            while sub.pending_data_size:  # flush's PING can overtake a SUB still queued (test_fanout_lean._subscribed)
                await asyncio.sleep(0.001)
            await sub.flush()
            origin = Origin(group, EPOCH)
            fds = []
            try:
                assert origin.refresh()
                await pub.publish(f"ldc.{group}.before", b"queued first")  # in nats-py's _pending until its flusher runs
                fds.append(lean.direct_fd(pub))
                await asyncio.sleep(0.05)
                fds.append(lean.direct_fd(pub))
                for name in names:
                    _random_publish(writer, rng, name, 1)
                code, rest, messages, _, _, _ = origin.pump(fds[-1], 3000, 0.01, 0.0, 0.002)
                assert code in (PUMP_SLICE, PUMP_SHORT) and messages > 1
                if rest is not None:
                    assert lean.write_frames(pub, rest, tail=True)
                for name in names[:3]:
                    _random_publish(writer, rng, name, 2)
                code, rest, more, _, _, _ = origin.pump(-1, 3000, 0.01, 0.0, 0.002)  # frames for the transport
                assert code == PUMP_SHORT and rest is not None and lean.write_frames(pub, rest)
                messages += more
                deadline = time.monotonic() + 5
                while len(got) < messages + 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            finally:
                origin.close()
                await sub.close()
                await pub.close()
            seqs = [codec.decode_batch(data, DEPTH).batch_seq for data in got[1:]]
            return fds, got, seqs

        fds, got, seqs = asyncio_run(go())
    assert fds[0] == -1 and fds[1] >= 0
    assert got[0] == b"queued first"
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 3
    updates = [u for data in got[1:] for u in codec.decode_batch(data, DEPTH).updates]
    assert [(u.symbol, u.seq) for u in updates] == [(n, 1) for n in names] + [(n, 2) for n in names[:3]]


def asyncio_run(coro: object) -> tuple[list[int], list[bytes], list[int]]:
    import asyncio

    return asyncio.run(coro)  # type: ignore[arg-type]


def _pub_frames(sock: socket.socket, settle_s: float = 0.05) -> bytes:
    sock.setblocking(False)
    data, quiet_until = b"", time.monotonic() + settle_s
    while time.monotonic() < quiet_until:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        data += chunk
        quiet_until = time.monotonic() + settle_s
    return data


def test_a_ring_another_thread_cannot_submit_to_falls_back_and_sends_once(group: str) -> None:
    """The ring is its creator thread's (IORING_SETUP_SINGLE_ISSUER): a pump from another thread has
    its submission refused, closes the ring, sends that batch itself with send() (once: nothing was
    submitted) and goes on with futex()."""
    rng = random.Random(11)
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"], notify_paced_us=800) as writer:
        origin = Origin(group, EPOCH)
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            assert origin.refresh()
            _random_publish(writer, rng, "AAAUSDT", 1)
            writer.notify()
            assert origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, 0.0, 0.002)[2] == 1
            _ring_used(origin, True)
            _random_publish(writer, rng, "AAAUSDT", 2)
            writer.notify()
            got: list[tuple[int, ...]] = []
            other = threading.Thread(target=lambda: got.append(origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.01, 0.0, 0.002)[::2]))
            other.start()
            other.join()
            (code, messages, errno), = [(g[0], g[1], g[2]) for g in got]
            assert (code, messages, errno) == (PUMP_SLICE, 1, 0) and not origin.io_uring
            frames = _pub_frames(b)
            assert frames.count(b"PUB ") == 2  # the first batch (through the ring), the second (send()), no repeat
            ids = [u.update_id for f in frames.split(b"PUB ")[1:] for u in codec.decode_batch(f.split(b"\r\n", 1)[1][:-2], DEPTH).updates]
            assert ids == [1, 2]
        finally:
            a.close()
            b.close()
            origin.close()


def test_closing_an_origin_closes_its_ring_with_a_wait_in_flight(group: str) -> None:
    """A pump that ends its slice asleep on the paced word through the ring leaves that wait in flight;
    closing the origin closes the ring (no descriptor left), and the next origin's ring works."""
    rng = random.Random(12)
    fds_before = len(os.listdir("/proc/self/fd"))
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"], notify_paced_us=50_000) as writer:
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            for u in (1, 2, 3):
                origin = Origin(group, EPOCH)
                try:
                    assert origin.refresh()
                    _random_publish(writer, rng, "AAAUSDT", u)
                    writer.notify()
                    assert origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.01, 0.0, 0.002)[:3:2] == (PUMP_SLICE, 1)
                    _ring_used(origin, True)
                finally:
                    origin.close()  # its ring's futex wait (the window after the send) still in flight
                writer.notify()  # wakes nothing of a closed ring
            assert [u.update_id for f in _pub_frames(b).split(b"PUB ")[1:]
                    for u in codec.decode_batch(f.split(b"\r\n", 1)[1][:-2], DEPTH).updates] == [1, 2, 3]
        finally:
            a.close()
            b.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before


_REFUSED_SCRIPT = r'''
import ctypes, socket, struct, sys
import numpy as np
libc = ctypes.CDLL(None, use_errno=True)
# a seccomp filter refusing io_uring_setup (425 on every architecture) with EPERM, everything else allowed
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
prog = [(BPF_LD_W_ABS, 0, 0, 0), (BPF_JEQ_K, 0, 1, 425), (BPF_RET_K, 0, 0, 0x00050000 | 1), (BPF_RET_K, 0, 0, 0x7FFF0000)]
filt = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(filt))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP, FILTER
from ldc.fanout import codec
from ldc.fanout.origin import Origin
from ldc.shm.writer import SegmentWriter
group = sys.argv[1]
with SegmentWriter(group, depth=4, capacity=4, markets=["AAAUSDT"], notify_paced_us=800) as writer:
    origin = Origin(group, 1)
    a, b = socket.socketpair()
    a.setblocking(False)
    assert origin.refresh()
    levels = np.array([[1.0, 2.0]])
    writer.publish(writer.slot("AAAUSDT"), update_id=7, event_time_ms=1, recv_time_ns=1, status=1, bids=levels, asks=levels + 1, n_bids=1, n_asks=1)
    writer.notify()
    code, rest, messages = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.01, 0.0, 0.002)[:3]
    frame = b.recv(1 << 16)
    print(messages, rest is None, origin.io_uring, origin.io_uring_refused, frame.count(b"PUB "))
    origin.close()
'''


def test_a_kernel_that_refuses_io_uring_leaves_the_relay_on_send_and_futex(group: str) -> None:
    """Where io_uring is refused (here a real seccomp filter, as a systemd unit's SystemCallFilter
    or kernel.io_uring_disabled would), the paced pump says why and sends with send()."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _REFUSED_SCRIPT, group], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "False", "Operation", "not", "permitted", "1"]


def _parse_pubs(data: bytes) -> list[int]:
    """The NATS stream as the server would parse it: whole PUB frames back to back; the update ids of
    their entries, in order (a torn or stray byte fails)."""
    ids, pos = [], 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        line = data[pos:eol]
        assert line.startswith(b"PUB "), (pos, line[:40])
        size = int(line.split()[-1])
        payload = data[eol + 2 : eol + 2 + size]
        assert data[eol + 2 + size : eol + 4 + size] == b"\r\n", pos
        ids += [u.update_id for u in codec.decode_batch(payload, DEPTH).updates]
        pos = eol + 4 + size
    return ids


@pytest.mark.parametrize("ring", [True, False])
def test_a_send_whose_window_is_over_before_its_wait_goes_at_once_and_only_once(group: str, ring: bool) -> None:
    """Scan and build can take longer than a short pace (1 us here; at the 700 us default a first batch
    of thousands of markets does): the window after the send is over before its wait begins, and the
    send queued on the ring must still go in that pump, whole, and never again later."""
    rng = random.Random(13)
    names = ["AAAUSDT", "BBBUSDT"]
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=names, notify_paced_us=1) as writer:
        origin = Origin(group, EPOCH)
        _ring(origin, ring)
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            assert origin.refresh()
            for u in range(1, 6):
                for name in names:
                    _random_publish(writer, rng, name, u)
                writer.notify()
                code, rest, messages = origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.02, 0.0, 0.002)[:3]
                assert (u, code, rest, messages) == (u, PUMP_SLICE, None, 1)
            _ring_used(origin, ring)
            assert _parse_pubs(_pub_frames(b)) == [u for u in range(1, 6) for _ in names]
        finally:
            a.close()
            b.close()
            origin.close()


def test_a_short_send_through_the_ring_ends_its_wait_at_once(group: str) -> None:
    """A send the socket takes only part of is handed back as soon as its completion is seen, not at the
    end of the window submitted with it (100 ms pace, 1 s slice here)."""
    names = [f"T{i:02d}USDT" for i in range(60)]
    rng = random.Random(4)
    with SegmentWriter(group, depth=DEPTH, capacity=64, markets=names, notify_paced_us=100_000) as writer:
        origin = Origin(group, EPOCH)
        a, b = socket.socketpair()
        try:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            a.setblocking(False)
            assert origin.refresh()
            for name in names:
                _random_publish(writer, rng, name, 1)
            t0 = time.monotonic()
            code, rest, *_ = origin.pump(a.fileno(), 2000, 1.0, 0.0, 0.002)
            took = time.monotonic() - t0
            _ring_used(origin, True)
            assert code == PUMP_SHORT and rest is not None and took < 0.12  # not the guard (150 ms after the send), nor the slice
        finally:
            a.close()
            b.close()
            origin.close()
