#!/usr/bin/env python3
"""Benchmark of the OKX, Bybit, Kraken, Coinbase and HTX book paths on their genuine recordings; prints JSON.

Per venue, every book message of the recording, as received, in order (each market its own BookSync):

- ``full``: raw bytes -> the venue's reference parser -> ``BookSync`` (sequence rule, OKX's checksum of the top
  25 on every message carrying one, Kraken's top 10 on every message) -> ``FastBook`` -> top 20 into numpy
  buffers, after every message (HTX: gunzip and Decimal JSON included);
- ``c``: the same run through the stream feeder's per-message path (``ldc.stream_feeder.read_message``: the
  venue's C dialect, the reference parser for anything it hands back), with ``c_vs_baseline_cpu`` and
  ``c_vs_full_cpu``: every venue has one (OKX, Bybit: updates in C, snapshots by the reference parser;
  Coinbase, Kraken, HTX: snapshots / whole books in C too);
- ``baseline``: in the same run, on the same messages, ``json.loads`` + a ``SortedDict`` per side + a top-20
  slice per message (no sequence check, no checksum): the usual Python book;
- ``cryptofeed``: cryptofeed's own book code for the venue on the same book updates (its message handler,
  Decimal levels, order_book's ``OrderBook``, OKX's and Kraken's checksums validated), with
  ``c_vs_cryptofeed_cpu``; it needs the ``peers`` extra (``pip install -e '.[peers]'``) and is left out, said so
  in the JSON, without it. cryptofeed's HTX reads depth.step0 only (no mbp).

Kraken: the genuine recording is websocket v1; the feeder speaks v2, so ldc's paths read it as ``ldc sim
--replay`` serves it (v2 ``book.1000``, values at the pair's AssetPairs decimals, the v2 checksum of the book
after every message, ``kraken_v2_messages``), cryptofeed's Kraken (a v1 client) the recorded v1 messages
themselves: the same book updates. ``htx`` is the recorded depth.step0 (a whole book a frame); ``htx-mbp`` is
HTX's mbp.150 made from those books (``htx_mbp_frames``: no mbp recording exists; gunzip in every path).

Figures are medians over ``--repeats`` runs: level updates per second (wall) and per CPU-second. The machine is
shared and noisy: compare the ratio, measured in the same run.

OKX, Bybit and Kraken also have ``feeder``: the stream feeder's real per-message path, no socket -- a
``StreamFeeder`` (its segment, BookSyncs, HotPaths and the C ``StreamRouter``) takes each message with
``on_messages`` (one message a read, as websocket-client reads them; ``--messages-per-read N``: N a call, as bulk
socket reads hand them over), so updates continuing the book are applied,
checked (OKX's checksum, Kraken's) and published into the segment in C, the rest through BookSync; with
``feeder_vs_full_cpu`` / ``feeder_vs_baseline_cpu`` / ``feeder_vs_cryptofeed_cpu``. OKX's 2022 messages get ``seqId`` / ``prevSeqId`` as the simulator serves them
(without ids every message would take BookSync's checksum-only path); Bybit runs one feeder per recorded
connection (spot, linear). ``feeder_faults`` counts mismatches, gaps, resyncs and faults (0 expected).

    .venv/bin/python scripts/bench_venues.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import itertools
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sortedcontainers import SortedDict

from ldc._fastbook import FastBook
from ldc.depth import DepthSnapshot
from ldc.sim.replay import captures_dir
from ldc.sync import BookSync, SnapshotPurpose, SnapshotResult, SyncConfig
from ldc.config import GroupConfig
from ldc.shm.layout import lock_path, segment_path
from ldc.stream_feeder import StreamFeeder, read_message
from ldc.venues import bybit, coinbase, htx, kraken, okx, stream_venue
from ldc.venues.base import Precision, SequenceRule, SnapshotSource, StreamVenue

DEPTH = 20
KRAKEN_DEPTH = 1000  # the recording's book-1000, served as v2 book.1000
DATA = captures_dir().parent / "venues"
OKX_FILE = "okx_books400_20220513.jsonl.gz"
BYBIT_FILE = "bybit_v5_orderbook200_20260809.jsonl.gz"
KRAKEN_FILE = "kraken_v1_book1000_20210417.jsonl.gz"
COINBASE_FILE = "coinbase_advanced_level2_20260809.jsonl.gz"
HTX_FILE = "huobi_depth_step0_20210417.jsonl.gz"


def _records(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def okx_messages() -> tuple[list[bytes], dict[str, Precision]]:
    precision: dict[str, Precision] = {}
    messages = []
    for record in _records(OKX_FILE):
        if record["t"] == "http" and "/instruments" in record["url"]:
            precision.update(okx.parse_instruments(record["data"]))
        elif record["t"] == "recv" and '"channel":"books"' in record["data"] and '"action"' in record["data"]:
            messages.append(record["data"].encode())  # bytes, as the stream feeder receives them
    return messages, precision


def bybit_messages() -> list[tuple[str, bytes]]:
    return [(r["conn"], r["data"].encode()) for r in _records(BYBIT_FILE)
            if r["t"] == "recv" and r["data"].startswith('{"topic":"orderbook.')]  # fmt: skip


Parse = Callable[[bytes], Any]


def python_path(venue: StreamVenue) -> Parse:
    """The venue's reference parser alone (a venue without a C dialect)."""
    return venue.parse


def c_path(venue: StreamVenue) -> Parse:
    """The stream feeder's per-message path: the venue's C dialect, the reference parser for what it hands back."""
    fast = venue.fast_parse  # type: ignore[attr-defined]
    return lambda raw: read_message(fast, venue.parse, raw)


def run_okx(messages: list[bytes], precision: dict[str, Precision], parse: Parse) -> int:
    syncs: dict[str, BookSync] = {}
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for raw in messages:
        events = parse(raw)
        assert isinstance(events, list)
        for symbol, event in events:
            sync = syncs.get(symbol)
            if sync is None:
                config = SyncConfig(rule=okx.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=400, snapshot_source=SnapshotSource.STREAM,
                                    refresh_interval_s=None, checksum=okx.book_checksum(precision[symbol]))  # fmt: skip
                sync = syncs[symbol] = BookSync(symbol, lambda: FastBook(depth=DEPTH), config)
            if isinstance(event, DepthSnapshot):
                sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            else:
                sync.on_diff(event, 0.0)
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    return sum(s.checksum_mismatches + s.resyncs for s in syncs.values())


def okx_with_seq_ids(messages: list[bytes]) -> list[bytes]:
    """The 2022 recording's messages as a live OKX stream carries them: ``prevSeqId`` / ``seqId`` added per instId
    (a snapshot's prevSeqId -1; +1 a message), as ``ldc sim --replay`` serves them. Without ids the feeder takes
    every message through BookSync (an id-less message is numbered by the book), so the C path would not run."""
    last: dict[str, int] = {}
    out = []
    for raw in messages:
        message = json.loads(raw)
        inst = message["arg"]["instId"]
        for item in message["data"]:
            seq = last.get(inst, 1000) + 1
            item["prevSeqId"], item["seqId"] = (-1 if message["action"] == "snapshot" else last.get(inst, -1)), seq
            last[inst] = seq
        out.append(json.dumps(message, separators=(",", ":")).encode())
    return out


_FEEDER_GROUPS = itertools.count(1)


def feeder_run(exchange: str, channel: str, precision: dict[str, Precision], messages: list[bytes],
               per_read: int = 1) -> Callable[[], tuple[int, float, float]]:  # fmt: skip
    """The stream feeder's real per-message path, no socket: a ``StreamFeeder`` (its segment, BookSyncs, HotPaths
    and StreamRouter) takes the messages with ``on_messages``, ``per_read`` a call (1: one message a read, as
    websocket-client reads; more: bulk socket reads), its markets on connection 0. Returns a run: (faults, wall s,
    CPU s), the feeder's setup left out."""
    venue = stream_venue(exchange, channel)
    assert venue is not None
    symbols: list[str] = []
    for raw in messages:  # the markets, in the venue's symbol syntax, from the first message of each stream
        events = venue.parse(raw)
        assert isinstance(events, list)
        for stream, _ in events:
            symbol = stream.rsplit(".", 1)[-1]  # an OKX instId, a Bybit topic's symbol
            assert venue.stream(channel, symbol) == stream, stream
            if symbol not in symbols:
                symbols.append(symbol)

    def run() -> tuple[int, float, float]:
        group = f"bench-venues-{os.getpid()}-{next(_FEEDER_GROUPS)}"
        feeder = StreamFeeder(GroupConfig(name=group, exchange=exchange, symbols=tuple(symbols), channel=channel,
                                          depth=DEPTH, capacity=len(symbols)))  # fmt: skip
        try:
            markets = [feeder._add_market(symbol, precision.get(symbol)) for symbol in symbols]
            for market in markets:
                market.conn = 0
            on_messages = feeder.on_messages
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(messages), per_read):
                on_messages(0, messages[i : i + per_read], time.time_ns())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            for market in markets:
                market.handoff.settle()
            faults = sum(m.sync.checksum_mismatches + m.sync.resyncs + m.sync.gaps + m.sync.faults for m in markets)
            if not all(m.sync.synced for m in markets):
                faults += 1
            return faults, wall, cpu
        finally:
            feeder.close()
            for path in (segment_path(group), lock_path(group)):  # a closed segment stays for its readers: none here
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    return run


def run_bybit(messages: list[tuple[str, bytes]], parse: Parse) -> int:
    syncs: dict[tuple[str, str], BookSync] = {}
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for conn, raw in messages:
        events = parse(raw)
        assert isinstance(events, list)
        for topic, event in events:
            key = (conn, topic)  # the same topic on the spot and the linear URL
            sync = syncs.get(key)
            if sync is None:
                config = SyncConfig(rule=bybit.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=200,
                                    snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)  # fmt: skip
                sync = syncs[key] = BookSync(topic, lambda: FastBook(depth=DEPTH), config)
            if isinstance(event, DepthSnapshot):
                sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            else:
                sync.on_diff(event, 0.0)
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    return sum(s.gaps + s.resyncs for s in syncs.values())


def cryptofeed_run(name: str, messages: list[tuple[str, str]]) -> Callable[[], int] | None:
    """cryptofeed's own book code for the venue on (connection address, text) messages: its ``message_handler``
    (json with Decimal floats, Decimal levels, order_book's ``OrderBook``; OKX's checksum validated, as ldc's path
    does) and a top-20 read per book callback. The feed is made without its constructor, which would fetch the
    venue's symbol list: symbols are used as sent. None when cryptofeed is not installed."""
    try:
        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import OKX, Bybit, Coinbase, Huobi, Kraken
    except ImportError:
        return None
    import asyncio
    from types import SimpleNamespace

    def run() -> int:
        kind = {"okx": OKX, "bybit": Bybit, "coinbase": Coinbase, "kraken": Kraken, "htx": Huobi}[name]
        feed: Any = kind.__new__(kind)
        tops = 0

        async def top_20(book: Any, receipt_timestamp: float) -> None:
            nonlocal tops
            for side in (book.book.bids, book.book.asks):
                [side.index(i) for i in range(min(DEPTH, len(side)))]
            tops += 1

        feed._l2_book, feed.max_depth, feed.checksum_validation, feed.cross_check = {}, 0, True, False
        if name == "kraken":  # its v1 book-1000 subscription: the depth the recording was made with
            feed.max_depth = KRAKEN_DEPTH
        feed.callbacks = {L2_BOOK: [top_20]}
        feed.exchange_symbol_to_std_symbol = lambda symbol: symbol

        async def replay() -> None:
            for address, raw in messages:
                await feed.message_handler(raw, SimpleNamespace(address=address, uuid=address), 0.0)

        asyncio.run(replay())
        return tops

    return run


def _stream_sync(key: str, rule: SequenceRule, window: int, checksum: Callable[[Any], int] | None = None) -> BookSync:
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=max(DEPTH, window), snapshot_source=SnapshotSource.STREAM,
                        refresh_interval_s=None, checksum=checksum)  # fmt: skip
    return BookSync(key, lambda: FastBook(depth=DEPTH), config)


def _run_stream(messages: list[Any], parse: Callable[[Any], Any], make_sync: Callable[[str, Any], BookSync]) -> dict[str, BookSync]:
    """Each message through the venue's parser and its market's BookSync (made on first sight), then the top 20."""
    syncs: dict[str, BookSync] = {}
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for raw in messages:
        events = parse(raw)
        assert isinstance(events, list)
        for key, event in events:
            sync = syncs.get(key) or syncs.setdefault(key, make_sync(key, raw))
            if isinstance(event, DepthSnapshot):
                sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            else:
                sync.on_diff(event, 0.0)
            sync.book.top(DEPTH, bids, asks)  # type: ignore[union-attr]
    return syncs


def kraken_messages() -> list[str]:
    """The genuine v1 recording's book messages (what cryptofeed's Kraken reads: it speaks v1)."""
    return [r["data"] for r in _records(KRAKEN_FILE)
            if r["t"] == "recv" and r["data"].startswith("[") and '"book-1000"' in r["data"]]  # fmt: skip


def kraken_v2_messages(path: Path | None = None) -> tuple[list[bytes], dict[str, Precision]]:
    """The same recording as ``ldc sim --replay`` serves it to the feeder: websocket v2 ``book`` messages (values
    at the pair's AssetPairs decimals, the v2 checksum of the book after each, ``timestamp`` the update id), in
    the recorded order across pairs; and each pair's precision as the feeder reads it from AssetPairs."""
    from ldc.sim.kraken import book_message
    from ldc.sim.kraken_replay import kraken_replay_markets
    from ldc.sim.venue_replay import read_recording

    markets = kraken_replay_markets(read_recording(str(path or DATA / KRAKEN_FILE)), pace=None)
    timed = [(m.time, book_message("snapshot" if m.snapshot else "update", market.symbol, m.bids, m.asks, checksum=m.checksum, us=m.us))
             for market in markets for m in market.messages]  # fmt: skip
    timed.sort(key=lambda item: item[0])  # stable: a pair's own order kept
    return [raw for _, raw in timed], {market.symbol: Precision(*market.precisions()) for market in markets}


def run_kraken(messages: list[bytes], precision: dict[str, Precision], parse: Parse) -> int:
    """Each pair's BookSync with its v2 checksum of the top 10 (from AssetPairs' decimals) on every message."""
    def make(key: str, _: bytes) -> BookSync:
        return _stream_sync(key, kraken.SEQUENCE_RULE, KRAKEN_DEPTH, kraken.book_checksum(precision[key]))

    return sum(s.checksum_mismatches + s.resyncs for s in _run_stream(messages, parse, make).values())


def coinbase_messages() -> list[bytes]:
    return [r["data"].encode() for r in _records(COINBASE_FILE) if r["t"] == "recv" and r["data"].startswith('{"channel":"l2_data"')]


def run_coinbase(messages: list[bytes], parse: Parse) -> int:
    syncs = _run_stream(messages, parse, lambda key, _: _stream_sync(key, coinbase.SEQUENCE_RULE, DEPTH))
    return sum(s.resyncs for s in syncs.values())


def htx_frames() -> list[bytes]:
    frames = [base64.b64decode(r["b64"]) for r in _records(HTX_FILE) if r["t"] == "recv" and "b64" in r]
    return [f for f in frames if b".depth.step0" in gzip.decompress(f)[:60] and b'"tick"' in gzip.decompress(f)[:80]]


def run_htx(frames: list[bytes], parse: Parse) -> int:
    syncs = _run_stream(frames, parse, lambda key, _: _stream_sync(key, htx.SEQUENCE_RULE, 150))
    return sum(s.resyncs for s in syncs.values())


def htx_mbp_frames(step0_frames: list[bytes]) -> list[bytes]:
    """mbp.150 frames made from the recorded depth.step0 books (no mbp recording exists): per market, the first
    book as the refresh answer (``rep``), then each next book as the diff from the one before (changed and new
    levels, removed ones at size 0; a side without a change left out), ``seqNum`` the book's ``version`` and
    ``prevSeqNum`` the one before. Every number keeps its recorded text (``9.121E-7`` included), gzip as HTX sends."""
    books: dict[str, tuple[int, dict[Decimal, str], dict[Decimal, str]]] = {}
    out: list[bytes] = []
    for frame in step0_frames:
        msg = json.loads(gzip.decompress(frame), parse_float=str, parse_int=str)  # every number as sent
        topic = msg["ch"].replace(".depth.step0", ".mbp.150")
        tick = msg["tick"]
        version = int(tick["version"])
        new = tuple({Decimal(price): f"[{price},{size}]" for price, size in tick[side]} for side in ("bids", "asks"))
        old = books.get(topic)
        books[topic] = (version, *new)
        if old is None:
            sides = ",".join(f'"{side}":[{",".join(levels.values())}]' for side, levels in zip(("bids", "asks"), new))
            text = f'{{"id":"req:{topic}","rep":"{topic}","status":"ok","ts":{msg["ts"]},"data":{{"seqNum":{version},{sides}}}}}'
        else:
            changes = []
            for side, before, after in zip(("bids", "asks"), old[1:], new):
                levels = [level for price, level in after.items() if before.get(price) != level]
                levels += [f"[{level[1:].split(',')[0]},0]" for price, level in before.items() if price not in after]
                if levels:
                    changes.append(f'"{side}":[{",".join(levels)}]')
            ticks = ",".join([f'"seqNum":{version}', f'"prevSeqNum":{old[0]}'] + changes)
            text = f'{{"ch":"{topic}","ts":{msg["ts"]},"tick":{{{ticks}}}}}'
        out.append(gzip.compress(text.encode(), mtime=0))
    return out


def run_htx_mbp(frames: list[bytes], parse: Parse) -> int:
    syncs = _run_stream(frames, parse, lambda key, _: _stream_sync(key, htx.SEQUENCE_RULE, 150))
    return sum(s.gaps + s.resyncs for s in syncs.values())


def baseline(levels_of: Callable[[Any], tuple[str, str, Any, Any]], messages: list[Any], load: Callable[[Any], Any] = json.loads) -> None:
    """json.loads, a SortedDict per side (bids keyed negative), a top-20 slice after every message."""
    books: dict[str, tuple[SortedDict, SortedDict]] = {}
    for raw in messages:
        key, kind, bid_levels, ask_levels = levels_of(load(raw))
        if kind == "snapshot" or key not in books:
            books[key] = (SortedDict(), SortedDict())
        book_bids, book_asks = books[key]
        for side, levels, sign in ((book_bids, bid_levels, -1.0), (book_asks, ask_levels, 1.0)):
            for level in levels:
                price, size = float(level[0]) * sign, float(level[1])
                if size == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = size
        book_bids.items()[:DEPTH], book_asks.items()[:DEPTH]


def _kraken_levels(msg: Any) -> tuple[str, str, Any, Any]:
    data = msg["data"][0]
    return data["symbol"], msg["type"], [(lv["price"], lv["qty"]) for lv in data["bids"]], [(lv["price"], lv["qty"]) for lv in data["asks"]]


def _coinbase_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    event = msg["events"][0]  # one event a message in the recording
    bids = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] == "bid"]
    asks = [(u["price_level"], u["new_quantity"]) for u in event["updates"] if u["side"] != "bid"]
    return event["product_id"], event["type"], bids, asks


def _htx_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    return msg["ch"], "snapshot", msg["tick"]["bids"], msg["tick"]["asks"]


def _htx_mbp_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    if "rep" in msg:
        return msg["rep"], "snapshot", msg["data"]["bids"], msg["data"]["asks"]
    return msg["ch"], "update", msg["tick"].get("bids", []), msg["tick"].get("asks", [])


def _okx_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    data = msg["data"][0]
    return msg["arg"]["instId"], msg["action"], data["bids"], data["asks"]


def _bybit_levels(msg: dict[str, Any]) -> tuple[str, str, Any, Any]:
    return msg["topic"], msg["type"], msg["data"]["b"], msg["data"]["a"]


def _htx_load(frame: bytes) -> Any:
    """The baseline pays HTX's gunzip too."""
    return json.loads(gzip.decompress(frame))


def _timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _level_updates(messages: list[Any], levels_of: Callable[[Any], tuple[str, str, Any, Any]], load: Callable[[Any], Any] = json.loads) -> int:
    total = 0
    for raw in messages:
        _, _, bid_levels, ask_levels = levels_of(load(raw))
        total += len(bid_levels) + len(ask_levels)
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--venues", default="okx,bybit,kraken,coinbase,htx,htx-mbp", help="comma-separated subset")
    parser.add_argument("--messages-per-read", type=int, default=1,
                        help="feeder mode: messages handed to on_messages a call (1: websocket-client's reads)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the venue recordings are not there")
    okx_raw, precision = okx_messages()
    bybit_raw = bybit_messages()
    kraken_v1_raw, coinbase_raw, htx_raw = kraken_messages(), coinbase_messages(), htx_frames()
    kraken_raw, kraken_precision = kraken_v2_messages()
    htx_mbp_raw = htx_mbp_frames(htx_raw)
    okx_venue, bybit_venue = okx.OkxStream(), bybit.BybitStream("linear")
    coinbase_venue, htx_mbp_venue = coinbase.CoinbaseStream(), htx.HtxStream("mbp.150")
    kraken_venue, htx_venue = kraken.KrakenStream(f"book.{KRAKEN_DEPTH}"), htx.HtxStream("depth.step0")
    addresses = {r["conn"]: r["addr"] for r in _records(BYBIT_FILE) if r["t"] == "connect"}
    peer_messages = {"okx": [(okx.WS_PATH, raw.decode()) for raw in okx_raw],
                     "bybit": [(addresses[conn], raw.decode()) for conn, raw in bybit_raw],
                     "coinbase": [(coinbase.WS_BASE_URL, raw.decode()) for raw in coinbase_raw],
                     "kraken": [(kraken.WS_BASE_URL, raw) for raw in kraken_v1_raw],  # cryptofeed speaks v1: the recording
                     "htx": [(htx.WS_BASE_URL + htx.WS_PATH, raw) for raw in htx_raw]}  # fmt: skip
    # the C path of the venues with a C dialect: the stream feeder's per-message path (read_message)
    c_runs: dict[str, Callable[[], int]] = {
        "okx": lambda: run_okx(okx_raw, precision, c_path(okx_venue)),
        "bybit": lambda: run_bybit(bybit_raw, c_path(bybit_venue)),
        "coinbase": lambda: run_coinbase(coinbase_raw, c_path(coinbase_venue)),
        "kraken": lambda: run_kraken(kraken_raw, kraken_precision, c_path(kraken_venue)),
        "htx": lambda: run_htx(htx_raw, c_path(htx_venue)),
        "htx-mbp": lambda: run_htx_mbp(htx_mbp_raw, c_path(htx_mbp_venue)),
    }
    # the stream feeder's own path (StreamFeeder.on_messages: StreamRouter -> HotPath in C, BookSync for the rest)
    categories = {conn: addr.rsplit("/", 1)[-1] for conn, addr in addresses.items()}
    per_read = args.messages_per_read
    feeder_runs: dict[str, list[Callable[[], tuple[int, float, float]]]] = {
        "okx": [feeder_run("okx", "books", precision, okx_with_seq_ids(okx_raw), per_read)],
        "bybit": [feeder_run(f"bybit-{categories[conn]}", "orderbook.200", {}, [raw for c, raw in bybit_raw if c == conn], per_read)
                  for conn in sorted({c for c, _ in bybit_raw})],
        "kraken": [feeder_run("kraken", f"book.{KRAKEN_DEPTH}", kraken_precision, kraken_raw, per_read)],
    }  # fmt: skip
    venues: dict[str, tuple[Callable[[], int], list[Any], Callable[[Any], tuple[str, str, Any, Any]], Callable[[Any], Any]]] = {
        "okx": (lambda: run_okx(okx_raw, precision, python_path(okx_venue)), okx_raw, _okx_levels, json.loads),
        "bybit": (lambda: run_bybit(bybit_raw, python_path(bybit_venue)), [raw for _, raw in bybit_raw], _bybit_levels, json.loads),
        "kraken": (lambda: run_kraken(kraken_raw, kraken_precision, python_path(kraken_venue)), kraken_raw, _kraken_levels, json.loads),
        "coinbase": (lambda: run_coinbase(coinbase_raw, python_path(coinbase_venue)), coinbase_raw, _coinbase_levels, json.loads),
        "htx": (lambda: run_htx(htx_raw, python_path(htx_venue)), htx_raw, _htx_levels, _htx_load),
        "htx-mbp": (lambda: run_htx_mbp(htx_mbp_raw, python_path(htx_mbp_venue)), htx_mbp_raw, _htx_mbp_levels, _htx_load),
    }
    out: dict[str, Any] = {"depth": DEPTH, "repeats": args.repeats, "messages_per_read": per_read, "venues": {}}
    for name in args.venues.split(","):
        run, raws, levels_of, load = venues[name]
        faults = run()
        levels = _level_updates(raws, levels_of, load)
        wall, cpu = _timed(run, args.repeats)
        base_wall, base_cpu = _timed(lambda: baseline(levels_of, raws, load), args.repeats)
        out["venues"][name] = {
            "messages": len(raws), "level_updates": levels, "faults": faults,
            "full": {"level_updates_per_s": levels / wall, "level_updates_per_cpu_s": levels / cpu,
                     "us_per_message": wall / len(raws) * 1e6},
            "baseline": {"level_updates_per_s": levels / base_wall, "level_updates_per_cpu_s": levels / base_cpu},
            "full_vs_baseline_cpu": base_cpu / cpu,
        }  # fmt: skip
        peer = cryptofeed_run(name, peer_messages[name]) if name in peer_messages else None
        if peer is None and name in peer_messages:
            out["venues"][name]["cryptofeed"] = "not installed: pip install -e '.[peers]'"
        if peer is not None:
            tops = peer()
            peer_wall, peer_cpu = _timed(peer, args.repeats)
            out["venues"][name]["cryptofeed"] = {"level_updates_per_s": levels / peer_wall, "level_updates_per_cpu_s": levels / peer_cpu,
                                                 "books_read": tops}  # fmt: skip
        if name in c_runs:
            c_faults = c_runs[name]()
            c_wall, c_cpu = _timed(c_runs[name], args.repeats)
            out["venues"][name].update({
                "c_faults": c_faults,
                "c": {"level_updates_per_s": levels / c_wall, "level_updates_per_cpu_s": levels / c_cpu,
                      "us_per_message": c_wall / len(raws) * 1e6},
                "c_vs_baseline_cpu": base_cpu / c_cpu, "c_vs_full_cpu": cpu / c_cpu,
            })  # fmt: skip
            if peer is not None:
                out["venues"][name]["c_vs_cryptofeed_cpu"] = peer_cpu / c_cpu
        if name in feeder_runs:
            feeder_faults = 0
            walls, cpus = [], []
            for run_feeder in feeder_runs[name]:
                run_feeder()  # warm
            for _ in range(args.repeats):
                feeder_wall = feeder_cpu = 0.0
                for run_feeder in feeder_runs[name]:
                    faults_one, wall_one, cpu_one = run_feeder()
                    feeder_faults, feeder_wall, feeder_cpu = feeder_faults + faults_one, feeder_wall + wall_one, feeder_cpu + cpu_one
                walls.append(feeder_wall)
                cpus.append(feeder_cpu)
            f_wall, f_cpu = statistics.median(walls), statistics.median(cpus)
            out["venues"][name].update({
                "feeder_faults": feeder_faults,
                "feeder": {"level_updates_per_s": levels / f_wall, "level_updates_per_cpu_s": levels / f_cpu,
                           "us_per_message": f_wall / len(raws) * 1e6, "us_cpu_per_message": f_cpu / len(raws) * 1e6},
                "feeder_vs_baseline_cpu": base_cpu / f_cpu, "feeder_vs_full_cpu": cpu / f_cpu,
            })  # fmt: skip
            if peer is not None:
                out["venues"][name]["feeder_vs_cryptofeed_cpu"] = peer_cpu / f_cpu
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
