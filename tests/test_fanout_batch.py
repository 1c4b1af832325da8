"""Wire version 2 (docs/FANOUT.md): one batch carries every market that changed, each entry with its
market's own sequence, so a lost batch is a gap in exactly the markets it carried and only those
resync; the others go on, in sync, from the next batch. In process: the relay's Origin encodes real
slots, the mirror applies them into its own segment, a Reader checks both (NATS is not needed to lose
a message: the test withholds it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from ldc.fanout import codec
from ldc.fanout.conn import options_from_url
from ldc.fanout.mirror import Mirror
from ldc.fanout.origin import Origin
from ldc.fanout.relay import Relay
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from shm_helpers import book, unique_group, unlink_group

DEPTH = 5
SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
EPOCH = 7


@pytest.fixture
def groups() -> Iterator[tuple[str, str]]:
    origin, local = unique_group("bo"), unique_group("bm")
    yield origin, local
    unlink_group(origin)
    unlink_group(local)


def publish(writer: SegmentWriter, symbols: list[str], uid: int) -> None:
    bids, asks = book(DEPTH)
    for symbol in symbols:
        writer.publish(writer.slot(symbol), update_id=uid, event_time_ms=uid, recv_time_ns=uid, status=Status.SYNCED,
                       bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)


def batch(origin: Origin, group: str, batch_seq: int) -> bytes:
    return codec.encode_batch(EPOCH, batch_seq, group.encode(), [c.entry for c in origin.changes()])


def states(local: str) -> dict[str, tuple[int, bool, bool]]:
    """symbol -> (update id, in sync, RESYNCING) as a reader of the mirror's segment sees it."""
    with Reader(local) as reader:
        return {s: (reader.status(s).update_id, reader.status(s).in_sync, bool(reader.status(s).status & Status.RESYNCING))
                for s in SYMBOLS}


def test_a_lost_batch_resyncs_only_the_markets_it_carried(groups: tuple[str, str]) -> None:
    group, local = groups

    async def run() -> None:
        with SegmentWriter(group, depth=DEPTH, capacity=4, markets=SYMBOLS) as writer:
            origin = Origin(group, EPOCH)
            mirror = Mirror(group, options_from_url("nats://127.0.0.1:1"), symbols=SYMBOLS, local_group=local, depth=DEPTH)
            try:
                publish(writer, SYMBOLS, 1)
                mirror.handle_batch(batch(origin, group, 1), codec.BATCH_TOKEN, from_stream=True)
                assert states(local) == {s: (1, True, False) for s in SYMBOLS}
                publish(writer, ["AAAUSDT", "BBBUSDT"], 2)
                batch(origin, group, 2)  # lost on the way: AAAUSDT and BBBUSDT at sequence 2
                publish(writer, ["AAAUSDT", "CCCUSDT"], 3)
                mirror.handle_batch(batch(origin, group, 3), codec.BATCH_TOKEN, from_stream=True)
                seen = states(local)
                assert seen["AAAUSDT"] == (1, False, True)  # its sequence 3 after 1: re-fetched alone
                assert seen["CCCUSDT"] == (3, True, False)  # sequence 2 after 1: never touched by the loss
                assert seen["BBBUSDT"] == (1, True, False)  # quiet since: the heartbeat's sequences tell (hosts test)
                assert (mirror.stats.gaps, mirror.stats.applied, mirror.stats.batches) == (1, 4, 2)
                # the relay's state reply for it: a batch of its last entry, and it is back in sync
                reply = codec.encode_batch(EPOCH, 0, group.encode(), [origin.last["AAAUSDT"]])
                mirror.handle_batch(reply, codec.STATE_TOKEN, from_stream=False)
                assert states(local)["AAAUSDT"] == (3, True, False)
            finally:
                for task in asyncio.all_tasks() - {asyncio.current_task()}:
                    task.cancel()  # the state fetch start_resync began (no NATS here)
                mirror.writer.close()
                origin.close()

    asyncio.run(run())


def test_the_relays_batches_stay_within_the_servers_max_payload(groups: tuple[str, str]) -> None:
    """200 depth-5 markets changed at once leave in several batches, none over the limit."""
    group, _ = groups
    symbols = [f"M{i:03d}USDT" for i in range(200)]
    with SegmentWriter(group, depth=DEPTH, capacity=256, markets=symbols) as writer:
        publish(writer, symbols, 1)
        origin = Origin(group, EPOCH)
        try:
            entries = [c.entry for c in origin.changes()]
        finally:
            origin.close()
    limit = 8 * 1024
    runs = codec.split_batches(entries, limit)
    assert len(runs) > 1 and all(sum(map(len, run)) <= limit for run in runs)
    decoded = [u.symbol for run in runs for u in codec.decode_batch(codec.encode_batch(EPOCH, 1, group.encode(), run), DEPTH).updates]
    assert decoded == symbols


def test_a_coalescing_window_outside_its_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="coalescing window must be 0..100000 us, got -1"):
        Relay("spot", options_from_url("nats://127.0.0.1:1"), coalesce_us=-1)


@pytest.mark.parametrize(("coalesce_us", "paced_us", "window_us"), [
    (None, 800, 800),  # default: the origin's pace
    (None, 0, 800),  # a writer that does not pace: DEFAULT_COALESCE_US, on a timer
    (300, 800, 800),  # shorter than the pace: the pace (the paced word moves no faster)
    (2000, 800, 2000),  # longer: the relay's own
    (0, 0, 0),  # no pace, no window: a send on every wake
])
def test_the_relay_s_window_follows_its_origin_s_pace(coalesce_us: int | None, paced_us: int, window_us: int) -> None:
    group = unique_group("rw")
    try:
        with SegmentWriter(group, depth=DEPTH, capacity=4, notify_paced_us=paced_us):
            relay = Relay(group, options_from_url("nats://127.0.0.1:1"), coalesce_us=coalesce_us)
            assert relay._attach()
            try:
                assert relay.origin is not None and relay.origin.paced_us == paced_us
                assert round(relay.coalesce_s * 1e6) == window_us
            finally:
                relay._detach()
    finally:
        unlink_group(group)


@pytest.mark.parametrize("argv", [[], ["--no-io-uring"]])
def test_no_io_uring_keeps_the_relay_s_paced_sends_on_send_and_futex(argv: list[str]) -> None:
    """``ldc relay --no-io-uring``: the origin's collector is told before its first pump (the default
    leaves the ring to be opened by the first paced pump where the kernel allows it)."""
    from ldc.fanout.relay import _Command

    group = unique_group("ru")
    try:
        with SegmentWriter(group, depth=DEPTH, capacity=4, notify_paced_us=800):
            relay = _Command.make(_Command.parse_args(["--group", group, "--nats", "nats://127.0.0.1:1", *argv]))
            assert relay.io_uring is (not argv)
            assert relay._attach()
            a, b = socket.socketpair()
            try:
                origin = relay.origin
                assert origin is not None and origin.io_uring is False  # nothing opened before a pump
                a.setblocking(False)
                assert origin.refresh()
                origin.pump(a.fileno(), codec.MAX_BATCH_BYTES, 0.005, relay.coalesce_s, 0.002)
                if argv:
                    assert origin.io_uring is False and origin.io_uring_refused == ""  # not refused: not asked
                elif not origin.io_uring:
                    pytest.skip(f"io_uring refused here: {origin.io_uring_refused}")
            finally:
                a.close()
                b.close()
                relay._detach()
    finally:
        unlink_group(group)
