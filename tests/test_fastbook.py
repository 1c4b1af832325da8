"""Tests of the C hot path ``ldc._fastbook``: FastBook against the reference ``ldc.book.OrderBook``
(same streams, level for level) and ``parse_depth`` against orjson on Binance's genuine captures.

Message fixtures follow Binance's ``depthUpdate`` payloads as documented in binance-spot-api-docs
web-socket-streams.md ("Diff. Depth Stream": e, E, s, U, u, b, a) and the derivatives docs (USD-M
adds T and pu; COIN-M adds ps), raw ``/ws`` form and combined ``{"stream", "data"}`` form; the
captures are ``shared/data/binance/`` (see its README).
"""

from __future__ import annotations

import gzip
import json
import math
import random
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, cast

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldc._fastbook import FastBook, ParsedDiff, parse_depth, parse_snapshot_levels
from ldc.book import OrderBook
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot, Level
from ldc.sim.replay import captures_dir
from ldc.sync import _count_differences, _diff_count

DATA = captures_dir()
CAPTURES = ["spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz", "coinm_btcusd_perp_20240808.gz"]

# prices straddling powers of ten, some spelled two ways ("100" / "100.00000000" are one price)
PRICES = [
    "9.98", "9.99", "10", "10.01", "99.5", "99.9", "99.95", "99.99", "100", "100.00000000", "100.01",
    "100.1", "100.5", "101", "999.9", "1000.0", "1000.1", "61837.63000000", "61837.64",
]
QTYS = ["0", "0.000", "0.00000000", "1", "0.001", "2.50000000", "3", "1.00000000"]



def side_from(raw: bytes) -> list[tuple[str, str]]:
    """One byte per level, so that hypothesis draws a whole side at once (drawing tuples of
    sampled_from costs ten times more than the books being tested)."""
    return [(PRICES[b % len(PRICES)], QTYS[b // len(PRICES) % len(QTYS)]) for b in raw]



def as_levels(pairs: list[tuple[str, str]]) -> list[Level]:
    return [(float(p), float(q)) for p, q in pairs]


def depth_message(bids: list[tuple[str, str]], asks: list[tuple[str, str]], *, first_id: int = 7) -> bytes:
    data = {"e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": first_id, "u": first_id + 3,
            "b": [list(b) for b in bids], "a": [list(a) for a in asks]}
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})


def parse(raw: bytes) -> ParsedDiff:
    diff = parse_depth(raw)
    assert diff is not None, raw[:80]
    return diff


def as_depth_diff(diff: ParsedDiff) -> DepthDiff:
    """The reference book takes anything with DepthDiff's attributes, as ParsedDiff has."""
    return cast(DepthDiff, diff)


def assert_same_book(fast: FastBook, ref: OrderBook, depth: int) -> None:
    assert fast.levels() == ref.levels()
    assert fast.coverage() == ref.coverage()
    assert len(fast) == len(ref)
    assert fast.best_bid() == ref.best_bid()
    assert fast.best_ask() == ref.best_ask()
    assert fast.crossed() == ref.crossed()
    assert [fast.covers(n) for n in range(depth + 3)] == [ref.covers(n) for n in range(depth + 3)]
    out = np.full((4, depth, 2), -1.0)  # rows past the counts stay -1 in all four
    assert fast.top(depth, out[0], out[1]) == ref.top(depth, out[2], out[3])
    assert out[:2].tolist() == out[2:].tolist()


SNAPSHOT_EVERY = 4  # one op in four, on average, is a snapshot
MAX_LIMIT = 6  # snapshot limits 1..6, so retention and coverage bite at these small sizes


def op_from(raw: bytes) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], int]:
    """One stream operation from bytes: a header byte (kind; snapshot limit or which diff type),
    a split byte, then one byte per level (side_from)."""
    head, split, levels = raw[0], raw[1] % 8, raw[2:]
    bids, asks = side_from(levels[:split]), side_from(levels[split:])
    if head % SNAPSHOT_EVERY == 0:
        return "snapshot", bids, asks, 1 + head // SNAPSHOT_EVERY % MAX_LIMIT
    return "diff", bids, asks, head % 2  # 1: through parse_depth (ParsedDiff), 0: a DepthDiff


stream_op = st.binary(min_size=2, max_size=16).map(op_from)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 4), ops=st.lists(stream_op, min_size=1, max_size=25))
def test_fast_book_agrees_with_reference_level_for_level(depth: int, ops: list[tuple[Any, ...]]) -> None:
    fast, ref = FastBook(depth=depth), OrderBook(depth=depth)
    for kind, bids, asks, extra in ops:
        if kind == "snapshot":
            snapshot = DepthSnapshot(1, as_levels(bids), as_levels(asks), extra)
            fast.load_snapshot(snapshot)
            ref.load_snapshot(snapshot)
        else:
            ref_diff = DepthDiff("BTCUSDT", 7, 10, NO_ID, 0, NO_ID, as_levels(bids), as_levels(asks))
            fast_diff = parse(depth_message(bids, asks)) if extra else ref_diff
            assert fast.apply_diff(fast_diff) == ref.apply_diff(ref_diff)
        assert fast.window == ref.window
        assert_same_book(fast, ref, depth)


def random_walk_diffs(rng: random.Random, count: int, mid: float) -> Iterator[tuple[list[Level], list[Level]]]:
    """Diffs around a drifting mid, occasionally far away, prices on a 0.01 tick."""
    for _ in range(count):
        mid += rng.choice((-0.5, 0.0, 0.5))
        sides: list[list[Level]] = [[], []]
        for sign, side in ((-1, sides[0]), (1, sides[1])):
            for _ in range(rng.randrange(1, 20)):
                ticks = rng.randrange(1, 3000) if rng.random() < 0.1 else rng.randrange(1, 300)
                price = round(mid + sign * ticks * 0.01, 2)
                side.append((price, 0.0 if rng.random() < 0.4 else round(rng.uniform(0.001, 5), 3)))
        yield sides[0], sides[1]


@pytest.mark.parametrize("seed, limit", [(1, 1000), (2, 100), (3, 5000)])
def test_fast_book_agrees_with_reference_on_deep_random_walks(seed: int, limit: int) -> None:
    rng = random.Random(seed)
    fast, ref = FastBook(depth=20), OrderBook(depth=20)
    bids = [(round(1000.0 - i * 0.01, 2), 1.0) for i in range(min(limit, 1500))]
    asks = [(round(1000.01 + i * 0.01, 2), 1.0) for i in range(min(limit, 1500))]
    snapshot = DepthSnapshot(1, bids, asks, limit)
    fast.load_snapshot(snapshot)
    ref.load_snapshot(snapshot)
    out = [np.zeros((20, 2)) for _ in range(4)]
    for step, (b, a) in enumerate(random_walk_diffs(rng, 1500, 1000.0)):
        diff = DepthDiff("X", step, step, NO_ID, 0, NO_ID, b, a)
        assert fast.apply_diff(diff) == ref.apply_diff(diff)
        assert fast.top(20, out[0], out[1]) == ref.top(20, out[2], out[3])
        assert [o.tolist() for o in out[:2]] == [o.tolist() for o in out[2:]]
        assert fast.covers(20) == ref.covers(20)
    assert_same_book(fast, ref, 20)


def capture_lines(name: str) -> Iterator[bytes]:
    if not (DATA / name).is_file():
        pytest.skip(f"capture {name} not present in {DATA} (set LDC_CAPTURES)")
    with gzip.open(DATA / name, "rb") as f:
        for line in f:
            yield line.split(b" ", 1)[1].rstrip(b"\n")


def truth(event: Any) -> tuple[Any, ...] | None:
    """What parse_depth must return for an orjson-parsed message, None when not a depthUpdate."""
    data = event.get("data", event) if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("e") != "depthUpdate":
        return None
    return (data["s"], data["U"], data["u"], data.get("pu", NO_ID), data["E"], data.get("T", NO_ID),
            [(float(p), float(q)) for p, q in data["b"]], [(float(p), float(q)) for p, q in data["a"]])


def fields(diff: Any) -> tuple[Any, ...]:
    return (diff.symbol, diff.first_id, diff.final_id, diff.prev_final_id, diff.event_time_ms,
            diff.transaction_time_ms, diff.bids, diff.asks)


@pytest.mark.parametrize("name", CAPTURES)
def test_parse_depth_equals_orjson_on_every_message_of_the_capture(name: str) -> None:
    depth_messages = 0
    for raw in capture_lines(name):
        event = orjson.loads(raw)
        expected = truth(event)
        parsed = parse_depth(raw)
        if expected is None:
            assert parsed is None, raw[:80]
            continue
        depth_messages += 1
        assert parsed is not None and fields(parsed) == expected, raw[:80]
        assert parsed.level_count == len(expected[6]) + len(expected[7])
        if depth_messages % 7 == 0:  # the raw /ws form of the same event, re-serialised
            assert fields(parse_depth(orjson.dumps(event["data"]))) == expected
    assert depth_messages > 3000


SPOT_RAW = (b'{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,'
            b'"b":[["61737.63000000","0.00000000"]],"a":[["61837.64000000","1.54698000"]]}')
COINM_COMBINED = (b'{"stream":"btcusd_perp@depth@0ms","data":{"e":"depthUpdate","E":1723161257460,'
                  b'"T":1723161257451,"s":"BTCUSD_PERP","ps":"BTCUSD","U":1007198631580,"u":1007198631835,'
                  b'"pu":1007198631565,"b":[["61777.6","0"]],"a":[["61827.6","77"]]}}')


def test_parse_depth_reads_spot_raw_form() -> None:
    diff = parse_depth(SPOT_RAW)
    assert isinstance(diff, ParsedDiff)
    assert fields(diff) == ("BTCUSDT", 50093239189, 50093239202, NO_ID, 1723161255208, NO_ID,
                            [(61737.63, 0.0)], [(61837.64, 1.54698)])


def test_parse_depth_reads_coinm_combined_form() -> None:
    diff = parse_depth(COINM_COMBINED)
    assert fields(diff) == ("BTCUSD_PERP", 1007198631580, 1007198631835, 1007198631565, 1723161257460,
                            1723161257451, [(61777.6, 0.0)], [(61827.6, 77.0)])
    assert repr(diff) == ("ParsedDiff(symbol='BTCUSD_PERP', first_id=1007198631580, final_id=1007198631835, "
                          "prev_final_id=1007198631565, event_time_ms=1723161257460, "
                          "transaction_time_ms=1723161257451, 1 bids, 1 asks)")


def test_parse_depth_accepts_str_bytearray_and_memoryview() -> None:
    expected = fields(parse_depth(SPOT_RAW))
    assert fields(parse_depth(SPOT_RAW.decode())) == expected
    assert fields(parse_depth(bytearray(SPOT_RAW))) == expected
    assert fields(parse_depth(memoryview(b"  " + SPOT_RAW + b"\n")[2:-1])) == expected
    with pytest.raises(TypeError):
        parse_depth(12)  # type: ignore[arg-type]


def test_parse_depth_tolerates_whitespace_key_order_and_unknown_fields() -> None:
    raw = (b' { "b" : [ [ "1.5" , "2" ] ] , "x": {"y": [1, -2.5e3, true, null, "\\u00e9"]}, "u": 9,'
           b' "a": [], "e": "depthUpdate", "U": 8, "E": 1, "s": "ETHBTC" } \n')
    assert fields(parse_depth(raw)) == ("ETHBTC", 8, 9, NO_ID, 1, NO_ID, [(1.5, 2.0)], [])


@pytest.mark.parametrize("raw", [
    b'{"result":null,"id":1}',
    b'{"e":"serverShutdown","E":1723161255208}',
    b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}',
    b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"61837.63","B":"3.7","a":"61837.64","A":"1"}}',
    b'{"e":"trade","b":"not levels"}',
    b'{"lastUpdateId":1,"bids":[["1.0","2.0"]],"asks":[]}',
    b'{"stream":"!ticker@arr","data":[{"e":"24hrTicker"}]}',
    b'[{"e":"depthUpdate"}]',
    b'{}',
])
def test_parse_depth_returns_none_for_other_messages(raw: bytes) -> None:
    assert parse_depth(raw) is None


def spot_with(**changes: str) -> bytes:
    text = SPOT_RAW.decode()
    for old, new in changes.items():
        assert old in text or old.startswith("_")
        text = text.replace(old.lstrip("_"), new)
    return text.encode()


@pytest.mark.parametrize("raw, message", [
    (spot_with(**{'"U":50093239189,': ""}), "field 'U': expected in a depthUpdate, found nothing"),
    (spot_with(**{'"s":"BTCUSDT",': ""}), "field 's': expected in a depthUpdate, found nothing"),
    (spot_with(**{'"E":1723161255208,': ""}), "field 'E': expected in a depthUpdate, found nothing"),
    (spot_with(**{',"a":[["61837.64000000","1.54698000"]]': ""}),
     "field 'a': expected in a depthUpdate, found nothing"),
    (spot_with(**{'"U":50093239189': '"U":"50093239189"'}),
     "field 'U': expected a non-negative integer, found \"50093239189\""),
    (spot_with(**{'"u":50093239202': '"u":-1'}), "field 'u': expected a non-negative integer, found -1"),
    (spot_with(**{'"u":50093239202': '"u":5.0'}), "field 'u': expected a non-negative integer, found 5.0"),
    (spot_with(**{'"u":50093239202': '"u":9223372036854775808'}),
     "field 'u': expected an integer below 2^63, found 9223372036854775808"),
    (spot_with(**{'"E":1723161255208': '"E":null'}), "field 'E': expected a non-negative integer, found null"),
    (spot_with(**{'"61737.63000000"': '"abc"'}),
     "field 'b' level 0: expected [price, qty] decimal strings, found [\"abc\",\"0.00000000\"]"),
    (spot_with(**{'"1.54698000"': '"1e5"'}),
     "field 'a' level 0: expected [price, qty] decimal strings, found [\"61837.64000000\",\"1e5\"]"),
    (spot_with(**{'"1.54698000"': '"-1.5"'}),
     "field 'a' level 0: expected [price, qty] decimal strings, found [\"61837.64000000\",\"-1.5\"]"),
    (spot_with(**{'"1.54698000"]': '"1.5","2"]'}),
     "field 'a' level 0: expected [price, qty] decimal strings, found [\"61837.64000000\",\"1.5\",\"2\"]"),
    (spot_with(**{'"1.54698000"': '1.5'}),
     "field 'a' level 0: expected [price, qty] decimal strings, found [\"61837.64000000\",1.5]"),
    (spot_with(**{'"a":[["61837.64000000","1.54698000"]]': '"a":[["1.0","2.0"],["3.0"," 4"]]'}),
     "field 'a' level 1: expected [price, qty] decimal strings, found [\"3.0\",\" 4\"]"),
    (spot_with(**{'[["61737.63000000","0.00000000"]]': '{}'}),
     "field 'b': expected a list of [price, qty] levels, found {}"),
    (spot_with(**{'"BTCUSDT"': '"BTC\\u0055SDT"'}),
     "field 's': expected a symbol without escapes, found BTC\\u0055SDT"),
    (spot_with(**{'"s":"BTCUSDT"': '"s":7'}), "field 's': expected a string, found 7"),
])
def test_parse_depth_names_the_field_of_a_malformed_depth_message(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_depth(raw)
    assert str(info.value) == message


@pytest.mark.parametrize("raw, message", [
    (SPOT_RAW[:-1], "invalid json at byte 158: expected ',' or '}'"),
    (SPOT_RAW[:40], "invalid json at byte 40: expected ':'"),
    (SPOT_RAW[:42], "invalid json at byte 41: expected a closing quote"),
    (SPOT_RAW + b"x", "invalid json at byte 159: expected the end of the message"),
    (b"", "invalid json at byte 0: expected '{'"),
    (b'{"e":"depthUpdate","x":"\x01"}', "invalid json at byte 24: expected no control character inside a string"),
    (b'{"e":"depthUpdate","x":"\xff"}', "invalid json at byte 24: expected valid utf-8"),
    (b'{"e":"depthUpdate","x":01}', "invalid json at byte 24: expected ',' or '}'"),
    (b'{"e":"depthUpdate","x":"\\q"}', "invalid json at byte 24: expected a valid escape"),
    (b'{"e":"depthUpdate","x":tru}', "invalid json at byte 23: expected a json value"),
    (b'{"e":"depthUpdate","x":' + b"[" * 40 + b"]" * 40 + b"}", "invalid json at byte 55: expected nesting at most 32 deep"),
    # valid syntax that orjson refuses all the same: no Unicode string, no double
    (b'{"e":"depthUpdate","x":"\\ud800"}', "invalid json at byte 24: expected a \\u surrogate pair (high then low)"),
    (b'{"e":"depthUpdate","x":"\\udc00\\ud800"}', "invalid json at byte 24: expected a \\u surrogate pair (high then low)"),
    (b'{"e":"depthUpdate","x":"\\ud800\\u0041"}', "invalid json at byte 24: expected a \\u surrogate pair (high then low)"),
    (b'{"e":"depthUpdate","x":-1.8e308}', "invalid json at byte 23: expected a number within the range of a double"),
    (b'{"e":"depthUpdate","x":1' + b"0" * 309 + b"}", "invalid json at byte 23: expected a number within the range of a double"),
])
def test_parse_depth_rejects_invalid_json_with_its_position(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_depth(raw)
    assert str(info.value) == message


@pytest.mark.parametrize("raw", [
    b'{"e":"depthUpdate","x":"\\ud83d\\ude00 \\uDBFF\\uDFFF \\u00e9"}',
    b'{"e":"depthUpdate","x":[1.7976931348623157e308,-1e-400,1' + b"0" * 308 + b',12345678901234567890123]}',
])
def test_parse_depth_reads_what_orjson_reads_near_those_limits(raw: bytes) -> None:
    orjson.loads(raw)
    with pytest.raises(ValueError, match="field 'E': expected in a depthUpdate, found nothing"):
        parse_depth(raw)  # the JSON passed; the event lacks its fields


def mutations() -> st.SearchStrategy[bytes]:
    base = st.sampled_from([SPOT_RAW, COINM_COMBINED])
    return st.tuples(base, st.integers(0, 400), st.integers(0, 255), st.sampled_from(["flip", "cut", "drop", "dup"])).map(
        lambda t: mutate(*t))


def mutate(raw: bytes, at: int, byte: int, how: str) -> bytes:
    at %= len(raw)
    if how == "flip":
        return raw[:at] + bytes([byte]) + raw[at + 1:]
    if how == "cut":
        return raw[:at]
    if how == "drop":
        return raw[:at] + raw[at + 1:]
    return raw[:at] + raw[at:at + 1] * 2 + raw[at + 1:]


@settings(max_examples=1000, deadline=None)
@given(raw=mutations())
def test_parse_depth_on_corrupted_messages_is_right_or_refuses(raw: bytes) -> None:
    try:
        expected: Any = truth(orjson.loads(raw))
        valid = True
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        expected, valid = None, False
    try:
        got = parse_depth(raw)
    except ValueError:
        return  # refused: the caller reparses with the reference parser
    if got is None:
        assert expected is None
    else:
        assert valid and fields(got) == expected


def decimal_from(raw: bytes) -> str:
    """Digits from the bytes, the decimal point placed by the first byte: up to 45 digits, so both
    the fast path (<= 19 digits) and the exact fallback are reached."""
    digits = "".join(str(b % 10) for b in raw[1:]) or "0"
    point = raw[0] % (len(digits) + 1) if raw else len(digits)
    return (digits[:point] or "0") + ("." + digits[point:] if digits[point:] else "")


decimal_text = st.binary(max_size=46).map(decimal_from)


@settings(max_examples=1000, deadline=None)
@given(price=decimal_text, qty=decimal_text)
def test_decimal_strings_parse_to_the_correctly_rounded_double(price: str, qty: str) -> None:
    assert parse(depth_message([(price, qty)], [])).bids == [(float(price), float(qty))]


@pytest.mark.parametrize("text", ["9007199254740993", "0.1", "61837.63000000", "1.7976931348623157e308"[:18],
                                  "123456789012345678901234", "0.000000000000000000000000000001"])
def test_decimal_edge_cases_are_exact(text: str) -> None:
    assert parse(depth_message([(text, "1")], [])).bids[0][0] == float(Decimal(text))


def test_distinct_15_digit_prices_stay_distinct() -> None:
    # the exactness assumption of float64 keys (DBL_DIG == 15): neighbours at the 15th digit differ
    texts = ["99999.9999999999", "100000.000000000", "100000.000000001", "0.00000000000001", "0.00000000000002"]
    values = [parse(depth_message([(t, "1")], [])).bids[0][0] for t in texts]
    assert len(set(values)) == len(values)


def test_top_writes_into_strided_views_and_validates_buffers() -> None:
    book = FastBook(depth=2)
    book.load_snapshot(DepthSnapshot(1, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 3.0)], 10))
    wide = np.zeros((4, 4))
    asks = np.zeros((2, 2))
    assert book.top(2, wide[::2, 1:4:2], asks) == (2, 1)
    assert wide.tolist() == [[0, 100, 0, 1], [0, 0, 0, 0], [0, 99, 0, 2], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"bids_out must hold float64, found format 'f'"):
        book.top(2, np.zeros((2, 2), dtype=np.float32), asks)
    with pytest.raises(ValueError, match=r"asks_out must have shape \(>= 2, 2\), found \(1, 2\)"):
        book.top(2, np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"bids_out must have shape \(>= 2, 2\), found 1 dimensions"):
        book.top(2, np.zeros(4), asks)
    with pytest.raises(ValueError, match="n must be at least 0, found -1"):
        book.top(-1, asks, asks)
    with pytest.raises(ValueError, match="read-only"):  # numpy refuses a writable export
        frozen = np.zeros((2, 2))
        frozen.flags.writeable = False
        book.top(2, frozen, asks)


def test_both_books_describe_themselves_alike() -> None:
    fast, ref = FastBook(depth=5), OrderBook(depth=5)
    assert repr(fast) == "FastBook(depth=5, window=None, 0 bids, 0 asks)"
    snapshot = DepthSnapshot(1, [(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0)], 10)
    fast.load_snapshot(snapshot)
    ref.load_snapshot(snapshot)
    assert repr(fast) == "FastBook(depth=5, window=10, 2 bids, 1 asks)"
    assert repr(ref) == "OrderBook(depth=5, window=10, 2 bids, 1 asks)"


def test_fast_book_rejects_bad_arguments_like_the_reference() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1, found 0"):
        FastBook(depth=0)
    with pytest.raises(TypeError):
        FastBook(20)  # type: ignore[call-arg]  # keyword-only, as OrderBook
    with pytest.raises(ValueError, match="snapshot limit must be at least 1, found 0"):
        FastBook().load_snapshot(DepthSnapshot(1, [], [], 0))
    with pytest.raises(ValueError, match="a level must hold 2 numbers, found 3"):
        FastBook().apply_diff(DepthDiff("X", 1, 1, NO_ID, 0, NO_ID, [(1.0, 2.0, 3.0)], []))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="a level price must be a number, found nan"):
        FastBook().apply_diff(DepthDiff("X", 1, 1, NO_ID, 0, NO_ID, [(math.nan, 2.0)], []))


def test_fast_book_grows_from_empty_to_thousands_of_levels_and_back() -> None:
    book, ref = FastBook(), OrderBook()
    up = [(float(i), 1.0) for i in range(1, 6001)]
    for levels in (up, up[::-1], [(p, 0.0) for p, _ in up[::2]], [(p, 0.0) for p, _ in up]):
        diff = DepthDiff("X", 1, 1, NO_ID, 0, NO_ID, levels, [(p + 10_000.0, q) for p, q in levels])
        assert book.apply_diff(diff) == ref.apply_diff(diff)
        assert book.levels() == ref.levels()


def test_parsed_diff_levels_are_materialised_once() -> None:
    diff = parse(SPOT_RAW)
    assert diff.bids is diff.bids
    assert diff.asks is diff.asks
    assert json.loads(SPOT_RAW)["b"] == [["61737.63000000", "0.00000000"]]


def snapshot_from(raw: bytes) -> DepthSnapshot:
    msg = orjson.loads(raw)
    return DepthSnapshot(msg["lastUpdateId"], as_levels(msg["bids"]), as_levels(msg["asks"]), 1000)


def continues(diff: ParsedDiff, book_id: int, futures: bool) -> bool:
    """Binance's documented chaining: spot ``U == previous u + 1``, futures ``pu == previous u``."""
    return diff.prev_final_id == book_id if futures else diff.first_id == book_id + 1


@pytest.mark.parametrize("name, futures, checkpoints", [
    ("spot_btcusdt_20240808.gz", False, 564),
    ("usdm_btcusdt_20240808.gz", True, 629),
    ("coinm_btcusd_perp_20240808.gz", True, 1124),
])
def test_both_books_replay_the_capture_and_match_binance_book_ticker(name: str, futures: bool, checkpoints: int) -> None:
    """Snapshot (limit 1000) + diffs with the documented rules; after every diff the C book and the
    reference agree on the top 20 and on coverage and are not crossed; wherever Binance's own
    ``@bookTicker`` names the book's update id, both books' best bid and ask equal it (price and
    quantity); at the end, every level inside the coverage boundary equals an unpruned book's."""
    fast, ref = FastBook(depth=20), OrderBook(depth=20)
    plain: tuple[dict[float, float], dict[float, float]] = ({}, {})  # never pruned
    buffered: list[ParsedDiff] = []
    book_id: int | None = None
    tops: dict[int, tuple[Any, Any]] = {}
    tickers: dict[int, tuple[Level, Level]] = {}
    out = [np.zeros((20, 2)) for _ in range(4)]
    for raw in capture_lines(name):
        diff = parse_depth(raw)
        if diff is None and raw.startswith(b'{"lastUpdateId"'):
            snapshot = snapshot_from(raw)
            fast.load_snapshot(snapshot)
            ref.load_snapshot(snapshot)
            plain_apply(plain, snapshot.bids, snapshot.asks)
            book_id = snapshot.last_update_id
            # spot drops u <= lastUpdateId, futures u < lastUpdateId; the first kept diff straddles it
            kept = [d for d in buffered if d.final_id >= book_id + (0 if futures else 1)]
            assert kept and kept[0].first_id <= book_id + (0 if futures else 1)
            for d in kept:
                fast.apply_diff(d)
                ref.apply_diff(as_depth_diff(d))
                plain_apply(plain, d.bids, d.asks)
                book_id = d.final_id
        elif diff is None:
            data = orjson.loads(raw)["data"]
            if "A" in data:  # bookTicker
                tickers[data["u"]] = ((float(data["b"]), float(data["B"])), (float(data["a"]), float(data["A"])))
        elif book_id is None:
            buffered.append(diff)
        else:
            assert continues(diff, book_id, futures), f"gap after {book_id}"
            assert fast.apply_diff(diff) == ref.apply_diff(as_depth_diff(diff))
            plain_apply(plain, diff.bids, diff.asks)
            assert not fast.crossed()
            book_id = diff.final_id
            assert fast.top(20, out[0], out[1]) == ref.top(20, out[2], out[3])
            assert out[0].tolist() == out[2].tolist() and out[1].tolist() == out[3].tolist()
            assert fast.covers(20) == ref.covers(20)
            tops[book_id] = (fast.best_bid(), fast.best_ask())
    matched = [u for u in tops if u in tickers]
    assert len(matched) == checkpoints
    assert [tops[u] for u in matched] == [tickers[u] for u in matched]
    assert fast.levels() == ref.levels()
    assert fast.coverage() == ref.coverage()
    bid_floor, ask_ceiling = fast.coverage()
    bids, asks = fast.levels()
    assert [lv for lv in bids if lv[0] >= bid_floor] == sorted(
        ((p, q) for p, q in plain[0].items() if p >= bid_floor), reverse=True)
    assert [lv for lv in asks if lv[0] <= ask_ceiling] == sorted((p, q) for p, q in plain[1].items() if p <= ask_ceiling)
    assert all(q > 0.0 for side in (bids, asks) for _, q in side)  # every "0.000" / "0.00000000" deleted


def plain_apply(book: tuple[dict[float, float], dict[float, float]], bids: Any, asks: Any) -> None:
    for side, levels in zip(book, (bids, asks)):
        for price, qty in levels:
            if qty == 0.0:
                side.pop(price, None)
            else:
                side[price] = qty


# -- the refresh audit: FastBook.count_differences against sync's Python path on OrderBooks -------


def book_pair(depth: int, ops: list[tuple[Any, ...]]) -> tuple[FastBook, OrderBook]:
    fast, ref = FastBook(depth=depth), OrderBook(depth=depth)
    for kind, bids, asks, extra in ops:
        if kind == "snapshot":
            snapshot = DepthSnapshot(1, as_levels(bids), as_levels(asks), extra)
            fast.load_snapshot(snapshot)
            ref.load_snapshot(snapshot)
        else:
            diff = DepthDiff("BTCUSDT", 7, 10, NO_ID, 0, NO_ID, as_levels(bids), as_levels(asks))
            fast.apply_diff(diff)
            ref.apply_diff(diff)
    return fast, ref


def python_count(live: FastBook, shadow: FastBook, bid_floor: float, ask_ceiling: float) -> int:
    """sync._count_differences's dict path, given the range."""
    (live_bids, live_asks), (shadow_bids, shadow_asks) = live.levels(), shadow.levels()
    return _diff_count({p: q for p, q in live_bids if p >= bid_floor}, {p: q for p, q in shadow_bids if p >= bid_floor}) + \
        _diff_count({p: q for p, q in live_asks if p <= ask_ceiling}, {p: q for p, q in shadow_asks if p <= ask_ceiling})


# every price of the books exactly, between two prices, beyond all of them, and nan (no level)
BOUNDS = [float(p) for p in PRICES] + [9.985, 100.005, 0.0, 1e9, -math.inf, math.inf, math.nan]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 4), live_ops=st.lists(stream_op, max_size=10), shadow_ops=st.lists(stream_op, max_size=10),
       snapshot=stream_op, bounds=st.lists(st.tuples(st.sampled_from(BOUNDS), st.sampled_from(BOUNDS)), max_size=6))
def test_count_differences_equals_the_python_audit(depth: int, live_ops: list[tuple[Any, ...]], shadow_ops: list[tuple[Any, ...]],
                                                   snapshot: tuple[Any, ...], bounds: list[tuple[float, float]]) -> None:
    fast_live, ref_live = book_pair(depth, live_ops)
    fast_shadow, ref_shadow = book_pair(depth, shadow_ops)
    _, bids, asks, limit = snapshot
    shadow_snapshot = DepthSnapshot(1, as_levels(bids), as_levels(asks), limit)
    # the C walk for FastBooks, the dict path for the reference books: one count
    assert _count_differences(fast_live, fast_shadow, shadow_snapshot) == _count_differences(ref_live, ref_shadow, shadow_snapshot)
    for bid_floor, ask_ceiling in bounds:
        expected = python_count(fast_live, fast_shadow, bid_floor, ask_ceiling)
        assert fast_live.count_differences(fast_shadow, bid_floor, ask_ceiling) == expected
        assert fast_shadow.count_differences(fast_live, bid_floor, ask_ceiling) == expected


def loaded(bids: list[Level], asks: list[Level]) -> FastBook:
    book = FastBook(depth=5)
    book.load_snapshot(DepthSnapshot(1, bids, asks, 100))
    return book


def test_count_differences_counts_levels_at_the_bounds_and_no_further() -> None:
    live = loaded([(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)], [(101.0, 1.0), (102.0, 1.0)])
    shadow = loaded([(100.0, 1.0), (99.0, 5.0), (97.0, 1.0)], [])
    # bids: 99 has another quantity, 98 is in live only, 97 in shadow only; asks: both in live only
    assert [live.count_differences(shadow, floor, -math.inf) for floor in (100.0, 99.0, 98.0, 97.0, -math.inf)] == [0, 1, 2, 3, 3]
    assert [live.count_differences(shadow, math.inf, ceiling) for ceiling in (100.0, 101.0, 101.5, 102.0, math.inf)] == [0, 1, 1, 2, 2]
    assert live.count_differences(shadow, -math.inf, math.inf) == 5
    assert live.count_differences(live, -math.inf, math.inf) == 0
    assert FastBook().count_differences(FastBook(), -math.inf, math.inf) == 0
    assert live.count_differences(FastBook(), -math.inf, math.inf) == 5


def test_count_differences_takes_a_fast_book_and_two_prices() -> None:
    with pytest.raises(TypeError, match="other must be a FastBook, found OrderBook"):
        FastBook().count_differences(OrderBook(), 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes 3 arguments"):
        FastBook().count_differences(FastBook(), 0.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FastBook().count_differences(FastBook(), "0", 1.0)  # type: ignore[arg-type]


# -- parse_snapshot_levels: the C side of ldc.venues.binance.parse_snapshot (its tests compare it
# with the reference parser); here what only C can get wrong: references and memory


def test_parse_snapshot_levels_releases_buffers_and_memory() -> None:
    body = orjson.dumps({"lastUpdateId": 7, "E": 3, "bids": [[f"{100 - i * 0.01:.8f}", "1.50000000"] for i in range(300)],
                         "asks": [[f"{101 + i * 0.01:.8f}", "0.00100000"] for i in range(300)]})
    refused = [body[:-1], body.replace(b'"E":3', b'"E":null'), body.replace(b"99.99000000", b"100.00000000"), body]
    limits = [300, 300, 300, 299]  # the last: too many levels
    buffer = bytearray(body)
    assert parse_snapshot_levels(buffer, 300)[:2] == (7, 3)
    for raw, limit in zip(refused, limits):
        with pytest.raises(ValueError):
            parse_snapshot_levels(bytearray(raw), limit)
    buffer.extend(b" ")  # a buffer still exported could not be resized
    tracemalloc.start()
    try:
        for rounds in range(2):
            for _ in range(200):
                parse_snapshot_levels(body, 300)
                for raw, limit in zip(refused, limits):
                    try:
                        parse_snapshot_levels(raw, limit)
                    except ValueError:
                        pass
            if rounds == 0:  # warmed up: caches and free lists filled
                baseline, references = tracemalloc.get_traced_memory()[0], sys.getrefcount(body)
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert grown < 20_000, f"{grown} bytes kept after 1000 parses"
    assert sys.getrefcount(body) == references


def test_parse_snapshot_levels_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="expected bytes, a contiguous buffer or str, found int"):
        parse_snapshot_levels(12, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_snapshot_levels(b"{}", 5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be at least 1, found 0"):
        parse_snapshot_levels(b"{}", 0)
    assert parse_snapshot_levels(b'{"lastUpdateId":1,"bids":[],"asks":[]}', 2**80) == (1, NO_ID, [], [])
