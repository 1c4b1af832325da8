"""The mirror's C path (ldc/fanout/_mirror.c) against its Python path.

- Decoding: on random and mutated batches, ``_mirror.apply_batch`` refuses exactly what
  ``codec.decode_batch`` refuses, and hands over (or skips as unwanted) exactly the entries it decodes.
- Applying: two mirrors fed the same random stream (gaps, duplicates, reorders, new relay epochs, new
  origin generations, counter jumps, status messages, STALE spells and state replies), one through
  the C path and one through the Python path alone, hold the same slots, market states and counts
  after every batch.
- Frames: ``_mirror.frames`` takes the same MSG frames as the scan it replaced, on random streams.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any
from dataclasses import dataclass, field

import pytest

from ldc.fanout import _mirror, codec
from ldc.fanout.conn import options_from_url
from ldc.fanout.mirror import Mirror
from ldc.shm.layout import COUNTER_FIELDS, SLOT_HEADER, Status
from ldc.shm.writer import SegmentWriter
from shm_helpers import unique_group, unlink_group

DEPTH = 4
GROUP = "cpathgroup"
_F = {f.name: i for i, f in enumerate(SLOT_HEADER.fields)}
_NONE = struct.Struct("<0s")


def entry(seq: int, symbol: str, fields: list[int], message: bytes, levels: tuple[int, int], rng: random.Random) -> bytes:
    f = list(fields)
    f[_F["n_bids"]], f[_F["n_asks"]] = levels
    head = codec.ENTRY.pack(seq, *f, len(symbol.encode()), len(message))
    prices = struct.pack(f"<{2 * (levels[0] + levels[1])}d", *(rng.uniform(1, 1000) for _ in range(2 * (levels[0] + levels[1]))))
    return head + symbol.encode() + message + prices


def random_fields(rng: random.Random) -> list[int]:
    fields = [0] * len(SLOT_HEADER.fields)
    for name in ("gen", "update_id", "event_time_ms", "recv_time_ns", "publish_time_ns", "status_time_ns"):
        fields[_F[name]] = rng.randrange(1, 2**40)
    fields[_F["status"]] = rng.choice([Status.SYNCED, Status.RESYNCING, Status.STALE, 0])
    for name in COUNTER_FIELDS:
        fields[_F[name]] = rng.randrange(0, 100)
    return fields


def random_batch(rng: random.Random, group: str = GROUP) -> bytes:
    entries = []
    for _ in range(rng.randrange(0, 6)):
        symbol = rng.choice(["AAAUSDT", "BBBUSDT", "CCC", "é€", "X" * 39])
        message = rng.choice([b"", b"gap: fetching", "ünïcode".encode()])
        entries.append(entry(rng.randrange(1, 50), symbol, random_fields(rng), message,
                             (rng.randrange(0, DEPTH + 1), rng.randrange(0, DEPTH + 1)), rng))
    return codec.encode_batch(rng.randrange(1, 2**64, 2), rng.randrange(0, 9), group.encode(), entries)


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(6)
        if kind == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif kind == 2:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        elif kind == 3 and len(b) > 25:  # an entry count, a group length, a symbol or message length off by a little
            at = rng.choice([6, 24] + [i for i in range(25, len(b)) if rng.random() < 0.02])
            b[at] = (b[at] + rng.choice([-1, 1, 2, 40])) % 256
        elif kind == 4 and len(b) > 30:
            at = rng.randrange(25, len(b))
            b[at : at + 1] = b"\xff"  # an invalid UTF-8 byte somewhere
        elif kind == 5 and len(b) > 30:
            at = rng.randrange(25, len(b) - 4)
            b[at : at + 4] = struct.pack("<I", rng.choice([DEPTH, DEPTH + 1, 2**31]))  # a level count
    return bytes(b)


@pytest.fixture
def segment() -> Iterator[SegmentWriter]:
    group = unique_group("cp")
    writer = SegmentWriter(group, depth=DEPTH, capacity=8)
    try:
        yield writer
    finally:
        writer.close()
        unlink_group(group)


@pytest.mark.parametrize("wanted", [None, {"AAAUSDT", "é€"}])
def test_c_refuses_exactly_what_decode_batch_refuses_and_hands_over_the_same_entries(
        segment: SegmentWriter, wanted: set[str] | None) -> None:
    rng = random.Random(16 if wanted is None else 61)
    refused = accepted = 0
    fields = random_fields(rng)
    edges = [codec.encode_batch(1, 1, GROUP.encode(), [entry(1, symbol, fields, b"m", levels, rng)])
             for symbol in ("X" * 39, "X" * 40, "é" * 19 + "X", "é" * 20) for levels in ((DEPTH, DEPTH), (DEPTH + 1, 0), (0, DEPTH + 1))]
    edges += [codec.encode_batch(1, 1, name.encode(), []) for name in ("g" * 63, "g" * 64)]
    for i in range(4000 + len(edges)):
        if i < len(edges):
            data = edges[i]
        else:
            data = random_batch(rng, GROUP if i % 17 else "other")
            if i % 3:
                data = mutate(data, rng)
        handed: list[codec.Update] = []

        def slow(d: bytes, pos: int, epoch: int) -> None:
            handed.append(codec.decode_entry_at(d, pos, epoch, GROUP, DEPTH))

        try:
            batch = codec.decode_batch(data, DEPTH, wanted)
        except codec.DecodeError:
            batch = None
        done = _mirror.apply_batch(data, segment.segment, GROUP.encode(), {}, wanted, False, slow)
        if batch is None or batch.group != GROUP:
            assert done is None, data
            assert not handed
            refused += 1
            continue
        assert done == (0, batch.skipped), data
        assert [(u.epoch, u.seq, u.symbol, u.fields, u.message, bytes(u.bids), bytes(u.asks)) for u in handed] == [
            (u.epoch, u.seq, u.symbol, u.fields, u.message, bytes(u.bids), bytes(u.asks)) for u in batch.updates]
        accepted += 1
    assert refused > 1000 and accepted > 1000, (refused, accepted)


# ---------------------------------------------------------------- the same slots either way


@dataclass
class OriginMarket:
    """One market as the relay would send it: its own sequence, generation, counters and message."""

    symbol: str
    seq: int = 0
    gen: int = 1
    update_id: int = 0
    counters: list[int] = field(default_factory=lambda: [0] * len(COUNTER_FIELDS))
    message: bytes = b""
    status: int = int(Status.SYNCED)
    last: bytes = b""

    def step(self, rng: random.Random) -> bytes:
        self.seq += 1
        self.update_id += rng.randrange(1, 4)
        roll = rng.random()
        if roll < 0.04:  # the origin re-added the market: a new generation, counters from 0
            self.gen += 1
            self.counters = [1, 0, 0, 0, 0, 0]
        elif roll < 0.10:  # counters that jumped (two publishes, a gap seen at the origin)
            self.counters[0] += rng.randrange(2, 4)
            self.counters[rng.randrange(1, len(COUNTER_FIELDS))] += 1
        elif roll < 0.13:  # a status change without a publish
            self.counters[2] += 1
        else:
            self.counters[0] += 1
        if rng.random() < 0.08:
            self.message, self.status = rng.choice([(b"", int(Status.SYNCED)), (b"gap: fetching a snapshot", int(Status.RESYNCING)),
                                                    ("ëñ message".encode(), int(Status.SYNCED))])
        fields = [0] * len(SLOT_HEADER.fields)
        fields[_F["gen"]], fields[_F["update_id"]], fields[_F["status"]] = self.gen, self.update_id, self.status
        fields[_F["event_time_ms"]], fields[_F["recv_time_ns"]] = self.update_id * 7, self.update_id * 11
        for i, name in enumerate(COUNTER_FIELDS):
            fields[_F[name]] = self.counters[i]
        n = rng.randrange(0, DEPTH + 1)
        self.last = entry(self.seq, self.symbol, fields, self.message, (n, DEPTH - n // 2), rng)
        return self.last


class RelayStream:
    """The relay's side of a random stream: each market's next entry, a new relay epoch now and then
    (every sequence from 1), the batches sent so far, and the relay's answers to state requests."""

    def __init__(self, names: list[str], rng: random.Random) -> None:
        self.origin = {s: OriginMarket(s) for s in names}
        self.names = names
        self.rng = rng
        self.epoch = 11
        self.sent: list[bytes] = []

    def batch(self, step: int) -> bytes:
        if self.rng.random() < 0.01:  # the relay restarted: a new epoch, every sequence from 1
            self.epoch += 2
            for om in self.origin.values():
                om.seq = 0
        changed = self.rng.sample(self.names, self.rng.randrange(1, len(self.names) + 1))
        data = codec.encode_batch(self.epoch, step, GROUP.encode(), [self.origin[s].step(self.rng) for s in changed])
        self.sent.append(data)
        return data

    def answer_state_requests(self, mirrors: list[Mirror]) -> None:
        """The relay answers the state requests of the markets resyncing (now and then: 30 %)."""
        if self.rng.random() >= 0.3:
            return
        for symbol, market in list(mirrors[0].markets.items()):
            if market.resyncing and self.origin[symbol].last:
                reply = codec.encode_batch(self.epoch, 0, GROUP.encode(), [self.origin[symbol].last])
                for m in mirrors:
                    m.handle_batch(reply, codec.STATE_TOKEN, from_stream=False)


def _close_mirrors(mirrors: list[Mirror]) -> None:
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()  # the state fetches start_resync began (no NATS here)
    for m in mirrors:
        m.writer.close()


def _run_unlinking(run: Callable[[], Coroutine[object, object, None]], groups: list[str]) -> None:
    try:
        asyncio.run(run())
    finally:
        for g in groups:
            unlink_group(g)


def slot_view(writer: SegmentWriter, slot: int) -> bytes:
    """The slot as readers see it, without the host-clock and seqlock words (which differ run to run)."""
    g = writer.geometry
    raw = bytearray(writer._mm[g.slot_offset(slot) : g.slot_offset(slot) + g.slot_size])  # noqa: SLF001 (test)
    for name in ("seq", "publish_time_ns", "status_time_ns"):
        f = SLOT_HEADER[name]
        raw[f.offset : f.offset + 8] = bytes(8)
    return bytes(raw)


def state(mirror: Mirror) -> tuple[object, ...]:
    w = mirror.writer
    markets = {s: (m.slot, m.epoch, m.seq, m.origin_gen, m.counters, m.status, m.message, m.resyncing,
                   None if m.newest is None else (m.newest.epoch, m.newest.seq), slot_view(w, m.slot))
               for s, m in mirror.markets.items()}
    return markets, sorted(w.markets().items()), mirror.stats


@pytest.mark.parametrize("seed,symbols", [(1, None), (2, ["AAAUSDT", "CCCUSDT"]), (3, None)])
def test_the_c_path_writes_the_same_slots_as_the_python_path(seed: int, symbols: list[str] | None) -> None:
    rng = random.Random(seed)
    names = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]
    groups = [unique_group("cpc"), unique_group("cpp")]

    async def run() -> None:
        mirrors = [Mirror(GROUP, options_from_url("nats://127.0.0.1:1"), symbols=symbols, local_group=g, depth=DEPTH)
                   for g in groups]
        mirrors[1].use_c = False
        for m in mirrors:
            if m._writer is None:  # noqa: SLF001  (made at the relay's first heartbeat; here at once)
                m._writer = m._new_writer(DEPTH, 8, "")  # noqa: SLF001
        try:
            stream = RelayStream(names, rng)
            sent = stream.sent
            c_applied = 0
            for step in range(1500):
                data = stream.batch(step)
                fate = rng.random()
                if fate < 0.04:
                    deliveries = []  # lost: a gap in each market it carried
                elif fate < 0.07 and len(sent) > 2:
                    deliveries = [data, sent[-2]]  # a duplicate of the previous one after it (old)
                elif fate < 0.09 and len(sent) > 3:
                    deliveries = [sent[-3], data]  # an older one arriving late
                else:
                    deliveries = [data]
                for payload in deliveries:
                    before = mirrors[0].stats.applied
                    for m in mirrors:
                        m.handle_batch(payload, codec.BATCH_TOKEN, from_stream=True)
                    c_applied += mirrors[0].stats.applied - before
                if rng.random() < 0.02:
                    for m in mirrors:
                        m.flag_all_stale("lost the connection (test)")
                elif rng.random() < 0.05 and mirrors[0].stale_reason:
                    for m in mirrors:
                        m.resync_all("heard again (test)")
                stream.answer_state_requests(mirrors)
                assert state(mirrors[0]) == state(mirrors[1]), step
            stats = mirrors[0].stats
            assert stats.gaps > 10 and stats.old > 5 and stats.applied > 1000, stats
            assert c_applied > 500
        finally:
            _close_mirrors(mirrors)

    _run_unlinking(run, groups)


# ---------------------------------------------------------------- a read applied in C (_mirror.Fast)


class _FakeLoop:
    def __init__(self) -> None:
        from collections import deque

        self._ready: object = deque()
        self._stopping = True  # each read the Fast path takes ends the wait (its "back to the loop" answer)


def _fake_direct(sids: set[int], limit: int = 100) -> Any:
    """What _mirror.Fast reads of lean.DirectDelivery and nats-py's client, idle (nothing buffered); the
    failures it reports are kept in ``failed`` (a batch's apply) and ``errors`` (the connection's)."""
    from collections import deque
    from types import SimpleNamespace

    nc = SimpleNamespace(_ps=SimpleNamespace(buf=bytearray(), state=0), stats={"in_msgs": 0, "in_bytes": 0})
    failed: list[object] = []
    errors: list[object] = []
    return SimpleNamespace(_sids=sids, _reader=SimpleNamespace(_buffer=bytearray()), _backlog=deque(), _limit=limit, _idle=0,
                           _nc=nc, _loop=_FakeLoop(), failed=failed, errors=errors,
                           _fast_failed=lambda subject, exc: failed.append((subject, exc)), _fast_error=errors.append)


def _msg(subject: bytes, sid: int, payload: bytes) -> bytes:
    return b"MSG %s %d %d\r\n%s\r\n" % (subject, sid, len(payload), payload)


def _mirror_made(group: str) -> Mirror:
    """A mirror with its segment made at once (the relay's first heartbeat makes it; no NATS here)."""
    mirror = Mirror(GROUP, options_from_url("nats://127.0.0.1:1"), local_group=group, depth=DEPTH)
    mirror._writer = mirror._new_writer(DEPTH, 8, "")  # noqa: SLF001
    return mirror


class _WaitSocket:
    """A socket pair with its read end in an epoll set, as ``_mirror.wait`` takes them; what reaches
    ``on_data`` is kept in ``handed`` (``more``: on_data's answer)."""

    def __init__(self, more: bool) -> None:
        import select
        import socket

        self.a, self.b = socket.socketpair()
        self.ep = select.epoll()
        self.ep.register(self.b.fileno(), select.EPOLLIN)
        self.handed: list[bytes] = []
        self.more = more

    def on_data(self, data: bytes) -> bool:
        self.handed.append(data)
        return self.more

    def wait(self, timeout: float, fast: object) -> None:
        _mirror.wait(self.ep.fileno(), self.b.fileno(), timeout, self.on_data, 1 << 20, fast)  # type: ignore[arg-type]

    def close(self) -> None:
        self.ep.close()
        self.a.close()
        self.b.close()


def test_a_read_of_batch_frames_applied_in_c_equals_the_python_delivery() -> None:
    """Two mirrors fed the same random stream (gaps, duplicates, late batches, new epochs, refused and
    foreign batches), one through ``_mirror.wait`` with a ``Fast`` (each socket read of the group's batch
    frames delivered and applied in C, no Python frame), one through ``handle_batch`` as a read's
    frames reached it before: the same slots, market states and counts after every read; nats-py's
    statistics counted; a read with anything else in it (a heartbeat, another subscription's frame, a
    split frame, more frames than the pending limit), or while nats-py's parser or reader or the backlog
    holds bytes, or with the C path off, goes to ``on_data`` whole; STALE spells and resyncs between."""
    rng = random.Random(9)
    names = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    groups = [unique_group("cfa"), unique_group("cfp")]
    subject = codec.data_subject(GROUP).encode()

    async def run() -> None:
        mirrors = [_mirror_made(g) for g in groups]
        direct = _fake_direct({7, 9}, limit=4)
        fast = mirrors[0]._fast = _mirror.Fast(direct, mirrors[0], subject)  # noqa: SLF001
        sock = _WaitSocket(more=False)
        a, handed = sock.a, sock.handed
        try:
            stream = RelayStream(names, rng)
            sent, taken, passed = stream.sent, 0, 0
            for step in range(600):
                data = stream.batch(step)
                fate = rng.random()
                if fate < 0.04:
                    payloads = []
                elif fate < 0.08 and len(sent) > 2:
                    payloads = [data, sent[-2]]
                elif fate < 0.1:
                    payloads = [data, mutate(data, rng)]  # refused, or applied: the Python path either way
                elif fate < 0.12:
                    payloads = [codec.encode_batch(stream.epoch, step, b"othergroup", []), data]  # another group's, counted
                elif fate < 0.14:
                    payloads = [data] * 5  # more than the pending limit (4) in one read: Python's rule
                else:
                    payloads = [data]
                extra = rng.random()
                wire = b"".join(_msg(subject, rng.choice([7, 9]), p) for p in payloads)
                if extra < 0.05:
                    wire += _msg(b"ldc.%s._hb" % GROUP.encode(), 7, b"heartbeat")  # not a batch: the whole read is Python's
                elif extra < 0.08:
                    wire = _msg(subject, 8, payloads[0] if payloads else b"x") + wire  # another subscription's sid
                elif extra < 0.1 and wire:
                    wire = wire[:-1]  # a frame split across reads
                busy = rng.choice(["parser buf", "parser state", "reader", "backlog", "C path off"]) if rng.random() < 0.1 else ""
                d: Any = direct
                d._nc._ps.buf[:] = b"MSG part" if busy == "parser buf" else b""
                d._nc._ps.state = 1 if busy == "parser state" else 0
                d._reader._buffer[:] = b"M" if busy == "reader" else b""
                d._backlog.clear()
                if busy == "backlog":
                    d._backlog.append((subject, b"x"))
                mirrors[0].use_c = busy != "C path off"
                python_parser_busy = bool(busy)
                if rng.random() < 0.02:  # the connection lost and found again: every market STALE, then resynced
                    for m in mirrors:
                        m.flag_all_stale("lost the connection (test)")
                elif rng.random() < 0.05 and mirrors[0].stale_reason:
                    for m in mirrors:
                        m.resync_all("heard again (test)")
                if not wire:
                    continue
                in_bytes = d._nc.stats["in_bytes"]
                a.sendall(wire)
                handed.clear()
                sock.wait(1.0, fast)
                took = not handed
                whole = (extra >= 0.1 and not python_parser_busy and len(payloads) <= 4)
                assert took == whole, (step, extra, python_parser_busy, len(payloads))
                assert d._nc.stats["in_bytes"] - in_bytes == (sum(map(len, payloads)) if took else 0)
                if took:
                    taken += 1
                    for p in payloads:
                        mirrors[1].handle_batch(p, codec.BATCH_TOKEN, from_stream=True)
                else:
                    passed += 1
                    assert handed == [wire]
                    for m in mirrors:  # what DirectDelivery / nats-py then deliver: the frames, as before
                        for p in payloads:
                            m.handle_batch(p, codec.BATCH_TOKEN, from_stream=True)
                assert state(mirrors[0]) == state(mirrors[1]), step
                stream.answer_state_requests(mirrors)
            assert taken > 350 and passed > 60, (taken, passed)
            assert fast.reads == taken and direct._nc.stats["in_msgs"] == fast.frames > taken  # type: ignore[attr-defined]
            stats = mirrors[0].stats
            assert stats.applied > 500 and stats.gaps > 5 and stats.undecodable + stats.foreign > 5, stats
        finally:
            sock.close()
            _close_mirrors(mirrors)

    _run_unlinking(run, groups)


def test_a_fast_read_keeps_the_loop_s_contract_and_fails_as_take_read_would() -> None:
    """``_mirror.wait`` with a ``Fast``: reads taken go on waiting while the loop has nothing to do (two
    reads, one wait) and end it when it has (``_ready``); a batch whose apply raises an Exception is
    reported and the read goes on; KeyboardInterrupt leaves the wait; a failure before a frame was
    delivered leaves the read to ``on_data``, one after fails the connection (``_fast_error``); no
    segment yet: ``on_data``."""
    import threading

    group = unique_group("cfl")
    subject = codec.data_subject(GROUP).encode()
    stream = RelayStream(["AAAUSDT"], random.Random(2))

    async def run() -> None:
        mirror = _mirror_made(group)
        direct = _fake_direct({7})
        fast = _mirror.Fast(direct, mirror, subject)
        sock = _WaitSocket(more=True)
        a, handed = sock.a, sock.handed

        def wait(timeout: float = 0.3, *later: bytes) -> float:
            def send_later() -> None:
                for wire in later:
                    time.sleep(0.05)
                    a.sendall(wire)

            sender = threading.Thread(target=send_later)
            sender.start()
            t0 = time.monotonic()
            try:
                sock.wait(timeout, fast)
            finally:
                sender.join()
            return time.monotonic() - t0

        def frame(step: int) -> bytes:
            return _msg(subject, 7, stream.batch(step))

        try:
            direct._loop._stopping = False
            took = wait(0.3, frame(1), frame(2))  # the loop idle: both reads in one wait, which ends at its time
            assert fast.reads == 2 and not handed and took >= 0.29 and mirror.markets["AAAUSDT"].seq == 2
            direct._loop._ready.append("work")  # the loop has work: back to it after the read
            took = wait(1.0, frame(3), frame(4))
            assert fast.reads == 3 and took < 0.5
            direct._loop._ready.clear()
            wait(0.1)  # the fourth, still in the socket
            assert fast.reads == 4 and mirror.markets["AAAUSDT"].seq == 4
            real_slow = mirror._slow_entry

            def raising(*_: object) -> None:
                raise ValueError("test")

            mirror._slow_entry = raising  # type: ignore[method-assign]
            stream.origin["AAAUSDT"].seq += 1  # a gap: the entry goes to the Python path, which raises
            a.sendall(frame(5))
            wait(0.1)
            assert fast.reads == 5 and [type(exc) for _, exc in direct.failed] == [ValueError] and not direct.errors

            def interrupted(*_: object) -> None:
                raise KeyboardInterrupt

            mirror._slow_entry = interrupted  # type: ignore[method-assign]
            stream.origin["AAAUSDT"].seq += 1
            a.sendall(frame(6))
            with pytest.raises(KeyboardInterrupt):
                wait(0.1)
            mirror._slow_entry = real_slow  # type: ignore[method-assign]
            reader, direct._reader = direct._reader, None  # a failure before any frame is delivered: on_data's read
            a.sendall(frame(7))
            wait(0.1)
            assert len(handed) == 1 and fast.reads == 6 and not direct.errors
            direct._reader, stats = reader, direct._nc.stats
            direct._nc.stats = {"in_msgs": "not a number", "in_bytes": 0}  # a failure after: the connection fails
            a.sendall(frame(8))
            wait(1.0)
            assert fast.reads == 7 and [type(exc) for exc in direct.errors] == [TypeError]
            direct._nc.stats = stats
            writer, mirror._writer = mirror._writer, None  # no segment yet: on_data's
            a.sendall(frame(9))
            wait(0.1)
            assert len(handed) == 2 and fast.reads == 7
            mirror._writer = writer
        finally:
            sock.close()
            _close_mirrors([mirror])

    _run_unlinking(run, [group])


# ---------------------------------------------------------------- frames


def python_frames(data: bytes, sids: set[int]) -> tuple[list[tuple[bytes, bytes]], int]:
    """The scan lean.DirectDelivery did in Python before the C one (its reference)."""
    pos, out = 0, []
    while pos < len(data):
        if not data.startswith(b"MSG ", pos):
            break
        eol = data.find(b"\r\n", pos, pos + 4096)
        if eol < 0:
            break
        parts = data[pos + 4 : eol].split(b" ")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[1]) not in sids:
            break
        start = eol + 2
        stop = start + int(parts[2])
        if stop + 2 > len(data) or data[stop : stop + 2] != b"\r\n":
            break
        pos = stop + 2
        out.append((parts[0], data[start:stop]))
    return out, pos


def test_frames_takes_the_same_msg_frames_as_the_python_scan() -> None:
    rng = random.Random(5)
    sids = {1, 2, 17}
    for _ in range(5000):
        parts = []
        for _ in range(rng.randrange(0, 6)):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            kind = rng.random()
            if kind < 0.7:
                parts.append(b"MSG ldc.g._batch %d %d\r\n%s\r\n" % (rng.choice([1, 2, 17, 3]), len(payload), payload))
            elif kind < 0.8:
                parts.append(b"MSG ldc.g._hb 2 _INBOX.x %d\r\n%s\r\n" % (len(payload), payload))
            elif kind < 0.85:
                parts.append(b"PING\r\n")
            elif kind < 0.9:
                parts.append(b"MSG  1 %d\r\n%s\r\n" % (len(payload), payload))
            else:
                parts.append(b"MSG a.b 1 %s\r\n%s\r\n" % (rng.choice([b"", b"-1", b"1x", b"99999999999999999999", b"%d" % len(payload)]),
                                                          payload))
        data = b"".join(parts)
        if data and rng.random() < 0.4:
            data = data[: rng.randrange(len(data))]  # split across reads
        if data and rng.random() < 0.1:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.choice(b" \r\n0M")]) + data[at + 1 :]
        assert _mirror.frames(data, sids, 4096) == python_frames(data, sids), data
    long_line = b"MSG " + b"s" * 5000 + b" 1 0\r\n\r\n"
    assert _mirror.frames(long_line, sids, 4096) == python_frames(long_line, sids) == ([], 0)


# ---------------------------------------------------------------- end to end, in this process


def test_a_mirror_reads_its_socket_in_the_loops_wait_and_equals_the_origin(tmp_path: object) -> None:
    """A real nats-server and `ldc relay`; the mirror in this process: its loop reads the NATS socket in
    its own wait (lean.LoopReads) and applies batches in C (reads of batch frames alone without a Python
    frame: _mirror.Fast), and its slots end equal to the origin's."""
    import subprocess
    import sys

    import numpy as np

    from ldc.fanout.server import NatsServer, stop_process
    from ldc.shm.reader import Reader

    origin_group, local = unique_group("cpo"), unique_group("cpm")
    symbols = [f"M{i}USDT" for i in range(5)]
    updates = 300
    steps = np.arange(DEPTH, dtype=np.float64)

    async def run(url: str, writer: SegmentWriter) -> Mirror:
        mirror = Mirror(origin_group, options_from_url(url), local_group=local)
        stop = asyncio.Event()
        task = asyncio.create_task(mirror.run(stop))

        def in_sync_at(uid: int) -> bool:
            try:
                with Reader(local) as reader:
                    return all(reader.status(s).update_id == uid and reader.status(s).in_sync for s in symbols)
            except Exception:  # noqa: BLE001  (not made yet)
                return False

        async def until(cond: object, what: str) -> None:
            for _ in range(3000):
                if callable(cond) and cond():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{what} not reached; mirror stats {mirror.stats}")

        try:
            await until(lambda: in_sync_at(0), "the mirror in sync at update 0")
            for uid in range(1, updates + 1):
                for k, symbol in enumerate(symbols):
                    bids = np.ascontiguousarray(np.column_stack([100.0 + uid - steps, np.full(DEPTH, 1.0 + k)]))
                    asks = np.ascontiguousarray(np.column_stack([101.0 + uid + steps, np.full(DEPTH, 2.0 + k)]))
                    writer.publish(writer.slot(symbol), update_id=uid, event_time_ms=uid, recv_time_ns=uid, status=Status.SYNCED,
                                   bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)
                writer.notify()
                writer.heartbeat()
                await asyncio.sleep(0.003)
            await until(lambda: in_sync_at(updates), f"the mirror in sync at update {updates}")
        finally:
            stop.set()
            await task
        return mirror

    with NatsServer() as nats, SegmentWriter(origin_group, depth=DEPTH, capacity=8, markets=symbols) as writer:
        for symbol in symbols:
            writer.publish(writer.slot(symbol), update_id=0, event_time_ms=0, recv_time_ns=0, status=Status.SYNCED,
                           bids=np.zeros((0, 2)), asks=np.zeros((0, 2)), n_bids=0, n_asks=0)
        relay = subprocess.Popen([sys.executable, "-m", "ldc.cli", "relay", "--group", origin_group, "--nats", nats.url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            mirror = asyncio.run(run(nats.url, writer))
            with Reader(origin_group) as o, Reader(local) as m:
                for symbol in symbols:
                    a, b = o.snapshot(symbol), m.snapshot(symbol, allow_out_of_sync=True)  # the mirror has stopped
                    assert (a.update_id, a.bids.tolist(), a.asks.tolist()) == (b.update_id, b.bids.tolist(), b.asks.tolist())
        finally:
            stop_process(relay)
            unlink_group(origin_group)
            unlink_group(local)
    direct = mirror._direct  # noqa: SLF001  (the test looks inside)
    assert direct is not None and direct.loop_reads > 0, "the mirror's socket was never read in the loop's wait"
    fast = mirror._fast  # noqa: SLF001
    assert fast is not None and fast.reads > 0 and fast.frames >= fast.reads, "no read of batch frames applied in C"
    assert mirror.stats.applied >= updates and mirror.stats.gaps == 0 and mirror.stats.undecodable == 0, mirror.stats
