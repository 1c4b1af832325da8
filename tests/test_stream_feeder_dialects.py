"""The stream feeder's per-message path (``ldc.stream_feeder.read_message``) with the venues' C dialects, on the
genuine recordings: every OKX checksum verified with 0 mismatches through the C path, and every book equal, at
every message, to the book the reference parser's path keeps."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from ldc._fastbook import FastBook, ParsedDiff
from ldc.depth import DepthSnapshot
from ldc.errors import ProtocolError
from ldc.stream_feeder import read_message
from ldc.sync import BookSync, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import okx, stream_venue
from ldc.venues._parse import VenueControl
from ldc.venues.base import Precision, SnapshotSource
from venue_recordings import BYBIT_FILE, COINBASE_FILE, OKX_FILE, records, venues_dir

DEPTH = 20
OKX_RECORDED_CHECKSUMS = 191  # the shared recording's (its README)


def _recording(name: str) -> list[dict[str, Any]]:
    if not (venues_dir() / name).is_file():
        pytest.skip(f"{name} is not in {venues_dir()}")
    return list(records(name))


def _sync(key: str, rule: Any, window: int, checksum: Any = None) -> BookSync:
    config = SyncConfig(rule=rule, depth=DEPTH, snapshot_limit=window, snapshot_source=SnapshotSource.STREAM,
                        refresh_interval_s=None, checksum=checksum)  # fmt: skip
    return BookSync(key, lambda: FastBook(depth=DEPTH), config)


def _feed(sync: BookSync, event: Any) -> None:
    if isinstance(event, DepthSnapshot):
        sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
    else:
        sync.on_diff(event, 0.0)


def _top(sync: BookSync) -> tuple[list[list[float]], list[list[float]]]:
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    assert sync.book is not None
    n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
    return bids[:n_bids].tolist(), asks[:n_asks].tolist()


class _Replay:
    """Each recorded message through read_message (C dialect first) and through the reference parser alone,
    each into its own BookSync per stream; the two tops compared after every message."""

    def __init__(self, exchange: str, make_sync: Any) -> None:
        venue = stream_venue(exchange)
        assert venue is not None
        self.fast, self.parse, self.make_sync = venue.fast_parse, venue.parse, make_sync  # type: ignore[attr-defined]
        self.c_syncs: dict[tuple[str, str], BookSync] = {}  # (connection, stream): Bybit's topics repeat per URL
        self.py_syncs: dict[tuple[str, str], BookSync] = {}
        self.read_in_c = 0  # messages of diffs only, read in C
        self.snapshots_in_c = 0  # messages with a snapshot, read in C

    def message(self, raw: str, conn: str = "") -> None:
        self.message_bytes(raw.encode(), conn)

    def message_bytes(self, raw: bytes, conn: str = "") -> None:
        try:
            reference = self.parse(raw)
        except ProtocolError:
            return
        events = read_message(self.fast, self.parse, raw)
        if isinstance(events, VenueControl):
            assert isinstance(reference, VenueControl)
            return
        assert not isinstance(reference, VenueControl)
        self.read_in_c += all(isinstance(event, ParsedDiff) for _, event in events)
        if any(isinstance(event, DepthSnapshot) for _, event in events):
            try:
                self.snapshots_in_c += self.fast(raw) is not None
            except ValueError:
                pass
        for (key, event), (py_key, py_event) in zip(events, reference, strict=True):
            assert key == py_key
            c_sync = self.c_syncs.get((conn, key)) or self.c_syncs.setdefault((conn, key), self.make_sync(key))
            py_sync = self.py_syncs.get((conn, key)) or self.py_syncs.setdefault((conn, key), self.make_sync(key))
            _feed(c_sync, event)
            _feed(py_sync, py_event)
            assert c_sync.state is SyncState.SYNCED and py_sync.state is SyncState.SYNCED
            assert _top(c_sync) == _top(py_sync)


def test_okx_recording_every_checksum_verified_through_the_c_path() -> None:
    precision: dict[str, Precision] = {}
    replay = _Replay("okx", lambda key: _sync(key, okx.SEQUENCE_RULE, 400, okx.book_checksum(precision[key])))
    for record in _recording(OKX_FILE):
        if record["t"] == "http" and "/instruments" in str(record["url"]):
            precision.update(okx.parse_instruments(str(record["data"])))
        elif record["t"] == "recv":
            replay.message(str(record["data"]))
    syncs = replay.c_syncs.values()
    assert sum(s.checksums for s in syncs) == OKX_RECORDED_CHECKSUMS
    assert sum(s.checksum_mismatches + s.resyncs + s.gaps for s in syncs) == 0
    assert replay.read_in_c == OKX_RECORDED_CHECKSUMS - len(replay.c_syncs)  # every message but the snapshots


def test_bybit_recording_books_equal_the_reference_path_at_every_message() -> None:
    from ldc.venues import bybit

    replay = _Replay("bybit-linear", lambda key: _sync(key, bybit.SEQUENCE_RULE, 200))
    for record in _recording(BYBIT_FILE):
        if record["t"] == "recv":
            replay.message(str(record["data"]), str(record["conn"]))
    assert replay.read_in_c > 1000
    assert sum(s.gaps + s.resyncs for s in replay.c_syncs.values()) == 0


def test_coinbase_recording_books_equal_the_reference_path_at_every_message() -> None:
    """Coinbase's whole-book snapshots (5.1 and 2.5 MB) and every l2_data update read in C, the books equal."""
    from ldc.venues import coinbase

    replay = _Replay("coinbase", lambda key: _sync(key, coinbase.SEQUENCE_RULE, coinbase.WHOLE_BOOK_LEVELS))
    for record in _recording(COINBASE_FILE):
        if record["t"] == "recv":
            replay.message(str(record["data"]), str(record["conn"]))
    assert replay.read_in_c > 700 and replay.snapshots_in_c == 2
    assert sum(s.gaps + s.resyncs for s in replay.c_syncs.values()) == 0


def _bench() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_venues", Path(__file__).resolve().parent.parent / "scripts" / "bench_venues.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_kraken_recording_served_as_v2_every_checksum_verified_through_the_c_path() -> None:
    """The v1 recording as ``ldc sim --replay`` serves it (v2 book.1000, the v2 checksum of the book after every
    message): every message read in C (snapshots too), every checksum of the top 10 computed in C from the book
    and verified (2,682, 0 mismatches), the books equal to the reference path's at every message."""
    from ldc.venues import kraken
    from venue_recordings import KRAKEN_FILE

    _recording(KRAKEN_FILE)
    messages, precision = _bench().kraken_v2_messages(venues_dir() / KRAKEN_FILE)
    replay = _Replay("kraken", lambda key: _sync(key, kraken.SEQUENCE_RULE, 1000, kraken.book_checksum(precision[key])))
    replay.fast = lambda raw: kraken.KrakenStream("book.1000").fast_parse(raw)  # the recorded depth
    replay.parse = kraken.KrakenStream("book.1000").parse
    for raw in messages:
        replay.message_bytes(raw)
    syncs = replay.c_syncs.values()
    snapshots = len(replay.c_syncs)  # one a pair: no resync
    assert replay.snapshots_in_c == snapshots > 0
    assert replay.read_in_c == len(messages) - snapshots > 2000  # the shared file: 2,682 updates (its README)
    assert sum(s.checksums for s in syncs) == len(messages)  # every message carries one in v2, snapshots too
    assert sum(s.checksum_mismatches + s.resyncs + s.gaps for s in syncs) == 0


def test_htx_step0_recording_every_book_read_in_c() -> None:
    """HTX's recorded depth.step0 frames (a whole book each): every one gunzipped and read in C as a snapshot, the
    books equal to the reference path's after every frame."""
    from ldc.venues import htx
    from venue_recordings import HTX_FILE

    _recording(HTX_FILE)
    frames = _bench().htx_frames()
    replay = _Replay("htx", lambda key: _sync(key, htx.SEQUENCE_RULE, 150))
    replay.fast, replay.parse = htx.HtxStream("depth.step0").fast_parse, htx.HtxStream("depth.step0").parse
    for frame in frames:
        replay.message_bytes(frame)
    assert replay.snapshots_in_c == len(frames) > 100
    assert sum(s.gaps + s.resyncs for s in replay.c_syncs.values()) == 0


def test_htx_mbp_books_equal_the_reference_path_at_every_message() -> None:
    """HTX mbp.150 frames made from the recorded depth.step0 books (scripts/bench_venues.py): the refresh answers
    and every update gunzipped and read in C, the books equal after every frame."""
    import gzip
    import importlib.util
    from pathlib import Path

    from ldc.venues import htx
    from venue_recordings import HTX_FILE

    _recording(HTX_FILE)
    spec = importlib.util.spec_from_file_location("bench_venues", Path(__file__).resolve().parent.parent / "scripts" / "bench_venues.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    replay = _Replay("htx", lambda key: _sync(key, htx.SEQUENCE_RULE, 150))
    for frame in bench.htx_mbp_frames(bench.htx_frames()):
        replay.message_bytes(frame)
    assert replay.read_in_c > 200 and replay.snapshots_in_c == len(replay.c_syncs)  # the refreshes (rep) in C too
    assert sum(s.gaps + s.resyncs for s in replay.c_syncs.values()) == 0


def test_a_venue_without_a_c_dialect_runs_on_its_reference_parser() -> None:
    venue = stream_venue("kraken")
    assert venue is not None
    raw = b'{"channel":"heartbeat"}'
    assert read_message(None, venue.parse, raw) == venue.parse(raw)
    assert venue.fast_parse(raw) is None  # type: ignore[attr-defined]  # and the dialect leaves it to the parser
    assert read_message(venue.fast_parse, venue.parse, raw) == venue.parse(raw)  # type: ignore[attr-defined]


def test_a_doubted_message_is_read_and_refused_by_the_reference_parser() -> None:
    venue = stream_venue("okx")
    assert venue is not None
    raw = b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["1","x","0","0"]],"bids":[],"ts":"1"}]}'
    with pytest.raises(ProtocolError, match=r"field 'asks'\[0\]: expected a non-negative decimal string, found 'x'"):
        read_message(venue.fast_parse, venue.parse, raw)  # type: ignore[attr-defined]


@pytest.fixture
def group() -> Any:
    from shm_helpers import group_fixture

    yield from group_fixture()


def test_the_stream_feeder_reads_recorded_okx_updates_in_c_and_snapshots_in_python(group: str) -> None:
    """StreamFeeder.on_message on OKX's recorded BTC-USDT messages: the snapshot by the reference parser, every
    update by the C dialect, every checksum verified (in C) with 0 mismatches."""
    from ldc.config import GroupConfig
    from ldc.stream_feeder import StreamFeeder

    precision: dict[str, Precision] = {}
    messages: list[bytes] = []
    for record in _recording(OKX_FILE):
        if record["t"] == "http" and "/instruments" in str(record["url"]):
            precision.update(okx.parse_instruments(str(record["data"])))
        elif record["t"] == "recv" and '"instId":"BTC-USDT"' in str(record["data"]) and '"channel":"books"' in str(record["data"]):
            messages.append(str(record["data"]).encode())
    feeder = StreamFeeder(GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT",), channel="books", capacity=2))
    calls = {"python": 0}
    parse = feeder.venue.parse
    assert feeder._fast_parse is not None and feeder._router is not None  # the StreamRouter runs the C dialect

    def counted_parse(raw: bytes | str) -> Any:
        calls["python"] += 1
        return parse(raw)

    try:
        market = feeder._add_market("BTC-USDT", precision["BTC-USDT"])
        feeder.venue.parse = counted_parse  # type: ignore[method-assign]
        for raw in messages:
            feeder.on_message(0, raw, time.time_ns())
        updates = sum(1 for raw in messages if b'"action":"update"' in raw)
        assert updates > 90 and calls == {"python": len(messages) - updates}  # the ack and the snapshot
        assert market.sync.state is SyncState.SYNCED and feeder.malformed == 0
        assert market.sync.checksums == updates + 1 and market.sync.checksum_mismatches == 0
    finally:
        feeder.close()
