"""ldc.venues.htx: HTX's gzip frames, ping / pong, mbp with its req refresh joined by BookSync, and depth.step0
proven on HTX's own recording (shared/data/venues/huobi_depth_step0_20210417.jsonl.gz: 292 whole books of
ten pairs, prices as JSON numbers, some in scientific notation)."""

from __future__ import annotations

import base64
import gzip
import json
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest

from ldc._fastbook import FastBook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.sync import (BookSync, FetchSnapshot, MarkOutOfSync, OutOfSyncReason, SnapshotPurpose, SnapshotResult, SyncConfig,
                      SyncState)  # fmt: skip
from ldc.venues import htx, stream_venue
from ldc.venues._parse import ControlKind, VenueControl
from ldc.venues.base import SnapshotSource
from venue_recordings import venues_dir

DEPTH = 20
HTX_FILE = "huobi_depth_step0_20210417.jsonl.gz"
RECORDED = (venues_dir() / HTX_FILE).is_file()
TOPIC = "market.btcusdt.mbp.150"


def _frame(obj: dict[str, Any] | str) -> bytes:
    return gzip.compress(obj.encode() if isinstance(obj, str) else orjson.dumps(obj), mtime=0)


def _events(raw: bytes) -> list[tuple[str, DepthSnapshot | DepthDiff]]:
    parsed = htx.HtxStream().parse(raw)
    assert isinstance(parsed, list)
    return parsed


def _mbp(prev: int, seq: int, bids: str = "[]", asks: str = "[]") -> bytes:
    return _frame(f'{{"ch":"{TOPIC}","ts":1573199608679,"tick":{{"seqNum":{seq},"prevSeqNum":{prev},"bids":{bids},"asks":{asks}}}}}')


# -- the protocol ----------------------------------------------------------------------------------------------


def test_the_servers_ping_is_answered_with_its_number() -> None:
    control = htx.parse_message(_frame({"ping": 1492420473027}))
    assert isinstance(control, VenueControl) and control.kind is ControlKind.PING
    assert orjson.loads(control.reply) == {"pong": 1492420473027}


def test_numbers_in_scientific_notation_are_read_exactly() -> None:
    (event,) = htx.parse_message(_frame('{"ch":"market.trioeth.depth.step0","ts":1,"tick":{"bids":[[9.121E-7,92730.24]],'
                                        '"asks":[[9.2E-7,1.0E+2]],"version":136998124622,"ts":2}}'))  # type: ignore[misc]
    snapshot = event.event
    assert isinstance(snapshot, DepthSnapshot)
    assert (snapshot.last_update_id, list(snapshot.bids), list(snapshot.asks), snapshot.limit) == (
        136998124622, [(float(Decimal("9.121E-7")), 92730.24)], [(9.2e-07, 100.0)], 150)


def test_a_blank_object_for_the_unchanged_side_is_an_empty_side() -> None:
    """HTX's documents: the 150 / 400-level diffs "carry a blank object for the unchanged side" (``{}``, not
    ``[]``); the reference parser refused the update (the C dialect hands it back, so it decides)."""
    ((topic, diff),) = _events(_mbp(10, 11, bids="[[9058.27,0]]", asks="{}"))
    assert isinstance(diff, DepthDiff) and topic == TOPIC
    assert (diff.prev_final_id, diff.final_id, list(diff.bids), list(diff.asks)) == (10, 11, [(9058.27, 0.0)], [])
    ((_, both),) = _events(_mbp(11, 12, bids="{}", asks="{}"))
    assert isinstance(both, DepthDiff) and (list(both.bids), list(both.asks)) == ([], [])
    with pytest.raises(ProtocolError, match=r"field 'asks': expected a list of levels, found"):
        htx.parse_message(_mbp(12, 13, asks='{"9058.27":0}'))  # an object with levels in it is no blank one


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"ping": 1}', r"frame: expected gzip-compressed JSON, found"),
    (gzip.compress(b'{"ping": 1}', mtime=0)[:-6], r"frame: expected a whole gzip stream"),
    (b"\x1f\x8b" + b"\x00" * 30, r"frame: expected gzip-compressed JSON, found a broken gzip stream"),
    (_frame(f'{{"ch":"{TOPIC}","tick":{{"seqNum":2,"prevSeqNum":1,"bids":[["9058.27",0]]}}}}'),
     r"field 'bids'\[0\]: expected a non-negative JSON number, found '9058.27'"),
    (_frame(f'{{"ch":"{TOPIC}","tick":{{"seqNum":2,"bids":[]}}}}'), r"field 'prevSeqNum': expected an integer, found nothing"),
])  # fmt: skip
def test_bad_frames_and_fields_are_named(raw: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        htx.parse_message(raw)


def test_requests_carry_the_topic_so_htxs_errors_name_the_market() -> None:
    venue = htx.HtxStream()
    assert [orjson.loads(m) for m in venue.subscribe_messages("mbp.150", [TOPIC], "1")] == [{"sub": TOPIC, "id": f"sub:{TOPIC}"}]
    assert orjson.loads(venue.ws_snapshot_request(TOPIC) or b"") == {"req": TOPIC, "id": f"req:{TOPIC}"}
    assert venue.snapshot_request("btcusdt", 150) is None and htx.HtxStream("depth.step0").ws_snapshot_request(TOPIC) is None
    refused = htx.parse_message(_frame({"status": "error", "err-code": "bad-request", "err-msg": "invalid topic market.nope.mbp.150",
                                        "id": "sub:market.nope.mbp.150", "ts": 1}))  # fmt: skip
    assert isinstance(refused, VenueControl)
    assert (refused.kind, refused.topic, refused.message) == (ControlKind.ERROR, "market.nope.mbp.150", "invalid topic market.nope.mbp.150")
    failed = htx.parse_message(_frame({"status": "error", "err-code": "bad-request", "err-msg": "request timeout", "id": f"req:{TOPIC}"}))
    assert isinstance(failed, VenueControl) and (failed.kind, failed.topic) == (ControlKind.SNAPSHOT_FAILED, TOPIC)


def test_symbols_are_lower_case_and_channels_pick_the_path() -> None:
    assert htx.symbol_error("btcusdt") == ""
    assert htx.symbol_error("btc-usdt") == "expected an HTX symbol like 'btcusdt', found 'btc-usdt'"
    (table,) = htx.TABLES
    assert (table.path_of("mbp.150"), table.path_of("depth.step0")) == ("/feed", "/ws")
    assert stream_venue("htx", "depth.step0").snapshot_source is SnapshotSource.STREAM  # type: ignore[union-attr]
    assert stream_venue("htx", "mbp.150").snapshot_source is SnapshotSource.REST  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="channel 'mbp.400' not offered by HTX"):
        htx.HtxStream("mbp.400")


# -- mbp: the refresh joins the buffered stream --------------------------------------------------------------------


def _mbp_sync() -> BookSync:
    config = SyncConfig(rule=htx.SEQUENCE_RULE, depth=5, snapshot_limit=150, snapshot_source=SnapshotSource.REST, refresh_interval_s=None)
    return BookSync(TOPIC, lambda: FastBook(depth=5), config)


def test_the_req_refresh_joins_the_diff_whose_prev_seq_num_is_its_seq_num_and_a_gap_asks_again() -> None:
    sync = _mbp_sync()
    ((_, first),) = _events(_mbp(100, 107, bids="[[10.0,1]]"))
    assert sync.on_diff(first, 0.0) == (FetchSnapshot(150, SnapshotPurpose.LIVE),)  # type: ignore[arg-type]
    ((_, second),) = _events(_mbp(107, 110, asks="[[11.5,2]]"))
    assert sync.on_diff(second, 0.0) == ()  # type: ignore[arg-type]
    rep = _frame('{"id":"req:market.btcusdt.mbp.150","rep":"market.btcusdt.mbp.150","status":"ok","ts":1,'
                 '"data":{"seqNum":107,"bids":[[10.0,1],[9.5,3]],"asks":[[11.0,1],[12.0,4]]}}')
    ((_, snapshot),) = _events(rep)
    assert isinstance(snapshot, DepthSnapshot) and snapshot.last_update_id == 107
    sync.feed(SnapshotResult(snapshot, SnapshotPurpose.LIVE), 0.0)
    assert sync.state is SyncState.SYNCED and sync.update_id == 110 and sync.book is not None
    assert sync.book.levels() == ([(10.0, 1.0), (9.5, 3.0)], [(11.0, 1.0), (11.5, 2.0), (12.0, 4.0)])
    ((_, blank),) = _events(_mbp(110, 118))  # a 150-level keep-alive: both sides empty, the ids move on
    sync.on_diff(blank, 0.0)  # type: ignore[arg-type]
    ((_, lost),) = _events(_mbp(120, 125, bids="[[10.0,0]]"))
    actions = sync.on_diff(lost, 0.0)  # type: ignore[arg-type]
    assert actions[0] == MarkOutOfSync(OutOfSyncReason.GAP) and any(type(a) is FetchSnapshot for a in actions[1:])
    assert (sync.gaps, sync.state) == (1, SyncState.BUFFERING)


# -- the genuine recording (depth.step0) ---------------------------------------------------------------------------


@pytest.mark.skipif(not RECORDED, reason="shared/data/venues recordings not present")
def test_recording_292_whole_books_sorted_uncrossed_and_equal_to_a_decimal_reading() -> None:
    venue = htx.HtxStream("depth.step0")
    syncs: dict[str, BookSync] = {}
    books = pings = 0
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    with gzip.open(venues_dir() / HTX_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] != "recv" or "b64" not in record:
                continue
            frame = base64.b64decode(record["b64"])
            parsed = venue.parse(frame)
            if isinstance(parsed, VenueControl):
                pings += parsed.kind is ControlKind.PING
                continue
            ((name, event),) = parsed
            assert isinstance(event, DepthSnapshot)
            config = SyncConfig(rule=venue.rule, depth=DEPTH, snapshot_limit=150, snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)
            sync = syncs.setdefault(name, BookSync(name, lambda: FastBook(depth=DEPTH), config))
            sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
            assert sync.state is SyncState.SYNCED and sync.book is not None and not sync.book.crossed()
            tick = json.loads(gzip.decompress(frame), parse_float=Decimal)["tick"]
            assert sync.update_id == tick["version"]
            n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
            assert bids[:n_bids].tolist() == [[float(p), float(q)] for p, q in tick["bids"][:DEPTH]]
            assert asks[:n_asks].tolist() == [[float(p), float(q)] for p, q in tick["asks"][:DEPTH]]
            prices = [p for p, _ in tick["bids"]], [p for p, _ in tick["asks"]]
            assert prices[0] == sorted(prices[0], reverse=True) and prices[1] == sorted(prices[1]) and prices[0][0] < prices[1][0]
            books += 1
    assert books == 292 and len(syncs) == 10
    assert sum(s.resyncs + s.faults for s in syncs.values()) == 0
