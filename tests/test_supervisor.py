"""`ldc run CONFIG` (ldc.supervisor, issue 8 "What to build" 3): the restart backoff as a pure function, a bad
config refused before any child starts, a feeder killed with SIGKILL restarted while a reader in this process
sees the writer die and come back with no torn slot, and SIGTERM stopping every child cleanly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from feeder_helpers import Processes, check_truth, group_table, processes, unique_group, wait_until, write_config
from ldc.config import endpoints, load_config
from ldc.errors import OutOfSync, WriterDead
from ldc.io.governor import governor_key
from ldc.shm.layout import State, Status, segment_path
from ldc.shm.reader import Reader
from ldc.sim import Simulator
from ldc.supervisor import (
    RESTART_BACKOFF_CAP_S,
    RESTART_BACKOFF_INITIAL_S,
    RESTART_JITTER_FRACTION,
    restart_delay_s,
)

pytestmark = pytest.mark.timeout(90)

EXIT_TIMEOUT_S = 20.0


def test_restart_delay_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    no_jitter = _FixedUniform(0.0)
    delays = [restart_delay_s(n, rng=no_jitter) for n in range(1, 12)]
    assert delays[:4] == [RESTART_BACKOFF_INITIAL_S * k for k in (1, 2, 4, 8)]
    assert delays[-1] == RESTART_BACKOFF_CAP_S and max(delays) == RESTART_BACKOFF_CAP_S
    assert all(b >= a for a, b in zip(delays, delays[1:]))
    assert restart_delay_s(0, rng=no_jitter) == RESTART_BACKOFF_INITIAL_S  # out of range: the first delay


def test_restart_delay_jitter_stays_within_its_fraction_and_is_seeded() -> None:
    low, high = 1.0 - RESTART_JITTER_FRACTION, 1.0 + RESTART_JITTER_FRACTION
    assert restart_delay_s(3, rng=_FixedUniform(-RESTART_JITTER_FRACTION)) == 4 * RESTART_BACKOFF_INITIAL_S * low
    assert restart_delay_s(3, rng=_FixedUniform(RESTART_JITTER_FRACTION)) == 4 * RESTART_BACKOFF_INITIAL_S * high
    rng = random.Random(7)
    drawn = [restart_delay_s(20, rng=rng) for _ in range(500)]
    assert all(RESTART_BACKOFF_CAP_S * low <= d <= RESTART_BACKOFF_CAP_S * high for d in drawn)
    assert len(set(drawn)) == 500  # feeders restarted together do not reconnect in lock-step
    assert drawn == [restart_delay_s(20, rng=r) for r in [random.Random(7)] for _ in range(500)]


class _FixedUniform(random.Random):
    """A generator whose ``uniform`` always answers ``value``: the jitter's bounds, exactly."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return self.value


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT"), usdm_symbols=("BTCUSDT",), rate=20.0, history_events=5000)


def start_run(procs: Processes, config: Path, log: Path) -> subprocess.Popen[bytes]:
    for group in load_config(config).groups:
        procs.groups.append(group.name)
        procs.governors.append(governor_key(endpoints(group).rest_url))
    with log.open("wb") as sink:
        return procs.ldc("run", str(config), stdout=sink, stderr=subprocess.STDOUT)


def test_bad_config_exits_2_and_starts_no_feeder(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("bad")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot, exchange="binance.moon")])
    with processes() as procs:
        procs.groups.append(group)
        proc = procs.ldc("run", str(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 2 and out == b""
    message = err.decode().strip()
    assert message.startswith(f"ldc run: {config}: group '{group}': key 'exchange' expected one of binance.com, ")
    assert message.endswith(", found 'binance.moon'")
    assert not os.path.exists(segment_path(group))
    assert spot.stats()["connections"] == 0


def test_feeder_killed_with_sigkill_is_restarted_and_readers_see_it_die_and_come_back(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("kill")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    with processes() as procs:
        supervisor = start_run(procs, config, tmp_path / "run.log")
        with Reader(group, attach_timeout_s=EXIT_TIMEOUT_S) as reader:
            wait_until(lambda: _all_synced(reader), what="both markets in sync")
            first = reader.info()
            os.kill(first.writer_pid, signal.SIGKILL)
            wait_until(lambda: not reader.writer_alive(), what="the reader to see the writer dead")
            with pytest.raises((WriterDead, OutOfSync)):
                reader.snapshot("BTCUSDT")
            # the last book stays readable, marked stale, until the new writer takes over
            dead = reader.status("BTCUSDT")
            assert Status.STALE in dead.status and not dead.in_sync
            wait_until(lambda: reader.writer_alive() and reader.info().writer_pid != first.writer_pid, what="a new writer")
            wait_until(lambda: _all_synced(reader), what="both markets in sync again")
            second = reader.info()
            assert (second.state, second.takeovers, second.instance_id != first.instance_id) == (State.RUNNING, first.takeovers + 1, True)
            for symbol in ("BTCUSDT", "ETHUSDT"):  # no slot left torn: every one reads, and equals the truth
                assert reader.status(symbol).in_sync
                assert check_truth(spot, reader, symbol, "spot", 10) in (True, None)
        assert supervisor.poll() is None
    log = (tmp_path / "run.log").read_text()
    assert f"feeder {group} exited with signal SIGKILL; restarting in " in log


def test_sigterm_stops_every_feeder_and_marks_their_segments_stopped(tmp_path: Path, spot: Simulator) -> None:
    spot_group, usdm_group = unique_group("s"), unique_group("u")
    config = write_config(tmp_path / "ldc.toml", [
        group_table(spot_group, "spot", ("BTCUSDT",), spot),
        group_table(usdm_group, "usdm", ("BTCUSDT",), spot),
    ])  # fmt: skip
    with processes() as procs:
        supervisor = start_run(procs, config, tmp_path / "run.log")
        readers = [Reader(g, attach_timeout_s=EXIT_TIMEOUT_S) for g in (spot_group, usdm_group)]
        try:
            for reader in readers:
                wait_until(lambda: _all_synced(reader), what=f"{reader.name} in sync")
            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(EXIT_TIMEOUT_S) == 0
            assert [(r.info().state, r.writer_alive()) for r in readers] == [(State.STOPPED, False)] * 2
        finally:
            for reader in readers:
                reader.close()


def _all_synced(reader: Reader) -> bool:
    markets = reader.markets()
    return bool(markets) and all(reader.status(s).in_sync for s in markets)
