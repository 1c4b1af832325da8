"""``ldc metrics`` (issue 17 item 1): Prometheus exposition read from the segments, parsed with
prometheus-client's own parser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from feeder_helpers import feeder_in_thread, wait_until
from prometheus_client.parser import text_string_to_metric_families
from shm_helpers import group_fixture, unique_group, unlink_group

from ldc.metrics import SegmentCollector, exposition, parse_listen
from ldc.shm.layout import Counter, Status, segment_path
from ldc.shm.writer import SegmentWriter
from ldc.sim import Simulator
from ldc.sim.faults import FaultKind, FaultRule

DEPTH = 5
REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
START_TIMEOUT_S = 20.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, every sample of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


@pytest.fixture
def damaged() -> Iterator[str]:
    """A file named like a segment whose magic is wrong."""
    name = unique_group("bad")
    with open(segment_path(name), "wb") as handle:
        handle.write(b"NOTLDC!!" + bytes(4088))
    try:
        yield name
    finally:
        unlink_group(name)


def test_counters_and_status_are_the_slots(group: str) -> None:
    bids = np.array([[100.0 - i, 1.0 + i] for i in range(DEPTH)])
    asks = np.array([[101.0 + i, 1.0 + i] for i in range(DEPTH)])
    with SegmentWriter(group, depth=DEPTH, capacity=4, exchange="binance.com") as writer:
        slot = writer.add_market("BTCUSDT")
        writer.add_market("ETHUSDT")  # no data yet: no age, status 0
        writer.publish(slot, update_id=42, event_time_ms=1_700_000_000_000, recv_time_ns=1_700_000_000_250_000_000,
                       status=Status.SYNCED, bids=bids, asks=asks, n_bids=DEPTH, n_asks=3)  # fmt: skip
        for counter, amount in ((Counter.RESYNCS, 2), (Counter.GAPS, 3), (Counter.IGNORED, 4), (Counter.SNAPSHOTS, 5),
                                (Counter.AUDIT_MISMATCHES, 6)):  # fmt: skip
            writer.bump(slot, counter, amount)
        got = samples(exposition(SegmentCollector((group,))).decode())
    btc = {"group": group, "exchange": "binance.com", "symbol": "BTCUSDT"}
    assert value(got, "ldc_market_in_sync", **btc) == 1
    assert value(got, "ldc_market_update_id", **btc) == 42
    assert value(got, "ldc_market_updates_total", **btc) == 1
    assert [value(got, f"ldc_market_{name}_total", **btc) for name in
            ("resyncs", "gaps", "ignored_diffs", "snapshots", "audit_mismatches")] == [2, 3, 4, 5, 6]  # fmt: skip
    assert value(got, "ldc_market_lag_seconds", **btc) == pytest.approx(0.25)
    assert value(got, "ldc_market_levels", **btc, side="ask") == 3
    assert 0 <= value(got, "ldc_market_last_update_age_seconds", **btc) < 60
    eth = {**btc, "symbol": "ETHUSDT"}
    assert value(got, "ldc_market_status", **eth) == 0 and value(got, "ldc_market_in_sync", **eth) == 0
    assert ("ldc_market_last_update_age_seconds", tuple(sorted(eth.items()))) not in got
    assert value(got, "ldc_writer_alive", group=group, exchange="binance.com") == 1
    assert value(got, "ldc_markets", group=group, exchange="binance.com") == 2
    assert value(got, "ldc_segment_up", group=group) == 1


def test_a_stopped_writer_is_served_as_not_alive(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2, exchange="binance.com") as writer:
        writer.add_market("BTCUSDT")
    got = samples(exposition(SegmentCollector((group,))).decode())
    assert value(got, "ldc_writer_alive", group=group, exchange="binance.com") == 0
    assert value(got, "ldc_writer_state", group=group, exchange="binance.com") == 3


def test_a_damaged_segment_is_an_error_metric_and_the_others_are_served(
    group: str, damaged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2, exchange="binance.com") as writer:
        writer.add_market("BTCUSDT")
        collector = SegmentCollector((damaged, group))
        got = samples(exposition(collector).decode())
        exposition(collector)  # a second scrape: the same error is not logged again
    assert value(got, "ldc_segment_up", group=damaged) == 0
    assert value(got, "ldc_segment_up", group=group) == 1
    errors = [key for key in got if key[0] == "ldc_segment_error_info"]
    assert len(errors) == 1
    labels = dict(errors[0][1])
    assert labels["group"] == damaged and labels["kind"] == "LayoutError" and "expected b'LDCDEPTH'" in labels["message"]
    assert value(got, "ldc_market_in_sync", group=group, exchange="binance.com", symbol="BTCUSDT") == 0
    logged = [r for r in caplog.records if r.name == "ldc.metrics" and damaged in r.getMessage()]
    assert len(logged) == 1 and "expected b'LDCDEPTH'" in logged[0].getMessage()


def test_listen_address_is_checked() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "127.0.0.1:", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def start_metrics(*groups: str) -> tuple[subprocess.Popen[str], str]:
    args = [a for g in groups for a in ("--group", g)]
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", "metrics", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"ldc metrics did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split()[-1]


def test_scrape_of_a_live_feeder(sim: Simulator, damaged: str) -> None:
    with feeder_in_thread(sim, "spot", ("BTCUSDT", "ETHUSDT")) as run:
        run.wait_synced()
        group = run.group.name
        proc, url = start_metrics(group, damaged)
        try:
            def scraped() -> dict[Any, float] | None:
                got = samples(requests.get(url, timeout=10).text)
                ready = all(value(got, "ldc_market_in_sync", group=group, exchange="binance.com", symbol=s) == 1
                            for s in ("BTCUSDT", "ETHUSDT"))  # fmt: skip
                return got if ready else None

            got = wait_until(scraped, what="both markets in sync in the exposition")
            first_id = value(got, "ldc_market_update_id", group=group, exchange="binance.com", symbol="BTCUSDT")
            wait_until(lambda: value(samples(requests.get(url, timeout=10).text), "ldc_market_update_id", group=group,
                                     exchange="binance.com", symbol="BTCUSDT") > first_id, what="the update id to move")  # fmt: skip
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
    btc = {"group": group, "exchange": "binance.com", "symbol": "BTCUSDT"}
    assert value(got, "ldc_market_snapshots_total", **btc) >= 1
    assert value(got, "ldc_market_updates_total", **btc) >= 1
    assert value(got, "ldc_market_gaps_total", **btc) == 0
    assert value(got, "ldc_writer_alive", group=group, exchange="binance.com") == 1
    assert value(got, "ldc_segment_up", group=damaged) == 0
    assert f"group {damaged}: segment not served: " in err and "expected b'LDCDEPTH'" in err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_metrics_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = (UNITS / "ldc-metrics.service").read_text()
    assert "ExecStart=/usr/local/bin/ldc metrics --listen 127.0.0.1:9464\n" in text
    (tmp_path / "ldc-metrics.service").write_text(text.replace("/usr/local/bin/ldc", str(Path(sys.executable).parent / "ldc")))
    shutil.copy(UNITS / "ldc.target", tmp_path / "ldc.target")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "ldc-metrics.service")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert (result.returncode, [line for line in result.stderr.splitlines() if "ldc-metrics" in line]) == (0, [])


def test_grafana_dashboard_queries_metrics_the_exporter_serves(group: str, damaged: str) -> None:
    """Every metric a panel queries exists in an exposition (a renamed metric would leave a panel empty)."""
    dashboard = json.loads((REPO / "docs" / "grafana-ldc.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    with SegmentWriter(group, depth=DEPTH, capacity=2, exchange="binance.com") as writer:
        writer.add_market("BTCUSDT")
        writer.publish(0, update_id=1, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED, bids=np.zeros((DEPTH, 2)),
                       asks=np.zeros((DEPTH, 2)), n_bids=0, n_asks=0)  # fmt: skip
        served = {f.name for f in text_string_to_metric_families(exposition(SegmentCollector((group, damaged))).decode())}
    served |= {name + suffix for name in served for suffix in ("_total", "_bucket", "_sum", "_count")}
    queried = {name for expr in exprs for name in re.findall(r"\b(ldc_[a-z0-9_]+)", expr)}
    assert exprs and queried and queried <= served, queried - served


def feeder_figures(group: str) -> dict[Any, float]:
    """One scrape of ``group``, parsed by prometheus-client's own parser, with the ``group`` and ``exchange``
    labels dropped: (sample name, the other labels) -> value."""
    got = samples(exposition(SegmentCollector((group,))).decode())
    return {(name, tuple(kv for kv in labels if kv[0] not in ("group", "exchange"))): v
            for (name, labels), v in got.items() if name.startswith("ldc_feeder_")}  # fmt: skip


def test_feeder_figures_move_with_a_429_a_disconnect_and_the_frames(sim: Simulator) -> None:
    """A live feeder against the simulator: a 429 answer, a dropped connection and the frames received show
    in the exposition as the feeder's counters (layout 2.1's feeder-stats block)."""
    sim.add_fault(FaultRule(FaultKind.RATE_LIMIT, count=1))  # the feeder's first REST request is answered 429
    with feeder_in_thread(sim, "spot", ("BTCUSDT", "ETHUSDT")) as run:
        run.wait_synced()
        group = run.group.name
        first, budget = feeder_figures(group), run.group.weight_budget_per_min
        sim.add_fault(FaultRule(FaultKind.DISCONNECT, count=1))
        frames = ("ldc_feeder_frames_received_total", ())

        def moved() -> dict[Any, float] | None:
            f = feeder_figures(group)
            done = f[("ldc_feeder_ws_reconnects_total", ())] >= 1 and f[("ldc_feeder_ws_connections_open", ())] == 1
            return f if done and f[frames] > first[frames] else None

        later = wait_until(moved, what="a reconnect counted and more frames")
    assert first[("ldc_feeder_rest_429_total", ())] == 1 and first[("ldc_feeder_rest_418_total", ())] == 0
    assert first[("ldc_feeder_rest_weight_limit", ())] == budget and first[("ldc_feeder_rest_weight_used", ())] > 0
    assert first[("ldc_feeder_ws_connections_open", ())] == 1 and first[("ldc_feeder_ws_reconnects_total", ())] == 0
    assert later[("ldc_feeder_ws_connections_opened_total", ())] == 2
    assert first[frames] > 0
    count = later[("ldc_feeder_receive_to_publish_seconds_count", ())]
    assert count == later[("ldc_feeder_receive_to_publish_seconds_bucket", (("le", "+Inf"),))] > 0
    assert 0 < later[("ldc_feeder_receive_to_publish_seconds_sum", ())] < count  # each read well under a second
