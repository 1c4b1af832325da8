"""ldc.io.ws against the local exchange simulator (tests/conftest.py `sim_factory`), which follows Binance's
web-socket-streams.md: combined streams, SUBSCRIBE answers, server pings, serverShutdown, 5 incoming
messages/s, 1024 streams per connection; faults: disconnect, shutdown, malformed frames."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest

from ldc.io.ws import RECV_CHUNK_BYTES, CloseReason, WsOptions, WsPool, _BufferedWebSocket, backoff_delay, combined_url
from ldc.sim import Simulator
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
    pool = WsPool(f"{sim.ws_url}/stream", recorder, options=options)
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
        server_side = spot.call(lambda state: state.connections_json())
        assert [c["streams"] for c in server_side] == [[SPOT[1]]]
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
    pool = WsPool(f"{sim.ws_url}/stream", recorder, options=options)
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
    pool = WsPool(f"{spot.ws_url}/stream", recorder, options=WsOptions(rollover_after_s=0.5, read_poll_s=0.05))

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
    pool = WsPool(f"{spot.ws_url}/stream", recorder, options=options)
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
    pool = WsPool(f"ws://127.0.0.1:{port}/stream", recorder, options=FAST)
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
    pool = WsPool(f"ws://127.0.0.1:{relay.port}/stream", recorder, options=options)
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


def _server_frame(payload: bytes) -> bytes:
    n = len(payload)  # RFC 6455 5.2: server frames are unmasked
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65_536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def test_chunked_reads_deliver_frames_intact_across_chunk_boundaries() -> None:
    payloads = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i * 37 % 3000)) for i in range(400)]
    payloads.insert(200, b"y" * (RECV_CHUNK_BYTES * 2 + 5))  # one frame spanning three chunks
    wire = b"".join(_server_frame(p) for p in payloads)
    ours, theirs = socket.socketpair()
    ws = _BufferedWebSocket(skip_utf8_validation=True, enable_multithread=False)
    ws.sock, ws.connected = ours, True

    def send_in_pieces() -> None:
        for i in range(0, len(wire), 1000):
            theirs.sendall(wire[i : i + 1000])

    sender = threading.Thread(target=send_in_pieces)
    sender.start()
    try:
        got = [ws.recv_data_frame(True)[1].data for _ in payloads]
    finally:
        sender.join(WAIT_S)
        ours.close()
        theirs.close()
    assert got == payloads


def test_backoff_grows_exponentially_to_the_cap_with_jitter_in_the_upper_half() -> None:
    delays = [backoff_delay(n, initial_s=0.5, cap_s=30.0, rand=0.0) for n in range(9)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert backoff_delay(3, initial_s=0.5, cap_s=30.0, rand=0.999999) == pytest.approx(4.0, rel=1e-5)
    assert backoff_delay(10_000, initial_s=0.5, cap_s=30.0, rand=0.5) == 22.5


def test_combined_url() -> None:
    assert combined_url("wss://fstream.binance.com/public/stream", ["btcusdt@depth", "ethusdt@depth"]) == (
        "wss://fstream.binance.com/public/stream?streams=btcusdt@depth/ethusdt@depth"
    )
