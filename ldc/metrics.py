"""``ldc metrics [--listen 127.0.0.1:9464]``: Prometheus metrics of every ldc segment on this host.

A custom collector reads each ``/dev/shm/ldc-*`` segment at scrape time through the public ``Reader``
(read-only mappings, seqlock copies), so the feeders do nothing for it: no HTTP server, no counters of
their own to keep, no lock taken. A segment that fails validation (or cannot be read) is served as
``ldc_segment_up 0`` plus ``ldc_segment_error_info`` naming the error, and logged once per new error;
every other segment is served as usual.

Per segment (labels ``group``, ``exchange``): writer alive, state, heartbeat age, takeovers, markets,
capacity, depth. Per market (``group``, ``exchange``, ``symbol``): in sync, status flags, update id,
seconds since the last publish, feeder lag, levels, and the slot's counters (updates, resyncs, gaps,
ignored diffs, snapshots, audit mismatches) as Prometheus counters. Per feeder (``group``, ``exchange``;
layout 2.1's feeder-stats block, absent for a 2.0 writer's segment): REST 429 / 418 answers and weight,
websocket connections open, opened and lost, frames received, the recorder's counts, and the
receive-to-publish latency of each socket read as a histogram.

    ldc metrics                          # serves http://127.0.0.1:9464/metrics until SIGTERM
    ldc metrics --once                   # prints one exposition on stdout (node_exporter's textfile)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ldc.errors import LdcError, MarketNotFound, SegmentNotFound
from ldc.logjournal import stderr_handler
from ldc.shm.layout import COUNTER_FIELDS, SHM_DIR, STATS_COUNTERS, STATS_GAUGES
from ldc.shm.reader import FeederStatsView, MarketStatus, Reader, SegmentInfo
from ldc.tools import list_groups

log = logging.getLogger("ldc.metrics")

DEFAULT_LISTEN: Final = "127.0.0.1:9464"  # loopback: the exposition names every market; expose it on purpose
NS_PER_S: Final = 1e9
PREFIX: Final = "ldc"
SEGMENT_LABELS: Final = ("group", "exchange")
MARKET_LABELS: Final = ("group", "exchange", "symbol")
# slot counter -> (metric name, help); names end in _total once prometheus-client adds it
COUNTER_HELP: Final[dict[str, tuple[str, str]]] = {
    "updates": ("market_updates", "publishes of the market's slot"),
    "resyncs": ("market_resyncs", "full resyncs (a new snapshot after the book was lost)"),
    "gaps": ("market_gaps", "update-id gaps detected in the diff stream"),
    "ignored": ("market_ignored_diffs", "diffs dropped as duplicate or older than the book"),
    "snapshots": ("market_snapshots", "REST snapshots loaded"),
    "audit_mismatches": ("market_audit_mismatches", "levels that differed in refresh audits, summed"),
}
# feeder-stats field -> metric name (counters end in _total once prometheus-client adds it); help from layout
FEEDER_NAMES: Final[dict[str, str]] = {
    "rest_429": "feeder_rest_429",
    "rest_418": "feeder_rest_418",
    "ws_opened": "feeder_ws_connections_opened",
    "ws_reconnects": "feeder_ws_reconnects",
    "frames": "feeder_frames_received",
    "record_written": "feeder_record_written",
    "record_dropped": "feeder_record_dropped",
    "record_errors": "feeder_record_errors",
    "ws_open": "feeder_ws_connections_open",
    "rest_weight_used": "feeder_rest_weight_used",
    "rest_weight_limit": "feeder_rest_weight_limit",
}
LATENCY_METRIC: Final = "feeder_receive_to_publish_seconds"


@dataclass
class _Families:
    """The metric families of one scrape; a segment's samples are added only once it was read whole."""

    families: dict[str, Metric] = field(default_factory=dict)

    def gauge(self, name: str, help_: str, labels: tuple[str, ...], values: Iterable[str], value: float) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = GaugeMetricFamily(f"{PREFIX}_{name}", help_, labels=labels)
        family.add_metric(list(values), value)  # type: ignore[attr-defined]

    def counter(self, name: str, help_: str, labels: tuple[str, ...], values: Iterable[str], value: float) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = CounterMetricFamily(f"{PREFIX}_{name}", help_, labels=labels)
        family.add_metric(list(values), value)  # type: ignore[attr-defined]

    def histogram(self, name: str, help_: str, labels: tuple[str, ...], values: Iterable[str],
                  buckets: list[tuple[str, float]], sum_value: float) -> None:  # fmt: skip
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = HistogramMetricFamily(f"{PREFIX}_{name}", help_, labels=labels)
        family.add_metric(list(values), buckets, sum_value)  # type: ignore[attr-defined]

    def merge(self, other: _Families) -> None:
        for name, family in other.families.items():
            if name in self.families:
                self.families[name].samples.extend(family.samples)
            else:
                self.families[name] = family

    def all(self) -> Iterator[Metric]:
        yield from self.families.values()


class SegmentCollector(Collector):
    """Reads every segment (or ``groups``) at each ``collect()``; nothing is cached between scrapes but
    the last error of each group (to log a new error once, not at every scrape)."""

    def __init__(self, groups: tuple[str, ...] = (), shm_dir: str = SHM_DIR) -> None:
        self._groups, self._shm_dir = groups, shm_dir
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()  # scrapes may overlap (one thread per HTTP request)

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        out = _Families()
        groups = self._groups or tuple(list_groups(self._shm_dir))
        for group in groups:
            one = _Families()
            try:
                _read_segment(group, one)
            except SegmentNotFound as exc:
                if not self._groups:
                    continue  # removed between the directory listing and the open: not an error
                one = _error_families(group, exc)
            except LdcError as exc:
                one = _error_families(group, exc)
            self._note(group, one)
            out.merge(one)
        out.gauge("scrape_duration_seconds", "time this scrape spent reading segments", (), (), time.monotonic() - started)
        out.gauge("segments", "segment files found in /dev/shm", (), (), len(groups))
        yield from out.all()

    def _note(self, group: str, families: _Families) -> None:
        """One log line when a group's error appears or changes, one when it is readable again."""
        error_family = families.families.get("segment_error_info")
        error = error_family.samples[0].labels["message"] if error_family is not None else ""
        with self._lock:
            before = self._errors.get(group, "")
            if error == before:
                return
            self._errors[group] = error
        if error:
            log.error("group %s: segment not served: %s", group, error)
        else:
            log.info("group %s: segment readable again", group)


def _error_families(group: str, exc: LdcError) -> _Families:
    out = _Families()
    out.gauge("segment_up", "1 when the segment validated and was read", ("group",), (group,), 0)
    out.gauge("segment_error_info", "why the segment could not be read (the reader's error)",
              ("group", "kind", "message"), (group, type(exc).__name__, str(exc)), 1)  # fmt: skip
    return out


def _read_segment(group: str, out: _Families) -> None:
    """Every metric of one segment, into ``out``; raises LdcError if the segment cannot be read."""
    with Reader(group) as reader:
        info = reader.info()
        statuses = [(symbol, _status(reader, symbol)) for symbol in reader.markets()]
        stats = reader.feeder_stats()
    now_ns = time.time_ns()
    _segment_metrics(info, now_ns, out)
    if stats is not None:
        _feeder_metrics(info, stats, out)
    for _, status in statuses:
        if status is not None:
            _market_metrics(group, info.exchange, status, info.alive, now_ns, out)


def _status(reader: Reader, symbol: str) -> MarketStatus | None:
    try:
        return reader.status(symbol)
    except MarketNotFound:  # removed between the directory read and the slot read
        return None


def _segment_metrics(info: SegmentInfo, now_ns: int, out: _Families) -> None:
    labels = (info.group, info.exchange)
    out.gauge("segment_up", "1 when the segment validated and was read", ("group",), (info.group,), 1)
    out.gauge("segment_info", "layout version and writer pid of the segment", ("group", "exchange", "version", "writer_pid"),
              (*labels, f"{info.version[0]}.{info.version[1]}", str(info.writer_pid)), 1)  # fmt: skip
    out.gauge("writer_alive", "1 when a writer holds the segment lock and runs", SEGMENT_LABELS, labels, int(info.alive))
    out.gauge("writer_state", "1 initialising, 2 running, 3 stopped (LAYOUT.md section 3)", SEGMENT_LABELS, labels, info.state)
    if info.heartbeat_ns:
        out.gauge("heartbeat_age_seconds", "seconds since the writer's last heartbeat", SEGMENT_LABELS, labels,
                  (now_ns - info.heartbeat_ns) / NS_PER_S)  # fmt: skip
    out.gauge("writer_start_time_seconds", "when the current writer attached (Unix time)", SEGMENT_LABELS, labels,
              info.start_time_ns / NS_PER_S)  # fmt: skip
    out.counter("takeovers", "times a writer took the segment over from a dead one", SEGMENT_LABELS, labels, info.takeovers)
    out.gauge("markets", "markets in the segment's directory", SEGMENT_LABELS, labels, info.market_count)
    out.gauge("capacity", "market slots of the segment", SEGMENT_LABELS, labels, info.capacity)
    out.gauge("depth", "levels per side each slot holds", SEGMENT_LABELS, labels, info.depth)


def _feeder_metrics(info: SegmentInfo, stats: FeederStatsView, out: _Families) -> None:
    labels = (info.group, info.exchange)
    for field_name, help_ in STATS_COUNTERS:
        out.counter(FEEDER_NAMES[field_name], help_, SEGMENT_LABELS, labels, stats.counters[field_name])
    for field_name, help_ in STATS_GAUGES:
        out.gauge(FEEDER_NAMES[field_name], help_, SEGMENT_LABELS, labels, stats.gauges[field_name])
    buckets: list[tuple[str, float]] = []
    cumulative, last = 0, len(stats.latency_counts) - 1
    for i, (bound_ns, count) in enumerate(zip(stats.latency_bounds_ns, stats.latency_counts)):
        cumulative += count  # the count is the buckets' sum as loaded, so _count and +Inf agree
        buckets.append(("+Inf" if i == last else f"{bound_ns / NS_PER_S:g}", cumulative))
    out.histogram(LATENCY_METRIC, "receive time of a socket read to the end of its publishes (one observation per read)",
                  SEGMENT_LABELS, labels, buckets, stats.latency_sum_ns / NS_PER_S)  # fmt: skip


def _market_metrics(group: str, exchange: str, st: MarketStatus, alive: bool, now_ns: int, out: _Families) -> None:
    labels = (group, exchange, st.symbol)
    out.gauge("market_in_sync", "1 when the book is exact (SYNCED and no fault flag) and its writer alive",
              MARKET_LABELS, labels, int(st.in_sync and alive))  # fmt: skip
    out.gauge("market_status", "the slot's status flags (LAYOUT.md section 6: 1 SYNCED, 2 STALE, 4 RESYNCING, "
              "8 CROSSED, 16 ERROR, 32 INCOMPLETE, 64 REFRESHING)", MARKET_LABELS, labels, int(st.status))  # fmt: skip
    out.gauge("market_update_id", "the exchange's last update id in the book (-1 before the first)", MARKET_LABELS, labels, st.update_id)
    if st.publish_time_ns > 0:
        out.gauge("market_last_update_age_seconds", "seconds since the slot was last published", MARKET_LABELS, labels,
                  (now_ns - st.publish_time_ns) / NS_PER_S)  # fmt: skip
    if st.recv_time_ns > 0 and st.event_time_ms > 0:
        out.gauge("market_lag_seconds", "the feeder's receive time minus the exchange's event time of the last update",
                  MARKET_LABELS, labels, st.recv_time_ns / NS_PER_S - st.event_time_ms / 1e3)  # fmt: skip
    out.gauge("market_levels", "levels published", (*MARKET_LABELS, "side"), (*labels, "bid"), st.n_bids)
    out.gauge("market_levels", "levels published", (*MARKET_LABELS, "side"), (*labels, "ask"), st.n_asks)
    for counter in COUNTER_FIELDS:
        name, help_ = COUNTER_HELP[counter]
        out.counter(name, help_, MARKET_LABELS, labels, st.counters[counter])


def exposition(collector: SegmentCollector) -> bytes:
    """One scrape's text exposition (what ``--once`` prints)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65_535:
        raise ValueError(f"--listen expected HOST:PORT like {DEFAULT_LISTEN}, found {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc metrics", description="Prometheus metrics of every ldc segment on this host")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve /metrics on (default {DEFAULT_LISTEN}; port 0 picks one)")
    parser.add_argument("--group", action="append", default=[], help="only this group (repeatable; default every segment)")
    parser.add_argument("--once", action="store_true", help="print one exposition on stdout and exit")
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), handlers=[stderr_handler()])  # journald's fields under systemd
    collector = SegmentCollector(tuple(args.group))
    if args.once:
        sys.stdout.write(exposition(collector).decode())
        return 0
    try:
        host, port = parse_listen(args.listen)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        server, thread = start_http_server(port, host, registry=registry)
    except (ValueError, OSError) as exc:
        print(f"ldc metrics: {exc}", file=sys.stderr)
        return 2
    print(f"ldc metrics: serving http://{host}:{server.server_port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join()
    return 0
