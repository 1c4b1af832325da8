"""ldc.venues.okx: the OKX v5 books protocol, and BookSync on the seam proven on OKX's own recording.

The recording (shared/data/venues/okx_books400_20220513.jsonl.gz, 2022-05-13, BTC-USDT and UNI-USD-SWAP on
``books``) predates seqId: every message carries OKX's checksum of its top 25, so every one is a proof."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from ldc._fastbook import FastBook
from ldc.book import OrderBook
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.errors import ConfigError, ProtocolError
from ldc.sync import BookSync, MarkOutOfSync, OutOfSyncReason, Resubscribe, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues import okx
from ldc.venues._parse import ControlKind
from ldc.venues.base import Precision, SnapshotSource
from venue_recordings import OKX_FILE, DecimalBook, records, venues_dir

DEPTH = 20
RECORDED = (venues_dir() / OKX_FILE).is_file()


def _sync(symbol: str, precision: Precision, book: Any = FastBook) -> BookSync:
    config = SyncConfig(rule=okx.SEQUENCE_RULE, depth=DEPTH, snapshot_limit=400, snapshot_source=SnapshotSource.STREAM,
                        refresh_interval_s=None, checksum=okx.book_checksum(precision))  # fmt: skip
    return BookSync(symbol, lambda: book(depth=DEPTH), config)


def _feed(sync: BookSync, event: DepthSnapshot | DepthDiff) -> Any:
    if isinstance(event, DepthSnapshot):
        return sync.feed(SnapshotResult(event, SnapshotPurpose.LIVE), 0.0)
    return sync.on_diff(event, 0.0)


def _book_message(action: str, inst: str, bids: list[list[str]], asks: list[list[str]], **ids: int) -> bytes:
    data: dict[str, Any] = {"asks": asks, "bids": bids, "ts": "1597026383085", **ids}
    return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]})


def _crc(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


# -- the protocol ----------------------------------------------------------------------------------------------


def test_checksum_reproduces_the_documented_worked_examples() -> None:
    precision = Precision(1, 0)
    assert okx.checksum([(3366.1, 7.0), (3366.0, 6.0)], [(3366.8, 9.0), (3368.0, 8.0)], precision) == -1881014294
    assert okx.checksum([(3366.1, 7.0)], [(3366.8, 9.0), (3368.0, 8.0), (3372.0, 8.0)], precision) == 831078360


def test_subscribe_message_is_okx_v5_and_limits_are_checked() -> None:
    assert orjson.loads(okx.subscribe_message("books", ["BTC-USDT", "BTC-USDT-SWAP"], "7")) == {
        "id": "7", "op": "subscribe",
        "args": [{"channel": "books", "instId": "BTC-USDT"}, {"channel": "books", "instId": "BTC-USDT-SWAP"}],
    }  # fmt: skip
    with pytest.raises(ConfigError, match="channel 'books5' not offered by OKX"):
        okx.subscribe_message("books5", ["BTC-USDT"], "1")
    with pytest.raises(ConfigError, match="expected 1..30"):
        okx.subscribe_message("books", [f"A{i}-USDT" for i in range(31)], "1")


@pytest.mark.parametrize("symbol", ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250926"])
def test_symbols_in_okx_syntax_are_accepted(symbol: str) -> None:
    assert okx.symbol_error(symbol) == ""


def test_a_symbol_in_another_venues_syntax_names_the_okx_form() -> None:
    assert okx.symbol_error("BTCUSDT") == (
        "expected an OKX instrument id like 'BTC-USDT', 'BTC-USDT-SWAP' or 'BTC-USD-250926', found 'BTCUSDT'"
    )


def test_control_messages_are_classified_with_the_venues_own_words() -> None:
    assert okx.parse_message(b"pong").kind is ControlKind.PONG  # type: ignore[union-attr]
    ack = okx.parse_message(b'{"id":"1","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4"}')
    assert (ack.kind, ack.topic) == (ControlKind.ACK, "BTC-USDT")  # type: ignore[union-attr]
    error = okx.parse_message(b'{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:BTC-USDTX doesn\'t exist","connId":"a4"}')
    assert (error.kind, error.code, error.topic) == (ControlKind.ERROR, "60018", "BTC-USDTX")  # type: ignore[union-attr]
    assert "doesn't exist" in error.message  # type: ignore[union-attr]
    notice = okx.parse_message(b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade."}')
    assert notice.kind is ControlKind.SHUTDOWN  # type: ignore[union-attr]


def test_book_message_has_four_element_levels_and_seq_ids() -> None:
    (event,) = okx.parse_message(_book_message("update", "BTC-USDT", [["8476.97", "256", "0", "12"]], [], prevSeqId=10, seqId=15, checksum=-5))  # type: ignore[misc]
    diff = event.event
    assert isinstance(diff, DepthDiff)
    assert (diff.first_id, diff.final_id, diff.prev_final_id, diff.checksum, diff.bids) == (10, 15, 10, -5, [(8476.97, 256.0)])
    with pytest.raises(ProtocolError, match=r"field 'bids'\[0\]: expected 4 strings"):
        okx.parse_message(_book_message("update", "BTC-USDT", [["8476.97", "256"]], []))


# -- BookSync with OKX's policies ---------------------------------------------------------------------------------


def _snapshot_and_sync(seq_id: int = 10) -> BookSync:
    sync = _sync("BTC-USDT", Precision(1, 0), OrderBook)
    bids, asks = [["3366.1", "7", "0", "1"], ["3366", "6", "0", "1"]], [["3366.8", "9", "0", "1"], ["3368", "8", "0", "1"]]
    (event,) = okx.parse_message(_book_message("snapshot", "BTC-USDT", bids, asks, prevSeqId=-1, seqId=seq_id, checksum=-1881014294))  # type: ignore[misc]
    _feed(sync, event.event)
    assert sync.state is SyncState.SYNCED and (sync.update_id, sync.checksums) == (seq_id, 1)
    return sync


def _update(prev: int, seq: int, bids: list[list[str]], checksum: int = 0) -> DepthDiff:
    (event,) = okx.parse_message(_book_message("update", "BTC-USDT", bids, [], prevSeqId=prev, seqId=seq, checksum=checksum))  # type: ignore[misc]
    assert isinstance(event.event, DepthDiff)
    return event.event


def test_the_documented_sequence_keepalive_and_reset_keep_the_book() -> None:
    sync = _snapshot_and_sync(10)
    _feed(sync, _update(10, 15, [["3366.1", "8", "0", "1"]], _crc("3366.1:8:3366.8:9:3366:6:3368:8")))
    _feed(sync, _update(15, 15, []))  # the no-change keep-alive
    _feed(sync, _update(15, 3, [["3366", "5", "0", "1"]], _crc("3366.1:8:3366.8:9:3366:5:3368:8")))  # maintenance reset
    _feed(sync, _update(3, 5, [["3366", "4", "0", "1"]]))
    assert (sync.state, sync.update_id, sync.gaps, sync.resyncs, sync.checksums, sync.checksum_mismatches) == (SyncState.SYNCED, 5, 0, 0, 3, 0)


def test_a_checksum_mismatch_resyncs_that_market_alone_and_is_counted() -> None:
    sync, other = _snapshot_and_sync(), _snapshot_and_sync()
    actions = _feed(sync, _update(10, 11, [["3366.1", "8", "0", "1"]], checksum=12345))
    assert actions == (MarkOutOfSync(OutOfSyncReason.CHECKSUM), Resubscribe(OutOfSyncReason.CHECKSUM))
    assert (sync.checksum_mismatches, sync.state, sync.book) == (1, SyncState.BUFFERING, None)
    assert other.state is SyncState.SYNCED and other.checksum_mismatches == 0


def test_a_gap_resubscribes_and_the_next_snapshot_resyncs() -> None:
    sync = _snapshot_and_sync(10)
    assert _feed(sync, _update(12, 13, [])) == (MarkOutOfSync(OutOfSyncReason.GAP), Resubscribe(OutOfSyncReason.GAP))
    assert _feed(sync, _update(13, 14, [])) == ()  # nothing to join until the stream's snapshot
    (event,) = okx.parse_message(_book_message("snapshot", "BTC-USDT", [["3366", "1", "0", "1"]], [["3367", "1", "0", "1"]],
                                               prevSeqId=-1, seqId=20))  # type: ignore[misc]
    _feed(sync, event.event)
    assert (sync.state, sync.update_id, sync.resyncs) == (SyncState.SYNCED, 20, 1)


# -- the genuine recording ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not RECORDED, reason="shared/data/venues recordings not present")
def test_recording_every_checksum_verified_and_the_top_20_equal_a_decimal_replay() -> None:
    precision: dict[str, Precision] = {}
    syncs: dict[str, BookSync] = {}
    reference: dict[str, DecimalBook] = {}
    compared = reference_checksums = 0
    bids, asks = np.zeros((DEPTH, 2)), np.zeros((DEPTH, 2))
    for record in records(OKX_FILE):
        if record["t"] == "http" and "/instruments" in str(record["url"]):
            precision.update(okx.parse_instruments(str(record["data"])))
            continue
        if record["t"] != "recv":
            continue
        raw = str(record["data"])
        parsed = okx.parse_message(raw)
        if not isinstance(parsed, list):
            continue
        for item, event in zip(orjson.loads(raw)["data"], parsed):
            sync = syncs.get(event.symbol) or syncs.setdefault(event.symbol, _sync(event.symbol, precision[event.symbol]))
            ref = reference.setdefault(event.symbol, DecimalBook())
            if isinstance(event.event, DepthSnapshot):
                ref.reset(item["bids"], item["asks"])
            else:
                ref.apply(item["bids"], item["asks"])
            # the reference's own checksum: the strings as sent, as OKX documents it
            top_bids, top_asks = ref.top(okx.CHECKSUM_LEVELS)
            parts = [text for i in range(okx.CHECKSUM_LEVELS) for pair in (top_bids[i:i + 1] + top_asks[i:i + 1]) for text in pair]
            assert _crc(":".join(parts)) == item["checksum"]
            reference_checksums += 1
            _feed(sync, event.event)
            assert sync.state is SyncState.SYNCED and sync.book is not None
            n_bids, n_asks = sync.book.top(DEPTH, bids, asks)
            assert (bids[:n_bids].tolist(), asks[:n_asks].tolist()) == ref.top_floats(DEPTH)
            compared += 1
    assert reference_checksums == compared == 191
    assert sum(s.checksums for s in syncs.values()) == 191
    assert sum(s.checksum_mismatches + s.resyncs + s.gaps for s in syncs.values()) == 0
    assert sorted(syncs) == ["BTC-USDT", "UNI-USD-SWAP"]


def test_an_instrument_list_whose_tick_disagrees_with_the_stream_still_verifies_the_strings_as_sent() -> None:
    """OKX sends numbers without trailing zeros: a book written back in its shortest form reproduces them, so a
    tick size coarser than the prices streamed (here 0 decimals for 3366.1) does not turn every message into a
    mismatch; a wrong checksum still is one."""
    holds = okx.book_checksum(Precision(0, 0))
    book = OrderBook(depth=DEPTH)
    book.load_snapshot(DepthSnapshot(1, [(3366.1, 7.0), (3366.0, 6.0)], [(3366.8, 9.0), (3368.0, 8.0)], 400))
    assert holds(book, -1881014294) and not holds(book, -1881014293)
    assert okx.book_checksum(okx.SHORTEST)(book, -1881014294)
