"""A Kraken book through StreamFeeder on the simulator's Kraken v2 family (issue 15): ``book.10`` published at
depth 10, the depth at which the coverage rule of a REST snapshot (the deepest price it showed) flagged the book
UNCOVERED in most status reads, although Kraken keeps its window whole. Every message's checksum is verified, the
book never leaves SYNCED, and each book read equals the simulator's truth at the slot's update id (the message
timestamp in µs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from shm_helpers import group_fixture

from ldc.config import GroupConfig
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.sim import SimConfig, Simulator
from ldc.stream_feeder import StreamFeeder
from ldc.sync import SyncState

pytestmark = pytest.mark.timeout(120)

PAIR = "BTC/USD"
DEPTH = 10  # book.10 published whole: every level the channel keeps
SIM_RATE = 40.0  # model events a second, the demo's rate (ldc.demo.SIM_RATE)
CHECKSUMS = 150  # messages verified while the status is read (~4 s at the simulator's rate)
WAIT_S = 60.0


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _wait(what: str, done: object, seconds: float = WAIT_S) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {seconds} s")


def test_book_10_at_depth_10_stays_in_sync_while_every_checksum_holds(group: str, caplog: pytest.LogCaptureFixture) -> None:
    with Simulator(SimConfig(spot_symbols=(), kraken_symbols=(PAIR,), rate=SIM_RATE, history_events=20_000)) as sim:
        config = GroupConfig(name=group, exchange="kraken", symbols=(PAIR,), depth=DEPTH, channel="book.10",
                             ws_url=sim.kraken_ws_url.removesuffix("/v2"), rest_url=sim.kraken_rest_url, capacity=2)  # fmt: skip
        feeder = StreamFeeder(config)
        feeder.start()
        try:
            with Reader(group) as reader:
                _wait(f"{PAIR} synced", lambda: reader.status(PAIR).status == Status.SYNCED)
                sync = feeder.markets[PAIR].sync
                feeder.settle()  # BookSync adopts what the C hot path applied: its counters current
                start = sync.checksums
                with caplog.at_level(logging.INFO, logger="ldc.sync"):
                    statuses = []
                    while sync.checksums < start + CHECKSUMS:
                        statuses.append(reader.status(PAIR).status)
                        time.sleep(0.01)
                        feeder.settle()
                        assert len(statuses) < WAIT_S / 0.01, f"only {sync.checksums - start} checksums verified"
                left_sync = [r.getMessage() for r in caplog.records if "-> uncovered" in r.getMessage()]
                # INCOMPLETE is what UNCOVERED publishes; a reader may add STALE on its own when the writer's
                # heartbeat is late on a loaded machine (not the book's state: the log shows every state change)
                flagged = sorted({int(status) for status in statuses if status & (Status.INCOMPLETE | Status.RESYNCING)})
                assert left_sync == [] and flagged == [] and sync.state is SyncState.SYNCED, (left_sync[:3], flagged)
                assert (sync.checksum_mismatches, sync.resyncs, sync.gaps) == (0, 0, 0)
                snap = reader.snapshot(PAIR)  # the simulator keeps every message's book of its recent history
                truth = sim.venue_truth("kraken", PAIR, update_id=snap.update_id, depth=DEPTH, limit=DEPTH)
                assert (snap.bids.tolist(), snap.asks.tolist()) == (
                    [[float(p), float(q)] for p, q in truth["bids"]], [[float(p), float(q)] for p, q in truth["asks"]])
                assert snap.event_time_ms == snap.update_id // 1000
        finally:
            feeder.close()
