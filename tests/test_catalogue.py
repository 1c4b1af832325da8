"""The symbol catalogue alone (ldc/catalogue.py), against the simulator's REST through the feeders' RestClient:
unknown symbols from a whole listing (Binance exchangeInfo), the retry of symbols that could not be checked,
and the precision of a stream venue's instrument list (OKX)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import requests

from ldc.catalogue import RETRY_CAP_S, RETRY_MIN_S, Listing, SymbolCatalogue, stream_venue_listing
from ldc.errors import ProtocolError
from ldc.feeder import exchange_info_listing
from ldc.io.rest import RestClient
from ldc.sim import SimConfig, Simulator
from ldc.sim.faults import FaultKind, FaultRule
from ldc.sim.venue_faults import venue_fault_from_cli
from ldc.venues import binance, stream_venue
from ldc.venues.base import Precision

log = logging.getLogger("ldc.test_catalogue")
UNKNOWN = "unknown symbol NOSUCHCOIN: not listed by binance.com exchangeInfo"


class Clock:
    """The catalogue's clock, moved by hand: the retry schedule is read without sleeping through it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rest_get() -> Iterator[Callable[[str], Callable[[str, dict[str, str], int], bytes]]]:
    clients: list[RestClient] = []

    def make(base_url: str) -> Callable[[str, dict[str, str], int], bytes]:
        client = RestClient(base_url, governor=None, connect_timeout_s=5.0, read_timeout_s=5.0)
        clients.append(client)
        return lambda path, params, weight: client.get(path, params=params, weight=weight).body

    yield make
    for client in clients:
        client.close()


def spot_catalogue(sim: Simulator, get: Callable[[str, dict[str, str], int], bytes], clock: Clock | None = None) -> SymbolCatalogue:
    listing = exchange_info_listing(binance.exchange("binance.com"))
    return SymbolCatalogue("binance.com", listing, get, log=log, clock=clock or Clock())


def test_a_symbol_the_listing_lacks_is_unknown_with_the_listings_name(sim: Simulator, rest_get: Callable[..., Callable[..., bytes]]) -> None:
    catalogue = spot_catalogue(sim, rest_get(sim.rest_url))
    assert catalogue.check(["BTCUSDT", "NOSUCHCOIN", "ETHUSDT"]) == {"NOSUCHCOIN": UNKNOWN}
    assert catalogue.check(["BTCUSDT"]) == {}
    assert catalogue.pending == frozenset() and not catalogue.due()
    before = sim.stats()["counters"].get("rest_requests", 0)
    assert catalogue.check([]) == {}  # nothing to check: no request (exchangeInfo weighs 20 on spot)
    assert sim.stats()["counters"].get("rest_requests", 0) == before


def test_symbols_not_checked_are_pending_and_checked_again_with_a_doubling_backoff(
    sim: Simulator, rest_get: Callable[..., Callable[..., bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    clock = Clock()
    catalogue = spot_catalogue(sim, rest_get(sim.rest_url), clock)
    sim.add_fault(FaultRule(FaultKind.REST_ERROR, status=500, count=2))  # exchangeInfo fails twice
    assert catalogue.check(["BTCUSDT", "NOSUCHCOIN"]) == {}  # cannot say: nothing is failed on a guess
    assert catalogue.pending == {"BTCUSDT", "NOSUCHCOIN"}
    assert not catalogue.due()
    clock.now += RETRY_MIN_S
    assert catalogue.due()
    assert catalogue.recheck() == {}  # the second failure: still pending, the next check twice as late
    assert catalogue.pending == {"BTCUSDT", "NOSUCHCOIN"}
    clock.now += 2 * RETRY_MIN_S - 0.01
    assert not catalogue.due()
    clock.now += 0.01
    assert catalogue.due()
    assert catalogue.recheck() == {"NOSUCHCOIN": UNKNOWN}
    assert catalogue.pending == frozenset() and not catalogue.due()
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("symbols not validated: binance.com /api/v3/exchangeInfo failed: GET /api/v3/exchangeInfo") for m in messages) == 2
    assert messages[-1] == "symbols validated: 1 listed, 1 unknown"
    # the backoff starts again from the minimum after a success
    sim.add_fault(FaultRule(FaultKind.REST_ERROR, status=500, count=1))
    assert catalogue.check(["ETHUSDT"]) == {} and catalogue.pending == {"ETHUSDT"}
    clock.now += RETRY_MIN_S
    assert catalogue.due() and catalogue.recheck() == {} and catalogue.pending == frozenset()


def test_the_backoff_stops_at_its_cap(sim: Simulator, rest_get: Callable[..., Callable[..., bytes]]) -> None:
    clock = Clock()
    catalogue = spot_catalogue(sim, rest_get(sim.rest_url), clock)
    sim.add_fault(FaultRule(FaultKind.REST_ERROR, status=503))  # every request, until cleared
    assert catalogue.check(["BTCUSDT"]) == {}
    waits = []
    for _ in range(9):
        start = clock.now
        while not catalogue.due():
            clock.now += 0.5
        waits.append(clock.now - start)
        assert catalogue.recheck() == {}
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, RETRY_CAP_S, RETRY_CAP_S, RETRY_CAP_S]
    assert catalogue.pending == {"BTCUSDT"}


def test_an_unreadable_listing_is_a_listing_not_had(sim: Simulator, rest_get: Callable[..., Callable[..., bytes]]) -> None:
    """A body that is not an exchangeInfo (here: a depth answer) is a protocol fault of the listing, not a
    verdict on the symbols: they stay pending."""
    listing = Listing(name="exchangeInfo", requests=lambda symbols: [("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5"}, 1)],
                      read=lambda body: dict.fromkeys(binance.listed_symbols(body)), complete=True)  # fmt: skip
    catalogue = SymbolCatalogue("binance.com", listing, rest_get(sim.rest_url), log=log, clock=Clock())
    with pytest.raises(ProtocolError, match="field 'symbols': expected a list"):
        binance.listed_symbols(rest_get(sim.rest_url)("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5"}, 1))
    assert catalogue.check(["BTCUSDT"]) == {} and catalogue.pending == {"BTCUSDT"}


@pytest.fixture(scope="module")
def okx() -> Iterator[Simulator]:
    with Simulator(SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT", "ETH-USDT", "BTC-USDT-SWAP"), seed=5)) as sim:
        yield sim


def decimals(step: str) -> int:
    exponent = Decimal(step).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def test_a_stream_venues_precision_comes_from_its_instrument_list(okx: Simulator, rest_get: Callable[..., Callable[..., bytes]]) -> None:
    venue = stream_venue("okx")
    assert venue is not None
    catalogue = SymbolCatalogue("okx", stream_venue_listing(venue), rest_get(okx.okx_rest_url), log=log)
    expected = {}
    for inst_type in ("SPOT", "SWAP"):
        answer = requests.get(f"{okx.okx_rest_url}/api/v5/public/instruments", params={"instType": inst_type}, timeout=5).json()
        expected.update({e["instId"]: Precision(decimals(e["tickSz"]), decimals(e["lotSz"])) for e in answer["data"]})
    assert set(expected) == {"BTC-USDT", "ETH-USDT", "BTC-USDT-SWAP"}
    assert catalogue.precision(["BTC-USDT", "BTC-USDT-SWAP"]) == expected  # what each answer lists
    assert {k: v for k, v in catalogue.precision(["ETH-USDT"]).items()} == {k: v for k, v in expected.items() if "SWAP" not in k}
    with pytest.raises(TypeError, match="does not list every instrument"):
        catalogue.check(["BTC-USDT"])  # an instrument list read for precision cannot call a symbol unknown


def test_a_failed_instrument_request_costs_only_its_own_markets_precision(
    okx: Simulator, rest_get: Callable[..., Callable[..., bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    venue = stream_venue("okx")
    assert venue is not None
    catalogue = SymbolCatalogue("okx", stream_venue_listing(venue), rest_get(okx.okx_rest_url), log=log)
    okx.add_venue_fault("okx", venue_fault_from_cli("rest_error:count=1"))  # the first request: SPOT
    found = catalogue.precision(["BTC-USDT-SWAP", "BTC-USDT"])
    assert set(found) == {"BTC-USDT-SWAP"}
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("instrument list /api/v5/public/instruments {'instType': 'SPOT'} not read: GET /api/v5/public/instruments")
    assert "Service temporarily unavailable" in warning


def test_the_catalogue_does_no_io_of_its_own() -> None:
    """Sans-I/O: the feeder lends it its REST client (``get``), so the governor, timeouts and stop event of the
    group apply, and the catalogue is tested with any client."""
    import ast
    from pathlib import Path

    import ldc.catalogue

    tree = ast.parse(Path(ldc.catalogue.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported >= {"ldc.venues.base"}  # the scan reads the module's imports
    io = ("ldc.io", "ldc.feeder", "ldc.stream_feeder", "socket", "ssl", "urllib", "urllib3", "requests", "websocket", "http")
    assert sorted(name for name in imported if name.startswith(io)) == []
