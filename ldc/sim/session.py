"""One websocket connection: subscriptions, control messages, pings, limits and per-connection faults."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

import orjson

from ldc.sim.context import SessionContext
from ldc.sim.faults import FaultKind
from ldc.sim.markets import Family
from ldc.sim.streams import StreamKey, parse_stream, server_shutdown, silent_stream_symbol, wrap_combined
from ldc.sim.wsframes import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TOO_BIG,
    MAX_CLIENT_MESSAGE_BYTES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    close_payload,
    encode_frame,
    parse_close,
    parse_head,
    text_frame,
    unmask,
)

log = logging.getLogger("ldc.sim")

MAX_SEND_BUFFER_BYTES = 64 * 1024 * 1024  # a client this far behind is dropped, as Binance drops slow readers
CLOSE_TIMEOUT_S = 2.0
SEND_HIGH_WATER_BYTES = 256 * 1024  # drain() waits above this (replays paced by the client)
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
MAX_ID_STRING_CHARS = 36


class Route:
    """Which families a websocket path may name; ``family`` is fixed by a /spot, /usdm or /coinm prefix."""

    def __init__(self, *, family: Family | None, public: bool) -> None:
        self.family = family
        self.public = public

    def candidates(self) -> tuple[Family, ...]:
        if self.family is not None:
            return (self.family,)
        if self.public:
            return (Family.USDM, Family.COINM)
        return (Family.SPOT, Family.USDM, Family.COINM)


class Session:
    """A websocket session. All methods run on the simulator's event loop."""

    def __init__(self, state: SessionContext, writer: asyncio.StreamWriter, *, sid: int, combined: bool, route: Route, path: str, port: int) -> None:
        self.state = state  # what the server lends a session (ldc.sim.context)
        self.id = sid
        self.combined = combined
        self.route = route
        self.path = path
        self.port = port
        self.writer = writer
        self.transport = writer.transport
        self.transport.set_write_buffer_limits(high=SEND_HIGH_WATER_BYTES)
        self.created = time.monotonic()
        self.streams: dict[str, StreamKey] = {}
        self.closing = False
        self.closed = asyncio.get_running_loop().create_future()
        self._held: list[bytes] | None = None  # frames queued behind a delay fault
        self._out: list[bytes] = []  # frames of the current tick, written together
        self._reorder: dict[str, bytes] = {}  # per symbol: a frame held until that symbol's next one
        self._ping: tuple[bytes, float] | None = None
        self._last_ping = self.created
        self._window_start = self.created
        self._window_count = 0
        self.sent = 0
        self.dropped = 0
        self.family = route.family or Family.SPOT  # whose limits apply; set by the first stream
        self._family_fixed = route.family is not None

    # -- limits that depend on the family

    @property
    def ping_interval_s(self) -> float:
        cfg = self.state.config
        if cfg.ping_interval_s is not None:
            return cfg.ping_interval_s
        return 20.0 if self.family is Family.SPOT else 180.0

    @property
    def pong_timeout_s(self) -> float:
        cfg = self.state.config
        if cfg.pong_timeout_s is not None:
            return cfg.pong_timeout_s
        return 60.0 if self.family is Family.SPOT else 600.0

    @property
    def max_incoming_per_s(self) -> int:
        cfg = self.state.config
        return cfg.spot_max_incoming_per_s if self.family is Family.SPOT else cfg.futures_max_incoming_per_s

    # -- stream names

    def resolve(self, name: str) -> StreamKey | None:
        for family in self.route.candidates():
            parsed = parse_stream(name, family)
            if parsed is None:
                continue
            market = self.state.exchange.find(family, parsed[0])
            if market is not None and (parsed[2] == 0 or market.partial_streams):
                return StreamKey(family, parsed[0], parsed[1], parsed[2])
        symbol = silent_stream_symbol(name)
        if symbol is None:
            return None
        for family in self.route.candidates():
            if not symbol or self.state.exchange.find(family, symbol) is not None:
                return StreamKey(family, symbol, 0, silent=True)
        return None

    def subscribe(self, names: list[str]) -> str | None:
        """Subscribe all ``names`` or none; returns the error message when refused."""
        keys = []
        for name in names:
            key = self.resolve(name)
            if key is None:
                return f"Invalid request: unknown stream {name!r}"
            keys.append((name, key))
        new = {name for name, _ in keys if name not in self.streams}
        limit = self.state.config.max_streams_per_connection
        if len(self.streams) + len(new) > limit:
            return f"Invalid request: too many streams, {len(self.streams) + len(new)} requested, the limit is {limit}"
        for name, key in keys:
            if name in self.streams:
                continue
            self.streams[name] = key
            if key.silent:
                continue
            if not self._family_fixed:
                self.family, self._family_fixed = key.family, True
            self.state.exchange.subscribe(self, key, name)
        return None

    def unsubscribe(self, names: list[str]) -> None:
        for name in names:
            key = self.streams.pop(name, None)
            if key is not None and not key.silent and key not in self.streams.values():
                self.state.exchange.unsubscribe(self, key)

    # -- sending

    def send_diff(self, frame: bytes, symbol: str) -> None:
        if self.closing:
            return
        if self.state.faults.stream_active or self._reorder:
            self._send_faulty(frame, symbol)
        else:
            self._write(frame)

    def send_many(self, frames: list[bytes], symbol: str) -> None:
        """Several diff frames at once (replay); one write when no fault is active."""
        if self.closing:
            return
        if self.state.faults.stream_active or self._held is not None or self._reorder:
            for frame in frames:
                self.send_diff(frame, symbol)
        else:
            self._write(b"".join(frames), count=len(frames))
        self.flush_output()  # replays pace themselves on drain(): the bytes must be in the transport

    def _write(self, frame: bytes, *, count: int = 1) -> None:
        if self._held is not None:
            self._held.append(frame)
            return
        if not self._out:
            self.state.queue_output(self)
        self._out.append(frame)
        self.sent += count

    def flush_output(self) -> None:
        """Write the frames queued during this tick in one go (one send() for many frames)."""
        out, self._out = self._out, []
        if not out or self.closing:
            return
        if self.transport.is_closing():  # the peer went away before our reader noticed
            self.abort()
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.transport.get_write_buffer_size() > MAX_SEND_BUFFER_BYTES:
            log.warning("connection %d: send buffer over %d bytes, dropping a slow client", self.id, MAX_SEND_BUFFER_BYTES)
            self.abort()

    def _send_faulty(self, frame: bytes, symbol: str) -> None:
        take = self.state.faults.take
        target: dict[str, Any] = {"conn": self.id, "port": self.port, "symbol": symbol}
        if take(FaultKind.DROP, **target) is not None:
            self.dropped += 1
            return
        malformed = take(FaultKind.MALFORMED, **target)
        if malformed is not None:
            if malformed.detail == "frame":
                payload = frame[2:] if len(frame) < 128 else b"{}"
                frame = encode_frame(OP_TEXT, payload, rsv=0b100)
            else:
                frame = text_frame(b'{"e":"depthUpdate","E":')
        elif symbol not in self._reorder and take(FaultKind.REORDER, **target) is not None:
            # Held until the next frame of the SAME symbol: on a connection shared by several
            # markets, another market's frame in between would swap nothing that one client sees.
            self._reorder[symbol] = frame
            return
        delay = take(FaultKind.DELAY, **target)
        if delay is not None and self._held is None:
            self._held = []
            asyncio.get_running_loop().call_later(delay.ms / 1000.0, self._release)
        self._write(frame)
        if take(FaultKind.DUPLICATE, **target) is not None:
            self._write(frame)
        held = self._reorder.pop(symbol, None)
        if held is not None:
            self._write(held)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held and not self.closing:
            self._write(b"".join(held), count=len(held))

    def send_json(self, obj: object) -> None:
        if not self.closing:
            self.transport.write(text_frame(orjson.dumps(obj)))

    def send_shutdown(self) -> None:
        raw = server_shutdown(int(time.time() * 1000))
        if not self.closing:
            self.transport.write(text_frame(wrap_combined("!serverShutdown", raw) if self.combined else raw))

    # -- closing

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the close handshake; the TCP connection ends when the client answers or after a timeout."""
        if self.closing:
            return
        self.closing = True
        self._unsubscribe_all()
        self.transport.write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (what a network failure looks like)."""
        self.closing = True
        self._unsubscribe_all()
        self.transport.close()

    def _unsubscribe_all(self) -> None:
        for key in set(self.streams.values()):
            if not key.silent:
                self.state.exchange.unsubscribe(self, key)
        self.streams.clear()

    # -- timers (called by the housekeeping loop)

    def housekeeping(self, now: float) -> None:
        if self.closing:
            return
        if now - self.created >= self.state.config.max_lifetime_s:
            self.close(CLOSE_NORMAL, "connection lifetime reached")
            return
        if self._ping is not None and now - self._ping[1] > self.pong_timeout_s:
            log.info("connection %d: no pong within %.1f s, disconnecting", self.id, self.pong_timeout_s)
            self.state.counters["pong_timeouts"] = self.state.counters.get("pong_timeouts", 0) + 1
            self.abort()
            return
        if now - self._last_ping >= self.ping_interval_s:
            payload = str(int(time.time() * 1000)).encode()
            self.transport.write(encode_frame(OP_PING, payload))
            self._last_ping = now
            if self._ping is None:
                self._ping = (payload, now)

    # -- reading

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            await self._read_loop(reader)
        except FrameError as exc:
            log.info("connection %d: %s", self.id, exc)
            self.close(exc.code, str(exc)[:100])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._unsubscribe_all()
            self.closing = True
            if not self.closed.done():
                self.closed.set_result(None)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        fragments: list[bytes] = []
        fragment_opcode = 0
        while True:
            head = await reader.readexactly(2)
            fin, opcode, masked, length = parse_head(head[0], head[1])
            if not masked:
                raise FrameError("client frame is not masked")
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            if length > MAX_CLIENT_MESSAGE_BYTES:
                raise FrameError(f"frame of {length} bytes, the limit is {MAX_CLIENT_MESSAGE_BYTES}", code=CLOSE_TOO_BIG)
            mask = await reader.readexactly(4)
            payload = unmask(await reader.readexactly(length), mask)
            if opcode == OP_CLOSE:
                self._on_close(payload)
                return
            if opcode in (OP_PING, OP_PONG):
                self._count_incoming()
                self._on_control(opcode, payload)
                continue
            if opcode == OP_CONTINUATION:
                if not fragments:
                    raise FrameError("continuation frame without a message to continue")
            elif fragments:
                raise FrameError(f"new data frame (opcode 0x{opcode:x}) inside a fragmented message")
            else:
                fragment_opcode = opcode
            fragments.append(payload)
            if sum(map(len, fragments)) > MAX_CLIENT_MESSAGE_BYTES:
                raise FrameError("message too big", code=CLOSE_TOO_BIG)
            if not fin:
                continue
            message, fragments = b"".join(fragments), []
            self._count_incoming()
            if self.closing:
                continue
            if fragment_opcode == OP_TEXT:
                try:
                    text = message.decode("utf-8")
                except UnicodeDecodeError:
                    raise FrameError("text message is not utf-8", code=1007) from None
                self._on_text(text)
            elif fragment_opcode == OP_BINARY:
                self.send_json({"error": {"code": 3, "msg": "Invalid JSON: binary messages are not accepted"}, "id": None})

    def _on_close(self, payload: bytes) -> None:
        code, _ = parse_close(payload)
        if not self.closing:
            self.closing = True
            echo = close_payload(code) if code not in (1005, 1006) else b""
            self.transport.write(encode_frame(OP_CLOSE, echo))
        self.transport.close()

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self.closing:
                self.transport.write(encode_frame(OP_PONG, payload))
        elif self._ping is not None and payload == self._ping[0]:
            self._ping = None  # unsolicited pongs are allowed but do not count as an answer

    def _count_incoming(self) -> None:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > self.max_incoming_per_s and not self.closing:
            log.info("connection %d: more than %d incoming messages in 1 s", self.id, self.max_incoming_per_s)
            self.state.counters["rate_disconnects"] = self.state.counters.get("rate_disconnects", 0) + 1
            self.close(CLOSE_POLICY_VIOLATION, "too many requests")

    # -- control messages (web-socket-streams.md "Live Subscribing/Unsubscribing to streams")

    def _on_text(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:  # Binance's wording (web-socket-streams.md "Error Messages")
            self.send_json({"error": {"code": 3, "msg": f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}"}, "id": None})
            return
        if not isinstance(msg, dict):
            self.send_json({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None})
            return
        req_id = msg.get("id")
        if not _valid_id(req_id):
            self.send_json({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": None})
            return
        method = msg.get("method")
        if method is None:
            self.send_json({"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": req_id})
            return
        if method not in METHODS:
            expected = ", ".join(f"`{m}`" for m in METHODS)
            self.send_json({"error": {"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of {expected}"}, "id": req_id})
            return
        self._dispatch(str(method), msg.get("params"), req_id)

    def _dispatch(self, method: str, params: object, req_id: object) -> None:
        if method == "LIST_SUBSCRIPTIONS":
            self.send_json({"result": list(self.streams), "id": req_id})
            return
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            self._property(method, params, req_id)
            return
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            self.send_json({"error": {"code": 2, "msg": "Invalid request: params must be an array of stream names"}, "id": req_id})
            return
        if method == "SUBSCRIBE":
            problem = self.subscribe(list(params))
            if problem is not None:
                self.send_json({"error": {"code": 2, "msg": problem}, "id": req_id})
                return
        else:
            self.unsubscribe(list(params))
        self.send_json({"result": None, "id": req_id})

    def _property(self, method: str, params: object, req_id: object) -> None:
        if isinstance(params, list) and params and not isinstance(params[0], str):
            self.send_json({"error": {"code": 2, "msg": "Invalid request: property name must be a string"}, "id": req_id})
            return
        if not isinstance(params, list) or not params or params[0] != "combined":
            self.send_json({"error": {"code": 0, "msg": "Unknown property"}, "id": req_id})
            return
        if method == "GET_PROPERTY":
            self.send_json({"result": self.combined, "id": req_id})
            return
        if len(params) != 2 or not isinstance(params[1], bool):
            self.send_json({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": req_id})
            return
        self.combined = params[1]
        self.send_json({"result": None, "id": req_id})

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "path": self.path,
            "port": self.port,
            "combined": self.combined,
            "streams": list(self.streams),
            "age_s": round(now - self.created, 3),
            "sent": self.sent,
            "dropped": self.dropped,
        }


def _valid_id(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):  # "64-bit signed integer" (the error message still says unsigned)
        return -(1 << 63) <= value < 1 << 63
    return isinstance(value, str) and len(value) <= MAX_ID_STRING_CHARS and value.isalnum()
