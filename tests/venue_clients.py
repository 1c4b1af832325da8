"""Small websocket helpers for the OKX / Bybit simulator tests (websocket-client, text frames)."""

from __future__ import annotations

import json
import time
from typing import Any

import websocket

RECV_TIMEOUT_S = 5.0


def connect(url: str) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=RECV_TIMEOUT_S)


def send_json(ws: websocket.WebSocket, obj: object) -> None:
    ws.send(json.dumps(obj))


def recv_json(ws: websocket.WebSocket) -> Any:
    return json.loads(ws.recv())


def collect(ws: websocket.WebSocket, seconds: float, *, until: int | None = None) -> list[Any]:
    """Every JSON message received for ``seconds`` (or until ``until`` messages have come)."""
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until is None or len(out) < until):
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            text = ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        if not ws.connected:
            break
        out.append(json.loads(text))
    ws.settimeout(RECV_TIMEOUT_S)
    return out


def wait_closed(ws: websocket.WebSocket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (data received meanwhile is dropped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            ws.recv()
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True
        if not ws.connected:
            return True
    return False
