"""Replay of genuine Binance captures (shared/data/binance format) instead of the model.

A capture is gzip text, one message per line: ``<receive time ns> <raw JSON>``; the JSON is a REST
depth snapshot (``lastUpdateId``...) or a combined-stream message. Depth diffs are served; bookTicker
and trades are skipped. Every diff is encoded once per served symbol (raw frame, and one combined frame
per stream spelling), so a replay "as fast as the client reads" measures the client, not us.

One timeline per served market: the replay starts when the first client subscribes and advances at the
recorded pace, a multiple of it, or as fast as the slowest subscriber drains its socket. After the
recorded snapshot the book is known exactly (snapshot + diffs, Binance's documented algorithm), so REST
serves snapshots at the current replay position and ``/_sim/book`` answers as it does for the model.
That known book belongs to the capture (``KnownTimeline``), not to a served copy: it is walked once
before serving, keyed by the exchange's decimal strings, and books saved on the way answer any index.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from ldc.errors import SimError
from ldc.record import FILE_SUFFIX as RECORDING_SUFFIX
from ldc.record import REST_PREFIX, read_recording, recording_files
from ldc.sim.config import ReplaySource
from ldc.sim.markets import Family, fixed_str
from ldc.sim.streams import wrap_combined
from ldc.sim.wsframes import text_frame

log = logging.getLogger("ldc.sim")

CAPTURES_ENV = "LDC_CAPTURES"  # a directory of recorded captures, overriding the places below
# ``shared/data/binance`` beside the checkout, or beside any directory above it; last, the workplace's shared
# mount, for a checkout made elsewhere (a CI runner's): without it the capture tests would silently skip there
WORKPLACE_SHARED = Path("/work/shared")
CAPTURES_SEARCHED = (*(parent / "shared" / "data" / "binance" for parent in Path(__file__).resolve().parents[3:]),
                     WORKPLACE_SHARED / "data" / "binance")  # fmt: skip
CLIENT_PACE_BATCH = 64  # frames joined into one write when pacing by the client
CHECKPOINT_EVERY_BYTES = 512 * 1024  # diff JSON between two saved known books (~15k levels, ~10 ms to replay)
PLAIN_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]*)?")  # as Binance writes: "61820.99000000", "0.00100000"


class ReplaySubscriber(Protocol):
    id: int
    combined: bool
    closing: bool
    writer: asyncio.StreamWriter

    def send_many(self, frames: list[bytes], symbol: str) -> None: ...


@dataclass(slots=True)
class Capture:
    """The diffs and the snapshot of one recorded market, in recorded order.

    Diffs stay raw bytes (the ``data`` object as received) with their ids pulled out by a regex; they
    are parsed only when the known book needs them, so loading 30 MB of capture takes a fraction of a
    second and the replay sends the exchange's own bytes.
    """

    family: Family
    symbol: str
    stream_suffix: str  # "@depth@100ms"
    times_ns: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    final_ids: list[int] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    snapshot_index: int = 0  # diffs recorded before the snapshot
    _known: KnownTimeline | None = None

    def known(self) -> KnownTimeline:
        """The known book at any diff index, one per capture: copies served from it share the work."""
        if self._known is None:
            self._known = KnownTimeline(self)
        return self._known


_IDS = re.compile(rb'"U":(\d+),"u":(\d+)')
_SYMBOL = re.compile(rb'"s":"([A-Za-z0-9_]+)"')
_STREAM = re.compile(rb'^\{"stream":"([^"]+)","data":')
HEAD_BYTES = 200  # every field but the levels sits in the first bytes of a diff


def captures_dir() -> Path:
    """Where the genuine Binance captures are (tests, benchmarks): ``$LDC_CAPTURES``, else the nearest of
    ``CAPTURES_SEARCHED`` that exists, else the first of them (callers skip when it is missing)."""
    given = os.environ.get(CAPTURES_ENV)
    if given:
        return Path(given)
    return next((path for path in CAPTURES_SEARCHED if path.is_dir()), CAPTURES_SEARCHED[0])


def _family_of(head: bytes) -> Family:
    if b'"ps":' in head:
        return Family.COINM
    return Family.USDM if b'"pu":' in head else Family.SPOT


def read_capture_lines(path: str) -> list[tuple[int, bytes]]:
    """(receive ns, raw JSON) of every depth diff and snapshot line; other streams are skipped. ``path`` is a
    capture, an ldc recording or a directory of recordings (``ldc/record.py``: the same line format plus
    ``{"rest":...}`` snapshot lines); a damaged line ends it (see ``_read_lines``)."""
    return _read_lines(path)[0]


def _read_lines(path: str) -> tuple[list[tuple[int, bytes]], bool]:
    """The lines of ``path``'s files in order, and whether a damage ended them: the damaged line is logged
    with its number and reason, and nothing after it (in that file or a later one) is returned."""
    files = recording_files(path)
    if not files:
        raise SimError(f"no recording files (*{RECORDING_SUFFIX}) in directory {path!r}")
    out: list[tuple[int, bytes]] = []
    for name in files:
        try:
            recording = read_recording(name)
        except OSError as exc:
            raise SimError(f"cannot read capture {name!r}: {exc}") from exc
        out += recording.lines
        if recording.damage:
            log.error("replay: %s; nothing after it is replayed", recording.damage)
            return out, True
        if recording.unfinished:
            log.warning("replay: %s has no gzip trailer (its recorder did not close it); its %d lines are replayed",
                        name, len(recording.lines))  # fmt: skip
    return out, False


def load_captures(sources: tuple[ReplaySource, ...]) -> list[Capture]:
    """Captures grouped by (family, served symbol); files of one market are concatenated in order."""
    captures: dict[tuple[Family, str], Capture] = {}
    for source in sources:
        recorded: dict[str, dict[str, Any]] = {}  # symbol -> its first recorded REST snapshot ({"rest":...} lines)
        pending_snapshot: dict[str, Any] | None = None
        current: Capture | None = None
        lines, damaged = _read_lines(source.path)
        for stamp, payload in lines:
            if payload.startswith(REST_PREFIX):
                _recorded_snapshot(orjson.loads(payload), captures, recorded)
                continue
            stream = _STREAM.match(payload)
            if stream is None:
                snapshot = orjson.loads(payload)
                if "lastUpdateId" not in snapshot:
                    continue
                pending_snapshot = snapshot
                if current is not None and current.snapshot is None:
                    current.snapshot, current.snapshot_index = snapshot, len(current.payloads)
                continue
            data = payload[stream.end() : -1]
            head = data[:HEAD_BYTES]
            ids, symbol_match = _IDS.search(head), _SYMBOL.search(head)
            if ids is None or symbol_match is None or b'"depthUpdate"' not in head:
                continue
            family = _family_of(head)
            symbol = source.symbol or symbol_match.group(1).decode()
            current = captures.get((family, symbol))
            if current is None:
                name = stream.group(1).decode()
                current = captures[(family, symbol)] = Capture(family, symbol, name[name.index("@depth") :])
                if pending_snapshot is not None or symbol in recorded:
                    current.snapshot = recorded.get(symbol, pending_snapshot)
            final_id = int(ids.group(2))
            if current.final_ids and final_id <= current.final_ids[-1]:
                continue  # a copy already recorded (a recording spans a connection rollover: both carried it)
            current.times_ns.append(stamp)
            current.payloads.append(data)
            current.final_ids.append(final_id)
        if damaged:
            break  # nothing past a damaged line is replayed, from this source or a later one
    for capture in captures.values():
        if capture.snapshot is None:
            raise SimError(f"capture of {capture.symbol} has no REST snapshot, expected one line with lastUpdateId")
    return list(captures.values())


def _recorded_snapshot(line: dict[str, Any], captures: dict[tuple[Family, str], Capture],
                       recorded: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    """A recording's ``{"rest":"<path>?symbol=S&limit=N","data":<snapshot>}``: the first one of each symbol
    starts its known book (later ones were resyncs or audits of the same stream: the replay serves its own)."""
    query = parse_qs(urlsplit(str(line.get("rest", ""))).query)
    data = line.get("data")
    symbol = query.get("symbol", [""])[0]
    if not symbol or not isinstance(data, dict) or "lastUpdateId" not in data or symbol in recorded:
        return
    recorded[symbol] = data
    for (_, served), capture in captures.items():
        if served == symbol and capture.snapshot is None:
            capture.snapshot, capture.snapshot_index = data, len(capture.payloads)


def parse_pace(pace: str) -> float | None:
    """None for "client"; otherwise the factor on recorded time ("recorded" = 1.0, "x10" = 10.0)."""
    if pace == "client":
        return None
    if pace == "recorded":
        return 1.0
    try:
        factor = float(pace.lstrip("x"))
    except ValueError:
        raise SimError(f"replay pace must be 'recorded', 'client' or 'xF', found {pace!r}") from None
    if factor <= 0:
        raise SimError(f"replay pace factor must be > 0, found {factor}")
    return factor


def decimal_key(text: object) -> str:
    """The exact key of a plain decimal string: fractional trailing zeros (then a bare '.') stripped.

    Two plain decimals are one number iff their keys are equal, because a plain decimal has no sign, no
    exponent and no leading zero ("0.5", "61820.99000000"; not "00.5", ".5", "-1", "1e-5"): Binance
    writes prices and quantities that way. Anything else is refused with SimError naming it rather than
    read through Decimal: the replay serves the capture's own strings, and a capture spelling numbers
    another way is not one this simulator was checked against.
    """
    if not isinstance(text, str) or PLAIN_DECIMAL.fullmatch(text) is None:
        raise SimError(f"expected a plain decimal string like '61820.99000000', found {text!r}")
    return text.rstrip("0").rstrip(".") if "." in text else text


Level = tuple[str, str]  # (price, qty) as the exchange wrote them


class _KnownBook:
    """One side per dict: price key (``decimal_key``) -> the exchange's own (price, qty) strings."""

    __slots__ = ("update_id", "bids", "asks")

    def __init__(self, update_id: int, bids: dict[str, Level], asks: dict[str, Level]) -> None:
        self.update_id, self.bids, self.asks = update_id, bids, asks

    def copy(self) -> _KnownBook:
        return _KnownBook(self.update_id, dict(self.bids), dict(self.asks))

    def sorted_levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, best first."""
        # Decimal only here: sorting ~5k keys per side costs a few ms, keying every diff level by it was the stall
        bids, asks = self.bids, self.asks
        return [bids[k] for k in sorted(bids, key=Decimal, reverse=True)], [asks[k] for k in sorted(asks, key=Decimal)]


class KnownTimeline:
    """The known book of one capture after any number of its diffs, shared by every copy served from it.

    The recorded snapshot, then Binance's documented algorithm: diffs the snapshot already holds are
    skipped (spot: ``u <= lastUpdateId``, futures: ``u < lastUpdateId``), the others applied in order.
    Books are saved every ``CHECKPOINT_EVERY_BYTES`` of diff JSON, so the book at any index costs one
    dict copy and at most that much parsing; one cursor book moves forward between requests, and the
    last sorted levels are kept (copies at one index share the sort). Captures are in update-id order
    (``ReplayMarket._index_of`` bisects on it too).
    """

    def __init__(self, capture: Capture) -> None:
        self._capture = capture
        snapshot = capture.snapshot or {"lastUpdateId": 0, "bids": [], "asks": []}
        self.snapshot_id = int(snapshot["lastUpdateId"])
        self._keys: dict[str, str] = {}  # exchange's price spelling -> price key, each checked once
        self._zero: dict[str, bool] = {}  # exchange's quantity spelling -> is zero, each checked once
        start = _KnownBook(self.snapshot_id, {}, {})
        try:
            self._apply(start, snapshot["bids"], snapshot["asks"])
        except (SimError, KeyError, TypeError) as exc:
            raise SimError(f"{capture.symbol} snapshot {self.snapshot_id}: {_reason(exc)}") from None
        final_ids = capture.final_ids
        if capture.family.futures:
            self.first_applied = bisect.bisect_left(final_ids, self.snapshot_id)
        else:
            self.first_applied = bisect.bisect_right(final_ids, self.snapshot_id)
        self._plan = _checkpoint_plan(capture.payloads, self.first_applied)
        self._saved: list[_KnownBook] = [start]  # the books at self._plan[:len(self._saved)]
        self._cursor, self._cursor_index = start.copy(), self._plan[0]
        self._sorted: tuple[int, int, list[Level], list[Level]] | None = None  # index, update id, bids, asks

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """The diff counts after which a book is (or will be) saved."""
        return tuple(self._plan)

    def update_id_at(self, index: int) -> int:
        """The update id of the book after the first ``index`` diffs (no book is built)."""
        return self._capture.final_ids[index - 1] if index > self.first_applied else self.snapshot_id

    def levels_at(self, index: int, limit: int | None) -> tuple[int, list[list[str]], list[list[str]]]:
        """(update id, bids, asks) after the first ``index`` diffs: the best ``limit`` levels a side
        (all for None), each ``[price, qty]`` as the exchange wrote it, in new lists the caller owns."""
        index = max(index, self.first_applied)
        if self._sorted is None or self._sorted[0] != index:
            book = self._book_at(index)
            self._sorted = (index, book.update_id, *book.sorted_levels())
        _, update_id, bids, asks = self._sorted
        return update_id, [list(level) for level in bids[:limit]], [list(level) for level in asks[:limit]]

    def _book_at(self, index: int) -> _KnownBook:
        """The book after the first ``index`` diffs: the shared cursor, moved there."""
        index = max(index, self.first_applied)
        saved = bisect.bisect_right(self._plan, index, 0, len(self._saved)) - 1
        if not self._plan[saved] <= self._cursor_index <= index:
            self._cursor, self._cursor_index = self._saved[saved].copy(), self._plan[saved]
        self._advance(index)
        return self._cursor

    def prepare(self) -> None:
        """Walk the whole capture once, saving every checkpoint, so that no later request waits for more
        than one checkpoint's worth of diffs (the simulator calls this before it serves)."""
        self._book_at(len(self._capture.payloads))

    def _advance(self, index: int) -> None:
        capture, book, plan = self._capture, self._cursor, self._plan
        for at in range(self._cursor_index, index):
            try:
                diff = orjson.loads(capture.payloads[at])
                self._apply(book, diff["b"], diff["a"])
            except (SimError, ValueError, KeyError, TypeError) as exc:
                self._cursor_index = -1  # diff partly applied: the next request starts from a saved book
                raise SimError(f"{capture.symbol} diff {at} (u={capture.final_ids[at]}): {_reason(exc)}") from None
            book.update_id = capture.final_ids[at]
            self._cursor_index = at + 1
            if len(self._saved) < len(plan) and plan[len(self._saved)] == at + 1:
                self._saved.append(book.copy())

    def _apply(self, book: _KnownBook, bids: list[Any], asks: list[Any]) -> None:
        keys, zero = self._keys, self._zero
        for side, levels in ((book.bids, bids), (book.asks, asks)):
            for level in levels:
                try:
                    price, qty = level
                except (ValueError, TypeError):
                    raise SimError(f"expected a [price, qty] level, found {level!r}") from None
                key = keys.get(price)
                if key is None:
                    key = keys[price] = decimal_key(price)
                is_zero = zero.get(qty)
                if is_zero is None:
                    is_zero = zero[qty] = decimal_key(qty) == "0"
                if is_zero:
                    side.pop(key, None)
                else:
                    side[key] = (price, qty)  # a tuple of strings, which the GC stops tracking: books hold ~10^5


def _reason(exc: Exception) -> str:
    if isinstance(exc, SimError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"expected the level lists 'b' and 'a', found no {exc}"
    return f"expected a depth diff object, found {type(exc).__name__}: {exc}"


def _checkpoint_plan(payloads: list[bytes], first_applied: int) -> list[int]:
    """Diff counts after which the book is saved: the first applied one, then every
    ``CHECKPOINT_EVERY_BYTES`` of diff JSON."""
    plan, pending = [first_applied], 0
    for at in range(first_applied, len(payloads)):
        pending += len(payloads[at])
        if pending >= CHECKPOINT_EVERY_BYTES:
            plan.append(at + 1)
            pending = 0
    return plan


class ReplayMarket:
    """One served copy of a capture: its frames and its timeline; the known book is the capture's."""

    def __init__(self, capture: Capture, symbol: str, *, pace: float | None) -> None:
        self.capture = capture
        self.symbol = symbol
        self.family = capture.family
        self.partial_streams = False  # a capture holds diffs only
        self.pace = pace
        self.subscribers: dict[ReplaySubscriber, str] = {}
        self.sent_index = 0
        self._raw: list[bytes] | None = None
        self._raw_frames: list[bytes] | None = None
        self._combined: dict[str, list[bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._known = capture.known()
        self.done = False

    # -- frames

    def _payloads(self) -> list[bytes]:
        if self._raw is None:
            recorded = _SYMBOL.search(self.capture.payloads[0][:HEAD_BYTES]) if self.capture.payloads else None
            old = recorded.group(0) if recorded else b""
            if not old or old == b'"s":"' + self.symbol.encode() + b'"':
                self._raw = self.capture.payloads
            else:
                new = b'"s":"' + self.symbol.encode() + b'"'
                self._raw = [p.replace(old, new, 1) for p in self.capture.payloads]
        return self._raw

    def frames_for(self, sub: ReplaySubscriber, name: str) -> list[bytes]:
        if not sub.combined:
            if self._raw_frames is None:
                self._raw_frames = [text_frame(p) for p in self._payloads()]
            return self._raw_frames
        frames = self._combined.get(name)
        if frames is None:
            frames = self._combined[name] = [text_frame(wrap_combined(name, p)) for p in self._payloads()]
        return frames

    # -- subscriptions

    def subscribe(self, sub: ReplaySubscriber, name: str) -> None:
        self.frames_for(sub, name)
        self.subscribers[sub] = name
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self, sub: ReplaySubscriber) -> None:
        self.subscribers.pop(sub, None)

    # -- the timeline

    async def _run(self) -> None:
        diffs = self.capture.payloads
        times = self.capture.times_ns
        try:
            while self.sent_index < len(diffs):
                if not self.subscribers:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if self.pace is None:
                    await self._send_upto(min(len(diffs), self.sent_index + CLIENT_PACE_BATCH))
                    await self._drained()
                    continue
                base_ns, base_wall = times[self.sent_index], time.monotonic()
                while self.sent_index < len(diffs) and self.subscribers:
                    due = base_ns + int((time.monotonic() - base_wall) * self.pace * 1e9)
                    end = self.sent_index
                    while end < len(diffs) and times[end] <= due:
                        end += 1
                    if end > self.sent_index:
                        await self._send_upto(end)
                    else:
                        await asyncio.sleep(min(0.5, (times[end] - due) / 1e9 / self.pace))
        finally:
            self.done = self.sent_index >= len(diffs)

    async def _send_upto(self, end: int) -> None:
        start = self.sent_index
        for sub, name in list(self.subscribers.items()):
            if sub.closing:
                self.subscribers.pop(sub, None)
                continue
            sub.send_many(self.frames_for(sub, name)[start:end], self.symbol)
        self.sent_index = end
        if (end - start) >= CLIENT_PACE_BATCH:
            await asyncio.sleep(0)

    async def _drained(self) -> None:
        for sub in list(self.subscribers):
            try:
                await sub.writer.drain()
            except (ConnectionError, RuntimeError):
                self.subscribers.pop(sub, None)

    # -- the known book

    def _index_of(self, update_id: int) -> int:
        """How many diffs make the book at ``update_id`` (the last one applied has u <= update_id)."""
        # diffs are in update-id order: the first with u > update_id ends the book
        return bisect.bisect_right(self.capture.final_ids, update_id, 0, self.sent_index)

    def snapshot(self, limit: int, *, behind: int = 0) -> tuple[int, list[list[str]], list[list[str]]]:
        """The book ``behind`` diffs before the last one sent (never before the recorded snapshot)."""
        return self._known.levels_at(max(0, self.sent_index - behind), limit)

    def truth(self, update_id: int | None, limit: int | None) -> dict[str, object] | None:
        current = self._known.update_id_at(self.sent_index)
        target = current if update_id is None else update_id
        if target < self._known.snapshot_id or target > current:
            return None
        book_id, bids, asks = self._known.levels_at(self._index_of(target), limit)
        return {"symbol": self.symbol, "update_id": book_id, "bids": bids, "asks": asks}

    def filters(self) -> tuple[str, str]:
        snap = self.capture.snapshot or {"bids": [], "asks": []}
        levels = snap["bids"] + snap["asks"]
        return _step([p for p, _ in levels]), _step([q for _, q in levels])

    def stats(self) -> dict[str, object]:
        return {"kind": "replay", "sent": self.sent_index, "diffs": len(self.capture.payloads), "done": self.done, "subscribers": len(self.subscribers)}


def _step(values: list[str]) -> str:
    """The largest step that divides every value, printed with the values' own decimals."""
    if not values:
        return "1"
    decimals = max(len(v.partition(".")[2]) for v in values)
    step = 0
    for value in values:
        step = math.gcd(step, int(Decimal(value).scaleb(decimals)))
    return fixed_str(step or 1, decimals)


def load_replays(sources: tuple[ReplaySource, ...], *, copies: int, pace: str) -> list[ReplayMarket]:
    factor = parse_pace(pace)
    markets = []
    for capture in load_captures(sources):
        for i in range(copies):
            name = capture.symbol if i == 0 else f"{capture.symbol}{i + 1}"
            markets.append(ReplayMarket(capture, name, pace=factor))
        capture.known().prepare()
    return markets
