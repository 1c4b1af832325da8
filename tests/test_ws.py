"""ldc.io.ws against the local exchange simulator (tests/conftest.py `sim_factory`), which follows Binance's
web-socket-streams.md: combined streams, SUBSCRIBE answers, server pings, serverShutdown, 5 incoming
messages/s, 1024 streams per connection; faults: disconnect, shutdown, malformed frames."""

from __future__ import annotations

import base64
import hashlib
import itertools
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ldc.errors import ConfigError, ProtocolError
from ldc.io.ws import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    MAX_MESSAGE_BYTES,
    RECV_CHUNK_BYTES,
    CloseReason,
    WsOptions,
    WsPool,
    _deliverer,
    _FrameParser,
    backoff_delay,
)
from ldc.sim import Simulator
from ldc.venues.binance import STREAM_PROTOCOL, combined_stream_url
from ldc.sim.faults import FaultKind, FaultRule

WAIT_S = 15.0  # generous: the machine is shared and loaded
SPOT = ("btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@depth", "ethusdt@depth")
FAST = WsOptions(backoff_initial_s=0.05, backoff_cap_s=0.2, read_poll_s=0.05)


@dataclass
class Recorder:
    """A WsHandler that records every event; optionally releases rolled-over connections at once."""

    release: Callable[[int], None] | None = None
    events: list[tuple[str, int, object]] = field(default_factory=list)
    messages: list[tuple[int, bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_open(self, conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None:
        with self.lock:
            self.events.append(("open", conn_id, (streams, replaces)))
        if replaces is not None and self.release is not None:
            self.release(replaces)

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None:
        with self.lock:
            self.messages.append((conn_id, raw, recv_time_ns))

    def on_close(self, conn_id: int, reason: CloseReason, streams: tuple[str, ...]) -> None:
        with self.lock:
            self.events.append(("close", conn_id, (reason, streams)))

    def opens(self) -> list[tuple[int, tuple[str, ...], int | None]]:
        with self.lock:
            return [(cid, *detail) for kind, cid, detail in self.events if kind == "open"]  # type: ignore[misc]

    def closes(self) -> list[tuple[int, CloseReason]]:
        with self.lock:
            return [(cid, detail[0]) for kind, cid, detail in self.events if kind == "close"]  # type: ignore[index]

    def streams_seen(self, conn_id: int | None = None) -> set[str]:
        with self.lock:
            msgs = list(self.messages)
        return {orjson.loads(raw)["stream"] for cid, raw, _ in msgs if raw.startswith(b'{"stream"') and conn_id in (None, cid)}

    def count(self, conn_id: int) -> int:
        with self.lock:
            return sum(1 for cid, _, _ in self.messages if cid == conn_id)


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), rate=40.0)


def _pool(sim: Simulator, recorder: Recorder, options: WsOptions = FAST) -> WsPool:
    pool = WsPool(f"{sim.ws_url}/stream", recorder, protocol=STREAM_PROTOCOL, options=options)
    if recorder.release is None:
        recorder.release = pool.release
    return pool


def test_frames_arrive_as_raw_bytes_after_on_open(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    before = time.time_ns()
    pool.start(SPOT[:2])
    try:
        wait_for(lambda: recorder.streams_seen() == set(SPOT[:2]), "both streams")
    finally:
        pool.stop()
    (conn_id, streams, replaces), = recorder.opens()
    assert (streams, replaces) == (SPOT[:2], None)
    assert recorder.events[0][0] == "open"
    cid, raw, recv_ns = recorder.messages[0]
    assert cid == conn_id and isinstance(raw, bytes) and raw.startswith(b'{"stream":"')
    assert before <= recv_ns <= time.time_ns()
    assert recorder.closes() == [(conn_id, CloseReason.STOPPED)]


def test_streams_beyond_the_url_are_subscribed_within_the_control_rate(spot: Simulator) -> None:
    recorder = Recorder()
    options = WsOptions(url_streams_max=1, subscribe_batch=1, control_msgs_per_s=4.0, read_poll_s=0.05)
    pool = _pool(spot, recorder, options)
    pool.start(SPOT)
    try:
        wait_for(lambda: recorder.streams_seen() == set(SPOT), "all four streams")
        assert list(pool.connections().values()) == [SPOT]
    finally:
        pool.stop()
    assert spot.stats()["counters"].get("rate_disconnects", 0) == 0
    assert [reason for _, reason in recorder.closes()] == [CloseReason.STOPPED]


def test_streams_split_over_connections_at_the_per_connection_limit(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder, WsOptions(max_streams_per_connection=2, read_poll_s=0.05))
    pool.start(SPOT)
    try:
        wait_for(lambda: recorder.streams_seen() == set(SPOT), "all four streams")
        assert sorted(streams for _, streams, _ in recorder.opens()) == sorted([SPOT[:2], SPOT[2:]])
        assert len(spot.call(lambda state: state.connections_json())) == 2
    finally:
        pool.stop()


def test_add_and_remove_streams_live(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.streams_seen() == {SPOT[0]}, "the first stream")
        pool.add_streams(SPOT[1:2])
        wait_for(lambda: SPOT[1] in recorder.streams_seen(), "the added stream")
        pool.remove_streams(SPOT[:1])
        wait_for(lambda: list(pool.connections().values()) == [SPOT[1:2]], "the removal")
        # the pool's own view changes as it sends the UNSUBSCRIBE; the server's once it has read it (later,
        # on a loaded host): wait for that, not a single look
        def server_side() -> list[list[str]]:
            return [c["streams"] for c in spot.call(lambda state: state.connections_json())]

        wait_for(lambda: server_side() == [[SPOT[1]]], "the server to drop the removed stream")
        pool.remove_streams(SPOT[1:2])
        wait_for(lambda: recorder.closes(), "the emptied connection to close")
    finally:
        pool.stop()
    assert [reason for _, reason in recorder.closes()] == [CloseReason.REMOVED]


def test_disconnect_reconnects_under_a_new_id(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:2])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        first = recorder.opens()[0][0]
        spot.add_fault(FaultRule(FaultKind.DISCONNECT))
        wait_for(lambda: len(recorder.opens()) == 2, "the reconnect")
        second = recorder.opens()[1][0]
        wait_for(lambda: recorder.count(second) > 0, "frames on the new connection")
    finally:
        pool.stop()
    assert second != first
    assert recorder.opens()[1][1:] == (SPOT[:2], None)
    assert recorder.closes()[0] in ((first, CloseReason.SERVER_CLOSED), (first, CloseReason.ERROR))


def test_repeated_disconnects_back_off_exponentially(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=("BTCUSDT",), faults=(FaultRule(FaultKind.DISCONNECT, every_s=0.01),))
    recorder = Recorder()
    opened_at: list[float] = []
    on_open = recorder.on_open

    def timed_open(conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None:
        opened_at.append(time.monotonic())
        on_open(conn_id, streams, replaces)

    recorder.on_open = timed_open  # type: ignore[method-assign]
    options = WsOptions(backoff_initial_s=0.1, backoff_cap_s=0.4, read_poll_s=0.05)
    pool = WsPool(f"{sim.ws_url}/stream", recorder, protocol=STREAM_PROTOCOL, options=options)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: len(opened_at) >= 5, "five connections")
    finally:
        pool.stop()
    gaps = [b - a for a, b in zip(opened_at, opened_at[1:])][:4]
    # each delay is at least half its exponential step (jitter fills the upper half): 0.05, 0.1, 0.2, 0.2
    assert [gap >= low for gap, low in zip(gaps, (0.05, 0.1, 0.2, 0.2))] == [True] * 4
    assert all(reason in (CloseReason.SERVER_CLOSED, CloseReason.ERROR) for _, reason in recorder.closes()[:4])


def test_request_rollover_opens_a_successor_at_once(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        old = recorder.opens()[0][0]
        pool.request_rollover(old)
        wait_for(lambda: recorder.closes(), "the rollover")
    finally:
        pool.stop()
    assert recorder.opens()[1][2] == old
    assert recorder.closes()[0] == (old, CloseReason.ROLLED_OVER)


def test_server_shutdown_opens_the_successor_before_the_old_connection_closes(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:2])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        old = recorder.opens()[0][0]
        spot.add_fault(FaultRule(FaultKind.SHUTDOWN, ms=3000))
        wait_for(lambda: recorder.closes(), "the old connection to close")
        new = recorder.opens()[1][0]
        wait_for(lambda: recorder.count(new) > 0, "frames on the successor")
    finally:
        pool.stop()
    kinds = [(kind, cid) for kind, cid, _ in recorder.events]
    assert kinds.index(("open", new)) < kinds.index(("close", old))
    assert recorder.opens()[1][1:] == (SPOT[:2], old)
    assert recorder.closes()[0] == (old, CloseReason.ROLLED_OVER)  # released by the consumer, not cut
    assert all(b"serverShutdown" not in raw for _, raw, _ in recorder.messages)


def test_rollover_by_age_overlaps_until_released(spot: Simulator) -> None:
    released = threading.Event()
    recorder = Recorder()
    pool = WsPool(f"{spot.ws_url}/stream", recorder, protocol=STREAM_PROTOCOL, options=WsOptions(rollover_after_s=0.5, read_poll_s=0.05))

    def release_later(conn_id: int) -> None:
        def run() -> None:
            wait_for(lambda: recorder.count(recorder.opens()[-1][0]) > 0, "frames on both")
            released.set()
            pool.release(conn_id)

        threading.Thread(target=run, daemon=True).start()

    recorder.release = release_later
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.closes(), "the rolled-over connection to close")
        old, new = recorder.opens()[0][0], recorder.opens()[1][0]
        assert released.is_set()
    finally:
        pool.stop()
    assert recorder.closes()[0] == (old, CloseReason.ROLLED_OVER)
    assert recorder.count(old) > 0 and recorder.count(new) > 0


def test_an_unreleased_rollover_closes_after_the_overlap_bound(spot: Simulator) -> None:
    recorder = Recorder(release=lambda conn_id: None)
    options = WsOptions(rollover_after_s=0.3, rollover_overlap_max_s=0.5, read_poll_s=0.05)
    pool = WsPool(f"{spot.ws_url}/stream", recorder, protocol=STREAM_PROTOCOL, options=options)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.closes(), "the overlap bound")
    finally:
        pool.stop()
    assert recorder.closes()[0] == (recorder.opens()[0][0], CloseReason.ROLLED_OVER)


def test_malformed_json_frames_are_passed_through(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        spot.add_fault(FaultRule(FaultKind.MALFORMED, count=1, detail="json"))
        wait_for(lambda: any(raw == b'{"e":"depthUpdate","E":' for _, raw, _ in recorder.messages), "the bad frame")
    finally:
        pool.stop()
    assert len(recorder.opens()) == 1  # a bad payload is the consumer's business, not a reason to reconnect


def test_a_protocol_violating_frame_drops_the_connection_and_it_comes_back(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        spot.add_fault(FaultRule(FaultKind.MALFORMED, count=1, detail="frame"))
        wait_for(lambda: len(recorder.opens()) == 2, "the reconnect")
    finally:
        pool.stop()
    assert recorder.closes()[0] == (recorder.opens()[0][0], CloseReason.ERROR)


def test_server_pings_are_answered(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=("BTCUSDT",), ping_interval_s=0.2, pong_timeout_s=0.6)
    recorder = Recorder()
    pool = _pool(sim, recorder)
    pool.start(SPOT[:1])
    try:
        time.sleep(2.0)  # ten server pings; one unanswered one would close the connection
    finally:
        pool.stop()
    assert len(recorder.opens()) == 1
    assert recorder.closes() == [(recorder.opens()[0][0], CloseReason.STOPPED)]


def test_refused_connections_back_off_until_the_server_appears(sim_factory: Callable[..., Simulator]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = Recorder()
    pool = WsPool(f"ws://127.0.0.1:{port}/stream", recorder, protocol=STREAM_PROTOCOL, options=FAST)
    pool.start(SPOT[:1])
    try:
        time.sleep(0.5)
        assert recorder.opens() == []
        sim_factory(spot_symbols=("BTCUSDT",), port=port)
        wait_for(lambda: recorder.messages, "frames once the server is up")
    finally:
        pool.stop()


class Blackhole:
    """A TCP relay in front of the simulator; ``cut()`` makes its open connections swallow everything both
    ways, as a dead network path does (no FIN, no RST). New connections pass normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_conns: set[int] = set()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            ident = id(client)
            threading.Thread(target=self._pump, args=(client, upstream, ident), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, ident), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, ident: int) -> None:
        try:
            while data := src.recv(65536):
                if ident not in self.cut_conns:
                    dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        self.cut_conns |= {id(s) for s in self.sockets[0::2]}

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_a_silent_connection_is_pinged_then_dropped_and_reopened(spot: Simulator) -> None:
    relay = Blackhole(spot.port)
    recorder = Recorder()
    options = WsOptions(idle_ping_after_s=0.3, pong_timeout_s=0.5, read_poll_s=0.05, backoff_initial_s=0.05)
    pool = WsPool(f"ws://127.0.0.1:{relay.port}/stream", recorder, protocol=STREAM_PROTOCOL, options=options)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.messages, "first frames")
        relay.cut()
        wait_for(lambda: len(recorder.opens()) == 2, "the reconnect")
        wait_for(lambda: recorder.count(recorder.opens()[1][0]) > 0, "frames on the new connection")
    finally:
        pool.stop()
        relay.close()
    assert recorder.closes()[0] == (recorder.opens()[0][0], CloseReason.PING_TIMEOUT)


def test_stop_from_another_thread_is_prompt(spot: Simulator) -> None:
    recorder = Recorder()
    pool = _pool(spot, recorder, WsOptions(max_streams_per_connection=1))
    pool.start(SPOT)
    wait_for(lambda: len(recorder.streams_seen()) == 4, "four connections")
    stopper = threading.Thread(target=pool.stop)
    started = time.monotonic()
    stopper.start()
    stopper.join(WAIT_S)
    assert time.monotonic() - started < 5.0
    assert sorted(reason for _, reason in recorder.closes()) == [CloseReason.STOPPED] * 4
    assert pool.connections() == {}


class _OneByOne:
    def __init__(self) -> None:
        self.got: list[tuple[int, bytes, int]] = []

    def on_open(self, conn_id: int, streams: tuple[str, ...], replaces: int | None) -> None: ...

    def on_message(self, conn_id: int, raw: bytes, recv_time_ns: int) -> None:
        self.got.append((conn_id, raw, recv_time_ns))

    def on_close(self, conn_id: int, reason: CloseReason, streams: tuple[str, ...]) -> None: ...


class _Batched(_OneByOne):
    def on_messages(self, conn_id: int, raws: list[bytes], recv_time_ns: int) -> None:
        self.got.append((conn_id, b"|".join(raws), recv_time_ns))


def test_a_read_is_delivered_in_one_call_when_the_handler_takes_batches() -> None:
    one, batched = _OneByOne(), _Batched()
    _deliverer(one)(3, [b"a", b"b"], 9)
    _deliverer(batched)(3, [b"a", b"b"], 9)
    assert one.got == [(3, b"a", 9), (3, b"b", 9)]
    assert batched.got == [(3, b"a|b", 9)]


def _server_frame(payload: bytes, b0: int = 0x81, mask: bytes = b"") -> bytes:
    """RFC 6455 5.2: byte 0 is FIN | RSV | opcode; server frames are unmasked (``mask`` breaks that)."""
    n, mask_bit = len(payload), 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, mask_bit | n))
    elif n < 65_536:
        head = bytes((b0, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mask_bit | 127)) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + payload


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
FIN = 0x80


def _parse_in_reads(wire: bytes, read_sizes: Sequence[int], chunk_bytes: int = RECV_CHUNK_BYTES,
                    c_split: bool = True) -> list[tuple[int, bytes]]:  # fmt: skip
    """Feed ``wire`` to a parser as reads of the given sizes (cycled), each capped by the space offered."""
    parser, pos = _FrameParser(chunk_bytes=chunk_bytes, c_split=c_split), 0
    got: list[tuple[int, bytes]] = []
    for size in itertools.cycle(read_sizes):
        if pos >= len(wire):
            return got
        space = parser.space()
        n = min(len(space), size, len(wire) - pos)
        space[:n] = wire[pos : pos + n]
        pos += n
        got += parser.feed(n)
        if parser.error is not None:
            raise parser.error
    raise AssertionError("unreachable")


PAYLOADS = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i * 37 % 3000)) for i in range(400)]
PAYLOADS.insert(200, b"y" * (RECV_CHUNK_BYTES * 2 + 5))  # a 64-bit length, spanning three chunks


def test_chunked_reads_deliver_frames_intact_across_chunk_boundaries() -> None:
    wire = b"".join(_server_frame(p) for p in PAYLOADS)
    for sizes in ([1000], [RECV_CHUNK_BYTES], [1, 2, 3, 4096, 7, 70_000], [len(wire)]):
        assert _parse_in_reads(wire, sizes) == [(TEXT, p) for p in PAYLOADS], sizes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=20))
def test_any_split_of_the_stream_parses_the_same(read_sizes: list[int]) -> None:
    payloads = [*PAYLOADS[:60:3], b"z" * 20_000, *PAYLOADS[1:30:4]]  # one frame over the 8 KB buffer
    wire = b"".join(_server_frame(p, FIN | (BINARY if i % 2 else TEXT)) for i, p in enumerate(payloads))
    got = _parse_in_reads(wire, read_sizes, chunk_bytes=8192)  # small: compaction and growth on every run
    assert got == [(BINARY if i % 2 else TEXT, p) for i, p in enumerate(payloads)]


_FRAME_KINDS = [  # (byte 0, payload sizes): what a server may send, and one violation
    (FIN | TEXT, (0, 5, 125, 126, 1300, 65_535, 70_000)), (FIN | BINARY, (3, 200)), (FIN | PING, (0, 4)),
    (FIN | PONG, (2,)), (TEXT, (7,)), (CONT, (9,)), (FIN | CONT, (1, 300)), (FIN | 0x40 | TEXT, (2,)),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_FRAME_KINDS) - 1), st.integers(0, 6)), min_size=1, max_size=30),
       st.lists(st.integers(1, 5000), min_size=1, max_size=8))  # fmt: skip
def test_the_c_splitter_parses_any_stream_as_the_python_parser_does(frames: list[tuple[int, int]], read_sizes: list[int]) -> None:
    """ldc.io._frames takes the whole text / binary frames; anything else (fragments, control frames,
    64-bit lengths, reserved bits) is left to the Python parser: same messages, same errors, any reads."""
    wire = b""
    for kind, size_index in frames:
        b0, sizes = _FRAME_KINDS[kind]
        size = sizes[size_index % len(sizes)]
        wire += _server_frame(bytes((size_index + i) % 251 for i in range(size)), b0)
    outcomes = []
    for c_split in (True, False):
        try:
            outcomes.append(("ok", _parse_in_reads(wire, read_sizes, chunk_bytes=8192, c_split=c_split)))
        except ProtocolError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]


def test_a_fragmented_message_is_reassembled_and_control_frames_between_come_in_order() -> None:
    wire = (
        _server_frame(b"hel", TEXT)  # FIN clear
        + _server_frame(b"p1", FIN | PING)
        + _server_frame(b"l", CONT)
        + _server_frame(b"o", FIN | CONT)
        + _server_frame(b"", FIN | PONG)
        + _server_frame(b"\x00\x01", BINARY)
        + _server_frame(b"\x02", FIN | CONT)
    )
    assert _parse_in_reads(wire, [3]) == [(PING, b"p1"), (TEXT, b"hello"), (PONG, b""), (BINARY, b"\x00\x01\x02")]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (_server_frame(b"x" * 10, mask=b"abcd"), "expected an unmasked server frame, found a masked one (byte 1 = 0x8a)"),
        (_server_frame(b"x", FIN | 0x40 | TEXT), "expected no reserved bits (no extension was negotiated), found byte 0 = 0xc1"),
        (_server_frame(b"x", FIN | 0x3), "expected a known data opcode, found 0x3"),
        (_server_frame(b"x", FIN | 0xB), "expected a known control opcode, found 0xb"),
        (_server_frame(b"x", PING), "expected a final control frame of <= 125 bytes, found fin=False with 1 bytes"),
        (_server_frame(b"x" * 126, FIN | PING), "expected a final control frame of <= 125 bytes, found fin=True with 126 bytes"),
        (_server_frame(b"x", FIN | CONT), "expected a new message, found a continuation frame"),
        (_server_frame(b"x", TEXT) + _server_frame(b"y", FIN | TEXT), "expected a continuation frame, found a new message (opcode 0x1)"),
        (bytes((0x81, 127)) + (MAX_MESSAGE_BYTES + 1).to_bytes(8, "big"), f"frame of {MAX_MESSAGE_BYTES + 1} bytes, expected at most {MAX_MESSAGE_BYTES}"),
    ],
)
def test_protocol_violations_are_refused(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _parse_in_reads(wire, [len(wire)])
    assert str(info.value) == message


def test_a_fragmented_message_over_the_limit_is_refused() -> None:
    parser, part = _FrameParser(max_message_bytes=70_000), _server_frame(b"x" * 40_000, TEXT)
    parser.space()[: len(part)] = part
    assert parser.feed(len(part)) == []
    more = _server_frame(b"x" * 40_000, FIN | CONT)
    parser.space()[: len(more)] = more
    assert parser.feed(len(more)) == []
    assert str(parser.error) == "fragmented message of 80000 bytes, expected at most 70000"
    with pytest.raises(ConfigError, match="^max_message_bytes must be >= 65535, found 100$"):
        _FrameParser(max_message_bytes=100)


def test_frames_before_a_violation_are_returned_and_the_parser_then_stays_failed() -> None:
    parser, wire = _FrameParser(), _server_frame(b"ok") + _server_frame(b"x", FIN | 0x20 | TEXT) + _server_frame(b"late")
    parser.space()[: len(wire)] = wire
    assert parser.feed(len(wire)) == [(TEXT, b"ok")]
    assert isinstance(parser.error, ProtocolError)
    with pytest.raises(ProtocolError, match="found byte 0 = 0xa1$"):
        parser.feed(0)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"peer left after {len(data)} of {n} bytes")
        data += chunk
    return data


def _read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame from the client (RFC 6455 5.3: masked), unmasked."""
    b0, b1 = _read_exact(sock, 2)
    assert b1 & 0x80, "client frames must be masked"
    n = b1 & 0x7F
    if n >= 126:
        n = int.from_bytes(_read_exact(sock, 2 if n == 126 else 8), "big")
    mask = _read_exact(sock, 4)
    return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(sock, n)))


class ScriptedServer:
    """A websocket server on loopback that answers the handshake (RFC 6455 4.2.2), sends ``script`` to
    every connection and records the frames each client sends back; TLS with ``tls`` (a server context).
    A client's CLOSE is echoed (RFC 6455 5.5.1) with ``answers_close``; no more is read after it."""

    def __init__(self, script: bytes, *, tls: ssl.SSLContext | None = None, answers_close: bool = True) -> None:
        self.script, self.tls, self.answers_close = script, tls, answers_close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[list[tuple[int, bytes]]] = []  # per connection, in accept order
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/stream"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            frames: list[tuple[int, bytes]] = []
            self.received.append(frames)
            threading.Thread(target=self._serve, args=(conn, frames), daemon=True).start()

    def _serve(self, conn: socket.socket, frames: list[tuple[int, bytes]]) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                request += _read_exact(conn, 1)
            key = next(ln.split(b":", 1)[1].strip() for ln in request.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
            conn.sendall(self.script)
            while True:
                frames.append(_read_client_frame(conn))
                if frames[-1][0] == CLOSE:
                    if self.answers_close:
                        conn.sendall(_server_frame(frames[-1][1], FIN | CLOSE))
                    return
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


def test_server_pings_are_echoed_and_fragments_delivered_as_one_message() -> None:
    script = (
        _server_frame(b"ping-1", FIN | PING)
        + _server_frame(b'{"a":', TEXT)
        + _server_frame(b"ping-2", FIN | PING)
        + _server_frame(b"1}", FIN | CONT)
    )
    server, recorder = ScriptedServer(script), Recorder()
    pool = WsPool(server.url(), recorder, protocol=STREAM_PROTOCOL, options=FAST)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: server.received and len(server.received[0]) >= 2 and recorder.messages, "the pongs and the message")
    finally:
        pool.stop()
        server.close()
    assert [raw for _, raw, _ in recorder.messages] == [b'{"a":1}']
    assert server.received[0][:2] == [(PONG, b"ping-1"), (PONG, b"ping-2")]
    assert server.received[0][2:] == [(CLOSE, CLOSE_NORMAL.to_bytes(2, "big"))]  # stop: a clean close
    assert recorder.closes() == [(recorder.opens()[0][0], CloseReason.STOPPED)]


def test_a_server_close_is_echoed_and_closes_as_server_closed() -> None:
    script = _server_frame(b"1") + _server_frame((1001).to_bytes(2, "big") + b"bye", FIN | CLOSE)
    server, recorder = ScriptedServer(script, answers_close=False), Recorder()  # its close came first
    pool = WsPool(server.url(), recorder, protocol=STREAM_PROTOCOL, options=WsOptions(backoff_initial_s=30.0, read_poll_s=0.05))
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: recorder.closes(), "the close")
        wait_for(lambda: server.received and server.received[0], "the echoed close")
    finally:
        pool.stop()
        server.close()
    assert recorder.closes() == [(recorder.opens()[0][0], CloseReason.SERVER_CLOSED)]
    assert server.received[0] == [(CLOSE, (1001).to_bytes(2, "big"))]
    assert [raw for _, raw, _ in recorder.messages] == [b"1"]


def test_a_masked_server_frame_drops_the_connection_with_a_protocol_error_close() -> None:
    script = _server_frame(b'{"ok":1}') + _server_frame(b'{"bad":1}', mask=b"\x01\x02\x03\x04")
    server, recorder = ScriptedServer(script), Recorder()
    pool = WsPool(server.url(), recorder, protocol=STREAM_PROTOCOL, options=FAST)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: len(recorder.opens()) >= 2, "the reconnect")
    finally:
        pool.stop()
        server.close()
    first = recorder.opens()[0][0]
    assert recorder.closes()[0] == (first, CloseReason.ERROR)
    assert recorder.messages[0][:2] == (first, b'{"ok":1}')
    assert all(raw != b'{"bad":1}' for _, raw, _ in recorder.messages)
    assert server.received[0] == [(CLOSE, CLOSE_PROTOCOL_ERROR.to_bytes(2, "big"))]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_frames_over_tls_arrive_intact(tls_files: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", cert)  # websocket-client trusts it, hostname checked
    server, recorder = ScriptedServer(b"".join(_server_frame(p) for p in PAYLOADS), tls=context), Recorder()
    pool = WsPool(server.url(), recorder, protocol=STREAM_PROTOCOL, options=FAST)
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: len(recorder.messages) >= len(PAYLOADS), "every frame")
    finally:
        pool.stop()
        server.close()
    assert [raw for _, raw, _ in recorder.messages] == PAYLOADS  # TLS records are 16 KB: frames cut everywhere
    assert recorder.closes() == [(recorder.opens()[0][0], CloseReason.STOPPED)]


def test_frames_of_one_read_share_its_receive_time() -> None:
    server, recorder = ScriptedServer(b"".join(_server_frame(b"%d" % i) for i in range(50))), Recorder()
    pool = WsPool(server.url(), recorder, protocol=STREAM_PROTOCOL, options=FAST)
    before = time.time_ns()
    pool.start(SPOT[:1])
    try:
        wait_for(lambda: len(recorder.messages) == 50, "the frames")
    finally:
        pool.stop()
        server.close()
    stamps = [ns for _, _, ns in recorder.messages]
    assert [raw for _, raw, _ in recorder.messages] == [b"%d" % i for i in range(50)]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= time.time_ns()
    assert len(set(stamps)) < 50  # one sendall of ~200 bytes: a read or a few, never one stamp per frame


def test_backoff_grows_exponentially_to_the_cap_with_jitter_in_the_upper_half() -> None:
    delays = [backoff_delay(n, initial_s=0.5, cap_s=30.0, rand=0.0) for n in range(9)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert backoff_delay(3, initial_s=0.5, cap_s=30.0, rand=0.999999) == pytest.approx(4.0, rel=1e-5)
    assert backoff_delay(10_000, initial_s=0.5, cap_s=30.0, rand=0.5) == 22.5


def test_combined_url() -> None:
    assert combined_stream_url("wss://fstream.binance.com/public/stream", ["btcusdt@depth", "ethusdt@depth"]) == (
        "wss://fstream.binance.com/public/stream?streams=btcusdt@depth/ethusdt@depth"
    )
