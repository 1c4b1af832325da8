"""The asyncio server: one port for REST and websocket (HTTP Upgrade), the model clock, housekeeping."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ldc.sim.config import SimConfig
from ldc.sim.context import Queued
from ldc.sim.exchange import Exchange, ModelMarket
from ldc.sim.faults import FaultKind, FaultRule, FaultTable
from ldc.sim.httpmsg import MAX_BODY_BYTES, HttpError, Request, Response, parse_head, split_target
from ldc.sim.markets import Family, make_spec
from ldc.sim.rest import RestApi, error
from ldc.sim.session import Route, Session
from ldc.sim.tls import drop
from ldc.sim.streams import HOST_PREFIXES, path_stream_names
from ldc.sim.wsframes import CLOSE_GOING_AWAY, accept_key

log = logging.getLogger("ldc.sim")

HOST = "127.0.0.1"  # never anything else: nothing here may reach beyond the loopback
MODEL_TICK_S = 0.005
HOUSEKEEPING_TICK_S = 0.05
CLOSE_ALL_TIMEOUT_S = 2.0
FAMILY_PREFIXES = {"spot": Family.SPOT, "usdm": Family.USDM, "coinm": Family.COINM, **HOST_PREFIXES}


class ServerState:
    """Everything the connections share. Lives on the simulator's event loop. The REST API and each session
    see it only through the narrow contexts of ``ldc.sim.context`` (``RestContext``, ``SessionContext``)."""

    def __init__(self, config: SimConfig) -> None:
        from ldc.sim.weights import WeightLimiter

        self.config = config
        self.faults = FaultTable(seed=config.seed)
        self.exchange = Exchange(rate=config.rate, changes_per_event=config.changes_per_event, speed=config.speed, faults=self.faults)
        self.limiter = WeightLimiter(config.weights)
        self.sessions: dict[int, Session] = {}
        self.counters: dict[str, int] = {}
        self.pending_output: list[Queued] = []  # sessions with frames queued this tick
        self.writers: set[asyncio.StreamWriter] = set()
        self.rest = RestApi(self)
        self._next_id = 1
        self.started = time.monotonic()
        for family, symbols in ((Family.SPOT, config.spot_symbols), (Family.USDM, config.usdm_symbols), (Family.COINM, config.coinm_symbols)):
            for symbol in symbols:
                spec = make_spec(symbol, family, seed=config.seed)
                self.exchange.add_market(ModelMarket(spec, seed=config.seed, history_events=config.history_events))
        if config.replay:
            from ldc.sim.replay import load_replays

            for market in load_replays(config.replay, copies=config.replay_copies, pace=config.replay_pace):
                self.exchange.add_market(market)
        for rule in config.faults:
            self.faults.add(rule)

    # -- faults that act at once

    def apply_fault(self, rule: FaultRule) -> None:
        if rule.kind is FaultKind.DISCONNECT and rule.every_s is None:
            for session in self._matching(rule):
                session.abort()
            self.faults.fired["disconnect"] = self.faults.fired.get("disconnect", 0) + 1
        elif rule.kind is FaultKind.SHUTDOWN:
            grace_s = (rule.ms or 500) / 1000.0
            loop = asyncio.get_running_loop()
            for session in self._matching(rule):
                session.send_shutdown()
                loop.call_later(grace_s, session.close, CLOSE_GOING_AWAY, "server shutdown")
            self.faults.fired["shutdown"] = self.faults.fired.get("shutdown", 0) + 1
        else:
            self.faults.add(rule)

    def _matching(self, rule: FaultRule) -> list[Session]:
        found = []
        for session in sorted(self.sessions.values(), key=lambda s: s.id):
            if session.closing or (rule.conn is not None and rule.conn != session.id) or (rule.port is not None and rule.port != session.port):
                continue
            if rule.symbol is not None and all(k.symbol != rule.symbol for k in session.streams.values()):
                continue
            found.append(session)
        return found[: rule.count] if rule.count is not None else found

    # -- reporting

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "uptime_s": round(now - self.started, 3),
            "sim_ms": round(self.exchange.sim_ms, 1),
            "events": self.exchange.events,
            "connections": sum(1 for s in self.sessions.values() if not s.closing),
            "frames_sent": sum(s.sent for s in self.sessions.values()),
            "counters": dict(self.counters),
            "faults_fired": dict(self.faults.fired),
            "markets": {f"{f.value}:{s}": m.stats() for (f, s), m in self.exchange.markets.items()},
        }

    def connections_json(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [s.to_json(now) for s in self.sessions.values() if not s.closing]

    # -- background loops

    async def model_loop(self) -> None:
        start = time.monotonic()
        while True:
            await asyncio.sleep(MODEL_TICK_S)
            self.exchange.advance(time.monotonic() - start, int(time.time() * 1000))
            self.flush_output()

    def queue_output(self, session: Queued) -> None:
        self.pending_output.append(session)

    def flush_output(self) -> None:
        pending, self.pending_output = self.pending_output, []
        for session in pending:
            session.flush_output()

    async def housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_S)
            now = time.monotonic()
            periodic = self.faults.periodic(FaultKind.DISCONNECT)
            for session in list(self.sessions.values()):
                session.housekeeping(now)
                for rule in periodic:
                    if not session.closing and now - session.created >= (rule.every_s or 0) and _targets(rule, session):
                        self.faults.fired["disconnect"] = self.faults.fired.get("disconnect", 0) + 1
                        session.abort()

    # -- connections

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
                    writer.write(error(400, -1000, "request head too large").encode(keep_alive=False))
                    return
                req = self._request(head, await self._body(reader, head), peer)
                if req.is_websocket:
                    await self._websocket(req, reader, writer)
                    return
                response = self.rest.handle(req)
                if response.delay_s > 0:
                    await asyncio.sleep(response.delay_s)
                writer.write(response.encode(keep_alive=req.keep_alive))
                if not req.keep_alive:
                    return
        except HttpError as exc:
            writer.write(error(exc.status, -1000, str(exc)).encode(keep_alive=False))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def close_all(self) -> None:
        """Drop every connection and let their handlers finish (no task is left to be cancelled)."""
        for session in list(self.sessions.values()):
            session.abort()
        for writer in list(self.writers):
            drop(writer)
        deadline = time.monotonic() + CLOSE_ALL_TIMEOUT_S
        while self.writers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    @staticmethod
    async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
        _, _, headers = parse_head(head)
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise HttpError(400, f"content-length must be a number, found {length_text!r}")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"body of {length} bytes, the limit is {MAX_BODY_BYTES}")
        return await reader.readexactly(length) if length else b""

    @staticmethod
    def _request(head: bytes, body: bytes, peer: tuple[Any, ...]) -> Request:
        method, target, headers = parse_head(head)
        path, query = split_target(target)
        return Request(method, target, path, query, headers, body, str(peer[0]), int(peer[1]))

    async def _websocket(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        routed = route_ws(req)
        if isinstance(routed, Response):
            writer.write(routed.encode(keep_alive=False))
            return
        route, combined, names = routed
        key = req.headers.get("sec-websocket-key", "")
        if req.method != "GET" or req.headers.get("sec-websocket-version") != "13" or not key:
            writer.write(error(400, -1000, "websocket upgrade needs GET, Sec-WebSocket-Version 13 and a key").encode(keep_alive=False))
            return
        session = Session(self, writer, sid=self._next_id, combined=combined, route=route, path=req.target, port=req.client_port)
        problem = session.subscribe(names) if names else None
        if problem is not None:
            writer.write(error(400, -1121, problem).encode(keep_alive=False))
            return
        self._next_id += 1
        # No Sec-WebSocket-Extensions in the answer: permessage-deflate is declined.
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode("latin-1")
        )
        self.sessions[session.id] = session
        self.counters["ws_connections"] = self.counters.get("ws_connections", 0) + 1
        try:
            await session.run(reader)
        finally:
            self.sessions.pop(session.id, None)


def _targets(rule: FaultRule, session: Session) -> bool:
    if rule.conn is not None and rule.conn != session.id:
        return False
    if rule.port is not None and rule.port != session.port:
        return False
    return rule.symbol is None or any(k.symbol == rule.symbol for k in session.streams.values())


def route_ws(req: Request) -> tuple[Route, bool, list[str]] | Response:
    """``[/spot|/usdm|/coinm][/public|/market](/ws[/s1/s2...] | /stream?streams=s1/s2...)``."""
    parts = [p for p in req.path.split("/")]
    family: Family | None = None
    public = False
    i = 1
    if i < len(parts) and parts[i] in FAMILY_PREFIXES:
        family = FAMILY_PREFIXES[parts[i]]
        i += 1
    if i < len(parts) and parts[i] in ("public", "market"):
        public = True
        i += 1
    if i >= len(parts) or parts[i] not in ("ws", "stream"):
        return error(404, -1000, f"unknown websocket path {req.path!r}")
    combined = parts[i] == "stream"
    if combined:
        names = [n for n in req.query.get("streams", "").split("/") if n]
    else:
        names = path_stream_names(parts[i + 1 :])
    return Route(family=family, public=public), combined, names
