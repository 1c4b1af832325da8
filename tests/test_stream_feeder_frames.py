"""The stream venues' connections read the socket in bulk (``ldc.io.ws.FrameParser``, as the REST-snapshot
feeder's pool does): against a scripted websocket server (tests/test_ws.py ``ScriptedServer``), a message
fragmented around server pings arrives whole, a binary frame is data, every ping gets its pong, a server close
is echoed with its status code, and a masked server frame closes the connection with 1002 and reconnects.
The book published is exactly the scripted one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ldc.config import GroupConfig
from ldc.io.ws import CLOSE_PROTOCOL_ERROR
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.stream_feeder import StreamFeeder
from shm_helpers import group_fixture
from test_ws import BINARY, CLOSE, CONT, FIN, PING, PONG, TEXT, ScriptedServer, _server_frame

WAIT_S = 20.0
NO_REST = "http://127.0.0.1:9"  # the instrument list is best effort: refused at once, nothing leaves the host


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _okx(action: str, bids: list[list[str]], asks: list[list[str]], seq: int, prev: int) -> bytes:
    item = {"asks": asks, "bids": bids, "ts": "1700000000000", "checksum": 0, "seqId": seq, "prevSeqId": prev}
    return json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [item]}).encode()


SNAPSHOT = _okx("snapshot", [["100.0", "2", "0", "1"], ["99.5", "1", "0", "1"]], [["100.5", "3", "0", "1"]], 10, -1)
UPDATE = _okx("update", [["99.5", "0", "0", "0"], ["99.0", "4", "0", "1"]], [["101.0", "5", "0", "2"]], 11, 10)


def _wait(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _feeder(group: str, server: ScriptedServer) -> tuple[StreamFeeder, threading.Thread]:
    config = GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT",), depth=5, channel="books", capacity=2,
                         ws_url=f"ws://127.0.0.1:{server.port}", rest_url=NO_REST, rest_timeout_s=1.0)  # fmt: skip
    feeder = StreamFeeder(config)
    runner = threading.Thread(target=feeder.run, daemon=True)
    runner.start()
    return feeder, runner


def test_fragments_pings_and_binary_frames_through_a_stream_connection(group: str) -> None:
    half = len(SNAPSHOT) // 2
    script = (
        _server_frame(b"p1", FIN | PING)
        + _server_frame(SNAPSHOT[:half], TEXT)  # the snapshot in two fragments, a ping between them
        + _server_frame(b"p2", FIN | PING)
        + _server_frame(SNAPSHOT[half:], FIN | CONT)
        + _server_frame(UPDATE, FIN | BINARY)  # a binary frame is data too (HTX sends gzip in them)
    )
    server = ScriptedServer(script)
    feeder, runner = _feeder(group, server)
    try:
        with Reader(group, attach_timeout_s=WAIT_S) as reader:
            _wait(lambda: reader.status("BTC-USDT").status == Status.SYNCED and reader.snapshot("BTC-USDT").update_id == 11,
                  "the book at seqId 11")  # fmt: skip
            snap = reader.snapshot("BTC-USDT")
            assert snap.bids.tolist() == [[100.0, 2.0], [99.0, 4.0]]
            assert snap.asks.tolist() == [[100.5, 3.0], [101.0, 5.0]]
            stats = reader.feeder_stats()
            assert stats is not None and stats.counters["frames"] == 2 and stats.counters["ws_opened"] == 1
        _wait(lambda: (PONG, b"p2") in server.received[0], "the pongs")
        first = server.received[0]
        assert [op for op, _ in first][:1] == [TEXT]  # the subscription
        assert first.index((PONG, b"p1")) < first.index((PONG, b"p2"))
        assert feeder.malformed == 0
    finally:
        feeder.request_stop()
        runner.join(timeout=WAIT_S)
        server.close()
    assert server.received[0][-1] == (CLOSE, (1000).to_bytes(2, "big"))  # the stop: a clean close


def test_a_server_close_is_echoed_with_its_status_and_the_connection_reopens(group: str) -> None:
    script = _server_frame(SNAPSHOT) + _server_frame((1001).to_bytes(2, "big") + b"going away", FIN | CLOSE)
    server = ScriptedServer(script, answers_close=False)  # its close came first
    feeder, runner = _feeder(group, server)
    try:
        _wait(lambda: len(server.received) >= 2 and server.received[0] and server.received[0][-1][0] == CLOSE,
              "the echoed close and the reconnect")  # fmt: skip
        assert server.received[0][-1] == (CLOSE, (1001).to_bytes(2, "big"))
        _wait(lambda: feeder.connections[0].connects >= 2, "the second connection")
        assert feeder.malformed == 0
    finally:
        feeder.request_stop()
        runner.join(timeout=WAIT_S)
        server.close()


def test_a_masked_server_frame_closes_the_connection_with_1002_and_it_reconnects(group: str) -> None:
    script = _server_frame(SNAPSHOT) + _server_frame(b'{"bad":1}', mask=b"\x01\x02\x03\x04")
    server = ScriptedServer(script)
    feeder, runner = _feeder(group, server)
    try:
        _wait(lambda: len(server.received) >= 2 and server.received[0] and server.received[0][-1][0] == CLOSE,
              "the protocol-error close and the reconnect")  # fmt: skip
        assert server.received[0][-1] == (CLOSE, CLOSE_PROTOCOL_ERROR.to_bytes(2, "big"))
        assert feeder.malformed == 0  # the frame after the violation never reached the parser
        _wait(lambda: feeder.connections[0].connects >= 2, "the second connection")
    finally:
        feeder.request_stop()
        runner.join(timeout=WAIT_S)
        server.close()
