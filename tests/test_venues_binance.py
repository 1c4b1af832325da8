"""ldc.venues.binance: the exchange table, control messages and the reference parsers.

Fixtures in tests/fixtures/binance/ each name the Binance document they follow (first lines)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ldc._fastbook import parse_snapshot_levels
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot, Level
from ldc.errors import ConfigError, ProtocolError
from ldc.sim.replay import captures_dir
from ldc.sync import SequenceRule
from ldc.venues import binance
from ldc.venues.binance import (
    EXCHANGES,
    ControlKind,
    MarketType,
    SnapshotLimit,
    parse_control,
    parse_depth_update,
    parse_message,
    parse_snapshot,
    snapshot_ladder,
    snapshot_limit_for,
)

FIXTURES = Path(__file__).parent / "fixtures" / "binance"


def fixture(name: str) -> bytes:
    """The message of a fixture file: every line that is not a '#' comment."""
    lines = (FIXTURES / name).read_bytes().splitlines()
    return b"\n".join(line for line in lines if not line.startswith(b"#"))


# -- exchange table ---------------------------------------------------------------------------


def test_every_unicorn_exchange_name_is_in_the_read_only_table() -> None:
    assert sorted(EXCHANGES) == [
        "binance.com",
        "binance.com-coin_futures",
        "binance.com-futures",
        "binance.com-futures-testnet",
        "binance.com-testnet",
        "binance.us",
    ]
    with pytest.raises(TypeError):
        EXCHANGES["binance.org"] = EXCHANGES["binance.com"]  # type: ignore[index]


def test_unknown_exchange_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown exchange 'binance.org', expected one of \['binance.com'"):
        binance.exchange("binance.org")


@pytest.mark.parametrize(
    ("name", "market", "rest", "path", "rule"),
    [
        ("binance.com", MarketType.SPOT, "https://api.binance.com", "/api/v3/depth", SequenceRule.SPOT),
        ("binance.com-testnet", MarketType.SPOT, "https://testnet.binance.vision", "/api/v3/depth", SequenceRule.SPOT),
        ("binance.us", MarketType.SPOT, "https://api.binance.us", "/api/v3/depth", SequenceRule.SPOT),
        ("binance.com-futures", MarketType.USDM, "https://fapi.binance.com", "/fapi/v1/depth", SequenceRule.FUTURES),
        ("binance.com-futures-testnet", MarketType.USDM, "https://testnet.binancefuture.com", "/fapi/v1/depth", SequenceRule.FUTURES),
        ("binance.com-coin_futures", MarketType.COINM, "https://dapi.binance.com", "/dapi/v1/depth", SequenceRule.FUTURES),
    ],
)
def test_exchange_endpoints_and_rules(name: str, market: MarketType, rest: str, path: str, rule: SequenceRule) -> None:
    ex = binance.exchange(name)
    assert (ex.market_type, ex.rest_base_url, ex.snapshot_path, ex.sequence_rule) == (market, rest, path, rule)


def test_usdm_depth_streams_use_the_public_route_since_the_2026_split() -> None:
    ex = binance.exchange("binance.com-futures")
    streams = [ex.depth_stream("BTCUSDT"), ex.depth_stream("ethusdt", 500)]
    assert streams == ["btcusdt@depth@100ms", "ethusdt@depth@500ms"]
    assert ex.stream_url(streams) == "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth@500ms"
    assert ex.raw_stream_url("btcusdt@depth") == "wss://fstream.binance.com/public/ws/btcusdt@depth"


def test_spot_and_coinm_stream_urls_have_no_route() -> None:
    spot = binance.exchange("binance.com")
    assert spot.stream_url([spot.depth_stream("BNBBTC", 1000)]) == "wss://stream.binance.com:9443/stream?streams=bnbbtc@depth"
    coinm = binance.exchange("binance.com-coin_futures")
    assert coinm.raw_stream_url(coinm.depth_stream("BTCUSD_PERP", 0)) == "wss://dstream.binance.com/ws/btcusd_perp@depth@0ms"


def test_stream_urls_split_streams_by_the_connection_limit() -> None:
    ex = binance.exchange("binance.com-futures")
    streams = [f"s{i}@depth@100ms" for i in range(2049)]
    urls = ex.stream_urls(streams)
    assert [url.count("@depth") for url in urls] == [1024, 1024, 1]
    assert urls[2] == "wss://fstream.binance.com/public/stream?streams=s2048@depth@100ms"
    assert ex.stream_urls([]) == []


def test_update_speeds_per_market_type() -> None:
    assert binance.exchange("binance.com").update_speeds_ms == (1000, 100)
    assert binance.exchange("binance.com-futures").update_speeds_ms == (250, 500, 100, 0)
    assert binance.exchange("binance.com-futures").depth_stream("btcusdt", 250) == "btcusdt@depth"


def test_update_speed_not_offered_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"update speed 250 ms not offered by binance.com, expected one of \[1000, 100\]"):
        binance.exchange("binance.com").depth_stream("btcusdt", 250)


def test_stream_url_rejects_more_streams_than_a_connection_carries() -> None:
    ex = binance.exchange("binance.com")
    with pytest.raises(ConfigError, match="1025 streams on one connection, expected at most 1024"):
        ex.stream_url([f"s{i}@depth" for i in range(1025)])
    with pytest.raises(ConfigError, match="streams is empty"):
        ex.stream_url([])


def test_connection_limits_per_market_type() -> None:
    spot, usdm = binance.exchange("binance.com"), binance.exchange("binance.com-futures")
    assert (spot.control_messages_per_s, spot.ping_interval_s, spot.pong_timeout_s, spot.weight_limit_per_minute) == (5, 20.0, 60.0, 6000)
    assert (usdm.control_messages_per_s, usdm.ping_interval_s, usdm.pong_timeout_s, usdm.weight_limit_per_minute) == (10, 180.0, 600.0, 2400)
    assert spot.max_streams_per_connection == usdm.max_streams_per_connection == 1024


# -- snapshot limits and weights ----------------------------------------------------------------


@pytest.mark.parametrize(("limit", "weight"), [(1, 5), (100, 5), (101, 25), (500, 25), (1000, 50), (1001, 250), (5000, 250)])
def test_spot_snapshot_weight_by_limit(limit: int, weight: int) -> None:
    assert binance.exchange("binance.com").snapshot_weight(limit) == weight


@pytest.mark.parametrize(("limit", "weight"), [(5, 2), (50, 2), (100, 5), (500, 10), (1000, 20)])
def test_futures_snapshot_weight_by_limit(limit: int, weight: int) -> None:
    assert binance.exchange("binance.com-futures").snapshot_weight(limit) == weight


def test_futures_snapshot_limit_outside_the_allowed_values_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"snapshot limit 200 not allowed on binance.com-futures, expected one of \[5, 10, 20, 50, 100, 500, 1000\]"):
        binance.exchange("binance.com-futures").snapshot_weight(200)
    with pytest.raises(ConfigError, match="snapshot limit 5001 not allowed on binance.com"):
        binance.exchange("binance.com").snapshot_url("BTCUSDT", 5001)


def test_snapshot_url() -> None:
    assert binance.exchange("binance.com-coin_futures").snapshot_url("btcusd_perp", 100) == "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=100"


@pytest.mark.parametrize(
    ("name", "depth", "expected"),
    [
        ("binance.com", 1, SnapshotLimit(100, 5)),  # limit 100 costs what limit 5 costs
        ("binance.com", 20, SnapshotLimit(100, 5)),
        ("binance.com", 21, SnapshotLimit(500, 25)),
        ("binance.com", 100, SnapshotLimit(500, 25)),
        ("binance.com", 101, SnapshotLimit(1000, 50)),
        ("binance.com", 201, SnapshotLimit(5000, 250)),
        ("binance.com", 5000, SnapshotLimit(5000, 250)),  # no margin left: the largest there is
        ("binance.com-futures", 1, SnapshotLimit(50, 2)),  # 5..50 all cost 2
        ("binance.com-futures", 10, SnapshotLimit(50, 2)),
        ("binance.com-futures", 11, SnapshotLimit(100, 5)),
        ("binance.com-futures", 20, SnapshotLimit(100, 5)),
        ("binance.com-futures", 21, SnapshotLimit(500, 10)),
        ("binance.com-coin_futures", 500, SnapshotLimit(1000, 20)),
    ],
)
def test_snapshot_limit_for_depth_takes_the_cheapest_covering_limit_with_margin(name: str, depth: int, expected: SnapshotLimit) -> None:
    assert snapshot_limit_for(binance.exchange(name), depth) == expected


def test_snapshot_limit_for_a_depth_beyond_the_largest_snapshot_is_rejected() -> None:
    with pytest.raises(ConfigError, match="depth 1001 exceeds the largest snapshot of binance.com-futures, expected at most 1000"):
        snapshot_limit_for(binance.exchange("binance.com-futures"), 1001)
    with pytest.raises(ConfigError, match="depth 0 too small"):
        snapshot_limit_for(binance.exchange("binance.com"), 0)


@pytest.mark.parametrize(
    ("name", "depth", "expected"),
    [
        # the first step is snapshot_limit_for's, so a cold start costs what it did without a ladder
        ("binance.com", 20, (SnapshotLimit(100, 5), SnapshotLimit(500, 25), SnapshotLimit(1000, 50))),
        ("binance.com", 21, (SnapshotLimit(500, 25), SnapshotLimit(1000, 50))),
        ("binance.com", 201, (SnapshotLimit(5000, 250),)),  # already beyond the cap: no step up
        ("binance.com-futures", 10, (SnapshotLimit(50, 2), SnapshotLimit(100, 5), SnapshotLimit(500, 10), SnapshotLimit(1000, 20))),
        ("binance.com-futures", 20, (SnapshotLimit(100, 5), SnapshotLimit(500, 10), SnapshotLimit(1000, 20))),
        ("binance.com-coin_futures", 60, (SnapshotLimit(500, 10), SnapshotLimit(1000, 20))),
    ],
)
def test_snapshot_ladder_starts_at_the_cheap_limit_and_stops_at_the_cap(name: str, depth: int, expected: tuple[SnapshotLimit, ...]) -> None:
    assert snapshot_ladder(binance.exchange(name), depth) == expected


def test_snapshot_ladder_with_a_lower_cap_stops_there() -> None:
    ladder = snapshot_ladder(binance.exchange("binance.com"), 20, cap=500)
    assert ladder == (SnapshotLimit(100, 5), SnapshotLimit(500, 25))


# -- control messages -----------------------------------------------------------------------


def test_subscribe_unsubscribe_and_list_messages_follow_the_document() -> None:
    assert orjson.loads(binance.subscribe_message(["btcusdt@aggTrade", "btcusdt@depth"], 1)) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade", "btcusdt@depth"],
        "id": 1,
    }
    assert binance.unsubscribe_message(["btcusdt@depth"], 312) == b'{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}'
    assert binance.list_subscriptions_message(3) == b'{"method":"LIST_SUBSCRIPTIONS","id":3}'


def test_control_message_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="subscribe with no streams"):
        binance.subscribe_message([], 1)
    with pytest.raises(ConfigError, match="request id -1 out of range"):
        binance.subscribe_message(["a@depth"], -1)


def test_subscription_results_are_classified() -> None:
    ok = parse_control(fixture("subscribe_result.txt"))
    assert (ok.kind, ok.request_id, ok.result) == (ControlKind.RESULT, 1, None)
    listing = parse_control(fixture("list_subscriptions_result.txt"))
    assert (listing.kind, listing.request_id, listing.result) == (ControlKind.RESULT, 3, ("btcusdt@aggTrade",))


def test_errors_are_classified_in_both_shapes() -> None:
    flat = parse_control(fixture("error_flat.txt"))
    assert (flat.kind, flat.request_id, flat.error_code, flat.error_message) == (ControlKind.ERROR, 5, 0, "Unknown property")
    wrapped = parse_control(fixture("error_wrapped.txt"))
    assert (wrapped.kind, wrapped.request_id, wrapped.error_code) == (ControlKind.ERROR, None, 2)
    assert wrapped.error_message == "Invalid request: request ID must be an unsigned integer"


@pytest.mark.parametrize("name", ["server_shutdown.txt", "server_shutdown_combined.txt"])
def test_server_shutdown_is_classified(name: str) -> None:
    message = parse_control(fixture(name))
    assert (message.kind, message.event_time_ms) == (ControlKind.SERVER_SHUTDOWN, 1747640000000)


def test_result_that_is_not_a_list_of_streams_is_rejected() -> None:
    with pytest.raises(ProtocolError, match=r"field 'result': expected null or a list of stream names, found \[1\]"):
        parse_control(b'{"result":[1],"id":3}')


def test_snapshot_limit_must_be_positive() -> None:
    with pytest.raises(ProtocolError, match="snapshot limit 0 too small, expected at least 1"):
        parse_snapshot(fixture("spot_snapshot.txt"), 0)


def test_unexpected_event_is_a_protocol_error_naming_it() -> None:
    raw = b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"s":"BTCUSDT"}}'
    with pytest.raises(ProtocolError, match="expected a depthUpdate, a result, an error or serverShutdown, found 'bookTicker'"):
        parse_message(raw)


def test_parse_message_returns_diffs_and_control_messages() -> None:
    assert isinstance(parse_message(fixture("spot_combined_depth_update.txt")), DepthDiff)
    assert parse_message(fixture("server_shutdown_combined.txt")).kind is ControlKind.SERVER_SHUTDOWN  # type: ignore[union-attr]


# -- depth updates --------------------------------------------------------------------------


def test_spot_depth_update_from_the_document() -> None:
    diff = parse_depth_update(fixture("spot_depth_update.txt"))
    assert diff == DepthDiff("BNBBTC", 157, 160, NO_ID, 1672515782136, NO_ID, [(0.0024, 10.0)], [(0.0026, 100.0)])


def test_combined_stream_wrapper_is_removed() -> None:
    assert parse_depth_update(fixture("spot_combined_depth_update.txt")) == parse_depth_update(fixture("spot_depth_update.txt"))


def test_usdm_depth_update_carries_pu_and_transaction_time() -> None:
    diff = parse_depth_update(fixture("usdm_depth_update.txt"))
    assert (diff.symbol, diff.first_id, diff.final_id, diff.prev_final_id) == ("BTCUSDT", 157, 160, 149)
    assert (diff.event_time_ms, diff.transaction_time_ms) == (123456789, 123456788)


def test_coinm_depth_update_with_pair() -> None:
    diff = parse_depth_update(fixture("coinm_depth_update.txt"))
    assert (diff.symbol, diff.first_id, diff.final_id, diff.prev_final_id) == ("BTCUSD_200626", 17285681, 17285702, 17285675)
    assert (list(diff.bids), list(diff.asks)) == ([(9517.6, 10.0)], [(9518.5, 45.0)])


def test_futures_zero_quantity_strings_parse_to_zero() -> None:
    # the USD-M capture's first diff deletes with "0.000" (python-binance only deletes on "0.00000000")
    raw = b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":5,"u":6,"pu":4,"b":[["61510.90","0.000"],["61510.80","0"]],"a":[]}'
    assert list(parse_depth_update(raw).bids) == [(61510.9, 0.0), (61510.8, 0.0)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":4,"b":[],"a":[]}', "field 'u': expected at least U=5, found 4"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":"5","u":6,"b":[],"a":[]}', "field 'U': expected an integer, found '5'"),
        (b'{"e":"depthUpdate","E":1,"s":"X","u":6,"b":[],"a":[]}', "field 'U': expected an integer, found nothing"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":6,"b":[["1.0"]],"a":[]}', r"field 'b'\[0\]: expected \[price string, quantity string\], found \['1.0'\]"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":6,"b":[],"a":[["1.0","-2"]]}', r"field 'a'\[0\]: expected a non-negative decimal string, found '-2'"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":6,"b":[],"a":[["nan","2"]]}', r"field 'a'\[0\]: expected a non-negative decimal string, found 'nan'"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":6,"b":[],"a":[["abc","2"]]}', r"field 'a'\[0\]: expected a non-negative decimal string, found 'abc'"),
        (b'{"e":"depthUpdate","E":1,"s":"X","U":5,"u":6,"b":{},"a":[]}', r"field 'b': expected a list of \[price, quantity\], found \{\}"),
        (b'{"e":"depthUpdate","E":1,"s":"","U":5,"u":6,"b":[],"a":[]}', "field 's': expected a symbol string, found ''"),
        (b'{"e":"trade","E":1}', "field 'e': expected 'depthUpdate', found 'trade'"),
        (b'{"E":1}', "field 'e': expected 'depthUpdate', found nothing"),
        (b'[1,2]', "field 'message': expected an object, found \\[1, 2\\]"),
        (b'{"e":"depthUpdate"', "depth update is not valid json"),
    ],
)
def test_malformed_depth_update_names_field_expected_and_found(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_depth_update(raw)


# -- snapshots ------------------------------------------------------------------------------


def test_spot_snapshot_from_the_document() -> None:
    snapshot = parse_snapshot(fixture("spot_snapshot.txt"), 100)
    assert snapshot == DepthSnapshot(1027024, [(4.0, 431.0)], [(4.000002, 12.0)], 100, NO_ID)


def test_futures_snapshots_keep_the_event_time() -> None:
    assert parse_snapshot(fixture("usdm_snapshot.txt"), 5).event_time_ms == 1589436922972
    coinm = parse_snapshot(fixture("coinm_snapshot.txt"), 5)
    assert (coinm.last_update_id, list(coinm.bids), list(coinm.asks)) == (16769853, [(9638.0, 431.0)], [(9638.2, 12.0)])


@pytest.mark.parametrize(
    ("body", "limit", "message"),
    [
        (b'{"lastUpdateId":1,"bids":[["2","1"],["3","1"]],"asks":[]}', 5, r"field 'bids'\[1\]: expected prices strictly descending, found 2.0 then 3.0"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["3","1"],["3","2"]]}', 5, r"field 'asks'\[1\]: expected prices strictly ascending, found 3.0 then 3.0"),
        (b'{"lastUpdateId":1,"bids":[["3","1"],["2","1"]],"asks":[]}', 1, "field 'bids': expected at most 1 levels, found 2"),
        (b'{"bids":[],"asks":[]}', 5, "field 'lastUpdateId': expected an integer, found nothing"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', 5, "snapshot is an error response: code -1121, msg 'Invalid symbol.'"),
    ],
)
def test_malformed_snapshot_names_field_expected_and_found(body: bytes, limit: int, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_snapshot(body, limit)


def test_real_capture_snapshot_parses_with_1000_levels_per_side() -> None:
    import gzip

    path = captures_dir() / "usdm_btcusdt_20240808.gz"
    if not path.exists():
        pytest.skip("captures not present")
    with gzip.open(path, "rb") as lines:
        body = next(line.split(b" ", 1)[1] for line in lines if b'"lastUpdateId"' in line[:40])
    snapshot = parse_snapshot(body, 1000)
    assert (snapshot.last_update_id, len(snapshot.bids), len(snapshot.asks)) == (5123107852948, 1000, 1000)
    assert snapshot.bids[0] == (61800.2, 2.909)


@pytest.mark.parametrize(
    ("name", "path", "weight"),
    [("binance.com", "/api/v3/exchangeInfo", 20), ("binance.com-futures", "/fapi/v1/exchangeInfo", 1),
     ("binance.com-coin_futures", "/dapi/v1/exchangeInfo", 1)],
)
def test_exchange_info_sits_beside_the_snapshot_path_with_the_documented_weight(name: str, path: str, weight: int) -> None:
    venue = binance.exchange(name)
    assert (venue.exchange_info_path, venue.exchange_info_weight) == (path, weight)


# -- snapshots: the C parser (ldc._fastbook.parse_snapshot_levels) against the reference ---------
# Bodies follow rest-api.md "Order book" (spot: lastUpdateId, bids, asks) and the derivatives "Order
# Book" pages (USD-M adds E and T, COIN-M also symbol and pair), as the fixtures above; the generated
# ones vary what JSON and Binance's decimal strings allow.

FUTURES_EXTRAS = ('"T":1589436922959', '"symbol":"BTCUSD_PERP"', '"pair":"BTCUSD"')
UNKNOWN_VALUES = (
    '{"nested":[1,-2.5e-3,true,false,null,{}]}', '"caf\\u00e9 \\ud83d\\ude00 \\"q\\""', "1.5E+300", "-0", "[]",
    "123456789012345678901234567890",
)  # fmt: skip
WHITESPACE = ("", "", " ", "\n", "\t", "\r\n  ")


def decimal_text(units: int, decimals: int, extra_zeros: int) -> str:
    """units / 10**decimals spelled with ``decimals`` digits after the point, plus trailing zeros."""
    if decimals == 0:
        return str(units) + ("." + "0" * extra_zeros if extra_zeros else "")
    digits = str(units).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}" + "0" * extra_zeros


# (units, decimals): Binance's 8-decimal spot and 1-3 decimal futures forms, with mantissas from 0 up
# to 20 digits (past 2**53 and 19 digits: the exact slow path of the decimal parser)
decimals_st = st.tuples(
    st.one_of(st.integers(0, 10**9), st.integers(0, 10**20)), st.integers(0, 12), st.integers(0, 3)
)


@st.composite
def snapshot_bodies(draw: st.DrawFn) -> tuple[bytes, int]:
    layout = draw(st.randoms(use_true_random=False))
    prices = draw(st.lists(decimals_st, max_size=40, unique_by=lambda d: Decimal(d[0]).scaleb(-d[1])))
    qtys = draw(st.lists(decimals_st, min_size=len(prices), max_size=len(prices)))
    n_bids = draw(st.integers(0, len(prices)))
    levels = sorted(zip(prices, qtys), key=lambda level: Decimal(level[0][0]).scaleb(-level[0][1]))
    texts = [(decimal_text(*p), decimal_text(*q)) for p, q in levels]
    bids, asks = texts[:n_bids][::-1], texts[n_bids:]

    def ws() -> str:
        return layout.choice(WHITESPACE)

    def side(pairs: list[tuple[str, str]]) -> str:
        return f"[{ws()}" + f"{ws()},{ws()}".join(f'[{ws()}"{p}"{ws()},{ws()}"{q}"{ws()}]' for p, q in pairs) + f"{ws()}]"

    fields = [f'"lastUpdateId":{ws()}{draw(st.integers(0, 2**63 - 1))}', f'"bids":{ws()}{side(bids)}', f'"asks":{side(asks)}']
    if draw(st.booleans()):  # futures
        fields += [f'"E":{draw(st.integers(0, 2**63 - 1))}', *FUTURES_EXTRAS]
    fields += [f'"x{i}":{ws()}{value}' for i, value in enumerate(draw(st.lists(st.sampled_from(UNKNOWN_VALUES), max_size=3)))]
    layout.shuffle(fields)
    body = f"{ws()}{{{ws()}" + f"{ws()},{ws()}".join(fields) + f"{ws()}}}{ws()}"
    limit = max(len(bids), len(asks), 1) + draw(st.integers(0, 2))
    return body.encode(), limit


def outcome(parse: Any, body: Any, limit: int) -> tuple[Any, ...]:
    """What a parser does with a body: its snapshot, floats as their exact hex, or its error message."""
    try:
        snapshot = parse(body, limit)
    except ProtocolError as exc:
        return ("error", str(exc))
    exact = [[(p.hex(), q.hex()) for p, q in side] for side in (snapshot.bids, snapshot.asks)]
    return (snapshot, exact, [type(x) for x in (snapshot.bids, snapshot.asks)])


@settings(max_examples=400, deadline=None)
@given(case=snapshot_bodies())
def test_generated_snapshot_bodies_take_the_c_path_and_equal_the_reference(case: tuple[bytes, int]) -> None:
    body, limit = case
    expected = outcome(binance._parse_snapshot_reference, body, limit)
    assert outcome(parse_snapshot, body, limit) == expected
    if expected[0] != "error":  # distinct decimals that round to one float are refused by both
        parse_snapshot_levels(body, limit)  # accepted by C: no fallback behind the equality


@settings(max_examples=400, deadline=None)
@given(case=snapshot_bodies(), at=st.integers(0, 10**6), byte=st.sampled_from(b'"[]{},:-.0159eE \\x'), how=st.sampled_from(["flip", "cut", "drop", "dup"]))
def test_corrupted_snapshot_bodies_parse_as_the_reference_does(case: tuple[bytes, int], at: int, byte: int, how: str) -> None:
    body, limit = case
    at %= len(body)
    body = {"flip": body[:at] + bytes([byte]) + body[at + 1:], "cut": body[:at], "drop": body[:at] + body[at + 1:],
            "dup": body[:at] + body[at:at + 1] * 2 + body[at + 1:]}[how]  # fmt: skip
    assert outcome(parse_snapshot, body, limit) == outcome(binance._parse_snapshot_reference, body, limit)


def test_documented_snapshots_take_the_c_path() -> None:
    for name, event_time in (("spot_snapshot.txt", NO_ID), ("usdm_snapshot.txt", 1589436922972), ("coinm_snapshot.txt", 1591250106370)):
        last_update_id, time_ms, bids, asks = parse_snapshot_levels(fixture(name), 5)
        assert time_ms == event_time
        assert parse_snapshot(fixture(name), 5) == DepthSnapshot(last_update_id, bids, asks, 5, time_ms)


SPOT_BODY = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"],["3.99","1"]],"asks":[["4.00000200","12.00000000"]]}'


@pytest.mark.parametrize(
    ("body", "limit", "message"),
    [
        (SPOT_BODY[:-1], 5, "snapshot is not valid json"),
        (SPOT_BODY[:40], 5, "snapshot is not valid json"),
        (b"", 5, "snapshot is not valid json"),
        (b'{"lastUpdateId":1,"x":"\\ud800","bids":[],"asks":[]}', 5, "snapshot is not valid json"),
        (b'{"lastUpdateId":1,"x":1e999,"bids":[],"asks":[]}', 5, "snapshot is not valid json"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[]}\xff', 5, "snapshot is not valid json"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', 5, "snapshot is an error response: code -1121, msg 'Invalid symbol.'"),
        (b"[1,2]", 5, r"field 'snapshot': expected an object, found [1, 2]"),
        (SPOT_BODY, 1, "field 'bids': expected at most 1 levels, found 2"),
        (SPOT_BODY, 0, "snapshot limit 0 too small, expected at least 1"),
        (b'{"lastUpdateId":1,"bids":[["3","1"],["3.5","1"]],"asks":[]}', 5, "field 'bids'[1]: expected prices strictly descending, found 3.0 then 3.5"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["100","1"],["100.000","2"]]}', 5, "field 'asks'[1]: expected prices strictly ascending, found 100.0 then 100.0"),
        (b'{"lastUpdateId":1,"bids":[[1.5,"1"]],"asks":[]}', 5, "field 'bids'[0]: expected [price string, quantity string], found [1.5, '1']"),
        (b'{"lastUpdateId":1,"bids":[["1.5","1","2"]],"asks":[]}', 5, "field 'bids'[0]: expected [price string, quantity string], found ['1.5', '1', '2']"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["1.5","-1"]]}', 5, "field 'asks'[0]: expected a non-negative decimal string, found '-1'"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["nan","1"]]}', 5, "field 'asks'[0]: expected a non-negative decimal string, found 'nan'"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["1' + b"9" * 400 + b'","1"]]}', 5, "field 'asks'[0]: expected a non-negative decimal string, found '1999"),
        (b'{"lastUpdateId":1,"bids":[],"asks":[["","1"]]}', 5, "field 'asks'[0]: expected a non-negative decimal string, found ''"),
        (b'{"lastUpdateId":1,"bids":{},"asks":[]}', 5, "field 'bids': expected a list of [price, quantity], found {}"),
        (b'{"lastUpdateId":1,"asks":[]}', 5, "field 'bids': expected a list of [price, quantity], found None"),
        (b'{"bids":[],"asks":[]}', 5, "field 'lastUpdateId': expected an integer, found nothing"),
        (b'{"lastUpdateId":"5","bids":[],"asks":[]}', 5, "field 'lastUpdateId': expected an integer, found '5'"),
        (b'{"lastUpdateId":5.0,"bids":[],"asks":[]}', 5, "field 'lastUpdateId': expected an integer, found 5.0"),
        (b'{"lastUpdateId":5,"E":null,"bids":[],"asks":[]}', 5, "field 'E': expected an integer, found None"),
        (b'{"lastUpdateId":true,"bids":[],"asks":[]}', 5, "field 'lastUpdateId': expected an integer, found True"),
    ],
)
def test_refused_snapshot_raises_the_reference_message(body: bytes, limit: int, message: str) -> None:
    with pytest.raises(ProtocolError) as reference:
        binance._parse_snapshot_reference(body, limit)
    with pytest.raises(ProtocolError) as got:
        parse_snapshot(body, limit)
    assert str(got.value) == str(reference.value)
    assert str(got.value).startswith(message)
    with pytest.raises(ValueError):
        parse_snapshot_levels(body, limit)


@pytest.mark.parametrize(
    ("body", "bids"),
    [
        (b'{"lastUpdateId":-5,"bids":[["1","2"]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":18446744073709551615,"bids":[["1","2"]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":1,"lastUpdateId":2,"bids":[["9","9"]],"bids":[["1","2"]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":1,"bid\\u0073":[["1","2"]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":1,"bids":[["\\u0031","2"]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":1,"bids":[["1e0"," 2 "]],"asks":[]}', [(1.0, 2.0)]),
        (b'{"lastUpdateId":1,"bids":[["+1","2_0"]],"asks":[]}', [(1.0, 20.0)]),
        (b'{"lastUpdateId":1,"bids":[[".5","-0"]],"asks":[]}', [(0.5, -0.0)]),
    ],
)
def test_bodies_only_the_reference_accepts_parse_as_before(body: bytes, bids: list[Level]) -> None:
    with pytest.raises(ValueError):
        parse_snapshot_levels(body, 5)
    snapshot = parse_snapshot(body, 5)
    assert snapshot == binance._parse_snapshot_reference(body, 5)
    assert list(snapshot.bids) == bids


def test_snapshot_body_may_be_str_bytearray_or_memoryview() -> None:
    expected = parse_snapshot(SPOT_BODY, 5)
    for body in (SPOT_BODY.decode(), bytearray(SPOT_BODY), memoryview(SPOT_BODY)):
        assert parse_snapshot(body, 5) == expected  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="snapshot is not valid json"):
        parse_snapshot(None, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz", "coinm_btcusd_perp_20240808.gz"])
def test_genuine_snapshots_take_the_c_path_and_equal_the_reference(name: str) -> None:
    import gzip

    path = captures_dir() / name
    if not path.exists():
        pytest.skip("captures not present")
    with gzip.open(path, "rb") as lines:
        body = next(line.split(b" ", 1)[1] for line in lines if b'"lastUpdateId"' in line[:40])
    _, _, bids, asks = parse_snapshot_levels(body, 1000)
    assert (len(bids), len(asks)) == (1000, 1000)
    assert outcome(parse_snapshot, body, 1000) == outcome(binance._parse_snapshot_reference, body, 1000)
