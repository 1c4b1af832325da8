"""The OKX v5 simulator family: public order books on their own 127.0.0.1 port.

Written from OKX's documents (``shared/reference/exchanges.md`` section 2), not from any client:

- websocket ``/ws/v5/public``: ``{"id":"1","op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}``
  answered ``{"id":"1","event":"subscribe","arg":{...},"connId":"..."}`` per argument, then
  ``{"arg":{...},"action":"snapshot","data":[{"asks":[["8476.98","415","0","13"]],"bids":[...],
  "ts":"1597026383085","checksum":-855196043,"prevSeqId":-1,"seqId":123456}]}`` and ``"action":"update"``
  messages whose ``prevSeqId`` is the previous message's ``seqId`` (ids are not contiguous). Channels
  ``books`` (400 levels, 100 ms), ``books-l2-tbt`` (400, 10 ms), ``books50-l2-tbt`` (50, 10 ms); the
  channel keeps exactly its depth (levels that fall out are deleted with size ``"0"``). ``checksum``
  is the signed CRC32 of the top 25 interleaved ``bidPx:bidSz:askPx:askSz`` (0 with
  ``okx_checksum=False``, as production since 2026-06-23). Errors: ``60012`` (invalid request),
  ``60018`` (unknown channel or instId), ``60014`` (more than 480 subscribe / unsubscribe requests an
  hour). Text ``ping`` is answered ``pong``; a connection with nothing pushed for 30 s is closed.
  With no depth change for 60 s a channel sends an empty update with ``prevSeqId == seqId``.
  Other public channels of a listed instId (``tickers``, ``trades``, ...) are acknowledged and silent.
- REST ``/api/v5/market/books?instId=&sz=`` (``seqId`` included) and
  ``/api/v5/public/instruments?instType=SPOT|SWAP|FUTURES``.
- ``/_sim/book?symbol=INSTID&update_id=SEQID&limit=N``: the exact book after the message with that
  ``seqId`` (any recent one: the model's history; every message of a replay).

Login is not served: ``books-l2-tbt`` and ``books50-l2-tbt`` need none here. Markets are model ones
(``SimConfig.okx_symbols``) or replays of a genuine recording (``ldc.sim.venue_replay``).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from ldc.sim.config import SimConfig
from ldc.sim.httpmsg import Request, Response
from ldc.sim.venue_book import DepthView, Levels, ModelBook, ModelClock, NumberFormat, VenueSpec, base_price_units, truth_json, window_closed
from ldc.sim.venue_faults import VenueFaultKind, VenueFaultTable
from ldc.sim.venue_transport import VenueConn, int_params, json_response
from ldc.sim.wsframes import CLOSE_NORMAL, text_frame

WS_PATH = "/ws/v5/public"
CHANNELS = {"books": (400, 100), "books-l2-tbt": (400, 10), "books50-l2-tbt": (50, 10)}  # depth, interval ms
CHECKSUM_LEVELS = 25
IDLE_TIMEOUT_S = 30.0  # nothing pushed for this long: OKX closes the connection
MAX_OPS_PER_HOUR = 480  # subscribe / unsubscribe / login requests per connection
REST_MAX_SZ = 400
MODEL_DEPTH_LEVELS = 700  # the model keeps more than 400 so levels move in and out of the channels
SNAPSHOT_PREV_SEQ_ID = -1
INST_TYPES = ("SPOT", "SWAP", "FUTURES")  # the types model markets have
UNLISTED_INST_TYPES = ("MARGIN", "OPTION")  # documented types the simulator lists no instrument of
FAMILY_REQUIRED_INST_TYPES = ("OPTION",)  # OKX requires uly or instFamily for these
# Other public channels of a listed instrument: acknowledged and silent, so a peer's client that also
# asks for them still gets its books (as the Binance simulator does with its other stream types).
SILENT_CHANNELS = frozenset(("tickers", "trades", "trades-all", "mark-price", "index-tickers", "funding-rate", "open-interest", "price-limit"))


def okx_checksum(bids: Levels, asks: Levels) -> int:
    """CRC32 of the top 25 levels, bid and ask interleaved, ``price:size`` as sent, as a signed int32."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def inst_type_of(inst_id: str) -> str | None:
    """SPOT ``BTC-USDT``, SWAP ``BTC-USDT-SWAP``, FUTURES ``BTC-USD-250926``; None for anything else."""
    parts = inst_id.split("-")
    if len(parts) == 2 and all(p.isalnum() for p in parts):
        return "SPOT"
    if len(parts) == 3 and parts[2] == "SWAP":
        return "SWAP"
    if len(parts) == 3 and len(parts[2]) == 6 and parts[2].isdigit():
        return "FUTURES"
    return None


def book_message(channel: str, inst_id: str, action: str, bids: Levels, asks: Levels, *, ts_ms: int, checksum: int, prev_seq: int, seq: int) -> bytes:
    data = {"asks": asks, "bids": bids, "ts": str(ts_ms), "checksum": checksum, "prevSeqId": prev_seq, "seqId": seq}
    return orjson.dumps({"arg": {"channel": channel, "instId": inst_id}, "action": action, "data": [data]})


class OkxMarket(Protocol):
    inst_id: str
    inst_type: str

    def channels_served(self) -> tuple[str, ...]: ...

    def subscribe(self, conn: VenueConn, channel: str) -> None: ...

    def unsubscribe(self, conn: VenueConn, channel: str) -> None: ...

    def flush(self, sim_ms: float, now_ms: int, closed: set[int]) -> None: ...

    def rest_book(self, sz: int, behind: int) -> dict[str, object]: ...

    def truth(self, seq: int | None, limit: int | None) -> dict[str, object] | None: ...

    def instrument(self) -> dict[str, str]: ...

    def stats(self) -> dict[str, object]: ...


@dataclass(slots=True)
class _Channel:
    name: str
    view: DepthView
    interval_ms: int
    subscribers: dict[VenueConn, None] = field(default_factory=dict)  # ordered: fan-out in join order
    last_seq: int = 0
    last_model_id: int = 0
    last_sent_s: float = 0.0


def okx_spec(inst_id: str, inst_type: str) -> VenueSpec:
    """Prices trimmed of trailing zeros, sizes in base currency (SPOT) or contracts (SWAP, FUTURES)."""
    price_decimals = 1 if inst_id.startswith("BTC") else 2 if inst_id.startswith("ETH") else 3
    if inst_type == "SPOT":
        qty, lot = NumberFormat(8, True), 10**4
    elif inst_type == "SWAP":
        qty, lot = NumberFormat(2, True), 1
    else:
        qty, lot = NumberFormat(0, True), 1
    base = base_price_units(inst_id, 0, price_decimals)
    return VenueSpec(
        symbol=inst_id, key=f"okx/{inst_id}", price=NumberFormat(price_decimals, True), tick_units=1, qty=qty, lot_units=lot,
        base_ticks=base, depth_levels=MODEL_DEPTH_LEVELS,
    )  # fmt: skip


class OkxModelMarket:
    """A model market. ``seqId`` is the model's change id minus an offset a reset fault raises."""

    def __init__(self, inst_id: str, inst_type: str, *, config: SimConfig, faults: VenueFaultTable) -> None:
        self.inst_id = inst_id
        self.inst_type = inst_type
        self.spec = okx_spec(inst_id, inst_type)
        self.book = ModelBook(self.spec, seed=config.seed, history_events=config.history_events)
        self.faults = faults
        self.checksums = config.okx_checksum
        self.ws_snapshot = config.okx_ws_snapshot
        self.no_change_update_s = config.okx_no_change_update_s
        self.channels: dict[str, _Channel] = {}
        self._offset = 0
        self._epochs: list[tuple[int, int]] = [(self.book.model.initial_id, 0)]  # (first model id, offset)
        self.sent = 0

    def channels_served(self) -> tuple[str, ...]:
        return tuple(CHANNELS)

    def step_model(self, changes: int) -> None:
        event = self.book.model.step(changes, spread=True)
        for ch in self.channels.values():
            ch.view.note(event.changes)

    def seq_of(self, model_id: int) -> int:
        return model_id - self._offset

    def model_id_of(self, seq: int) -> int | None:
        for first, offset in reversed(self._epochs):  # after a reset, ids may repeat: the newest wins
            model_id = seq + offset
            if first <= model_id <= self.book.model.last_id:
                return model_id
        return None

    # -- subscribers

    def subscribe(self, conn: VenueConn, channel: str) -> None:
        ch = self.channels.get(channel)
        model = self.book.model
        if ch is None:
            depth, interval = CHANNELS[channel]
            ch = self.channels[channel] = _Channel(channel, DepthView(depth, resend_touched=True), interval, last_sent_s=time.monotonic())
            ch.view.refresh(model)
            ch.last_model_id, ch.last_seq = model.last_id, self.seq_of(model.last_id)
        ch.subscribers[conn] = None
        if not self.ws_snapshot:
            return
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, conn=conn.id, symbol=self.inst_id)
        if stale is not None:
            model_id = self.book.stale_id(stale.behind)
            levels = self.book.levels_at(model_id, ch.view.depth)
            if levels is not None:
                self._send_snapshot(conn, ch, self.book.strings(levels[0]), self.book.strings(levels[1]), self.seq_of(model_id))
                return
        bids, asks = ch.view.levels()
        self._send_snapshot(conn, ch, self.book.strings(bids), self.book.strings(asks), ch.last_seq)

    def _send_snapshot(self, conn: VenueConn, ch: _Channel, bids: Levels, asks: Levels, seq: int) -> None:
        checksum = okx_checksum(bids, asks) if self.checksums else 0
        bids4, asks4 = [self._level4(lvl) for lvl in bids], [self._level4(lvl) for lvl in asks]
        raw = book_message(ch.name, self.inst_id, "snapshot", bids4, asks4, ts_ms=int(time.time() * 1000), checksum=checksum, prev_seq=SNAPSHOT_PREV_SEQ_ID, seq=seq)
        conn.send_book(text_frame(raw), self.inst_id)

    @staticmethod
    def _level4(level: list[str]) -> list[str]:
        """``[px, sz, "0", numOrders]``: the order count is made up (the book does not keep orders)."""
        size = level[1]
        return [level[0], size, "0", "0" if size == "0" else str(1 + sum(map(ord, size)) % 9)]

    def unsubscribe(self, conn: VenueConn, channel: str) -> None:
        ch = self.channels.get(channel)
        if ch is not None:
            ch.subscribers.pop(conn, None)
            if not ch.subscribers:
                del self.channels[channel]

    # -- publishing

    def flush(self, sim_ms: float, now_ms: int, closed: set[int]) -> None:
        if self.faults.take(VenueFaultKind.RESET, symbol=self.inst_id) is not None:
            self._reset()
        now = time.monotonic()
        for ch in list(self.channels.values()):
            if ch.interval_ms in closed:
                self._flush_channel(ch, now_ms, now)

    def _reset(self) -> None:
        """OKX maintenance: the next ``seqId`` is lower than its ``prevSeqId``; the book is unchanged."""
        model_id = self.book.model.last_id
        self._offset = model_id - max(1, self.seq_of(model_id) // 2)
        self._epochs.append((model_id, self._offset))
        for ch in self.channels.values():
            ch.last_model_id = -1  # every channel sends its next (possibly empty) update in the new epoch

    def _flush_channel(self, ch: _Channel, now_ms: int, now: float) -> None:
        model = self.book.model
        if model.last_id != ch.last_model_id:
            bids, asks = ch.view.refresh(model)
            ch.last_model_id = model.last_id
            seq = self.seq_of(model.last_id)
            if bids or asks or seq < ch.last_seq:  # a reset is sent even when nothing moved
                self._publish(ch, self.book.strings(bids), self.book.strings(asks), seq, now_ms, now)
                return
        if now - ch.last_sent_s >= self.no_change_update_s:
            self._publish(ch, [], [], ch.last_seq, now_ms, now)  # OKX's keep-alive: prevSeqId == seqId

    def _publish(self, ch: _Channel, bids: Levels, asks: Levels, seq: int, now_ms: int, now: float) -> None:
        top_bids, top_asks = self.book.model.top(CHECKSUM_LEVELS)
        checksum = okx_checksum(self.book.strings(top_bids), self.book.strings(top_asks)) if self.checksums else 0
        bids4, asks4 = [self._level4(lvl) for lvl in bids], [self._level4(lvl) for lvl in asks]
        prev = ch.last_seq

        def encode(value: int) -> bytes:
            return text_frame(book_message(ch.name, self.inst_id, "update", bids4, asks4, ts_ms=now_ms, checksum=value, prev_seq=prev, seq=seq))

        frame = encode(checksum)
        ch.last_seq, ch.last_sent_s = seq, now
        self.sent += 1
        for conn in list(ch.subscribers):
            conn.send_book(frame, self.inst_id, lambda: encode(wrong_checksum(checksum)))

    # -- REST and truth

    def rest_book(self, sz: int, behind: int) -> dict[str, object]:
        model_id = self.book.stale_id(behind) if behind > 0 else self.book.model.last_id
        levels = self.book.levels_at(model_id, sz) or self.book.model.top(sz)
        bids, asks = self.book.strings(levels[0]), self.book.strings(levels[1])
        return {"asks": [self._level4(x) for x in asks], "bids": [self._level4(x) for x in bids], "ts": str(int(time.time() * 1000)), "seqId": self.seq_of(model_id)}

    def truth(self, seq: int | None, limit: int | None) -> dict[str, object] | None:
        model_id = self.book.model.last_id if seq is None else self.model_id_of(seq)
        if model_id is None:
            return None
        levels = self.book.levels_at(model_id, limit if limit is not None else REST_MAX_SZ)
        if levels is None:
            return None
        return truth_json(self.inst_id, self.seq_of(model_id) if seq is None else seq, self.book.strings(levels[0]), self.book.strings(levels[1]))

    def instrument(self) -> dict[str, str]:
        return instrument_entry(self.inst_id, self.inst_type, tick=self.spec.tick_size, lot=self.spec.lot_size)

    def stats(self) -> dict[str, object]:
        m = self.book.model
        return {"kind": "model", "events": m.events, "seqId": self.seq_of(m.last_id), "messages": self.sent, "channels": sorted(self.channels)}


def wrong_checksum(checksum: int) -> int:
    """A checksum that cannot match (kept within the signed 32-bit range)."""
    return checksum + 1 if checksum < (1 << 31) - 1 else checksum - 1


def instrument_entry(inst_id: str, inst_type: str, *, tick: str, lot: str) -> dict[str, str]:
    """An ``/api/v5/public/instruments`` entry with the fields OKX documents."""
    parts = inst_id.split("-")
    entry = {
        "instType": inst_type, "instId": inst_id, "uly": "", "instFamily": "", "baseCcy": "", "quoteCcy": "",
        "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "ctType": "", "alias": "", "listTime": "1548133413000",
        "expTime": "", "lever": "10", "tickSz": tick, "lotSz": lot, "minSz": lot, "state": "live",
    }  # fmt: skip
    if inst_type == "SPOT":
        entry.update(baseCcy=parts[0], quoteCcy=parts[1])
        return entry
    family = f"{parts[0]}-{parts[1]}"
    inverse = parts[1] == "USD"
    entry.update(uly=family, instFamily=family, settleCcy=parts[0] if inverse else parts[1], ctMult="1", lever="100")
    entry.update(ctVal="100" if inverse else "0.01", ctValCcy="USD" if inverse else parts[0], ctType="inverse" if inverse else "linear")
    if inst_type == "FUTURES":
        entry.update(alias="quarter", expTime="1758873600000")
    return entry


class OkxDialect:
    """OKX's protocol over :class:`ldc.sim.venue_transport.VenueServer`."""

    venue = "okx"

    def __init__(self, config: SimConfig, faults: VenueFaultTable, markets: list[OkxMarket]) -> None:
        self.config = config
        self.faults = faults
        self.markets: dict[str, OkxMarket] = {m.inst_id: m for m in markets}
        self.model_markets = [m for m in markets if isinstance(m, OkxModelMarket)]
        self.clock = ModelClock(rate=config.rate, speed=config.speed, changes_per_event=config.changes_per_event)
        self._windows: dict[int, int] = {}
        self.idle_timeout_s = config.okx_idle_s

    # -- clock

    def tick(self, sim_ms: float, now_ms: int) -> None:
        self.clock.advance(sim_ms, self.model_markets)
        closed = {interval for _, interval in CHANNELS.values() if window_closed(self._windows, interval, self.clock.sim_ms)}
        for market in self.markets.values():  # every tick: a reset fault acts even between windows
            market.flush(self.clock.sim_ms, now_ms, closed)

    def housekeeping(self, conn: VenueConn, now: float) -> None:
        if now - conn.last_tx >= self.idle_timeout_s:
            conn.close(CLOSE_NORMAL, f"no data pushed for {self.idle_timeout_s:g} s")

    # -- websocket

    def ws_category(self, path: str) -> str | None:
        return "public" if path.rstrip("/") == WS_PATH else None

    def on_open(self, conn: VenueConn) -> None:
        pass

    def on_close(self, conn: VenueConn) -> None:
        for name, inst_id in list(conn.topics.items()):
            market, channel = self.markets.get(inst_id), name.partition(":")[0]
            if market is not None and channel in CHANNELS:
                market.unsubscribe(conn, channel)
        conn.topics.clear()

    def on_text(self, conn: VenueConn, text: str) -> None:
        if text == "ping":
            conn.send_text(b"pong")
            return
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(conn, None, "60012", f"Invalid request: {text[:200]}")
            return
        req_id = msg.get("id") if isinstance(msg, dict) else None
        op = msg.get("op") if isinstance(msg, dict) else None
        args = msg.get("args") if isinstance(msg, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            self._error(conn, req_id, "60012", f"Invalid request: {text[:200]}")
            return
        now = time.monotonic()
        conn.ops = [t for t in conn.ops if now - t < 3600.0] + [now]
        if len(conn.ops) > MAX_OPS_PER_HOUR:
            self._error(conn, req_id, "60014", "Requests too frequent.")
            return
        for arg in args:
            self._one(conn, str(op), arg, req_id)

    def _one(self, conn: VenueConn, op: str, arg: object, req_id: object) -> None:
        if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str) or not isinstance(arg.get("instId"), str):
            self._error(conn, req_id, "60012", f"Invalid request: {orjson.dumps(arg).decode()[:200]}")
            return
        channel, inst_id = arg["channel"], arg["instId"]
        market = self.markets.get(inst_id)
        if market is None or (channel not in market.channels_served() and channel not in SILENT_CHANNELS):
            msg = f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct URL, channel and parameters referring to API document."
            self._error(conn, req_id, "60018", msg)
            return
        ack: dict[str, object] = {"event": op, "arg": {"channel": channel, "instId": inst_id}, "connId": conn_id(conn)}
        if req_id is not None:
            ack = {"id": req_id, **ack}
        conn.send_text(orjson.dumps(ack))
        topic, book = f"{channel}:{inst_id}", channel in CHANNELS
        if op == "subscribe" and topic not in conn.topics:
            conn.topics[topic] = inst_id
            if book:
                market.subscribe(conn, channel)
        elif op == "unsubscribe" and conn.topics.pop(topic, None) is not None and book:
            market.unsubscribe(conn, channel)

    @staticmethod
    def _error(conn: VenueConn, req_id: object, code: str, msg: str) -> None:
        body: dict[str, object] = {"event": "error", "code": code, "msg": msg, "connId": conn_id(conn)}
        conn.send_text(orjson.dumps({"id": req_id, **body} if req_id is not None else body))

    # -- REST

    def rest(self, req: Request) -> Response:
        if req.method != "GET":
            return _okx_error(405, "50000", f"method {req.method} not allowed, expected GET")
        if req.path == "/api/v5/market/books":
            return self._books(req)
        if req.path == "/api/v5/public/instruments":
            return self._instruments(req)
        return _okx_error(404, "50000", f"unknown path {req.path!r}")

    def _books(self, req: Request) -> Response:
        inst_id = req.query.get("instId", "")
        if not inst_id:
            return _okx_error(400, "50014", "Parameter instId can not be empty.")
        market = self.markets.get(inst_id)
        if market is None:
            return _okx_error(200, "51001", "Instrument ID does not exist.")
        sz_text = req.query.get("sz", "1")
        if not sz_text.isdigit() or not 1 <= int(sz_text) <= REST_MAX_SZ:
            return _okx_error(400, "51000", f"Parameter sz error: expected 1..{REST_MAX_SZ}, found {sz_text!r}")
        failing = self.faults.take(VenueFaultKind.REST_ERROR, symbol=inst_id)
        if failing is not None:
            return _okx_error(failing.status, "50001", "Service temporarily unavailable. Please try again later.")
        stale = self.faults.take(VenueFaultKind.STALE_SNAPSHOT, symbol=inst_id)
        return json_response({"code": "0", "msg": "", "data": [market.rest_book(int(sz_text), stale.behind if stale else 0)]})

    def _instruments(self, req: Request) -> Response:
        inst_type = req.query.get("instType", "")
        if not inst_type:
            return _okx_error(400, "50014", "Parameter instType can not be empty.")
        if inst_type in FAMILY_REQUIRED_INST_TYPES and not (req.query.get("uly") or req.query.get("instFamily")):
            return _okx_error(400, "50014", f"Parameter instFamily can not be empty for instType {inst_type}.")
        if inst_type in UNLISTED_INST_TYPES:
            return json_response({"code": "0", "msg": "", "data": []})
        if inst_type not in INST_TYPES:
            known = ", ".join(INST_TYPES + UNLISTED_INST_TYPES)
            return _okx_error(400, "51000", f"Parameter instType error: expected one of {known}, found {inst_type!r}")
        failing = self.faults.take(VenueFaultKind.REST_ERROR)
        if failing is not None:
            return _okx_error(failing.status, "50001", "Service temporarily unavailable. Please try again later.")
        return json_response({"code": "0", "msg": "", "data": [m.instrument() for m in self.markets.values() if m.inst_type == inst_type]})

    # -- private

    def truth(self, query: dict[str, str]) -> dict[str, object] | str:
        inst_id = query.get("symbol", "").upper()
        market = self.markets.get(inst_id)
        if market is None:
            return f"unknown instId {inst_id!r}, expected one of {sorted(self.markets)}"
        params = int_params(query, "update_id", "limit")
        if isinstance(params, str):
            return params
        seq, limit = params
        book = market.truth(seq, limit)
        return book if book is not None else f"seqId {seq} is outside the kept history of {inst_id}"

    def stats(self) -> dict[str, object]:
        return {"sim_ms": round(self.clock.sim_ms, 1), "markets": {k: m.stats() for k, m in self.markets.items()}}


def conn_id(conn: VenueConn) -> str:
    return f"{conn.id:08x}"


def _okx_error(status: int, code: str, msg: str) -> Response:
    return json_response({"code": code, "msg": msg, "data": []}, status)
