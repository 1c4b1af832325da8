"""Issue 16 on real "hosts": the origin (a segment writer, as a feeder), a real nats-server, `ldc relay`,
and two or more `ldc mirror`s each in its own mount namespace with a private /dev/shm and its own NATS
connection. Every in-sync read on a mirror is compared with the origin's book at the same update id
(fanout_truth), and each failure mode of the issue is made for real: a restarted relay, NATS server and
origin feeder, a slow mirror cut by the server, a sequence gap, NATS down at start, bad messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fanout_truth
from fanout_helpers import MirrorHost, Origin, relayed_host, start_relay, wait_for
from ldc.fanout.server import NatsServer, stop_process

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "nsenter", "setpriv")),
    reason="hosts are mount namespaces: Linux, root, util-linux's unshare / nsenter / setpriv",
)

SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin(SYMBOLS)
    try:
        yield o.start()
    finally:
        o.close()


@pytest.fixture
def logdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ldc-fanout-") as d:
        yield Path(d)


def now_uid(origin: Origin) -> int:
    return min(origin.uid.values())


def test_mirrors_on_two_hosts_equal_the_origin_and_readers_work_unchanged(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    hosts = [MirrorHost(origin.group, nats.url, name="all"), MirrorHost(origin.group, nats.url, "--symbols", "BBBUSDT", name="one")]
    try:
        hosts[0].probe("sync", SYMBOLS, now_uid(origin) + 20)
        hosts[1].probe("sync", ["BBBUSDT"], now_uid(origin) + 20)
        # the origin's status and message travel with the data
        with origin._lock:
            origin.paused.add("CCCUSDT")
            origin.writer.set_status(origin.writer.slot("CCCUSDT"), 0x04, "origin: gap, fetching a snapshot")
            origin.writer.notify()
        seen = hosts[0].probe("flag", ["CCCUSDT"], "RESYNCING")["states"]["CCCUSDT"]
        assert seen["message"] == "origin: gap, fetching a snapshot"
        # the project's own command-line readers, on the mirror host, unchanged
        status = hosts[1].run(sys.executable, "-m", "ldc.cli", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert "BBBUSDT" in status.stdout and "AAAUSDT" not in status.stdout
        book = hosts[1].run(sys.executable, "-m", "ldc.cli", "book", origin.group, "BBBUSDT", "--json")
        assert book.returncode == 0, book.stderr
    finally:
        for host in hosts:
            assert host.stop() == 0, host.log()[-2000:]
        stop_process(relay)
    assert "undecodable=0, foreign=0" in hosts[0].log()


def each(hosts: list[MirrorHost], mode: str, arg: str | int) -> None:
    for host in hosts:
        host.probe(mode, SYMBOLS, arg)


def test_relay_nats_server_and_origin_restarts_recover_without_an_operator(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    hosts = [MirrorHost(origin.group, nats.url, name=f"r{i}") for i in range(2)]
    try:
        each(hosts, "sync", now_uid(origin) + 10)
        # the relay dies: mirrors flag everything STALE, a new relay (new epoch) brings them back
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        each(hosts, "flag", "STALE")
        relay = start_relay(origin.group, nats.url, logdir / "relay.log")
        each(hosts, "sync", now_uid(origin) + 10)
        # the NATS server restarts: every market STALE on the lost connection, then back on reconnect
        nats.stop()
        each(hosts, "flag", "STALE")
        nats.start()
        each(hosts, "sync", now_uid(origin) + 10)
        # the origin feeder restarts: stopped -> STALE everywhere; the new writer republishes
        origin.restart_writer()
        each(hosts, "flag", "STALE")
        origin.start()
        each(hosts, "sync", now_uid(origin) + 10)
    finally:
        for host in hosts:
            host.stop()
        stop_process(relay)


def test_a_frozen_origin_feeder_reads_stale_on_the_mirror_until_its_heartbeat_resumes(nats: NatsServer, logdir: Path) -> None:
    """Layout 2.0: a feeder that holds its lock but stops running (SIGSTOP, a hung loop) is judged by
    its heartbeat; its readers see every market STALE, and so must the mirror's, with nothing changing
    at the origin to carry the flag. Running again, the mirror is back in sync by itself."""
    origin = Origin(SYMBOLS, stale_after_ms=400).start()
    try:
        with relayed_host(origin, nats.url, logdir, name="frozen") as host:
            origin.stop_publishing()  # no publish and no heartbeat: frozen, its lock still held
            host.probe("flag", SYMBOLS, "STALE")
            origin.start()
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
    finally:
        origin.close()


def test_markets_added_and_removed_at_the_origin_follow_on_the_mirror(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    with relayed_host(origin, nats.url, logdir, name="dir") as host:
        with origin._lock:
            origin.writer.add_market("DDDUSDT")
            origin.uid["DDDUSDT"] = 0
            origin.symbols = [*SYMBOLS[1:], "DDDUSDT"]
            origin.writer.remove_market("AAAUSDT")
        host.probe("sync", ["DDDUSDT", "BBBUSDT"], 5)
        # removals travel with the relay's heartbeat (the origin's market list), every 0.5 s
        wait_for(lambda: "market 'AAAUSDT' is not in segment" in host.run(sys.executable, "-m", "ldc.cli", "book", origin.group,
                                                                          "AAAUSDT").stderr, "AAAUSDT to leave the mirror")
        with origin._lock:  # added again: a new generation, its counters and update ids start again
            origin.writer.add_market("AAAUSDT")
            origin.uid["AAAUSDT"] = 0
            origin.symbols = [*origin.symbols, "AAAUSDT"]
        host.probe("sync", ["AAAUSDT"], 5)


def test_a_heartbeat_claiming_a_later_sequence_twice_resyncs_that_market(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    """The last update of a quiet market lost: only the heartbeat's sequences can tell. Two heartbeats in
    a row claiming more than the mirror applied make it re-fetch that market alone."""
    import asyncio

    import nats as nats_client

    from ldc.fanout import codec

    with relayed_host(origin, nats.url, logdir, name="hb") as host:
        origin.paused.add("CCCUSDT")
        time.sleep(0.3)

        async def claim() -> None:
            nc = await nats_client.connect(nats.url)
            subject = codec.control_subject(origin.group, codec.HEARTBEAT_TOKEN)
            sub = await nc.subscribe(subject)
            info = codec.Info.decode((await sub.next_msg(timeout=5)).data)  # the relay's own
            # Only CCCUSDT is claimed ahead; the busy markets claim nothing (0). Repeating their real sequences
            # twice at once claimed them twice before a loaded mirror had applied the updates in flight, and
            # resynced them too (the genuine heartbeats are 0.5 s apart, time for the mirror to catch up).
            seqs = {symbol: 0 for symbol in info.seqs} | {"CCCUSDT": info.seqs["CCCUSDT"] + 3}
            claimed = codec.Info(**{**info.__dict__, "seqs": seqs})
            for _ in range(2):
                await nc.publish(subject, claimed.encode())
            await nc.flush()
            await nc.close()

        asyncio.run(claim())
        wait_for(lambda: "CCCUSDT heartbeat says sequence" in host.log(), "the mirror to resync CCCUSDT")
        host.probe("sync", SYMBOLS, origin.uid["CCCUSDT"])
        assert "AAAUSDT heartbeat says" not in host.log() and "BBBUSDT heartbeat says" not in host.log()


def test_a_gap_resyncs_only_that_market(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    """A mirror too slow for its client's queue (20 messages) loses batches, which carry only the one
    busy market: that market alone is flagged RESYNCING and re-fetched, the quiet ones never leave sync."""
    with relayed_host(origin, nats.url, logdir, "--pending-msgs", "20", name="gap") as host:
        origin.paused.update({"AAAUSDT", "CCCUSDT"})
        origin.rate_hz = 1000.0  # BBBUSDT alone, fast
        host.signal(signal.SIGSTOP)  # the socket fills while the mirror sleeps
        time.sleep(0.5)
        host.signal(signal.SIGCONT)  # one read of it overflows the 20-message queue
        quiet = {s: origin.uid[s] for s in ("AAAUSDT", "CCCUSDT")}
        host.probe("sync", ["BBBUSDT"], origin.uid["BBBUSDT"] + 10)
        host.probe("sync", ["AAAUSDT", "CCCUSDT"], min(quiet.values()))
        log = host.log()
        assert "BBBUSDT sequence gap" in log, log[-3000:]
        assert "AAAUSDT sequence gap" not in log and "CCCUSDT sequence gap" not in log
        assert "every market STALE" not in log.split("relay started")[-1]  # the connection stayed up


# the server cuts a client once 64 KB wait for it, or a write to it stalls for 200 ms
SLOW_CONSUMER_CONF = 'max_payload: 65536\nmax_pending: 65536\nwrite_deadline: "200ms"'


def test_a_mirror_cut_by_the_server_as_a_slow_consumer_recovers(origin: Origin, logdir: Path) -> None:
    with NatsServer(extra_conf=SLOW_CONSUMER_CONF) as nats:
        relay = start_relay(origin.group, nats.url, logdir / "relay.log")
        host = MirrorHost(origin.group, nats.url, name="slow")
        try:
            host.probe("sync", SYMBOLS, now_uid(origin) + 5)
            origin.rate_hz = 1000.0
            host.signal(signal.SIGSTOP)
            wait_for(lambda: "Slow Consumer" in nats.log(), "the server to cut the stopped mirror")
            host.signal(signal.SIGCONT)
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
            assert "every market STALE: lost the connection" in host.log()
        finally:
            host.signal(signal.SIGCONT)
            host.stop()
            stop_process(relay)


def publish_raw(url: str, subject: str, payloads: list[bytes]) -> None:
    """Publish as any NATS client could (nats-py), and wait for the server to have it all."""
    import asyncio

    import nats as nats_client

    async def go() -> None:
        nc = await nats_client.connect(url)
        for payload in payloads:
            await nc.publish(subject, payload)
        await nc.flush()
        await nc.close()

    asyncio.run(go())


def test_nats_down_at_start_is_said_in_the_slots_then_bad_messages_are_counted_and_dropped(origin: Origin, logdir: Path) -> None:
    from ldc.fanout import codec

    nats = NatsServer()  # its port is chosen, nothing listens there yet
    host = MirrorHost(origin.group, nats.url, "--symbols", "AAAUSDT,BBBUSDT", name="down")
    relay = None
    try:
        states = host.probe("flag", ["AAAUSDT", "BBBUSDT"], "STALE")["states"]
        assert states["AAAUSDT"]["message"].startswith(f"waiting for NATS server {nats.url}: "), states
        assert host.proc.poll() is None, "the mirror must wait, not exit"
        nats.start()
        relay = start_relay(origin.group, nats.url, logdir / "relay.log")
        host.probe("sync", ["AAAUSDT", "BBBUSDT"], now_uid(origin) + 5)
        # garbage, and a genuine batch of another group, on this group's subject
        other = Origin(["AAAUSDT"])
        try:
            other.publish("AAAUSDT")
            slot = memoryview(other.writer._mm)[other.writer.geometry.slot_offset(0):]  # a real slot's bytes
            g = other.writer.geometry
            entry = codec.encode_entry(1, b"AAAUSDT", slot, fanout_truth.DEPTH, fanout_truth.DEPTH, g.bids_offset, g.asks_offset, b"")
            foreign = codec.encode_batch(1, 1, other.group.encode(), [entry])
            slot.release()
        finally:
            other.close()
        publish_raw(nats.url, codec.data_subject(origin.group), [b"not an update, but 32 bytes long", foreign])
        host.probe("sync", ["AAAUSDT", "BBBUSDT"], now_uid(origin) + 10)
    finally:
        assert host.stop() == 0
        if relay is not None:
            stop_process(relay)
        nats.close()
    log = host.log()
    assert "undecodable message on _batch dropped: magic b'not ', expected b'LDCN'" in log, log[-3000:]
    assert f"batch of group {other.group} on subject _batch dropped" in log
    assert "undecodable=1, foreign=1" in log


def test_a_mirror_or_relay_waiting_for_nats_stops_on_sigterm(origin: Origin, logdir: Path) -> None:
    nats = NatsServer()  # nothing listens on its port
    host = MirrorHost(origin.group, nats.url, "--symbols", "AAAUSDT", name="term")
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    try:
        host.probe("flag", ["AAAUSDT"], "STALE")
        wait_for(lambda: "waiting for NATS server" in (logdir / "relay.log").read_text(), "the relay to say it waits")
    finally:
        assert host.stop() == 0, host.log()[-2000:]
        stop_process(relay)
        nats.close()
    assert relay.returncode == 0


def test_a_second_relay_of_a_group_refuses(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    try:
        wait_for(lambda: "connected to" in (logdir / "relay.log").read_text(), "the first relay")
        second = subprocess.run([sys.executable, "-m", "ldc.cli", "relay", "--group", origin.group, "--nats", nats.url],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"group {origin.group} already has a relay on NATS server {nats.url} (epoch" in second.stderr
        assert relay.poll() is None
    finally:
        stop_process(relay)


def test_a_second_mirror_or_another_user_cannot_write_the_segment(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    with relayed_host(origin, nats.url, logdir, name="excl") as host:
        second = host.run(sys.executable, "-m", "ldc.cli", "mirror", "--group", origin.group, "--nats", nats.url)
        assert second.returncode == 2
        assert f"segment /ldc-{origin.group} has a live writer (pid {host.proc.pid}); one writer per group" in second.stderr
        other_user = host.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                              sys.executable, "-m", "ldc.cli", "mirror", "--group", origin.group, "--nats", nats.url)
        assert other_user.returncode == 2
        # the group's ownership lock (layout 2.0) is the mirror user's, 0600: another user cannot even open it
        assert f"/dev/shm/ldc-{origin.group}.lock belongs to root (uid 0) with mode 0600 and cannot be opened by nobody" \
            in other_user.stderr, other_user.stderr
        host.probe("sync", SYMBOLS, now_uid(origin) + 5)


def test_wrong_credentials_name_the_server_and_the_cause(origin: Origin, logdir: Path) -> None:
    auth = 'authorization { user: "ldc", password: "right" }'
    with NatsServer(extra_conf=auth) as nats:
        good, bad = logdir / "good.toml", logdir / "bad.toml"
        good.write_text(f'[nats]\nservers = ["{nats.url}"]\nuser = "ldc"\npassword = "right"\n')
        bad.write_text(f'[nats]\nservers = ["{nats.url}"]\nuser = "ldc"\npassword = "wrong"\n')
        refused = MirrorHost(origin.group, "", config=bad, name="refused")
        assert refused.proc.wait(60) == 1
        assert f"NATS server {nats.url} refused the connection: Error: nats: 'Authorization Violation'" in refused.log()
        relay = subprocess.Popen([sys.executable, "-m", "ldc.cli", "relay", str(good), "--group", origin.group],
                                 stdout=subprocess.DEVNULL, stderr=open(logdir / "relay.log", "ab"))
        host = MirrorHost(origin.group, "", config=good, name="cred")
        try:
            host.probe("sync", SYMBOLS, now_uid(origin) + 5)
        finally:
            host.stop()
            stop_process(relay)


def permissions(group: str) -> str:
    """The README's NATS permissions: only the relay's user may publish books."""
    return f"""authorization {{ users = [
  {{ user: relay, password: r, permissions: {{ publish: ["ldc.{group}.>", "_INBOX.>"], subscribe: ["ldc.{group}._state", "ldc.{group}._hb"] }} }}
  {{ user: mirror, password: m, permissions: {{ publish: ["ldc.{group}._state"], subscribe: ["ldc.{group}.>", "_INBOX.>"] }} }}
] }}"""


def forge(url: str, user: str, password: str, group: str, symbol: str) -> None:
    """Fetch a quiet market's last update as a mirror would, and publish it back as ``user``, one
    sequence later with its best bid moved: what a mirror would apply if the server let ``user``
    publish books."""
    import asyncio

    import nats as nats_client
    import numpy as np

    from ldc.fanout import codec
    from ldc.shm.layout import SLOT_HEADER

    async def go() -> None:
        nc = await nats_client.connect(url, user="mirror", password="m")
        publisher = await nats_client.connect(url, user=user, password=password)
        reply = await nc.request(codec.control_subject(group, codec.STATE_TOKEN), symbol.encode(), timeout=5)
        (update,) = codec.decode_batch(reply.data, 64).updates
        fields = list(update.fields)
        fields[[f.name for f in SLOT_HEADER.fields].index("updates")] += 1  # a publish, not a status change
        bids = np.array(update.bids)
        bids[0, 0] -= 0.25  # best bid price
        entry = b"".join((codec.ENTRY.pack(update.seq + 1, *fields, len(symbol), len(update.message)), symbol.encode(),
                          update.message, bids.tobytes(), np.asarray(update.asks).tobytes()))
        data = codec.encode_batch(update.epoch, 0, group.encode(), [entry])
        await publisher.publish(codec.data_subject(group), data)
        await publisher.flush()
        await publisher.close()
        await nc.close()

    asyncio.run(go())


def test_only_the_relays_nats_user_can_change_what_mirrors_show(origin: Origin, logdir: Path) -> None:
    with NatsServer(extra_conf=permissions(origin.group)) as nats:
        relay_conf, mirror_conf = logdir / "relay.toml", logdir / "mirror.toml"
        relay_conf.write_text(f'[nats]\nservers = ["{nats.url}"]\nuser = "relay"\npassword = "r"\n')
        mirror_conf.write_text(f'[nats]\nservers = ["{nats.url}"]\nuser = "mirror"\npassword = "m"\n')
        relay = subprocess.Popen([sys.executable, "-m", "ldc.cli", "relay", str(relay_conf), "--group", origin.group],
                                 stdout=subprocess.DEVNULL, stderr=open(logdir / "relay.log", "ab"))
        host = MirrorHost(origin.group, "", config=mirror_conf, name="perm")
        try:
            host.probe("sync", SYMBOLS, now_uid(origin) + 5)
            origin.paused.add("CCCUSDT")
            time.sleep(0.3)  # its last update reached the mirror
            quiet = origin.uid["CCCUSDT"]
            forge(nats.url, "mirror", "m", origin.group, "CCCUSDT")  # refused by the server
            time.sleep(0.3)
            assert f'"$G/user:mirror" - Publish Violation - Subject "ldc.{origin.group}._batch"' in nats.log()
            host.probe("sync", ["CCCUSDT"], quiet)
            # negative control: the same forgery with the relay's rights is applied, and the probe sees it
            forge(nats.url, "relay", "r", origin.group, "CCCUSDT")
            time.sleep(0.3)
            forged = host.probe("sync", ["CCCUSDT"], quiet, exact=False)
            assert forged["n_mismatches"] > 0, forged
        finally:
            host.stop()
            stop_process(relay)


def make_tls(d: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and a CA nobody signed with (openssl)."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=ldc test CA")
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "1", "-subj", "/CN=other CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "1", "-extfile", "san.ext")
    return d / "ca.pem", d / "server.pem", d / "server.key", d / "other.pem"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
def test_tls_with_the_servers_ca_and_a_refusal_naming_the_cause_without_it(origin: Origin, logdir: Path) -> None:
    ca, cert, key, other_ca = make_tls(logdir)
    with NatsServer(extra_conf=f'tls {{ cert_file: "{cert}"\n key_file: "{key}" }}') as nats:
        url = nats.url.replace("nats://", "tls://")
        good, bad = logdir / "good.toml", logdir / "bad.toml"
        good.write_text(f'[nats]\nservers = ["{url}"]\ntls_ca = "{ca}"\n')
        bad.write_text(f'[nats]\nservers = ["{url}"]\ntls_ca = "{other_ca}"\n')
        refused = MirrorHost(origin.group, "", config=bad, name="tlsbad")
        assert refused.proc.wait(60) == 1
        assert f"NATS server {url} refused the connection: SSLCertVerificationError" in refused.log(), refused.log()[-2000:]
        relay = subprocess.Popen([sys.executable, "-m", "ldc.cli", "relay", str(good), "--group", origin.group],
                                 stdout=subprocess.DEVNULL, stderr=open(logdir / "relay.log", "ab"))
        host = MirrorHost(origin.group, "", config=good, name="tls")
        try:
            host.probe("sync", SYMBOLS, now_uid(origin) + 5)
        finally:
            host.stop()
            stop_process(relay)


def test_a_restarted_mirror_takes_its_segment_over_with_the_origins_counters(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    """The mirror's segment outlives the mirror (as a feeder's does): the next mirror takes it over and
    its slots must again equal the origin's, counters included (not added to the last mirror's)."""
    import fanout_truth
    from ldc.errors import SegmentError
    from ldc.shm.reader import Reader
    from shm_helpers import unlink_group

    local = origin.group + "-m"  # on this host: a namespace would not outlive its mirror

    def exact_at(target: int) -> bool:
        try:
            with Reader(local) as reader:
                for symbol in SYMBOLS:
                    st = reader.status(symbol)
                    snap = reader.snapshot(symbol, allow_out_of_sync=True)
                    if not st.in_sync or st.update_id < target or snap.update_id != st.update_id:
                        return False
                    bad = fanout_truth.mismatch(symbol, snap.update_id, snap.bids, snap.asks, snap.event_time_ms,
                                                snap.recv_time_ns, st.counters)
                    assert not bad, bad
        except SegmentError:  # not made yet, or being replaced
            return False
        return True

    mirror = [sys.executable, "-m", "ldc.cli", "mirror", "--group", origin.group, "--nats", nats.url, "--local-group", local]
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    try:
        for run in range(2):
            proc = subprocess.Popen(mirror, stdout=subprocess.DEVNULL, stderr=open(logdir / f"mirror{run}.log", "ab"))
            try:
                target = now_uid(origin) + 10
                wait_for(lambda: exact_at(target), f"mirror run {run} in sync and equal to the origin")
            finally:
                stop_process(proc)
        # layout 2.0: the second mirror builds a new file and retires the first one's
        assert f"replaced segment /ldc-{local} " in (logdir / "mirror1.log").read_text()
    finally:
        stop_process(relay)
        unlink_group(local)
