"""``ldc metrics`` scraped from a live ``ldc demo`` (issue 17 item 1: "Tested by scraping a live demo and parsing
the exposition with prometheus-client's own parser"): every venue's group of the demo (Binance spot and USD-M
through the REST-snapshot feeder, OKX, Bybit, HTX, Coinbase, Kraken through the stream feeder) is served with
its segment up, its writer alive, every market in sync with a moving update id, and its feeder's own figures
(frames received, connections open, the receive-to-publish histogram; REST weight for the Binance groups)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from feeder_helpers import processes, unique_group, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_demo import VENUES, groups_of

pytestmark = pytest.mark.timeout(150)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
BINANCE = ("binance.com", "binance.com-futures")


def parsed(text: str) -> Samples:
    """(sample name, sorted labels) -> value, through prometheus-client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), float("nan"))


@pytest.fixture
def demo_groups() -> Iterator[list[str]]:
    prefix = unique_group("mdemo")
    with processes() as procs:
        procs.groups += groups_of(prefix)
        proc = procs.ldc("demo", "--duration", "0", "--plain", "--group-prefix", prefix, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            yield groups_of(prefix)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=40) == 0


def start_metrics(groups: list[str]) -> tuple[subprocess.Popen[str], str]:
    args = [a for g in groups for a in ("--group", g)]
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", "metrics", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving" in line, f"ldc metrics did not start: {line!r}"
    return proc, line.split()[-1]


def every_market_in_sync(samples: Samples, groups: list[str]) -> bool:
    return all(get(samples, "ldc_market_in_sync", group=group, exchange=v.exchange, symbol=symbol) == 1
               for group, v in zip(groups, VENUES) for symbol in v.symbols)  # fmt: skip


def all_moved(first: Samples, later: Samples, groups: list[str]) -> bool:
    for group, v in zip(groups, VENUES):
        seg = {"group": group, "exchange": v.exchange}
        if not get(later, "ldc_feeder_frames_received_total", **seg) > get(first, "ldc_feeder_frames_received_total", **seg):
            return False
        if not any(get(later, "ldc_market_update_id", **seg, symbol=symbol) > get(first, "ldc_market_update_id", **seg, symbol=symbol)
                   for symbol in v.symbols):  # fmt: skip
            return False
    return True


def test_a_live_demo_scraped_and_parsed_serves_every_venue_group(demo_groups: list[str]) -> None:
    proc, url = start_metrics(demo_groups)
    try:
        scrape = lambda: parsed(requests.get(url, timeout=10).text)  # noqa: E731
        first: Any = wait_until(lambda: (lambda s: s if every_market_in_sync(s, demo_groups) else None)(scrape()),
                                timeout_s=90.0, what="every market of every demo group in sync in the exposition")  # fmt: skip
        time.sleep(1.0)
        # a group's frames and ids move at its simulator's pace, which a loaded host may stretch past a second:
        # the later scrape is the first one where every group moved (the assertions below name any that did not)
        later = wait_until(lambda: (lambda s: s if every_market_in_sync(s, demo_groups) and all_moved(first, s, demo_groups) else None)(scrape()),
                           timeout_s=30.0, what="a later scrape where every group's frames and an update id moved")  # fmt: skip
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    for group, v in zip(demo_groups, VENUES):
        seg = {"group": group, "exchange": v.exchange}
        assert get(later, "ldc_segment_up", group=group) == 1, group
        assert get(later, "ldc_writer_alive", **seg) == 1, group
        assert get(later, "ldc_feeder_frames_received_total", **seg) > get(first, "ldc_feeder_frames_received_total", **seg) > 0, group
        assert get(later, "ldc_feeder_ws_connections_open", **seg) >= 1, group
        assert get(later, "ldc_feeder_receive_to_publish_seconds_count", **seg) > 0, group
        assert get(later, "ldc_feeder_rest_429_total", **seg) == 0 and get(later, "ldc_feeder_rest_418_total", **seg) == 0, group
        if v.exchange in BINANCE:  # the REST-snapshot feeder books its weight against the host's ledger
            assert get(later, "ldc_feeder_rest_weight_used", **seg) > 0 and get(later, "ldc_feeder_rest_weight_limit", **seg) > 0, group
        moved = 0
        for symbol in v.symbols:
            market = {**seg, "symbol": symbol}
            assert get(later, "ldc_market_gaps_total", **market) == 0, (group, symbol)
            moved += get(later, "ldc_market_update_id", **market) > get(first, "ldc_market_update_id", **market)
        assert moved >= 1, f"{group}: no update id moved between the two scrapes"
