"""`ldc status` / `book` / `top` on every venue's segment (issue 12 item 8), written by live feeders of each
venue on the simulator: Binance spot and USD-M, OKX, Bybit (spot, linear, inverse), HTX, Coinbase, Kraken and
any venue the demo shows. Markets are typed in the venue's syntax (BTC-USDT-SWAP, BTCUSD, btcusdt, BTC/USD) and
any case; the exchange is shown; every book read equals the simulator's truth for that venue at its update id
(Kraken's, which has none of its own, is the message timestamp in µs: the simulator's key too)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from shm_helpers import unique_group, unlink_group

from ldc import demo
from ldc.cli import main as cli
from ldc.config import GroupConfig, parse_config
from ldc.errors import LdcError
from ldc.feeder import Feeder
from ldc.io.governor import governor_key, unlink_governor
from ldc.shm.reader import Reader
from ldc.sim import Simulator
from ldc.stream_feeder import StreamFeeder
from ldc.venues import VENUES, stream_venue

pytestmark = pytest.mark.timeout(120)

SYNC_WAIT_S = 40.0
TRUTH_TRIES = 20  # a book whose update id the simulator no longer keeps is read again
BYBIT_50 = "orderbook.50"

# the demo's venues, the Bybit categories it does not show, and Kraken on another channel
MORE_VENUES = (
    demo.VenueDemo("bspot", "bybit-spot", ("BTCUSDT",), "bybit", "bybit_spot_symbols", BYBIT_50, (("category", "spot"), ("depth", 50))),
    demo.VenueDemo("binv", "bybit-inverse", ("BTCUSD",), "bybit", "bybit_inverse_symbols", BYBIT_50, (("category", "inverse"), ("depth", 50))),
    # Kraken on a deeper channel than the demo's book.25 (the simulator then serves both pairs to both groups)
    demo.VenueDemo("kr100", "kraken", ("BTC/USD", "ETH/USD"), "kraken", "kraken_symbols", "book.100", (("depth", 100),)),
)
TOOL_VENUES = demo.venue_demos() + tuple(v for v in MORE_VENUES if v.exchange in VENUES)


@dataclass(frozen=True)
class Live:
    sim: Simulator
    groups: dict[str, demo.VenueDemo]  # group name -> venue


def _feeder(group: GroupConfig) -> Feeder | StreamFeeder:
    return StreamFeeder(group) if stream_venue(group.exchange) is not None else Feeder(group)


def _wait_synced(groups: dict[str, demo.VenueDemo]) -> None:
    deadline = time.monotonic() + SYNC_WAIT_S
    for group, venue in groups.items():
        while True:
            try:
                with Reader(group) as reader:
                    if all(reader.status(s).in_sync for s in venue.symbols):
                        break
            except LdcError as exc:  # no segment or market yet: the deadline reports it
                last = str(exc)
            else:
                last = "markets not in sync"
            assert time.monotonic() < deadline, f"{group}: {last}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One simulator serving every venue, one feeder thread per venue's group, every market in sync."""
    prefix = unique_group("tv")
    groups = {f"{prefix}-{v.suffix}": v for v in TOOL_VENUES}
    threads: list[tuple[Feeder | StreamFeeder, threading.Thread]] = []
    with Simulator(demo.sim_config(TOOL_VENUES)) as sim:
        try:
            for group in parse_config(demo.config_text(prefix, sim, TOOL_VENUES)).groups:
                feeder = _feeder(group)
                thread = threading.Thread(target=feeder.run, name=f"feeder-{group.name}")
                thread.start()
                threads.append((feeder, thread))
            _wait_synced(groups)
            yield Live(sim, groups)
        finally:
            for feeder, _ in threads:
                feeder.request_stop()
            for _, thread in threads:
                thread.join(timeout=15.0)
            for group in groups:
                unlink_group(group)
            unlink_governor(governor_key(sim.rest_url))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _group_of(live: Live, venue: demo.VenueDemo) -> str:
    return next(group for group, v in live.groups.items() if v is venue)


VENUE_IDS = [v.exchange if v.exchange != "kraken" else f"kraken-{v.channel}" for v in TOOL_VENUES]


@pytest.mark.parametrize("venue", TOOL_VENUES, ids=VENUE_IDS)
def test_status_names_the_exchange_and_every_market_in_sync(capsys: pytest.CaptureFixture[str], live: Live, venue: demo.VenueDemo) -> None:
    group = _group_of(live, venue)
    code, out, err = run(capsys, "status", "--group", group, "--json", "--interval", "0.2")
    (segment,) = json.loads(out)["segments"]
    assert code == 0, err
    assert segment["exchange"] == venue.exchange and segment["writer_alive"]
    assert [m["symbol"] for m in segment["markets"]] == list(venue.symbols)
    assert all(m["synced"] and m["update_id"] > 0 for m in segment["markets"]), segment["markets"]
    code, out, _ = run(capsys, "status", "--group", group, "--interval", "0")
    assert code == 0 and out.startswith(f"{group}  {venue.exchange}  writer alive (")


@pytest.mark.parametrize("venue", TOOL_VENUES, ids=VENUE_IDS)
def test_book_in_the_venues_syntax_and_any_case_equals_the_truth(capsys: pytest.CaptureFixture[str], live: Live, venue: demo.VenueDemo) -> None:
    group = _group_of(live, venue)
    for symbol in venue.symbols:
        for _ in range(TRUTH_TRIES):
            code, out, err = run(capsys, "book", group, symbol.lower(), "--json", "--depth", str(demo.DEPTH))
            book = json.loads(out)
            assert code == 0, err
            assert (book["symbol"], book["exchange"], book["synced"]) == (symbol, venue.exchange, True)
            truth = demo.truth_at(live.sim, venue, symbol, book["update_id"])
            if not isinstance(truth, str):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"{venue.exchange} {symbol}: no truth at any update id read: {truth}")
        assert (book["bids"], book["asks"]) == ([[float(p), float(q)] for p, q in truth["bids"]],
                                                 [[float(p), float(q)] for p, q in truth["asks"]])  # fmt: skip


@pytest.mark.parametrize("venue", TOOL_VENUES, ids=VENUE_IDS)
def test_top_draws_the_venues_market_with_its_exchange(capsys: pytest.CaptureFixture[str], live: Live, venue: demo.VenueDemo) -> None:
    group, symbol = _group_of(live, venue), venue.symbols[-1]
    code, out, err = run(capsys, "top", group, symbol.lower(), "--depth", "3", "--duration", "0.3")
    frames = [f for f in out.split("\n\n") if f.strip()]
    assert code == 0, err
    assert frames and all(f.startswith(f"{symbol}  update_id ") for f in frames), out[:500]
    first = frames[0].splitlines()
    assert first[0].endswith(f"  {venue.exchange}") and "SYNCED" in first[0]
    assert sum(line.endswith((" ask", " bid")) for line in first) == 6  # three levels a side
