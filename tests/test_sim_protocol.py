"""Websocket protocol and limits (RFC 6455; Binance web-socket-streams.md "WebSocket Limits",
"Live Subscribing/Unsubscribing to streams", "Error Messages"): handshake, control messages and their
errors, pings and the pong deadline, lifetime, the streams-per-connection and incoming-message limits."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import websocket

from ldc.sim import Simulator
from ldc.sim.wsframes import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, accept_key, unmask

RECV_TIMEOUT_S = 10.0


class RawClient:
    """A bare RFC 6455 client on a socket, so a test decides every byte (and every unanswered ping)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.head = head.decode()
        self.accept = accept_key(key)

    def send(self, opcode: int, payload: bytes, *, masked: bool = True) -> None:
        mask = os.urandom(4)
        length = len(payload)
        header = bytes((0x80 | opcode, (0x80 if masked else 0) | length)) if length < 126 else bytes((0x80 | opcode, (0x80 if masked else 0) | 126)) + struct.pack("!H", length)
        self.sock.sendall(header + (mask + unmask(payload, mask) if masked else payload))

    def recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        first, second = self.recv_exact(2)
        assert second & 0x80 == 0, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.recv_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.recv_exact(8))[0]
        return first & 0x0F, self.recv_exact(length)

    def recv_until(self, opcode: int, limit: int = 10_000) -> bytes:
        for _ in range(limit):
            op, payload = self.recv()
            if op == opcode:
                return payload
        raise AssertionError(f"no frame with opcode {opcode} in {limit} frames")

    def close(self) -> None:
        self.sock.close()


def control(sim: Simulator, messages: list[dict[str, Any]], path: str = "/ws") -> list[dict[str, Any]]:
    ws = websocket.create_connection(f"{sim.ws_url}{path}", timeout=RECV_TIMEOUT_S)
    try:
        answers = []
        for message in messages:
            time.sleep(0.25)  # stay under 5 incoming messages per second
            ws.send(json.dumps(message))
            while True:
                answer = json.loads(ws.recv())
                if "id" in answer:
                    answers.append(answer)
                    break
        return answers
    finally:
        ws.close()


def test_handshake_declines_compression_and_accepts_the_key(sim: Simulator) -> None:
    raw = RawClient(sim.port, "/ws/btcusdt@depth@100ms")
    try:
        assert raw.head.startswith("HTTP/1.1 101 ")
        assert f"Sec-WebSocket-Accept: {raw.accept}" in raw.head
        assert "Sec-WebSocket-Extensions" not in raw.head
        opcode, payload = raw.recv()
        assert opcode == OP_TEXT and json.loads(payload)["s"] == "BTCUSDT"
    finally:
        raw.close()


def test_subscribe_list_unsubscribe_and_properties(sim: Simulator) -> None:
    answers = control(
        sim,
        [
            {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "ethusdt@depth"], "id": 1},
            {"method": "LIST_SUBSCRIPTIONS", "id": 2},
            {"method": "UNSUBSCRIBE", "params": ["ethusdt@depth"], "id": "a3"},
            {"method": "LIST_SUBSCRIPTIONS", "id": 4},
            {"method": "GET_PROPERTY", "params": ["combined"], "id": 5},
            {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 6},
        ],
    )
    assert answers == [
        {"result": None, "id": 1},
        {"result": ["btcusdt@depth@100ms", "ethusdt@depth"], "id": 2},
        {"result": None, "id": "a3"},
        {"result": ["btcusdt@depth@100ms"], "id": 4},
        {"result": False, "id": 5},
        {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 6},
    ]


def test_malformed_control_messages_get_binance_errors_and_the_connection_lives(sim: Simulator) -> None:
    ws = websocket.create_connection(f"{sim.ws_url}/ws", timeout=RECV_TIMEOUT_S)
    try:
        sent = ["{not json", json.dumps({"params": [], "id": 1}), json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@depth"], "id": 2}), json.dumps({"method": "FLY", "id": 3}), json.dumps({"method": "SUBSCRIBE", "params": "btcusdt@depth", "id": 4})]
        answers = []
        for text in sent:
            ws.send(text)
            answers.append(json.loads(ws.recv()))
            time.sleep(0.25)  # stay under 5 incoming messages per second
        assert answers[0]["error"]["code"] == 3 and answers[0]["id"] is None
        assert answers[1] == {"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": 1}
        assert answers[2] == {"error": {"code": 2, "msg": "Invalid request: unknown stream 'nosuch@depth'"}, "id": 2}
        assert answers[3]["error"]["msg"].startswith("Invalid request: unknown variant `FLY`, expected one of `SUBSCRIBE`")
        assert answers[4]["error"]["code"] == 2 and answers[4]["id"] == 4
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 5}))
        assert json.loads(ws.recv()) == {"result": None, "id": 5}
        assert json.loads(ws.recv())["e"] == "depthUpdate"
    finally:
        ws.close()


def test_control_message_errors_follow_the_documented_table(sim: Simulator) -> None:
    """web-socket-streams.md "Error Messages" and the accepted id formats (64-bit signed integer,
    alphanumeric string of at most 36, null)."""
    answers = control(
        sim,
        [
            {"method": "LIST_SUBSCRIPTIONS", "id": -5},
            {"method": "GET_PROPERTY", "params": [7], "id": 2},
            {"method": "LIST_SUBSCRIPTIONS", "id": 1 << 63},
            {"method": "LIST_SUBSCRIPTIONS", "id": None},
        ],
    )
    assert answers == [
        {"result": [], "id": -5},
        {"error": {"code": 2, "msg": "Invalid request: property name must be a string"}, "id": 2},
        {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": None},
        {"result": [], "id": None},
    ]
    ws = websocket.create_connection(f"{sim.ws_url}/ws", timeout=RECV_TIMEOUT_S)
    try:
        ws.send('{"method": "SUBSCRIBE",\n "params": [}')
        assert json.loads(ws.recv()) == {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 2 column 13"}, "id": None}
    finally:
        ws.close()


def test_other_binance_streams_of_a_listed_market_are_accepted_and_stay_silent(sim: Simulator) -> None:
    # a peer's client asking for trades or tickers beside the book still gets its depth stream
    names = "btcusdt@aggTrade/btcusdt@depth@100ms/!miniTicker@arr/ethusdt@kline_1m"
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams={names}", timeout=RECV_TIMEOUT_S)
    try:
        for _ in range(3):
            message = json.loads(ws.recv())
            assert message["stream"] == "btcusdt@depth@100ms" and message["data"]["e"] == "depthUpdate"
    finally:
        ws.close()
    answers = control(
        sim,
        [
            {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "btcusdt@depth"], "id": 1},
            {"method": "LIST_SUBSCRIPTIONS", "id": 2},
            {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 3},
            {"method": "SUBSCRIBE", "params": ["btcusdt@kline_7m"], "id": 4},  # no such interval
            {"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 5},  # no such market
        ],
    )
    assert answers == [
        {"result": None, "id": 1},
        {"result": ["btcusdt@bookTicker", "btcusdt@depth"], "id": 2},
        {"result": None, "id": 3},
        {"error": {"code": 2, "msg": "Invalid request: unknown stream 'btcusdt@kline_7m'"}, "id": 4},
        {"error": {"code": 2, "msg": "Invalid request: unknown stream 'nosuch@trade'"}, "id": 5},
    ]


def test_unknown_stream_or_path_in_the_url_is_refused(sim: Simulator) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{sim.ws_url}/ws/nosuch@depth", timeout=RECV_TIMEOUT_S)
    assert refused.value.status_code == 400
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        websocket.create_connection(f"{sim.ws_url}/nowhere", timeout=RECV_TIMEOUT_S)
    assert missing.value.status_code == 404


def test_streams_per_connection_limit(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), max_streams_per_connection=3)
    answers = control(sim, [{"method": "SUBSCRIBE", "params": ["btcusdt@depth", "btcusdt@depth@100ms", "ethusdt@depth"], "id": 1}, {"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 2}])
    assert answers[0] == {"result": None, "id": 1}
    assert answers[1] == {"error": {"code": 2, "msg": "Invalid request: too many streams, 4 requested, the limit is 3"}, "id": 2}
    names = "/".join(["btcusdt@depth", "btcusdt@depth@100ms", "ethusdt@depth", "ethusdt@depth@100ms"])
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"{sim.ws_url}/stream?streams={names}", timeout=RECV_TIMEOUT_S)


def test_more_than_five_messages_a_second_disconnects_spot(sim: Simulator) -> None:
    raw = RawClient(sim.port, "/ws")
    try:
        for i in range(6):
            raw.send(OP_TEXT, json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).encode())
        payload = raw.recv_until(OP_CLOSE)
        assert struct.unpack("!H", payload[:2])[0] == 1008
    finally:
        raw.close()


def test_server_pings_and_drops_a_client_that_never_pongs(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(ping_interval_s=0.3, pong_timeout_s=2.0)
    answering, silent = RawClient(sim.port, "/ws/btcusdt@depth"), RawClient(sim.port, "/ws/btcusdt@depth")
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            payload = answering.recv_until(OP_PING)
            answering.send(OP_PONG, payload)
        assert silent.recv_until(OP_PING)
        with pytest.raises((ConnectionError, OSError)):
            for _ in range(10_000):
                silent.recv()
        answering.send(OP_PING, b"hello")
        assert answering.recv_until(OP_PONG) == b"hello"
        assert sim.stats()["counters"]["pong_timeouts"] == 1
    finally:
        answering.close()
        silent.close()


def test_connection_lifetime_ends_with_a_close_frame(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(max_lifetime_s=0.5)
    raw = RawClient(sim.port, "/ws/btcusdt@depth@100ms")
    try:
        payload = raw.recv_until(OP_CLOSE)
        assert struct.unpack("!H", payload[:2])[0] == 1000
    finally:
        raw.close()


def test_unmasked_client_frame_is_a_protocol_error_and_others_keep_streaming(sim: Simulator) -> None:
    bad, good = RawClient(sim.port, "/ws"), RawClient(sim.port, "/ws/btcusdt@depth@100ms")
    try:
        bad.send(OP_TEXT, b"{}", masked=False)
        payload = bad.recv_until(OP_CLOSE)
        assert struct.unpack("!H", payload[:2])[0] == 1002
        assert good.recv_until(OP_TEXT)
        assert requests.get(f"{sim.rest_url}/api/v3/ping", timeout=5).json() == {}
    finally:
        bad.close()
        good.close()


def test_client_close_handshake_is_echoed(sim: Simulator) -> None:
    raw = RawClient(sim.port, "/ws/btcusdt@depth@100ms")
    try:
        raw.send(OP_CLOSE, struct.pack("!H", 1000))
        assert struct.unpack("!H", raw.recv_until(OP_CLOSE)[:2])[0] == 1000
    finally:
        raw.close()


def test_connections_listing(sim: Simulator) -> None:
    ws = websocket.create_connection(f"{sim.ws_url}/stream?streams=btcusdt@depth", timeout=RECV_TIMEOUT_S)
    try:
        listing = requests.get(f"{sim.rest_url}/_sim/connections", timeout=5).json()["connections"]
        assert [(c["port"], c["streams"], c["combined"]) for c in listing] == [(ws.sock.getsockname()[1], ["btcusdt@depth"], True)]
    finally:
        ws.close()
