"""The relay's attachment to the origin segment (ldc/fanout/origin.py) under layout 2.0: every feeder
start replaces the file, and readers judge a silent writer STALE from its heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ldc.fanout import codec
from ldc.fanout.origin import Origin
from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from shm_helpers import book, unique_group, unlink_group

DEPTH = 5
HEARTBEAT_MS = 10  # the smallest stale_after_ms the writer takes is two intervals: 20 ms
STALE_AFTER_MS = 2 * HEARTBEAT_MS


@pytest.fixture
def group() -> Iterator[str]:
    name = unique_group("fo")
    yield name
    unlink_group(name)


def _writer(group: str, **kwargs: int) -> SegmentWriter:
    return SegmentWriter(group, depth=DEPTH, capacity=4, exchange="binance.com", markets=["AAAUSDT"], **kwargs)


def _publish(writer: SegmentWriter, update_id: int) -> None:
    bids, asks = book(DEPTH)
    writer.publish(writer.slot("AAAUSDT"), update_id=update_id, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                   bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)
    writer.notify()


def test_a_replaced_origin_file_is_seen_as_replaced_not_followed_behind_the_relays_back(group: str) -> None:
    """The relay copies from its own mapping: it must see that file's writer gone and re-attach, even
    though the group's Reader would follow the new file and call the (new) writer alive."""
    first = _writer(group)
    origin = Origin(group, epoch=1)
    try:
        assert origin.alive() and not origin.replaced()
        first.close()
        second = _writer(group)  # a feeder restart: a new file, the old one RETIRED
        try:
            assert origin.replaced()
            assert not origin.alive()
        finally:
            second.close()
    finally:
        origin.close()


def test_sequences_go_on_across_a_replaced_origin_file(group: str) -> None:
    """Within one relay epoch a market's sequence never starts again: a mirror drops an update whose
    sequence it has passed as old."""
    writer = _writer(group)
    try:
        _publish(writer, 1)
        origin = Origin(group, epoch=1, seqs={"AAAUSDT": 41})
        try:
            (change,) = origin.changes()
        finally:
            origin.close()
    finally:
        writer.close()
    assert change.seq == 42
    assert codec.decode_entry(change.entry, DEPTH).seq == 42


def test_a_silent_origin_is_not_alive_and_its_updates_carry_the_stored_status(group: str) -> None:
    """The reader's STALE judgement of an old heartbeat is the relay's to say in its heartbeat
    (origin not alive): carried in an update it would stay on the mirror's slot after the origin's
    heartbeat resumed, until that market changed again."""
    writer = _writer(group, heartbeat_interval_ms=HEARTBEAT_MS, stale_after_ms=STALE_AFTER_MS)
    try:
        origin = Origin(group, epoch=1)
        try:
            _publish(writer, 7)
            time.sleep(3 * STALE_AFTER_MS / 1000)  # no heartbeat meanwhile: readers judge it STALE
            assert not origin.alive()
            (change,) = origin.changes()
            update = codec.decode_entry(change.entry, DEPTH)
            assert (update.update_id, Status(update.status)) == (7, Status.SYNCED)
            writer.heartbeat()
            assert origin.alive()
        finally:
            origin.close()
    finally:
        writer.close()


@pytest.mark.parametrize("markets", [5, 40])
def test_changes_are_exactly_the_markets_published_since_the_last_look(group: str, markets: int) -> None:
    names = [f"M{i:02d}USDT" for i in range(markets)]
    bids, asks = book(DEPTH)
    with SegmentWriter(group, depth=DEPTH, capacity=64, exchange="binance.com", markets=names) as writer:
        origin = Origin(group, epoch=1)
        try:
            def publish(picked: list[str], update_id: int) -> None:
                for name in picked:
                    writer.publish(writer.slot(name), update_id=update_id, event_time_ms=1, recv_time_ns=1,
                                   status=Status.SYNCED, bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)

            publish(names, 1)
            assert sorted(c.symbol for c in origin.changes()) == names
            assert origin.changes() == []
            picked = names[1::3]
            publish(picked, 2)
            found = origin.changes()
            assert [c.symbol for c in found] == picked and all(c.seq == 2 for c in found)
            assert all(codec.decode_entry(c.entry, DEPTH).update_id == 2 for c in found)
            assert origin.changes() == []
        finally:
            origin.close()
