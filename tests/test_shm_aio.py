"""ldc.shm.aio (issue 18, "What to build" 3): ``await reader.wait_for_update_async`` and ``async for ... in
reader.updates(...)`` wake on publishes and time out without, many markets and segments share one waiter
thread that registers nowhere (docs/LAYOUT.md section 11: the writer wakes every sleeper), and cancellation or
a closed reader never leaves the hub stuck."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from ldc.shm import aio
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from shm_helpers import book, unique_group, unlink_group

pytestmark = pytest.mark.timeout(60)

DEPTH = 5
SYMBOLS = ("AAA", "BBB", "CCC")


class Feed:
    """A writer of one segment with SYMBOLS; ``publish(symbol)`` bumps the slot and wakes readers."""

    def __init__(self) -> None:
        self.group = unique_group("aio")
        self.writer = SegmentWriter(self.group, depth=DEPTH, capacity=8)
        self.slots = {s: self.writer.add_market(s) for s in SYMBOLS}
        self.ids = dict.fromkeys(SYMBOLS, 0)
        for symbol in SYMBOLS:
            self.publish(symbol)

    def publish(self, symbol: str) -> None:
        self.ids[symbol] += 1
        bids, asks = book(DEPTH, mid=100.0 + self.ids[symbol])
        self.writer.publish(self.slots[symbol], update_id=self.ids[symbol], event_time_ms=1, recv_time_ns=time.time_ns(),
                            status=Status.SYNCED, bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip
        self.writer.notify()

    def later(self, delay_s: float, symbol: str) -> None:
        threading.Timer(delay_s, self.publish, (symbol,)).start()


@pytest.fixture
def feeds() -> Iterator[list[Feed]]:
    made = [Feed(), Feed()]
    try:
        yield made
    finally:
        for feed in made:
            feed.writer.close()
            unlink_group(feed.group)


def test_wait_for_update_async_wakes_on_the_markets_publish_and_times_out_without(feeds: list[Feed]) -> None:
    feed = feeds[0]
    with Reader(feed.group) as reader:

        async def run() -> tuple[bool, bool, bool, bool]:
            quiet = await reader.wait_for_update_async("AAA", timeout=0.1)
            feed.later(0.05, "BBB")  # another market's publish does not end a wait on AAA
            other = await reader.wait_for_update_async("AAA", timeout=0.3)
            feed.later(0.05, "AAA")
            mine = await reader.wait_for_update_async("AAA", timeout=10.0)
            feed.later(0.05, "CCC")
            anything = await reader.wait_for_update_async(None, timeout=10.0)
            return quiet, other, mine, anything

        assert asyncio.run(run()) == (False, False, True, True)
        assert reader.snapshot("AAA").update_id == 2


def test_many_waits_on_many_markets_and_segments_share_one_thread_and_the_loop_runs_on(feeds: list[Feed]) -> None:
    readers = [Reader(feed.group) for feed in feeds]
    try:
        aio.hub()  # the one waiter thread, made once per process
        threads = threading.active_count()
        ticks: list[int] = []

        async def ticker() -> None:
            for i in range(5):
                ticks.append(i)
                await asyncio.sleep(0.01)

        async def run() -> list[bool | None]:
            waits = [reader.wait_for_update_async(symbol, timeout=10.0) for reader in readers for symbol in SYMBOLS for _ in range(10)]
            gathered = asyncio.gather(*waits, ticker())
            await asyncio.sleep(0.05)
            assert threading.active_count() == threads  # 60 waits, 6 markets, 2 segments: no new thread
            for feed in feeds:
                for symbol in SYMBOLS:
                    feed.publish(symbol)
            results: list[bool | None] = list((await gathered)[:-1])
            return results

        assert asyncio.run(run()) == [True] * 60
        assert ticks == [0, 1, 2, 3, 4]
    finally:
        for reader in readers:
            reader.close()


def test_updates_yields_each_changed_markets_latest_snapshot(feeds: list[Feed]) -> None:
    feed = feeds[0]
    with Reader(feed.group) as reader:

        async def run() -> list[tuple[str, int, bool]]:
            seen: list[tuple[str, int, bool]] = []
            feed.later(0.05, "BBB")
            feed.later(0.15, "AAA")
            async for snap in reader.updates(["AAA", "BBB"]):
                seen.append((snap.symbol, snap.update_id, snap.in_sync))
                if len(seen) == 2:
                    break
            return seen

        assert asyncio.run(run()) == [("BBB", 2, True), ("AAA", 2, True)]


def test_updates_ends_after_its_timeout_and_refuses_no_markets(feeds: list[Feed]) -> None:
    with Reader(feeds[0].group) as reader:

        async def run() -> int:
            return len([snap async for snap in reader.updates(["AAA"], timeout=0.1)])

        assert asyncio.run(run()) == 0

        async def empty() -> None:
            async for _ in reader.updates([]):
                pass

        with pytest.raises(ValueError, match="^symbols expected at least one market, found none$"):
            asyncio.run(empty())


def test_a_sleeping_hub_wakes_on_a_publish_and_a_cancelled_wait_is_dropped(feeds: list[Feed]) -> None:
    with Reader(feeds[0].group) as reader:

        async def run() -> None:
            await asyncio.sleep(0)
            woken = asyncio.ensure_future(reader.wait_for_update_async("BBB", timeout=30.0))
            await asyncio.sleep(0.2)  # the hub is asleep in futex_waitv by now: only the writer's wake ends it
            feeds[0].publish("BBB")
            assert await asyncio.wait_for(woken, timeout=10.0) is True
            task = asyncio.ensure_future(reader.wait_for_update_async("AAA", timeout=30.0))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        deadline = time.monotonic() + 5.0
        while aio.hub()._waits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert aio.hub()._waits == []


def test_a_reader_closed_under_a_wait_fails_that_wait_and_the_hub_serves_on(feeds: list[Feed]) -> None:
    doomed, kept = Reader(feeds[0].group), Reader(feeds[1].group)
    try:

        async def run() -> bool:
            waiting = asyncio.ensure_future(doomed.wait_for_update_async("AAA", timeout=30.0))
            await asyncio.sleep(0.05)
            doomed.close()
            aio.hub().wake()
            with pytest.raises(AttributeError):
                await waiting
            feeds[1].later(0.05, "AAA")
            return await kept.wait_for_update_async("AAA", timeout=10.0)

        assert asyncio.run(run()) is True
    finally:
        doomed.close()
        kept.close()


def test_an_unknown_market_raises_at_once(feeds: list[Feed]) -> None:
    from ldc.errors import MarketNotFound

    with Reader(feeds[0].group) as reader:
        with pytest.raises(MarketNotFound, match="^market 'ZZZ' is not in segment"):
            asyncio.run(reader.wait_for_update_async("ZZZ", timeout=10.0))


def test_without_futex_waitv_the_hub_polls_and_waits_still_end(feeds: list[Feed], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio.hub(), "_waitv", False)  # what a kernel before 5.16 answers (ENOSYS) leads to
    feed = feeds[0]
    with Reader(feed.group) as reader:

        async def run() -> tuple[bool, bool]:
            feed.later(0.05, "AAA")
            return await reader.wait_for_update_async("AAA", timeout=10.0), await reader.wait_for_update_async("AAA", timeout=0.05)

        assert asyncio.run(run()) == (True, False)
