"""The stream venues' C hot path (ldc/fastbook/stream_router.c): StreamFeeder.on_messages -> StreamRouter ->
each market's HotPath, BookSync for everything else.

- the C copy of the sequence rules (OKX PREV_LINK_RESET, Bybit PLUS_ONE, Kraken NONE) against ``venues.base.verdict``;
- the router-on feeder against the same feeder on the Python path, message for message, on random streams with
  gaps, duplicates, OKX's keep-alive and reset, Bybit's u == 1, Kraken's repeated or earlier timestamps, crossed
  books and wrong checksums: the same slots published, the same counters;
- a gap, a reset, a checksum mismatch, a crossed top, an exception on the C path resync (or reset) only their market;
- the genuine recordings through the whole path: the published top 20 equals a Decimal replay at every update
  id read, every OKX checksum and all 2,688 Kraken v2 checksums verified (the updates' in C) with 0 mismatches;
- Kraken's CRC32 written in C against the reference at every digit count and rounding edge.
"""

from __future__ import annotations

import random
from decimal import Decimal
import time
from typing import Any, Iterator

import orjson
import pytest

from ldc._fastbook import ROUTE_CONTROL, ROUTE_DIFF, ROUTE_END, HotPath, StreamRouter, parse_bybit, parse_coinbase, parse_okx
from ldc.config import GroupConfig
from ldc.depth import NO_ID
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.stream_feeder import StreamFeeder
from ldc.sync import BookSync, SyncState
from ldc.venues import okx
from ldc.venues.base import Precision, SequenceRule, Verdict, hot_path_links_prev, verdict
from venue_recordings import BYBIT_FILE, OKX_FILE, DecimalBook, records, venues_dir

DEPTH = 20
BOOK_ID = 100
PRECISION = Precision(1, 3)


@pytest.fixture
def group() -> Iterator[str]:
    from shm_helpers import group_fixture

    yield from group_fixture()


# -- messages ----------------------------------------------------------------------------------------------------


def _okx(inst: str, action: str, bids: list[list[str]], asks: list[list[str]], prev: int | None, seq: int | None,
         checksum: int = 0) -> bytes:  # fmt: skip
    data: dict[str, Any] = {"asks": [[p, q, "0", "1"] for p, q in asks], "bids": [[p, q, "0", "1"] for p, q in bids],
                            "ts": "1597026383085", "checksum": checksum}  # fmt: skip
    if seq is not None:
        data.update(prevSeqId=prev, seqId=seq)
    return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]})


def _bybit(symbol: str, kind: str, bids: list[list[str]], asks: list[list[str]], u: int) -> bytes:
    return orjson.dumps({"topic": f"orderbook.50.{symbol}", "type": kind, "ts": 1700000000000,
                         "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": 7 + u}, "cts": 1700000000000})  # fmt: skip


LOCAL = {"rest_url": "http://127.0.0.1:9", "ws_url": "ws://127.0.0.1:9"}  # nothing is asked of them here


def _feeder(group: str, exchange: str, symbols: tuple[str, ...], *, router: bool = True) -> StreamFeeder:
    channel = "books" if exchange == "okx" else "orderbook.50"
    feeder = StreamFeeder(GroupConfig(name=group, exchange=exchange, symbols=symbols, channel=channel, depth=DEPTH,
                                      capacity=len(symbols), **LOCAL))  # type: ignore[arg-type]  # fmt: skip
    # books restart from the stream's snapshots the test sends: OKX's REST fallback (STREAM_OR_REST) finds the
    # snapshot workers shut down (the feeder's own stopping path), so no request goes out and both runs agree
    feeder._workers.shutdown(wait=True)
    if not router:
        feeder._router = None  # the reference path: every message through read_message and BookSync
    for symbol in symbols:
        feeder._add_market(symbol, PRECISION if exchange == "okx" else None).conn = 0
    return feeder


def _market(feeder: StreamFeeder, symbol: str) -> Any:
    return next(m for m in feeder.markets.values() if m.symbol == symbol)


# -- the rule, C against Python ----------------------------------------------------------------------------------


def _ids(rng: random.Random) -> tuple[int, int]:
    """(prev, final) around BOOK_ID: continuing, gaps, old, equal (OKX's keep-alive), going down (OKX's reset)."""
    prev = rng.choice([BOOK_ID, BOOK_ID, BOOK_ID - 1, BOOK_ID + 1, BOOK_ID - 7, BOOK_ID + 9, rng.randint(0, 300)])
    final = rng.choice([prev + 1, prev + rng.randint(1, 20), prev, prev - rng.randint(1, 50), BOOK_ID + 1, BOOK_ID,
                        rng.randint(0, 300)])  # fmt: skip
    return prev, max(final, 0)


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_the_routers_c_rule_applies_exactly_the_apply_verdicts_of_the_python_rule(group: str, venue: str) -> None:
    """Every update the StreamRouter applies in C is one ``verdict`` calls APPLY, every one it drops as old
    (``skips_old``, as the stream feeder arms it) one it calls OLD, and everything else (GAP, RESET) goes to
    BookSync; every APPLY and OLD with ids (an id-less OKX message is proved by its checksum in BookSync) stays in C."""
    from ldc.shm.writer import SegmentWriter

    rule = SequenceRule.PREV_LINK_RESET if venue == "okx" else SequenceRule.PLUS_ONE
    rng = random.Random(rule.value)
    applied_seen = passed_seen = ignored_seen = 0
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer:
        slot = writer.add_market("X")
        router = StreamRouter(parse_okx if venue == "okx" else parse_bybit)
        stream = "BTC-USDT" if venue == "okx" else "orderbook.50.BTCUSDT"
        for case in range(600):
            from ldc._fastbook import FastBook
            from ldc.depth import DepthSnapshot

            book = FastBook(depth=DEPTH)
            book.load_snapshot(DepthSnapshot(BOOK_ID, [(100.0, 1.0)], [(101.0, 1.0)], 401))
            hot = HotPath(writer.segment, slot, futures=hot_path_links_prev(rule))
            hot.conn, hot.skips_old = 0, True
            hot.arm(book, BOOK_ID, int(Status.SYNCED))
            router.paths[stream] = hot
            if venue == "okx":
                prev, final = _ids(rng)
                no_ids = case % 50 == 0
                raw = _okx("BTC-USDT", "update", [["99.5", "2"]], [], None if no_ids else prev, None if no_ids else final)
                first, prev_final, final_id = (NO_ID, NO_ID, NO_ID) if no_ids else (prev, prev, final)
            else:
                _, final = _ids(rng)
                final = max(final, 2)  # u == 1 is Bybit's reset: a snapshot for the reference parser
                raw = _bybit("BTCUSDT", "delta", [["99.5", "2"]], [], final)
                first, prev_final, final_id = final, NO_ID, final
            expected = verdict(rule, first, final_id, prev_final, BOOK_ID)
            index, kind, value = router.feed([raw], 0, 0, 1)
            applied, ignored = hot.take_applied(), hot.take_ignored()
            assert applied == (hot.update_id != BOOK_ID) and applied + ignored <= 1
            if applied:
                assert kind == ROUTE_END and expected is Verdict.APPLY, (first, final_id, prev_final)
                applied_seen += 1
            elif ignored:
                assert kind == ROUTE_END and expected is Verdict.OLD, (first, final_id, prev_final)
                ignored_seen += 1
            else:
                assert kind == ROUTE_DIFF and value[0][0] == stream and value[0][1].final_id == final_id
                assert expected in (Verdict.GAP, Verdict.RESET) or final_id == NO_ID, (first, final_id, prev_final, expected)
                passed_seen += 1
    assert applied_seen > 50 and ignored_seen > 50 and passed_seen > 50


def test_the_router_refuses_a_dialect_it_does_not_run_and_a_control_message_goes_to_python() -> None:
    with pytest.raises(ValueError, match="expected the C dialect parse_okx, parse_bybit or parse_kraken, found <built-in function parse_coinbase>"):
        StreamRouter(parse_coinbase)
    router = StreamRouter(parse_okx)
    assert router.feed([b'{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}'], 0, 0, 1)[:2] == (0, ROUTE_CONTROL)
    assert router.feed([b"pong"], 0, 0, 1)[:2] == (0, ROUTE_CONTROL)


# -- the router-on feeder against the Python path ----------------------------------------------------------------


def _num(value: float, places: int) -> str:
    """A number as OKX writes it: no trailing zeros (the checksum is over the texts as sent)."""
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class _Stream:
    """A random book stream for one market, with the faults a venue sends, and its true book (Decimal)."""

    def __init__(self, venue: str, symbol: str, rng: random.Random) -> None:
        self.venue, self.symbol, self.rng = venue, symbol, rng
        self.book = DecimalBook()
        self.seq = 1000 if venue == "okx" else 5

    def _levels(self, low: int, high: int) -> list[list[str]]:
        rng = self.rng
        return [[_num(rng.randint(low, high) / 10, 1), "0" if rng.random() < 0.3 else _num(rng.randint(1, 9000) / 1000, 3)]
                for _ in range(rng.randint(0, 6))]  # fmt: skip

    def snapshot(self) -> bytes:
        bids = [[_num(p / 10, 1), "1.5"] for p in range(990, 960, -1)]
        asks = [[_num(p / 10, 1), "2.5"] for p in range(1000, 1030)]
        self.book.reset(bids, asks)
        if self.venue == "okx":
            self.seq += 3
            return _okx(self.symbol, "snapshot", bids, asks, -1, self.seq, self._checksum())
        self.seq += 1
        return _bybit(self.symbol, "snapshot", bids, asks, self.seq)

    def _checksum(self) -> int:
        bids, asks = self.book.top(okx.CHECKSUM_LEVELS)
        parts = [text for i in range(okx.CHECKSUM_LEVELS) for pair in bids[i : i + 1] + asks[i : i + 1] for text in pair]
        import zlib

        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc

    def next(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        # mostly below / above the spread; now and then a level that crosses it
        cross = roll < 0.02
        bids = self._levels(900, 1010 if cross else 998)
        asks = self._levels(990 if cross else 1000, 1100)
        seq = self.seq
        if self.venue == "okx":
            if roll < 0.04:  # a gap
                prev, new = seq + 5, seq + 9
            elif roll < 0.06:  # a duplicate of an old one
                prev, new = seq - 4, seq - 2
            elif roll < 0.08:  # the keep-alive: nothing changes
                prev, new, bids, asks = seq, seq, [], []
            elif roll < 0.09 and seq > 2:  # OKX's maintenance reset: seqId goes down
                prev, new = seq, rng.randint(1, seq - 1)
            else:
                prev, new = seq, seq + rng.randint(1, 5)
            if new > seq or (prev == seq and new < prev):
                self.seq = new
            if prev == seq and new != seq:
                self.book.apply(bids, asks)
            wrong = rng.random() < 0.03
            checksum = self._checksum() if rng.random() > 0.1 else 0
            return _okx(self.symbol, "update", bids, asks, prev, new, checksum + 1 if wrong and checksum else checksum)
        if roll < 0.04:
            u = seq + 3  # a gap
        elif roll < 0.06:
            u = seq  # a duplicate
        else:
            u = seq + 1
            self.book.apply(bids, asks)
        self.seq = max(self.seq, u)
        return _bybit(self.symbol, "delta", bids, asks, u)


def _slots(reader: Reader, symbols: tuple[str, ...]) -> list[Any]:
    out = []
    for symbol in symbols:
        snap = reader.snapshot(symbol, DEPTH, allow_out_of_sync=True)
        out.append((snap.update_id, snap.in_sync, snap.bids.tolist(), snap.asks.tolist(), snap.status))
    return out


COUNTERS = ("diffs_applied", "diffs_ignored", "gaps", "resyncs", "snapshots", "checksums", "checksum_mismatches", "faults")


def _fast_against_slow(fast: StreamFeeder, slow: StreamFeeder, groups: tuple[str, str], symbols: tuple[str, ...],
                       streams: list[Any], rng: random.Random) -> tuple[int, int]:
    """3,000 random messages in reads of 1 to 6, the router-on feeder ``fast`` taking each read whole and the
    Python-only ``slow`` one message a read: the same slots after every read, and at the end (the fast side's
    hand-off settled) the same counters, state and update id per market. (reads compared, C-held markets summed)"""
    compared = routed = 0
    with Reader(groups[0]) as fast_reader, Reader(groups[1]) as slow_reader:
        batch: list[bytes] = [s.snapshot() for s in streams]
        for step in range(3000):
            stream = rng.choice(streams)
            # a market out of sync gets a snapshot (the resubscription's answer) now and then
            market = _market(slow, stream.symbol)
            batch.append(stream.snapshot() if market.sync.state is not SyncState.SYNCED and rng.random() < 0.3 else stream.next())
            if len(batch) < rng.randint(1, 6):
                continue
            now = time.time_ns()
            fast.on_messages(0, batch, now)
            for raw in batch:
                slow.on_messages(0, [raw], now)
            batch = []
            assert _slots(fast_reader, symbols) == _slots(slow_reader, symbols), step
            compared += 1
            routed += sum(_market(fast, s).hot.armed for s in symbols)
    for symbol in symbols:
        a, b = _market(fast, symbol), _market(slow, symbol)
        a.handoff.settle()
        assert not b.hot.armed
        assert {k: getattr(a.sync, k) for k in COUNTERS} == {k: getattr(b.sync, k) for k in COUNTERS}, symbol
        assert (a.sync.state, a.sync.update_id) == (b.sync.state, b.sync.update_id)
    return compared, routed


@pytest.mark.parametrize("venue", ["okx", "bybit"])
def test_the_c_path_publishes_what_the_python_path_publishes_message_for_message(venue: str) -> None:
    from shm_helpers import unique_group, unlink_group

    symbols = ("BTC-USDT", "ETH-USDT") if venue == "okx" else ("BTCUSDT", "ETHUSDT")
    exchange = "okx" if venue == "okx" else "bybit-linear"
    groups = (unique_group(), unique_group())
    fast, slow = _feeder(groups[0], exchange, symbols), _feeder(groups[1], exchange, symbols, router=False)
    rng = random.Random(12)
    streams = [_Stream(venue, s, rng) for s in symbols]
    try:
        compared, routed = _fast_against_slow(fast, slow, groups, symbols, streams, rng)
        for symbol in symbols:
            a = _market(fast, symbol)
            assert a.sync.gaps > 5 and a.sync.resyncs > 5 and a.sync.diffs_applied > 300
            if venue == "okx":
                assert a.sync.checksum_mismatches > 3 and a.sync.diffs_ignored > 10
        assert compared > 300 and routed > compared  # the C path held the books most of the time
    finally:
        fast.close()
        slow.close()
        for g in groups:
            unlink_group(g)


# -- faults on the C path cost only their market -----------------------------------------------------------------


def _synced_pair(group: str, venue: str) -> tuple[StreamFeeder, list[_Stream], tuple[str, ...]]:
    symbols = ("BTC-USDT", "ETH-USDT") if venue == "okx" else ("BTCUSDT", "ETHUSDT")
    feeder = _feeder(group, "okx" if venue == "okx" else "bybit-linear", symbols)
    rng = random.Random(3)
    streams = [_Stream(venue, s, rng) for s in symbols]
    feeder.on_messages(0, [s.snapshot() for s in streams], time.time_ns())
    for market in feeder.markets.values():
        assert market.sync.state is SyncState.SYNCED and market.hot.armed
    return feeder, streams, symbols


def _continuing(stream: _Stream, wrong_checksum: bool = False) -> bytes:
    stream.seq, prev = stream.seq + 1, stream.seq
    bids = [[_num(98 - stream.rng.randint(0, 20) / 10, 1), f"{stream.rng.randint(1, 9)}"]]
    stream.book.apply(bids, [])
    if stream.venue == "okx":
        return _okx(stream.symbol, "update", bids, [], prev, stream.seq, stream._checksum() + wrong_checksum)
    return _bybit(stream.symbol, "delta", bids, [], stream.seq)


@pytest.mark.parametrize(
    ("venue", "fault"), [("okx", "gap"), ("okx", "checksum"), ("okx", "reset"), ("bybit", "gap"), ("bybit", "reset")]
)
def test_a_fault_on_the_c_path_costs_only_its_market(group: str, venue: str, fault: str) -> None:
    feeder, (first, second), symbols = _synced_pair(group, venue)
    try:
        one, two = _market(feeder, first.symbol), _market(feeder, second.symbol)
        messages = [_continuing(first), _continuing(second)]
        if fault == "gap":
            first.seq += 5
            messages.append(_continuing(first))
        elif fault == "checksum":
            messages.append(_continuing(first, wrong_checksum=True))  # another (non-zero) checksum
        elif venue == "okx":  # OKX's maintenance reset: seqId < prevSeqId == the book's: applied, no resync
            stream = first
            stream.book.apply([["97", "1"]], [])
            messages.append(_okx(stream.symbol, "update", [["97", "1"]], [], stream.seq, 3, stream._checksum()))
            stream.seq = 3
        else:  # Bybit's u == 1: the service restarted, the message is a new snapshot
            first.book.reset([["95", "1"]], [["105", "1"]])
            messages.append(_bybit(first.symbol, "delta", [["95", "1"]], [["105", "1"]], 1))
            first.seq = 1
        messages += [_continuing(second), _continuing(second)]
        feeder.on_messages(0, messages, time.time_ns())
        if fault == "reset":
            messages = [_continuing(first)]
            feeder.on_messages(0, messages, time.time_ns())
        one.handoff.settle()
        two.handoff.settle()
        if fault == "reset":
            assert one.sync.state is SyncState.SYNCED and one.sync.resyncs == 0 and one.sync.update_id == first.seq
        else:
            assert one.sync.state is not SyncState.SYNCED and one.sync.resyncs == 1
            assert (one.sync.gaps, one.sync.checksum_mismatches) == ((1, 0) if fault == "gap" else (0, 1))
        # the other market went on in C: in sync, its three updates applied there, nothing counted against it
        assert two.sync.state is SyncState.SYNCED and two.sync.update_id == second.seq
        assert (two.sync.resyncs, two.sync.gaps, two.sync.checksum_mismatches) == (0, 0, 0)
        with Reader(group) as reader:
            for stream, market in ((first, one), (second, two)):
                snap = reader.snapshot(stream.symbol, DEPTH, allow_out_of_sync=True)
                if market.sync.state is SyncState.SYNCED:
                    assert snap.in_sync and snap.update_id == stream.seq
                    assert (snap.bids.tolist(), snap.asks.tolist()) == stream.book.top_floats(DEPTH)
                else:
                    assert not snap.in_sync
    finally:
        feeder.close()


def test_an_exception_in_c_resyncs_the_market_whose_hot_path_held_its_book(group: str) -> None:
    """Fail closed: a HotPath's publish raising in C inside the router resyncs that market (counted in faults,
    its book dropped); the other market goes on in C."""
    feeder, (first, second), symbols = _synced_pair(group, "bybit")
    try:
        one, two = _market(feeder, first.symbol), _market(feeder, second.symbol)
        feeder.writer.remove_market(first.symbol)  # the slot leaves under the armed HotPath: its publish raises
        feeder.on_messages(0, [_continuing(second), _continuing(first), _continuing(second)], time.time_ns())
        assert (one.hot.armed, one.sync.faults, one.sync.book) == (False, 1, None)
        assert one.sync.state is not SyncState.SYNCED
        feeder.on_messages(0, [_continuing(second)], time.time_ns())
        assert (two.hot.armed, two.sync.faults, two.hot.update_id) == (True, 0, second.seq)
    finally:
        feeder.close()


# -- the genuine recordings through the whole path ---------------------------------------------------------------


def _okx_served(path: str) -> tuple[list[bytes], dict[str, Precision]]:
    """OKX's recorded ``books`` messages as the simulator serves them: seqId / prevSeqId per instId (the 2022
    recording predates them), levels and checksums as recorded."""
    precision: dict[str, Precision] = {}
    out: list[bytes] = []
    last: dict[str, int] = {}
    for record in records(path):
        if record["t"] == "http" and "/instruments" in str(record["url"]):
            precision.update(okx.parse_instruments(str(record["data"])))
        elif record["t"] == "recv" and '"channel":"books"' in str(record["data"]) and '"action"' in str(record["data"]):
            message = orjson.loads(str(record["data"]))
            inst = message["arg"]["instId"]
            for item in message["data"]:
                seq = last.get(inst, 5000) + 1 + len(out) % 7
                item["prevSeqId"], item["seqId"] = (-1 if message["action"] == "snapshot" else last[inst]), seq
                last[inst] = seq
            out.append(orjson.dumps(message))
    return out, precision


@pytest.mark.skipif(not (venues_dir() / OKX_FILE).is_file(), reason="the OKX recording is not there")
def test_okx_recording_through_the_c_path_equals_a_decimal_replay_at_every_id_read(group: str, monkeypatch: Any) -> None:
    messages, precision = _okx_served(OKX_FILE)
    python_checksums = {"n": 0}
    holds = BookSync._checksum_holds

    def counted(self: BookSync, book: Any, expected: int) -> bool:
        python_checksums["n"] += 1
        return holds(self, book, expected)

    monkeypatch.setattr(BookSync, "_checksum_holds", counted)
    symbols = tuple(sorted({orjson.loads(m)["arg"]["instId"] for m in messages}))
    feeder = StreamFeeder(GroupConfig(name=group, exchange="okx", symbols=symbols, channel="books", depth=DEPTH, capacity=4,
                                      **LOCAL))  # type: ignore[arg-type]  # fmt: skip
    rng = random.Random(5)
    reference = {s: DecimalBook() for s in symbols}
    compared = 0
    try:
        for symbol in symbols:
            feeder._add_market(symbol, precision[symbol]).conn = 0
        with Reader(group) as reader:
            i = 0
            while i < len(messages):
                batch = messages[i : i + rng.randint(1, 8)]  # one socket read's messages
                i += len(batch)
                for raw in batch:
                    message = orjson.loads(raw)
                    item = message["data"][0]
                    book = reference[message["arg"]["instId"]]
                    book.reset(item["bids"], item["asks"]) if message["action"] == "snapshot" else book.apply(item["bids"], item["asks"])
                feeder.on_messages(0, batch, time.time_ns())
                for symbol in {orjson.loads(raw)["arg"]["instId"] for raw in batch}:
                    snap = reader.snapshot(symbol, DEPTH)
                    last = [orjson.loads(raw)["data"][0]["seqId"] for raw in batch if orjson.loads(raw)["arg"]["instId"] == symbol][-1]
                    assert snap.update_id == last
                    assert (snap.bids.tolist(), snap.asks.tolist()) == reference[symbol].top_floats(DEPTH)
                    compared += 1
        markets = list(feeder.markets.values())
        for market in markets:
            market.handoff.settle()
        assert sum(m.sync.checksums for m in markets) == len(messages) == 191
        assert python_checksums["n"] == len(symbols)  # the snapshots; every update's checksum was verified in C
        assert sum(m.sync.checksum_mismatches + m.sync.resyncs + m.sync.gaps for m in markets) == 0
        assert compared > 60
    finally:
        feeder.close()


@pytest.mark.skipif(not (venues_dir() / BYBIT_FILE).is_file(), reason="the Bybit recording is not there")
def test_bybit_recording_through_the_c_path_equals_a_decimal_replay_at_every_id_read(group: str) -> None:
    by_conn: dict[str, list[bytes]] = {}
    category: dict[str, str] = {}
    for record in records(BYBIT_FILE):
        if record["t"] == "connect":
            category[str(record["conn"])] = str(record["addr"]).rsplit("/", 1)[-1]
        elif record["t"] == "recv" and str(record["data"]).startswith('{"topic":"orderbook.'):
            by_conn.setdefault(str(record["conn"]), []).append(str(record["data"]).encode())
    rng = random.Random(6)
    compared = in_c = 0
    for n, (conn, messages) in enumerate(sorted(by_conn.items())):
        name = f"{group}{n}"
        symbols = tuple(sorted({orjson.loads(m)["data"]["s"] for m in messages}))
        feeder = StreamFeeder(GroupConfig(name=name, exchange=f"bybit-{category[conn]}", symbols=symbols,
                                          channel="orderbook.200", depth=DEPTH, capacity=4, **LOCAL))  # type: ignore[arg-type]  # fmt: skip
        reference = {s: DecimalBook() for s in symbols}
        try:
            for symbol in symbols:
                feeder._add_market(symbol, None).conn = 0
            with Reader(name) as reader:
                i = 0
                while i < len(messages):
                    batch = messages[i : i + rng.randint(1, 8)]
                    i += len(batch)
                    last: dict[str, int] = {}
                    for raw in batch:
                        message = orjson.loads(raw)
                        data = message["data"]
                        book = reference[data["s"]]
                        book.reset(data["b"], data["a"]) if message["type"] == "snapshot" or data["u"] == 1 else book.apply(data["b"], data["a"])
                        last[data["s"]] = data["u"]
                    armed = sum(m.hot.armed for m in feeder.markets.values())
                    feeder.on_messages(0, batch, time.time_ns())
                    in_c += armed
                    for symbol, u in last.items():
                        snap = reader.snapshot(symbol, DEPTH)
                        assert snap.update_id == u
                        assert (snap.bids.tolist(), snap.asks.tolist()) == reference[symbol].top_floats(DEPTH)
                        compared += 1
            for market in feeder.markets.values():
                market.handoff.settle()
                assert market.sync.gaps + market.sync.resyncs + market.sync.faults == 0
        finally:
            feeder.close()
            from shm_helpers import unlink_group

            unlink_group(name)
    assert compared > 200 and in_c > 200


# -- the checksum's numbers in their shortest form (no instrument list), written in C ------------------------------


def test_the_c_checksum_in_shortest_form_writes_what_repr_writes() -> None:
    """The shortest form without dtoa (``shortest_text_fast``) against ``okx.checksum`` (Python's repr): decimal
    prices and sizes of 1-15 significant digits at every scale repr writes without an exponent, doubles that are
    no short decimal (0.1 + 0.2, thirds), integers up to 1e15, zero sizes' neighbours; None only for an exponent."""
    from ldc._fastbook import FastBook
    from ldc.depth import DepthSnapshot

    rng = random.Random(21)
    shortest = Precision(-1, -1)

    def number() -> float:
        kind = rng.random()
        if kind < 0.6:  # a decimal text as a venue sends it
            digits = rng.randint(1, 15)
            tiny = rng.random() < 0.01  # below 1e-4 now and then: repr writes an exponent
            return float(Decimal(rng.randint(1, 10**digits - 1)).scaleb(-rng.randint(0, digits + (6 if tiny else 1))))
        if kind < 0.8:  # a double that is no short decimal
            return float(rng.choice([0.1 + 0.2, 1 / 3, 2 / 3 * 10 ** rng.randint(-3, 8), rng.random() * 10 ** rng.randint(-2, 12)]))
        return float(rng.randint(1, 10**15))

    handed_back = 0
    for _ in range(3000):
        book = FastBook(depth=DEPTH)
        mid = number()
        bids = sorted({mid * (1 - rng.random() / 100) for _ in range(rng.randint(1, 30))}, reverse=True)
        asks = sorted({mid * (1 + rng.random() / 100) + mid / 1000 for _ in range(rng.randint(1, 30))})
        book.load_snapshot(DepthSnapshot(1, [(p, number()) for p in bids], [(p, number()) for p in asks], 401))
        got = book.top_crc32(okx.CHECKSUM_LEVELS, -1, -1)
        b, a = book.levels()
        if got is None:  # a number whose repr has an exponent: Python writes it
            handed_back += 1
            assert any("e" in repr(x) for level in b[:25] + a[:25] for x in level)
            continue
        assert got == okx.checksum(b, a, shortest)
    assert handed_back < 1000, handed_back


# -- Kraken (sequence rule NONE, its CRC32 of the top 10, the book cut to the subscribed depth) --------------------

KRAKEN_CHANNEL = "book.25"
KRAKEN_WINDOW = 25  # the subscribed depth: every side cut to it after every message
KRAKEN_PRECISION = Precision(1, 3)
KRAKEN_US = 1_696_613_755_440_295  # 2023-10-06T17:35:55.440295Z


def _iso(us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def _kraken(symbol: str, kind: str, bids: list[list[str]], asks: list[list[str]], us: int, checksum: int) -> bytes:
    """A v2 book message as Kraken writes it: prices and quantities JSON numbers (the texts as given)."""
    def side(levels: list[list[str]]) -> str:
        return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"

    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":{side(bids)},"asks":{side(asks)},'
            f'"checksum":{checksum},"timestamp":"{_iso(us)}"}}]}}').encode()  # fmt: skip


def _kraken_feeder(group: str, symbols: tuple[str, ...], *, router: bool = True, channel: str = KRAKEN_CHANNEL,
                   precision: dict[str, Precision] | None = None) -> StreamFeeder:  # fmt: skip
    feeder = StreamFeeder(GroupConfig(name=group, exchange="kraken", symbols=symbols, channel=channel, depth=DEPTH,
                                      capacity=len(symbols), **LOCAL))  # type: ignore[arg-type]  # fmt: skip
    feeder._workers.shutdown(wait=True)
    if not router:
        feeder._router = None
    for symbol in symbols:
        feeder._add_market(symbol, (precision or {}).get(symbol, KRAKEN_PRECISION)).conn = 0
    return feeder


def test_the_router_runs_krakens_dialect_with_its_depth_and_refuses_it_without() -> None:
    from ldc._fastbook import parse_kraken

    with pytest.raises(ValueError, match="expected parse_kraken's subscribed depth"):
        StreamRouter(parse_kraken)
    with pytest.raises(ValueError, match="expected no depth for this dialect, found depth=25"):
        StreamRouter(parse_okx, 25)
    router = StreamRouter(parse_kraken, 25)
    assert router.dialect is parse_kraken
    assert router.feed([b'{"channel":"heartbeat"}'], 0, 0, 1)[:2] == (0, ROUTE_CONTROL)
    snapshot = _kraken("BTC/USD", "snapshot", [["99.5", "1"]], [["100.5", "1"]], KRAKEN_US, 7)
    index, kind, value = router.feed([snapshot], 0, 0, 1)  # a snapshot is BookSync's
    assert (index, kind, value[0][0], value[0][1].last_update_id) == (0, ROUTE_DIFF, "BTC/USD", KRAKEN_US)


def test_the_routers_c_rule_for_kraken_applies_every_update_and_never_moves_the_id_back(group: str) -> None:
    """Sequence rule NONE in C against ``verdict``: every update (timestamps before, at and after the book's) is
    APPLY and applied in C, the book's id the larger of the two, as ``BookSync._apply_diff`` keeps it."""
    from ldc._fastbook import FastBook, parse_kraken
    from ldc.depth import DepthSnapshot
    from ldc.shm.writer import SegmentWriter
    from ldc.venues.base import hot_path_unsequenced

    rule = SequenceRule.NONE
    rng = random.Random(15)
    with SegmentWriter(group, depth=DEPTH, capacity=1) as writer:
        slot = writer.add_market("X")
        router = StreamRouter(parse_kraken, KRAKEN_WINDOW)
        for _ in range(400):
            book = FastBook(depth=DEPTH)
            book.load_snapshot(DepthSnapshot(KRAKEN_US, [(100.0, 1.0)], [(101.0, 1.0)], KRAKEN_WINDOW))
            hot = HotPath(writer.segment, slot, futures=hot_path_links_prev(rule), unsequenced=hot_path_unsequenced(rule))
            hot.conn, hot.skips_old, hot.window_whole = 0, True, True
            hot.arm(book, KRAKEN_US, int(Status.SYNCED))
            router.paths["BTC/USD"] = hot
            us = KRAKEN_US + rng.choice([0, 1, -1, rng.randint(-10**7, 10**7)])
            expected = verdict(rule, us, us, NO_ID, KRAKEN_US)
            index, kind, value = router.feed([_kraken("BTC/USD", "update", [["99.5", "2"]], [], us, 0)], 0, 0, 1)
            assert expected is Verdict.APPLY and (index, kind) == (1, ROUTE_END)
            assert (hot.take_applied(), hot.take_ignored(), hot.update_id) == (1, 0, max(us, KRAKEN_US))
            bids, asks = book.levels()
            assert [tuple(level) for level in bids] == [(100.0, 1.0), (99.5, 2.0)] and len(asks) == 1


class _KrakenStream:
    """A random Kraken v2 stream for one pair and its true book (Decimal), cut to the subscribed depth after every
    message (Kraken sends no delete for a level pushed out), the checksum of its top 10 on every message; faults:
    a wrong checksum, a crossed top, a timestamp that repeats or goes back (the id is a clock)."""

    def __init__(self, symbol: str, rng: random.Random) -> None:
        self.symbol, self.rng = symbol, rng
        self.book = DecimalBook()
        self.us = KRAKEN_US

    def _cut(self) -> None:
        for side, best in ((self.book.bids, True), (self.book.asks, False)):
            for price in sorted(side, reverse=best)[KRAKEN_WINDOW:]:
                del side[price]

    def _checksum(self) -> int:
        from ldc.venues import kraken

        bids, asks = self.book.top(kraken.CHECKSUM_LEVELS)
        return kraken.checksum([(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks], KRAKEN_PRECISION)

    def _levels(self, low: int, high: int) -> list[list[str]]:
        rng = self.rng
        return [[f"{rng.randint(low, high) / 10:.1f}", "0.000" if rng.random() < 0.3 else f"{rng.randint(1, 9000) / 1000:.3f}"]
                for _ in range(rng.randint(0, 6))]  # fmt: skip

    def snapshot(self) -> bytes:
        bids = [[f"{p / 10:.1f}", "1.500"] for p in range(990, 960, -1)][:KRAKEN_WINDOW]
        asks = [[f"{p / 10:.1f}", "2.500"] for p in range(1000, 1030)][:KRAKEN_WINDOW]
        self.book.reset(bids, asks)
        self.us += 1000
        return _kraken(self.symbol, "snapshot", bids, asks, self.us, self._checksum())

    def next(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        cross = roll < 0.02
        bids = self._levels(900, 1010 if cross else 998)
        asks = self._levels(990 if cross else 1000, 1100)
        self.us += rng.choice([0, 1, 250, 10_000, -3_000]) if roll < 0.2 else rng.randint(1, 50_000)
        self.book.apply(bids, asks)
        self._cut()
        checksum = self._checksum()
        if rng.random() < 0.03:
            checksum ^= 1 << rng.randint(0, 31)
        return _kraken(self.symbol, "update", bids, asks, self.us, checksum)


def test_the_c_path_publishes_what_the_python_path_publishes_for_kraken_message_for_message() -> None:
    """Router on (StreamRouter -> HotPath: rule NONE, Kraken's CRC32 in C, window kept whole) against the same
    feeder on the Python path, on random v2 streams with wrong checksums, crossed tops and timestamps that repeat
    or go back: the same slots after every read, the same counters at the end."""
    from shm_helpers import unique_group, unlink_group

    symbols = ("BTC/USD", "ETH/USD")
    groups = (unique_group(), unique_group())
    fast, slow = _kraken_feeder(groups[0], symbols), _kraken_feeder(groups[1], symbols, router=False)
    rng = random.Random(25)
    streams = [_KrakenStream(s, rng) for s in symbols]
    try:
        compared, routed = _fast_against_slow(fast, slow, groups, symbols, streams, rng)
        for symbol in symbols:
            a = _market(fast, symbol)
            assert a.sync.resyncs > 5 and a.sync.checksum_mismatches > 5 and a.sync.checksums > 500
        assert compared > 300 and routed > compared  # the C path held the books most of the time
    finally:
        fast.close()
        slow.close()
        for g in groups:
            unlink_group(g)


@pytest.mark.parametrize("fault", ["checksum", "crossed", "exception"])
def test_a_kraken_fault_on_the_c_path_costs_only_its_market(group: str, fault: str) -> None:
    """A checksum mismatch found in C (handed back: BookSync verifies it again and resubscribes), a crossed top,
    an exception in C (the slot removed under the armed HotPath): that pair resyncs; the other goes on in C."""
    symbols = ("BTC/USD", "ETH/USD")
    feeder = _kraken_feeder(group, symbols)
    rng = random.Random(4)
    first, second = (_KrakenStream(s, rng) for s in symbols)
    try:
        feeder.on_messages(0, [first.snapshot(), second.snapshot()], time.time_ns())
        one, two = _market(feeder, first.symbol), _market(feeder, second.symbol)
        assert one.hot.armed and two.hot.armed and one.hot.window_whole and one.hot.unsequenced

        def update(stream: _KrakenStream, bids: list[list[str]], asks: list[list[str]], wrong: bool = False) -> bytes:
            stream.us += 1000
            stream.book.apply(bids, asks)
            stream._cut()
            return _kraken(stream.symbol, "update", bids, asks, stream.us, stream._checksum() ^ wrong)

        messages = [update(first, [["98.7", "1.000"]], []), update(second, [["98.7", "2.000"]], [])]
        if fault == "checksum":
            messages.append(update(first, [["98.8", "1.000"]], [], wrong=True))
        elif fault == "crossed":
            messages.append(update(first, [["100.1", "1.000"]], []))  # above the best ask (100.0)
        else:
            feeder.writer.remove_market(first.symbol)
            messages.append(update(first, [["98.8", "1.000"]], []))
        messages += [update(second, [["98.6", "3.000"]], []), update(second, [], [["100.2", "0.000"]])]
        feeder.on_messages(0, messages, time.time_ns())
        one.handoff.settle()
        two.handoff.settle()
        assert one.sync.state is not SyncState.SYNCED and one.sync.resyncs == 1
        assert (one.sync.checksum_mismatches, one.sync.faults) == {"checksum": (1, 0), "crossed": (0, 0), "exception": (0, 1)}[fault]
        assert two.sync.state is SyncState.SYNCED and two.sync.update_id == second.us
        assert (two.sync.resyncs, two.sync.checksum_mismatches, two.sync.faults, two.sync.diffs_applied) == (0, 0, 0, 3)
        assert two.sync.checksums == 4  # its snapshot in BookSync, its three updates in C
        with Reader(group) as reader:
            snap = reader.snapshot(second.symbol, DEPTH)
            assert snap.in_sync and snap.update_id == second.us
            assert (snap.bids.tolist(), snap.asks.tolist()) == second.book.top_floats(DEPTH)
            if fault != "exception":
                assert not reader.snapshot(first.symbol, DEPTH, allow_out_of_sync=True).in_sync
    finally:
        feeder.close()


KRAKEN_V2_CHECKSUMS = 2688  # every message of the recording served as v2, its 6 snapshots included


@pytest.mark.skipif(not (venues_dir() / "kraken_v1_book1000_20210417.jsonl.gz").is_file(), reason="the Kraken recording is not there")
def test_kraken_recording_through_the_c_path_equals_a_decimal_replay_at_every_id_read(group: str, monkeypatch: Any) -> None:
    """The genuine recording as ``ldc sim --replay`` serves it (v2 book.1000): through on_messages in random
    socket reads, every pair's published top 20 equals a Decimal replay (cut to 1000 levels after every message)
    at the update id read (the largest timestamp so far); every one of the 2,688 checksums verified, the updates'
    in C, 0 mismatches."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_venues", Path(__file__).resolve().parent.parent / "scripts" / "bench_venues.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    messages, precision = bench.kraken_v2_messages(venues_dir() / "kraken_v1_book1000_20210417.jsonl.gz")
    python_checksums = {"n": 0}
    holds = BookSync._checksum_holds

    def counted(self: BookSync, book: Any, expected: int) -> bool:
        python_checksums["n"] += 1
        return holds(self, book, expected)

    monkeypatch.setattr(BookSync, "_checksum_holds", counted)
    parsed = [json.loads(raw, parse_float=Decimal)["data"][0] for raw in messages]
    symbols = tuple(sorted({item["symbol"] for item in parsed}))
    feeder = _kraken_feeder(group, symbols, channel="book.1000", precision=precision)
    rng = random.Random(7)
    reference = {s: DecimalBook() for s in symbols}
    newest: dict[str, int] = {}
    compared = 0
    try:
        with Reader(group) as reader:
            i = 0
            while i < len(messages):
                n = rng.randint(1, 8)
                batch, items = messages[i : i + n], parsed[i : i + n]
                i += len(batch)
                for raw, item in zip(batch, items):
                    book = reference[item["symbol"]]
                    bids = [[str(level["price"]), str(level["qty"])] for level in item["bids"]]
                    asks = [[str(level["price"]), str(level["qty"])] for level in item["asks"]]
                    book.reset(bids, asks) if b'"type":"snapshot"' in raw else book.apply(bids, asks)
                    for side, best in ((book.bids, True), (book.asks, False)):
                        for price in sorted(side, reverse=best)[1000:]:
                            del side[price]
                    us = _kraken_us(item["timestamp"])
                    newest[item["symbol"]] = max(newest.get(item["symbol"], us), us)
                feeder.on_messages(0, batch, time.time_ns())
                for symbol in {item["symbol"] for item in items}:
                    snap = reader.snapshot(symbol, DEPTH)
                    assert snap.update_id == newest[symbol] and snap.status == Status.SYNCED
                    assert (snap.bids.tolist(), snap.asks.tolist()) == reference[symbol].top_floats(DEPTH)
                    compared += 1
        markets = list(feeder.markets.values())
        for market in markets:
            market.handoff.settle()
        assert len(messages) == KRAKEN_V2_CHECKSUMS
        assert sum(m.sync.checksums for m in markets) == KRAKEN_V2_CHECKSUMS
        assert python_checksums["n"] == len(symbols)  # the snapshots; every update's checksum was verified in C
        assert sum(m.sync.checksum_mismatches + m.sync.resyncs + m.sync.faults for m in markets) == 0
        assert compared > 1000
    finally:
        feeder.close()


def _kraken_us(timestamp: str) -> int:
    from ldc.venues.kraken import timestamp_us

    return timestamp_us(timestamp)


def test_krakens_c_checksum_writes_every_digit_count_and_rounds_as_numpy() -> None:
    """FastBook.kraken_crc32 (the HotPath's) against ``kraken.checksum`` (numpy's rint, Python's str) where the C
    text writer changes behaviour: 0, every digit count 1..19 and its edges (10^k - 1, 10^k, 10^k + 1), halves
    rounding to even, products at 2^52 and just below 2^62; None (Python computes it) only at 2^62 or more."""
    from ldc._fastbook import FastBook
    from ldc.depth import DepthSnapshot
    from ldc.venues import kraken

    rng = random.Random(52)
    integers = [0, 1, 2**52 - 1, 2**52, 2**52 + 2, 2**62 - 2**10] + [10**k + d for k in range(1, 19) for d in (-1, 0, 1)]
    halves = [0.5, 1.5, 2.5, 1e6 + 0.5, 2.0**51 + 0.5, 2.0**52 - 0.5]
    checked = 0
    for case in range(600):
        decimals = rng.randint(0, 8)
        def number() -> float:
            x = float(rng.choice(integers)) if rng.random() < 0.6 else rng.choice(halves)
            return x / 10.0**decimals if x else 0.0
        prices = sorted({number() for _ in range(20)} - {0.0})
        if len(prices) < 2:
            continue
        half = len(prices) // 2
        bids = [(p, number() or 1.0) for p in reversed(prices[:half])]
        asks = [(p, number() or 1.0) for p in prices[half:]]
        book = FastBook(depth=DEPTH)
        book.load_snapshot(DepthSnapshot(1, bids, asks, 1000))
        got = book.kraken_crc32(kraken.CHECKSUM_LEVELS, decimals, decimals)
        b, a = book.levels()
        top = [x * 10.0**decimals for level in b[:10] + a[:10] for x in level]
        if got is None:
            assert max(top) >= 2**62
            continue
        assert got == kraken.checksum(b, a, Precision(decimals, decimals)), (decimals, b[:3], a[:3])
        checked += 1
    assert checked > 400


def test_the_router_wakes_the_readers_once_a_read_after_everything_it_published(group: str) -> None:
    """Six Kraken updates of two pairs in one read: one wake-up (the segment's notify word once up), after the
    last publish; a read stopping at a snapshot wakes before Python sees it; a read publishing nothing, none."""
    symbols = ("BTC/USD", "ETH/USD")
    feeder = _kraken_feeder(group, symbols)
    rng = random.Random(9)
    first, second = (_KrakenStream(s, rng) for s in symbols)
    try:
        with Reader(group) as reader:
            def word() -> int:
                return int(reader._seg.load_u32(reader._notify_off))

            feeder.on_messages(0, [first.snapshot(), second.snapshot()], time.time_ns())
            before = word()
            batch = [s.next() for s in (first, second, first, second, first, second)]
            index, kind, _ = feeder._router.feed(batch, 0, 0, time.time_ns())  # type: ignore[union-attr]
            assert (index, kind) == (len(batch), ROUTE_END) and word() == before + 1
            index, kind, _ = feeder._router.feed([first.next(), first.snapshot()], 0, 0, time.time_ns())  # type: ignore[union-attr]
            assert (index, kind) == (1, ROUTE_DIFF) and word() == before + 2
            index, kind, _ = feeder._router.feed([b'{"channel":"heartbeat"}'], 0, 0, time.time_ns())  # type: ignore[union-attr]
            assert (index, kind) == (0, ROUTE_CONTROL) and word() == before + 2
    finally:
        feeder.close()
