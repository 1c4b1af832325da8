"""Replay of genuine OKX and Bybit recordings (``shared/data/venues``) through the simulator families.

A recording is gzip (or plain) JSON lines: ``{"t":"header","exchange":"OKX"|"BYBIT",...}`` first, then
``connect`` / ``send`` / ``recv`` / ``http`` lines (``shared/data/venues/README.md``). :func:`recording_venue`
reads the header, so ``ldc sim --replay FILE`` sends OKX and Bybit files here and Binance captures to
``ldc.sim.replay``.

- OKX (``books``): the 2022 recording predates ``seqId`` / ``prevSeqId``; each message is given a
  ``seqId`` (steps of 1 to 16, derived from the instId: not contiguous, as live) and the previous one as
  ``prevSeqId`` (-1 on the snapshot). Levels, sizes and every recorded ``checksum`` are sent unchanged,
  so every checksum stays valid.
- Bybit (``orderbook.200`` and the other recorded topics, ``tickers`` included): recorded messages are
  sent byte for byte on the category's path (linear or spot, from the connection's address), ``u`` and
  ``seq`` as recorded.
- HTX (``market.SYM.depth.step0`` on ``/ws``): each whole book is sent as the recorded gzip frame;
  ``/_sim/book`` answers by the recorded ``version`` with the numbers' recorded text (``9.121E-7``).

Faults on replays: drop, duplicate, reorder, disconnect, checksum (OKX) and REST ones act; ``reset`` and a
stale websocket snapshot do not (the recorded ids are served as they are).

One timeline per market starts when its first client subscribes and runs at the recorded pace, a
multiple of it (``"x10"``) or as fast as it can be written (``"client"``). A client subscribing after
the start first gets a snapshot of the book at that point (recorded strings; OKX's checksum computed
from them), then the recorded messages. ``/_sim/book`` answers the book after any message by its
``seqId`` (OKX) or ``u`` (Bybit).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json as stdjson
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ldc.errors import SimError
from ldc.sim.bybit import book_message as bybit_book_message
from ldc.sim.bybit import instrument_entry as bybit_instrument_entry
from ldc.sim.okx import book_message as okx_book_message
from ldc.sim.okx import inst_type_of, instrument_entry, okx_checksum, wrong_checksum
from ldc.sim.venue_book import BookMessage, ReplayBooks, truth_json
from ldc.sim.venue_transport import VenueConn
from ldc.sim.wsframes import OP_BINARY, encode_frame, text_frame

VENUES = {"OKX": "okx", "BYBIT": "bybit", "HUOBI": "htx", "HTX": "htx", "KRAKEN": "kraken", "COINBASE": "coinbase"}
OKX_SEQ_BASE = 10**9
OKX_MAX_SEQ_STEP = 16
CLIENT_PACE_BACKLOG_BYTES = 256 * 1024  # pace "client": wait while a subscriber has this much unsent
CLIENT_PACE_POLL_S = 0.0005  # how often a waiting client-paced timeline looks at the backlog again


@dataclass(slots=True)
class Recording:
    venue: str
    path: str
    http: list[tuple[str, str]] = field(default_factory=list)  # (url, body)
    addresses: dict[str, str] = field(default_factory=dict)  # conn -> websocket address
    received: list[tuple[str, float, str]] = field(default_factory=list)  # (conn, ts, text) in file order
    binary: dict[int, bytes] = field(default_factory=dict)  # index in received -> the frame as recorded (HTX gzip)


def _open_lines(path: str) -> list[bytes]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SimError(f"cannot read recording {path!r}: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.splitlines()


def recording_venue(path: str) -> str | None:
    """"okx" or "bybit" when ``path`` is a venue recording (by its header line), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener: Any = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            first = fh.readline(64 * 1024)
        header = orjson.loads(first)
    except (OSError, EOFError, orjson.JSONDecodeError, gzip.BadGzipFile):
        return None
    if not isinstance(header, dict) or header.get("t") != "header":
        return None
    return VENUES.get(str(header.get("exchange", "")).upper())


def read_recording(path: str) -> Recording:
    venue = recording_venue(path)
    if venue is None:
        raise SimError(f"{path!r} is not a venue recording: expected a first line {{\"t\":\"header\",\"exchange\":...}} naming one of {sorted(VENUES)}")
    rec = Recording(venue, path)
    for number, line in enumerate(_open_lines(path)[1:], start=2):
        try:
            item = orjson.loads(line)
            kind = item["t"]
            if kind == "http":
                rec.http.append((str(item["url"]), str(item["data"])))
            elif kind == "connect":
                rec.addresses[str(item["conn"])] = str(item.get("addr", ""))
            elif kind == "recv" and "data" in item:
                rec.received.append((str(item["conn"]), float(item["ts"]), str(item["data"])))
            elif kind == "recv" and "b64" in item:
                frame = base64.b64decode(item["b64"], validate=True)
                rec.binary[len(rec.received)] = frame
                rec.received.append((str(item["conn"]), float(item["ts"]), gzip.decompress(frame).decode()))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OSError, EOFError) as exc:
            raise SimError(f"{path}:{number}: expected a recording line with t, conn, ts and data, found {line[:80]!r} ({exc})") from None
    return rec


def parse_pace(pace: str) -> float | None:
    """"recorded" -> 1.0, "xF" -> F, "client" -> None (as fast as the sockets take it)."""
    if pace == "recorded":
        return 1.0
    if pace == "client":
        return None
    if pace.startswith("x"):
        try:
            factor = float(pace[1:])
        except ValueError:
            factor = 0.0
        if factor > 0:
            return factor
    raise SimError(f"replay pace must be 'recorded', 'client' or xF with F > 0, found {pace!r}")


class Timeline:
    """Sends a market's recorded messages from its first subscription on, at the chosen pace."""

    def __init__(self, times: list[float], pace: float | None, send: Any) -> None:
        self.times = times
        self.pace = pace
        self._send = send
        self.position = 0  # messages sent
        self.backlogged: Any = lambda: False  # pace "client": a subscriber still has much to read
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        start, first = time.monotonic(), (self.times[0] if self.times else 0.0)
        while self.position < len(self.times):
            if self.pace is not None:
                due = start + (self.times[self.position] - first) / self.pace
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            else:  # as fast as the slowest subscriber reads
                await asyncio.sleep(0)
                while self.backlogged():
                    await asyncio.sleep(CLIENT_PACE_POLL_S)
            index = self.position
            self.position += 1
            self._send(index)


def backlogged(subscribers: dict[VenueConn, None]) -> bool:
    return any(conn.transport.get_write_buffer_size() > CLIENT_PACE_BACKLOG_BYTES for conn in subscribers)


# -- OKX


@dataclass(slots=True)
class _OkxMessage:
    time: float
    action: str
    item: dict[str, Any]  # the recorded data item: asks, bids, ts, checksum


class OkxReplayMarket:
    """One recorded OKX ``books`` market, served with synthesized ``seqId`` / ``prevSeqId``."""

    def __init__(self, inst_id: str, messages: list[_OkxMessage], instrument: dict[str, str] | None, *, pace: float | None) -> None:
        self.inst_id = inst_id
        inst_type = inst_type_of(inst_id)
        if inst_type is None:
            raise SimError(f"recorded instId {inst_id!r} is not SPOT, SWAP or FUTURES")
        self.inst_type = inst_type
        self.messages = messages
        self.books = ReplayBooks([BookMessage(m.action == "snapshot", m.item["bids"], m.item["asks"]) for m in messages])
        self.seq_ids = _okx_seq_ids(inst_id, len(messages))
        self._index = {seq: i for i, seq in enumerate(self.seq_ids)}
        self._instrument = instrument
        self.subscribers: dict[VenueConn, None] = {}
        self.timeline = Timeline([m.time for m in messages], pace, self._send)
        self.timeline.backlogged = lambda: backlogged(self.subscribers)

    def channels_served(self) -> tuple[str, ...]:
        return ("books",)

    def subscribe(self, conn: VenueConn, channel: str) -> None:
        self.subscribers[conn] = None
        sent = self.timeline.position
        if sent > 0:  # joined mid-way: the book at this point, as a snapshot
            bids, asks = self.books.book_after(sent - 1).top(None)
            ts = int(time.time() * 1000)
            raw = okx_book_message("books", self.inst_id, "snapshot", bids, asks, ts_ms=ts, checksum=okx_checksum(bids, asks), prev_seq=-1, seq=self.seq_ids[sent - 1])
            conn.send_book(text_frame(raw), self.inst_id)
        self.timeline.start()

    def unsubscribe(self, conn: VenueConn, channel: str) -> None:
        self.subscribers.pop(conn, None)

    def _send(self, index: int) -> None:
        message = self.messages[index]
        snapshot = message.action == "snapshot"
        prev = -1 if snapshot else self.seq_ids[index - 1]
        item = message.item

        def encode(checksum: int) -> bytes:
            data = {**item, "checksum": checksum, "prevSeqId": prev, "seqId": self.seq_ids[index]}
            return text_frame(orjson.dumps({"arg": {"channel": "books", "instId": self.inst_id}, "action": message.action, "data": [data]}))

        recorded = int(item.get("checksum", 0))
        frame = encode(recorded)
        for conn in list(self.subscribers):
            conn.send_book(frame, self.inst_id, lambda: encode(wrong_checksum(recorded)))

    def flush(self, sim_ms: float, now_ms: int, closed: set[int]) -> None:
        pass  # the timeline sends

    def rest_book(self, sz: int, behind: int) -> dict[str, object]:
        index = max(0, self.timeline.position - 1 - behind)
        bids, asks = self.books.book_after(index).top(sz)
        return {"asks": asks, "bids": bids, "ts": str(int(time.time() * 1000)), "seqId": self.seq_ids[index]}

    def truth(self, seq: int | None, limit: int | None) -> dict[str, object] | None:
        index = max(0, self.timeline.position - 1) if seq is None else self._index.get(seq)
        if index is None:
            return None
        bids, asks = self.books.book_after(index).top(limit)
        return truth_json(self.inst_id, self.seq_ids[index], bids, asks)

    def instrument(self) -> dict[str, str]:
        if self._instrument is not None:
            return self._instrument
        return instrument_entry(self.inst_id, self.inst_type, tick=_step(self.messages, 0), lot=_step(self.messages, 1))

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "messages": len(self.messages), "sent": self.timeline.position, "subscribers": len(self.subscribers)}


def _okx_seq_ids(inst_id: str, count: int) -> list[int]:
    """Deterministic, increasing, not contiguous: steps of 1..16 drawn from a hash of the instId."""
    seed = hashlib.sha256(inst_id.encode()).digest()
    out, seq = [], OKX_SEQ_BASE + int.from_bytes(seed[:3], "little")
    for i in range(count):
        seq += 1 + seed[i % len(seed)] % OKX_MAX_SEQ_STEP
        out.append(seq)
    return out


def _step(messages: list[_OkxMessage], column: int) -> str:
    """The finest decimal step seen in a column of the recorded levels (prices or sizes)."""
    decimals = 0
    for message in messages:
        for level in message.item["bids"] + message.item["asks"]:
            text = level[column]
            if "." in text:
                decimals = max(decimals, len(text) - text.index(".") - 1)
    return "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1"


def okx_replay_markets(rec: Recording, *, pace: float | None) -> list[OkxReplayMarket]:
    found: dict[str, list[_OkxMessage]] = {}
    for _, ts, text in rec.received:
        msg = _json_object(text)
        arg = msg.get("arg") if msg else None
        if not msg or not isinstance(arg, dict) or arg.get("channel") != "books" or msg.get("action") not in ("snapshot", "update"):
            continue
        for item in msg.get("data") or []:
            found.setdefault(str(arg.get("instId")), []).append(_OkxMessage(ts, str(msg["action"]), item))
    if not found:
        raise SimError(f"{rec.path}: no OKX books messages found")
    instruments = _okx_instruments(rec)
    return [OkxReplayMarket(inst, msgs, instruments.get(inst), pace=pace) for inst, msgs in found.items() if msgs[0].action == "snapshot"]


def _okx_instruments(rec: Recording) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for url, body in rec.http:
        if "/api/v5/public/instruments" in url:
            for entry in (_json_object(body) or {}).get("data") or []:
                if isinstance(entry, dict) and "instId" in entry:
                    out[str(entry["instId"])] = {str(k): str(v) for k, v in entry.items()}
    return out


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# -- Bybit


@dataclass(slots=True)
class _BybitEntry:
    time: float
    topic: str
    raw: bytes
    book_index: int  # index into the book messages, -1 for other topics


class BybitReplayMarket:
    """One recorded (category, symbol): its ``orderbook.200`` and other topics, byte for byte."""

    def __init__(self, category: str, symbol: str, entries: list[_BybitEntry], books: list[dict[str, Any]], instrument: dict[str, object] | None, *, pace: float | None) -> None:
        self.category = category
        self.symbol = symbol
        self.entries = entries
        self.book_data = books  # the recorded "data" objects (s, b, a, u, seq) with "type"
        self.books = ReplayBooks([BookMessage(d["type"] == "snapshot", d["b"], d["a"]) for d in books])
        self._by_u: dict[int, int] = {}
        for index, data in enumerate(books):
            self._by_u[int(data["u"])] = index  # a later u == 1 snapshot wins
        self.depth = next((int(e.topic.split(".")[1]) for e in entries if e.book_index >= 0), 200)
        self._instrument = instrument
        self.subscribers: dict[str, dict[VenueConn, None]] = {}
        self.timeline = Timeline([e.time for e in entries], pace, self._send)
        self.timeline.backlogged = lambda: any(backlogged(subs) for subs in self.subscribers.values())
        self._last_book = -1

    def book_depths(self) -> tuple[int, ...]:
        return (self.depth,)

    def subscribe(self, conn: VenueConn, topic: str) -> None:
        self.subscribers.setdefault(topic, {})[conn] = None
        if topic.startswith("orderbook.") and self._last_book >= 0:  # joined mid-way
            bids, asks = self.books.book_after(self._last_book).top(None)
            data = self.book_data[self._last_book]
            raw = bybit_book_message(self.category, topic, "snapshot", self.symbol, bids, asks, u=int(data["u"]), seq=int(data["seq"]), ts_ms=int(time.time() * 1000))
            conn.send_book(text_frame(raw), self.symbol)
        self.timeline.start()

    def unsubscribe(self, conn: VenueConn, topic: str) -> None:
        self.subscribers.get(topic, {}).pop(conn, None)

    def _send(self, index: int) -> None:
        entry = self.entries[index]
        if entry.book_index >= 0:
            self._last_book = entry.book_index
        subscribers = self.subscribers.get(entry.topic)
        if subscribers:
            frame = text_frame(entry.raw)
            for conn in list(subscribers):
                conn.send_book(frame, self.symbol)

    def flush(self, now_ms: int, closed: set[int]) -> None:
        pass  # the timeline sends

    def rest_book(self, limit: int, behind: int) -> dict[str, object]:
        index = max(0, self._last_book - behind)
        bids, asks = self.books.book_after(index).top(limit)
        data, now_ms = self.book_data[index], int(time.time() * 1000)
        return {"s": self.symbol, "b": bids, "a": asks, "ts": now_ms, "u": data["u"], "seq": data["seq"], "cts": now_ms - 1}

    def truth(self, u: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str:
        index = max(0, self._last_book) if u is None else self._by_u.get(u)
        if index is None:
            return f"u {u} is not in the recording of {self.category} {self.symbol}"
        bids, asks = self.books.book_after(index).top(limit)
        return truth_json(self.symbol, int(self.book_data[index]["u"]), bids, asks)

    def instrument(self) -> dict[str, object]:
        if self._instrument is not None:
            return self._instrument
        return bybit_instrument_entry(self.category, self.symbol, tick="0.01", lot="0.001", price_scale=2)

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "messages": len(self.entries), "sent": self.timeline.position}


def bybit_replay_markets(rec: Recording, *, pace: float | None) -> list[BybitReplayMarket]:
    grouped: dict[tuple[str, str], tuple[list[_BybitEntry], list[dict[str, Any]]]] = {}
    for conn, ts, text in rec.received:
        category = rec.addresses.get(conn, "").rstrip("/").rpartition("/")[2]
        msg = _json_object(text)
        if category not in ("spot", "linear", "inverse") or not msg or not isinstance(msg.get("topic"), str):
            continue
        topic = str(msg["topic"])
        symbol = topic.rpartition(".")[2]
        entries, books = grouped.setdefault((category, symbol), ([], []))
        book_index = -1
        if topic.startswith("orderbook.") and isinstance(msg.get("data"), dict):
            books.append({**msg["data"], "type": msg.get("type")})
            book_index = len(books) - 1
        entries.append(_BybitEntry(ts, topic, text.encode(), book_index))
    instruments = _bybit_instruments(rec)
    return [
        BybitReplayMarket(cat, sym, entries, books, instruments.get((cat, sym)), pace=pace)
        for (cat, sym), (entries, books) in grouped.items()
        if books and books[0]["type"] == "snapshot"
    ]


def _bybit_instruments(rec: Recording) -> dict[tuple[str, str], dict[str, object]]:
    out: dict[tuple[str, str], dict[str, object]] = {}
    for url, body in rec.http:
        if "/v5/market/instruments-info" not in url:
            continue
        result = (_json_object(body) or {}).get("result") or {}
        for entry in result.get("list") or []:
            if isinstance(entry, dict) and "symbol" in entry:
                out[(str(result.get("category")), str(entry["symbol"]))] = entry
    return out


# -- HTX


@dataclass(slots=True)
class _HtxPush:
    time: float
    frame: bytes  # the gzip frame exactly as recorded
    version: int
    bids: list[list[str]]  # number tokens as recorded ("9.121E-7")
    asks: list[list[str]]


class HtxReplayMarket:
    """One recorded ``market.SYM.depth.step0`` market: whole books, sent as the recorded gzip frames."""

    def __init__(self, symbol: str, pushes: list[_HtxPush], instrument: dict[str, object] | None, *, pace: float | None) -> None:
        self.symbol = symbol
        self.pushes = pushes
        self._by_version = {p.version: i for i, p in enumerate(pushes)}
        self._instrument = instrument
        self.subscribers: dict[VenueConn, None] = {}
        self.timeline = Timeline([p.time for p in pushes], pace, self._send)

    def serves(self, kind: str) -> bool:
        return kind == "step0"

    def subscribe(self, conn: VenueConn, kind: str, levels: int) -> None:
        self.subscribers[conn] = None
        self.timeline.start()

    def unsubscribe(self, conn: VenueConn, kind: str, levels: int) -> None:
        self.subscribers.pop(conn, None)

    def _send(self, index: int) -> None:
        frame = encode_frame(OP_BINARY, self.pushes[index].frame)
        for conn in list(self.subscribers):
            conn.send_book(frame, self.symbol)

    def flush(self, now_ms: int, closed: set[int]) -> None:
        pass  # the timeline sends

    def _current(self) -> _HtxPush:
        return self.pushes[max(0, self.timeline.position - 1)]

    def refresh(self, levels: int, behind: int) -> tuple[int, list[list[str]], list[list[str]]]:
        raise SimError("a depth.step0 replay serves no mbp refresh")  # never reached: serves() refuses mbp

    def rest_depth(self, depth: int, behind: int) -> dict[str, object]:
        push = self.pushes[max(0, self.timeline.position - 1 - behind)]
        return {"bids": push.bids[:depth], "asks": push.asks[:depth], "version": push.version}

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None:
        index = self._by_version.get(update_id) if update_id is not None else max(0, self.timeline.position - 1)
        if index is None:
            return None
        push = self.pushes[index]
        return truth_json(self.symbol, push.version, push.bids[:limit], push.asks[:limit])

    def instrument(self) -> dict[str, object]:
        return self._instrument or {"symbol": self.symbol, "state": "online"}

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "messages": len(self.pushes), "sent": self.timeline.position}


def htx_replay_markets(rec: Recording, *, pace: float | None) -> list[HtxReplayMarket]:
    found: dict[str, list[_HtxPush]] = {}
    for index, (_, ts, text) in enumerate(rec.received):
        frame = rec.binary.get(index)
        if frame is None or ".depth.step0" not in text:
            continue
        msg = stdjson.loads(text, parse_float=str, parse_int=str)  # keep every number's text
        tick, channel = msg.get("tick"), str(msg.get("ch", ""))
        if not isinstance(tick, dict) or not channel.endswith(".depth.step0"):
            continue
        symbol = channel.split(".")[1]
        found.setdefault(symbol, []).append(_HtxPush(ts, frame, int(tick["version"]), tick["bids"], tick["asks"]))
    if not found:
        raise SimError(f"{rec.path}: no HTX depth.step0 messages found")
    symbols = _htx_symbols(rec)
    return [HtxReplayMarket(symbol, pushes, symbols.get(symbol), pace=pace) for symbol, pushes in found.items()]


def _htx_symbols(rec: Recording) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for url, body in rec.http:
        if "/v1/common/symbols" in url:
            for entry in (_json_object(body) or {}).get("data") or []:
                if isinstance(entry, dict) and "symbol" in entry:
                    out[str(entry["symbol"])] = entry
    return out
