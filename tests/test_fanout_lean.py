"""ldc.fanout.lean against a real nats-server: the installed nats-py still takes the lean paths, a lean
publish arrives whole and after what nats-py had queued, a closed connection hands back to
nats-py, and direct delivery keeps order, leaves other subscriptions to nats-py and drops beyond
its backlog limit as nats-py's slow-consumer rule does."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ldc.fanout import lean
from ldc.fanout.server import NatsServer

nats_client = pytest.importorskip("nats")


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


async def _connect(url: str, **options: Any) -> Any:
    return await nats_client.connect(url, allow_reconnect=False, **options)


async def _subscribed(nc: Any) -> None:
    """Return once the server has our SUBs. nats-py's ``flush`` writes its PING at once, ahead of SUBs
    still queued for its flusher task, so it can return before the server has them (the first
    messages were then lost now and then, with nats-py's own delivery alike): let the flusher write first."""
    deadline = time.monotonic() + 5
    while nc.pending_data_size and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    await nc.flush()


def test_the_installed_nats_py_takes_the_lean_paths(nats: NatsServer) -> None:
    async def go() -> bool:
        nc = await _connect(nats.url)
        try:
            return lean.supported(nc)
        finally:
            await nc.close()

    assert asyncio.run(go()), "nats-py changed: ldc.fanout.lean would fall back to nats-py's publish and delivery"


def test_a_lean_publish_arrives_whole_after_what_nats_py_queued(nats: NatsServer) -> None:
    async def go() -> list[tuple[str, bytes]]:
        sub_nc, pub_nc = await _connect(nats.url), await _connect(nats.url)
        got: list[tuple[str, bytes]] = []
        done = asyncio.Event()

        async def cb(msg: Any) -> None:
            got.append((msg.subject, msg.data))
            if len(got) == 3:
                done.set()

        await sub_nc.subscribe("lean.>", cb=cb)
        await _subscribed(sub_nc)
        big = bytes(range(256)) * 200 + b"\r\nPUB fake 1\r\nx\r\n"  # protocol-looking bytes inside stay payload
        await pub_nc.publish("lean.queued", b"first")  # queued for nats-py's flusher, not yet written
        assert lean.publish_now(pub_nc, b"lean.now", big)
        assert lean.publish_now(pub_nc, b"lean.empty", b"")
        assert pub_nc.stats["out_msgs"] == 3
        await asyncio.wait_for(done.wait(), 5)
        await pub_nc.close()
        assert not lean.publish_now(pub_nc, b"lean.closed", b"x"), "a closed connection must hand back to nats-py"
        await sub_nc.close()
        return got

    assert asyncio.run(go()) == [("lean.queued", b"first"), ("lean.now", bytes(range(256)) * 200 + b"\r\nPUB fake 1\r\nx\r\n"),
                                 ("lean.empty", b"")]


BIG = bytes(range(256)) * 1200  # 300 KiB: more than one read, so its frame is split across reads


@pytest.mark.parametrize("loop_reads", [False, True])
def test_direct_delivery_keeps_order_and_leaves_other_subscriptions_to_nats_py(nats: NatsServer, loop_reads: bool) -> None:
    """Frames taken where they arrive, others (another subscription, a frame split across reads,
    what follows them) through nats-py's parser: the handler sees the wire's order all the same,
    also when the socket is read in the loop's wait (``take_loop_reads``)."""

    async def publish() -> None:
        pub_nc = await _connect(nats.url)
        for i in range(200):
            await pub_nc.publish(f"d.{i % 3}", BIG if i == 120 else str(i).encode())
            if i % 50 == 0:
                await pub_nc.publish("o", str(i).encode())
            if i % 20 == 0:
                await pub_nc.flush()  # separate reads too, not only one
        await pub_nc.flush()
        await pub_nc.close()

    async def go() -> tuple[list[tuple[bytes, bytes]], list[bytes], lean.DirectDelivery]:
        sub_nc = await _connect(nats.url)
        direct_got: list[tuple[bytes, bytes]] = []
        other_got: list[bytes] = []
        direct = lean.DirectDelivery(sub_nc, lambda subject, data: direct_got.append((subject, data)), 1000, lambda n: None)

        async def never(msg: Any) -> None:
            raise AssertionError(f"nats-py delivered {msg.subject} of a direct subscription")

        async def other(msg: Any) -> None:
            other_got.append(msg.data)

        direct.add(await sub_nc.subscribe("d.*", cb=never))
        await sub_nc.subscribe("o", cb=other)
        await _subscribed(sub_nc)
        if loop_reads:
            assert direct.take_loop_reads()
        # published from another thread: this loop waits meanwhile, so the bytes arrive while it sleeps
        await asyncio.to_thread(asyncio.run, publish())
        deadline = time.monotonic() + 5
        while (len(direct_got) < 200 or len(other_got) < 4) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        direct.close()
        await sub_nc.close()
        return direct_got, other_got, direct

    direct_got, other_got, direct = asyncio.run(go())
    assert direct_got == [(f"d.{i % 3}".encode(), BIG if i == 120 else str(i).encode()) for i in range(200)]
    assert other_got == [b"0", b"50", b"100", b"150"]
    assert direct.dropped == 0 and direct.delivered == 200
    assert 0 < direct.framed < 200, "some frames where they arrive, some (the split one) through nats-py's parser"
    assert (direct.loop_reads > 0) == loop_reads


@pytest.mark.parametrize("loop_reads", [False, True])
def test_direct_delivery_drops_past_its_backlog_as_a_slow_consumer(nats: NatsServer, loop_reads: bool) -> None:
    """Messages read while the loop was busy wait; beyond the limit they are dropped and reported,
    the rest applied in order (the mirror then sees sequence gaps and resyncs), and a subject of
    ``keep`` (the relay's heartbeat) is never dropped."""

    async def go() -> tuple[list[bytes], list[bytes], int, list[int]]:
        sub_nc, pub_nc = await _connect(nats.url), await _connect(nats.url)
        got: list[bytes] = []
        kept: list[bytes] = []

        def handler(subject: bytes, data: bytes) -> None:
            (kept if subject == b"slow.hb" else got).append(data)

        reports: list[int] = []
        direct = lean.DirectDelivery(sub_nc, handler, 5, reports.append, keep=frozenset((b"slow.hb",)))
        direct.add(await sub_nc.subscribe("slow.*"))
        await _subscribed(sub_nc)
        if loop_reads:
            assert direct.take_loop_reads()
        socket = sub_nc._transport._io_writer.transport
        socket.pause_reading()  # the subscriber is busy: everything waits in its socket
        for i in range(50):
            await pub_nc.publish("slow.d", b"%d" % i)
            if i % 10 == 9:
                await pub_nc.publish("slow.hb", b"%d" % i)
        await pub_nc.flush()
        await asyncio.sleep(0.3)  # the server has written it all to the subscriber's socket
        socket.resume_reading()  # ... which is read together
        deadline = time.monotonic() + 5
        while len(got) + direct.dropped < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await sub_nc.close()
        await pub_nc.close()
        assert (direct.loop_reads > 0) == loop_reads
        return got, kept, direct.dropped, reports

    got, kept, dropped, reports = asyncio.run(go())
    assert dropped > 0 and len(got) + dropped == 50
    assert reports == list(range(1, dropped + 1))
    numbers = [int(x) for x in got]
    assert numbers == sorted(numbers) and numbers[:5] == [0, 1, 2, 3, 4]
    assert kept == [b"9", b"19", b"29", b"39", b"49"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
def test_both_lean_paths_are_taken_over_tls(tmp_path: Path) -> None:
    """Over TLS the transport is asyncio's TLS one: the lean publish writes through it and the frames
    are still taken where the decrypted bytes arrive."""
    from test_fanout_hosts import make_tls

    ca, cert, key, _ = make_tls(tmp_path)
    with NatsServer(extra_conf=f'tls {{ cert_file: "{cert}"\n key_file: "{key}" }}') as server:
        url = server.url.replace("nats://", "tls://")

        async def go() -> tuple[list[bytes], int, list[bool]]:
            tls = ssl.create_default_context(cafile=str(ca))
            sub_nc, pub_nc = await _connect(url, tls=tls), await _connect(url, tls=tls)
            got: list[bytes] = []
            direct = lean.DirectDelivery(sub_nc, lambda subject, data: got.append(data), 1000, lambda n: None)
            direct.add(await sub_nc.subscribe("t"))
            await _subscribed(sub_nc)
            assert direct.take_loop_reads() and direct.fast_fd() == -1  # TLS: asyncio's transport reads
            sent = [lean.supported(pub_nc)]
            for i in range(100):
                sent.append(lean.publish_now(pub_nc, b"t", b"%d" % i * 50))
                await asyncio.sleep(0.001)
            deadline = time.monotonic() + 5
            while len(got) < 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await sub_nc.close()
            await pub_nc.close()
            assert direct.loop_reads == 0
            return got, direct.framed, sent

        got, framed, sent = asyncio.run(go())
    assert all(sent)
    assert got == [b"%d" % i * 50 for i in range(100)]
    assert framed > 0
