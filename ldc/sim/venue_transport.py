"""The transport shared by the OKX and Bybit simulator families: one 127.0.0.1 port per venue.

A :class:`VenueServer` answers REST (the venue's public paths through its :class:`Dialect`, and the
private ``/_sim/book``, ``/_sim/faults``, ``/_sim/stats``, ``/_sim/connections``) and websocket upgrades on
the dialect's paths. A :class:`VenueConn` reads RFC 6455 frames and hands each text message to the
dialect; the dialect owns every byte of the venue's protocol. Book messages go out through
:meth:`VenueConn.send_book`, where the stream faults act (drop, duplicate, reorder, wrong checksum).
Nothing here knows an exchange.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from typing import Any, Callable, Protocol

import orjson

from ldc.errors import SimError
from ldc.sim.httpmsg import MAX_BODY_BYTES, HttpError, Request, Response, parse_head, split_target
from ldc.sim.tls import drop
from ldc.sim.venue_faults import VenueFault, VenueFaultKind, VenueFaultTable, same_symbol, venue_fault_from_json
from ldc.sim.wsframes import (
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    MAX_CLIENT_MESSAGE_BYTES,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    accept_key,
    close_payload,
    encode_frame,
    parse_close,
    text_frame,
    unmask,
)
from ldc.sim.wsframes import parse_head as parse_frame_head

log = logging.getLogger("ldc.sim")

HOST = "127.0.0.1"  # never anything else: nothing here may reach beyond the loopback
TICK_S = 0.005
HOUSEKEEPING_TICK_S = 0.05
CLOSE_TIMEOUT_S = 2.0
CLOSE_ALL_TIMEOUT_S = 2.0
MAX_SEND_BUFFER_BYTES = 64 * 1024 * 1024  # a client this far behind is dropped
READ_LIMIT_BYTES = 64 * 1024


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, orjson.dumps(obj))


def int_params(query: dict[str, str], *names: str) -> list[int | None] | str:
    """The named query parameters as integers (None when absent), or why one of them is not one."""
    out: list[int | None] = []
    for name in names:
        text = query.get(name)
        if not text:
            out.append(None)
            continue
        try:
            out.append(int(text))
        except ValueError:
            return f"{name} must be an integer, found {text!r}"
    return out


def sim_error(status: int, msg: str) -> Response:
    """The private endpoints' error body."""
    return json_response({"code": status, "msg": msg}, status)


class Dialect(Protocol):
    """One venue's protocol. Every method runs on the simulator's event loop."""

    venue: str

    def rest(self, req: Request) -> Response: ...

    def ws_category(self, path: str) -> str | None: ...

    def on_open(self, conn: VenueConn) -> None: ...

    def on_text(self, conn: VenueConn, text: str) -> None: ...

    def on_close(self, conn: VenueConn) -> None: ...

    def tick(self, sim_ms: float, now_ms: int) -> None: ...

    def housekeeping(self, conn: VenueConn, now: float) -> None: ...

    def truth(self, query: dict[str, str]) -> dict[str, object] | str: ...

    def stats(self) -> dict[str, object]: ...


class VenueConn:
    """One websocket connection. ``topics`` is kept by the dialect: what this client subscribed."""

    def __init__(self, server: VenueServer, writer: asyncio.StreamWriter, *, cid: int, path: str, category: str, port: int) -> None:
        self.server = server
        self.transport = writer.transport
        self.id = cid
        self.path = path
        self.category = category
        self.port = port
        self.created = self.last_rx = self.last_tx = self.last_ping = time.monotonic()
        self.topics: dict[str, str] = {}  # topic name -> symbol
        self.closing = False
        self.sent = 0
        self.dropped = 0
        self.ops: list[float] = []  # times of subscribe / unsubscribe requests (rate limits)
        self._reorder: bytes | None = None

    # -- sending

    def send_text(self, payload: bytes) -> None:
        """A control answer (ack, error, pong): never subject to stream faults."""
        self._write(text_frame(payload))

    def send_frame(self, frame: bytes) -> None:
        """A control message already framed (HTX's are gzip binary frames)."""
        self._write(frame)

    def send_book(self, frame: bytes, symbol: str, wrong_checksum: Callable[[], bytes] | None = None) -> None:
        """A book message (a text frame already encoded once for every subscriber)."""
        if self.closing:
            return
        if self.server.faults.stream_active or self._reorder is not None:
            self._send_faulty(frame, symbol, wrong_checksum)
        else:
            self._write(frame)

    def _send_faulty(self, frame: bytes, symbol: str, wrong_checksum: Callable[[], bytes] | None) -> None:
        take = self.server.faults.take
        if take(VenueFaultKind.DROP, conn=self.id, symbol=symbol) is not None:
            self.dropped += 1
            return
        if wrong_checksum is not None and take(VenueFaultKind.CHECKSUM, conn=self.id, symbol=symbol) is not None:
            frame = wrong_checksum()
        if self._reorder is None and take(VenueFaultKind.REORDER, conn=self.id, symbol=symbol) is not None:
            self._reorder = frame
            return
        self._write(frame)
        if take(VenueFaultKind.DUPLICATE, conn=self.id, symbol=symbol) is not None:
            self._write(frame)
        if self._reorder is not None:
            held, self._reorder = self._reorder, None
            self._write(held)

    def _write(self, frame: bytes) -> None:
        if self.closing:
            return
        if self.transport.is_closing():  # the peer went away before our reader noticed
            self.abort()
            return
        self.transport.write(frame)
        self.sent += 1
        self.last_tx = time.monotonic()
        if self.transport.get_write_buffer_size() > MAX_SEND_BUFFER_BYTES:
            log.warning("%s connection %d: send buffer over %d bytes, dropping a slow client", self.server.dialect.venue, self.id, MAX_SEND_BUFFER_BYTES)
            self.abort()

    # -- closing

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the close handshake; the TCP connection ends when the client answers or after a timeout."""
        if self.closing:
            return
        self.transport.write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.closing = True
        self.server.dialect.on_close(self)
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (what a network failure looks like)."""
        if not self.closing:
            self.closing = True
            self.server.dialect.on_close(self)
        self.transport.close()

    # -- reading

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            await self._read_loop(reader)
        except FrameError as exc:
            self.close(exc.code, str(exc)[:100])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not self.closing:
                self.closing = True
                self.server.dialect.on_close(self)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        fragments: list[bytes] = []
        first_opcode = 0
        while True:
            opcode, fin, payload = await _read_frame(reader)
            self.last_rx = time.monotonic()
            if opcode == OP_CLOSE:
                self._on_close(payload)
                return
            if opcode == OP_PING:
                self._write(encode_frame(OP_PONG, payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CONTINUATION and not fragments:
                raise FrameError("continuation frame without a message to continue")
            if opcode != OP_CONTINUATION:
                if fragments:
                    raise FrameError(f"new data frame (opcode 0x{opcode:x}) inside a fragmented message")
                first_opcode = opcode
            fragments.append(payload)
            if sum(map(len, fragments)) > MAX_CLIENT_MESSAGE_BYTES:
                raise FrameError("message too big", code=CLOSE_TOO_BIG)
            if not fin:
                continue
            message, fragments = b"".join(fragments), []
            if self.closing:
                continue
            if first_opcode != OP_TEXT:
                raise FrameError("binary messages are not accepted, expected text", code=1003)
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError("text message is not utf-8", code=1007) from None
            self.server.dialect.on_text(self, text)

    def _on_close(self, payload: bytes) -> None:
        code, _ = parse_close(payload)
        if not self.closing:
            self.transport.write(encode_frame(OP_CLOSE, close_payload(code) if code not in (1005, 1006) else b""))
            self.closing = True
            self.server.dialect.on_close(self)
        self.transport.close()

    def to_json(self, now: float) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "port": self.port, "topics": sorted(self.topics), "age_s": round(now - self.created, 3), "sent": self.sent, "dropped": self.dropped}


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readexactly(2)
    fin, opcode, masked, length = parse_frame_head(head[0], head[1])
    if not masked:
        raise FrameError("client frame is not masked")
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    if length > MAX_CLIENT_MESSAGE_BYTES:
        raise FrameError(f"frame of {length} bytes, the limit is {MAX_CLIENT_MESSAGE_BYTES}", code=CLOSE_TOO_BIG)
    mask = await reader.readexactly(4)
    return opcode, fin, unmask(await reader.readexactly(length), mask)


class VenueServer:
    """One venue on its own port: REST, websocket, the model clock, housekeeping and faults."""

    def __init__(self, dialect: Dialect, *, faults: VenueFaultTable) -> None:
        self.dialect = dialect
        self.faults = faults
        self.conns: dict[int, VenueConn] = {}
        self.writers: set[asyncio.StreamWriter] = set()
        self.counters: dict[str, int] = {}
        self.port = 0
        self._next_id = 1
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started = time.monotonic()

    async def start(self, port: int, *, tls: ssl.SSLContext | None = None) -> int:
        self._server = await asyncio.start_server(self.handle, HOST, port, limit=READ_LIMIT_BYTES, ssl=tls)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._tasks = [asyncio.create_task(self._tick_loop()), asyncio.create_task(self._housekeeping_loop())]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns.values()):
            conn.abort()
        for writer in list(self.writers):
            drop(writer)
        deadline = time.monotonic() + CLOSE_ALL_TIMEOUT_S
        while self.writers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- faults that act at once

    def apply_fault(self, rule: VenueFault) -> None:
        if rule.kind is VenueFaultKind.DISCONNECT and rule.every_s is None:
            targets = [c for c in sorted(self.conns.values(), key=lambda c: c.id) if _targets(rule, c)]
            for conn in targets[: rule.count] if rule.count is not None else targets:
                conn.abort()
            self.faults.count(VenueFaultKind.DISCONNECT)
        else:
            self.faults.add(rule)

    # -- loops

    async def _tick_loop(self) -> None:
        start = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.dialect.tick((time.monotonic() - start) * 1000.0, int(time.time() * 1000))
            except Exception:  # a dialect bug must show, not silently stop the clock
                log.exception("%s simulator tick failed", self.dialect.venue)
                raise

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_S)
            now = time.monotonic()
            periodic = self.faults.periodic(VenueFaultKind.DISCONNECT)
            for conn in list(self.conns.values()):
                if conn.closing:
                    continue
                self.dialect.housekeeping(conn, now)
                for rule in periodic:
                    if not conn.closing and now - conn.created >= (rule.every_s or 0.0) and _targets(rule, conn):
                        self.faults.count(VenueFaultKind.DISCONNECT)
                        conn.abort()

    # -- HTTP

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or (HOST, 0)
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(sim_error(400, "request head too large").encode(keep_alive=False))
                    return
                req = await _request(reader, head, peer)
                if req.is_websocket:
                    await self._websocket(req, reader, writer)
                    return
                writer.write(self.rest(req).encode(keep_alive=req.keep_alive))
                if not req.keep_alive:
                    return
        except HttpError as exc:
            writer.write(sim_error(exc.status, str(exc)).encode(keep_alive=False))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def rest(self, req: Request) -> Response:
        if not req.path.startswith("/_sim/"):
            self.count("rest_requests")
            return self.dialect.rest(req)
        name = req.path[len("/_sim/") :]
        if name == "book":
            found = self.dialect.truth(req.query)
            return sim_error(404, found) if isinstance(found, str) else json_response(found)
        if name == "stats":
            return json_response(self.stats())
        if name == "connections":
            now = time.monotonic()
            return json_response({"connections": [c.to_json(now) for c in self.conns.values() if not c.closing]})
        if name == "faults":
            return self._faults(req)
        return sim_error(404, f"unknown path {req.path!r}")

    def _faults(self, req: Request) -> Response:
        if req.method == "DELETE":
            self.faults.clear()
        elif req.method == "POST":
            try:
                payload = orjson.loads(req.body or b"null")
                rules = [venue_fault_from_json(item) for item in (payload if isinstance(payload, list) else [payload])]
            except (orjson.JSONDecodeError, SimError) as exc:
                return sim_error(400, str(exc))
            for rule in rules:
                self.apply_fault(rule)
        elif req.method != "GET":
            return sim_error(405, f"method {req.method} not allowed on /_sim/faults, expected GET, POST or DELETE")
        return json_response({"faults": [r.to_json() for r in self.faults.rules()]})

    def stats(self) -> dict[str, object]:
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "connections": sum(1 for c in self.conns.values() if not c.closing),
            "frames_sent": sum(c.sent for c in self.conns.values()),
            "counters": dict(self.counters),
            "faults_fired": dict(self.faults.fired),
            **self.dialect.stats(),
        }

    async def _websocket(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        category = self.dialect.ws_category(req.path)
        key = req.headers.get("sec-websocket-key", "")
        if category is None:
            writer.write(sim_error(404, f"unknown websocket path {req.path!r}").encode(keep_alive=False))
            return
        if req.method != "GET" or req.headers.get("sec-websocket-version") != "13" or not key:
            writer.write(sim_error(400, "websocket upgrade needs GET, Sec-WebSocket-Version 13 and a key").encode(keep_alive=False))
            return
        # No Sec-WebSocket-Extensions in the answer: permessage-deflate is declined.
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode("latin-1"))
        conn = VenueConn(self, writer, cid=self._next_id, path=req.target, category=category, port=req.client_port)
        self._next_id += 1
        self.conns[conn.id] = conn
        self.count("ws_connections")
        self.dialect.on_open(conn)
        try:
            await conn.run(reader)
        finally:
            self.conns.pop(conn.id, None)


def _targets(rule: VenueFault, conn: VenueConn) -> bool:
    if rule.conn is not None and rule.conn != conn.id:
        return False
    return rule.symbol is None or any(same_symbol(rule.symbol, symbol) for symbol in conn.topics.values())


async def _request(reader: asyncio.StreamReader, head: bytes, peer: tuple[Any, ...]) -> Request:
    method, target, headers = parse_head(head)
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, f"content-length must be a number, found {length_text!r}")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"body of {length} bytes, the limit is {MAX_BODY_BYTES}")
    body = await reader.readexactly(length) if length else b""
    path, query = split_target(target)
    return Request(method, target, path, query, headers, body, str(peer[0]), int(peer[1]))
