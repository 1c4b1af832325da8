"""The C dialects of the stream venues (``_fastbook.parse_okx`` / ``parse_bybit``) against their reference parsers.

The reference parsers (``ldc.venues.okx.parse_message``, ``ldc.venues.bybit.parse_message``) are the
specification: on every message of the genuine recordings a C result, when there is one, is the reference's
events value for value, and the C path reads every book update of them (none handed back). On malformed input
the C path never returns what the reference refuses: it hands the message back (None or a ValueError naming
the field, what it expected and what it found)."""

from __future__ import annotations

import gzip
import importlib.util
import random
import re
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from ldc import _fastbook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ProtocolError
from ldc.venues import bybit, coinbase, htx, okx
from venue_recordings import BYBIT_FILE, COINBASE_FILE, HTX_FILE, OKX_FILE, records, venues_dir

OKX_UPDATE = {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
              "data": [{"asks": [["8476.98", "415", "0", "13"]], "bids": [["8476.5", "0", "0", "0"]],
                        "ts": "1597026383185", "checksum": -855196043, "prevSeqId": 123456, "seqId": 123457}]}  # fmt: skip
BYBIT_DELTA = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1687940967466,
               "data": {"s": "BTCUSDT", "b": [["30247.20", "30.028"], ["30240.00", "0"]], "a": [["30248.70", "0"]],
                        "u": 177400507, "seq": 66544703342}, "cts": 1687940967464}  # fmt: skip
COINBASE_UPDATE = {"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.505350477Z",
                   "sequence_num": 14, "events": [{"type": "update", "product_id": "BTC-USD", "updates": [
                       {"side": "bid", "event_time": "2026-08-09T21:05:48.210883Z", "price_level": "65062.5",
                        "new_quantity": "0.00583"},
                       {"side": "offer", "event_time": "2026-08-09T21:05:48.210883Z", "price_level": "65070.01",
                        "new_quantity": "0"}]}]}  # fmt: skip
FUZZ_MUTATIONS = 3000  # per venue: enough to hit every field's edge, fast (a few ms each)


def okx_reference(raw: bytes | str) -> Any:
    parsed = okx.parse_message(raw)
    return parsed if not isinstance(parsed, list) else [(e.symbol, e.event) for e in parsed]


def bybit_reference(raw: bytes | str) -> Any:
    parsed = bybit.parse_message(raw)
    return parsed if not isinstance(parsed, bybit.BookEvent) else [(parsed.topic, parsed.event)]


def coinbase_reference(raw: bytes | str) -> Any:
    parsed = coinbase.parse_message(raw)
    return parsed if not isinstance(parsed, list) else [(e.product, e.event) for e in parsed]


VENUES: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "okx": (_fastbook.parse_okx, okx_reference),
    "bybit": (_fastbook.parse_bybit, bybit_reference),
    "coinbase": (_fastbook.parse_coinbase, coinbase_reference),
}


def _fields(diff: Any) -> tuple[Any, ...]:
    return (diff.symbol, diff.first_id, diff.final_id, diff.prev_final_id, diff.event_time_ms, diff.transaction_time_ms,
            list(diff.bids), list(diff.asks), diff.checksum)  # fmt: skip


def agree(venue: str, raw: bytes | str) -> str:
    """'c' when the C dialect read the message (then equal to the reference), 'python' when it handed it back;
    AssertionError when it read what the reference refuses or reads otherwise."""
    fast, reference = VENUES[venue]
    try:
        got = fast(raw)
    except ValueError:
        got = None
    try:
        want = reference(raw)
    except ProtocolError as exc:
        assert got is None, f"{venue}: C read {raw[:200]!r}, the reference refuses it: {exc}"
        return "python"
    if got is None:
        return "python"
    assert isinstance(want, list), f"{venue}: C read {raw[:200]!r}, the reference says {want!r}"
    assert [stream for stream, _ in got] == [stream for stream, _ in want]
    for (_, c_diff), (_, py_event) in zip(got, want):
        assert isinstance(py_event, DepthDiff), f"{venue}: C read a {type(py_event).__name__} as a diff: {raw[:200]!r}"
        assert _fields(c_diff) == _fields(py_event), raw[:200]
    return "c"


def recorded(name: str) -> list[str]:
    if not (venues_dir() / name).is_file():
        pytest.skip(f"{name} is not in {venues_dir()}")
    return [str(r["data"]) for r in records(name) if r["t"] == "recv"]


RECORDINGS = [("okx", OKX_FILE), ("bybit", BYBIT_FILE), ("coinbase", COINBASE_FILE)]


@pytest.mark.parametrize(("venue", "name"), RECORDINGS)
def test_every_recorded_message_reads_as_the_reference_reads_it(venue: str, name: str) -> None:
    messages = recorded(name)
    _, reference = VENUES[venue]
    outcomes = [agree(venue, raw) for raw in messages]
    updates = sum(1 for raw in messages if _is_update(reference(raw)))
    assert updates > 100  # the recording holds updates: the comparison is not vacuous
    assert outcomes.count("c") == updates, "the C dialect handed back a book update of the recording"


def _is_update(parsed: Any) -> bool:
    return isinstance(parsed, list) and all(isinstance(event, DepthDiff) for _, event in parsed)


def test_the_okx_dialect_knows_the_venues_channels() -> None:
    assert set(_fastbook.OKX_CHANNELS) == set(okx.CHANNELS)


@pytest.mark.parametrize("venue", ["okx", "bybit", "coinbase"])
def test_the_documented_example_reads_as_the_reference(venue: str) -> None:
    raw = orjson.dumps({"okx": OKX_UPDATE, "bybit": BYBIT_DELTA, "coinbase": COINBASE_UPDATE}[venue])
    assert agree(venue, raw) == "c"
    assert agree(venue, raw.decode()) == "c"  # str as well as bytes
    assert _fields(VENUES[venue][0](memoryview(raw))[0][1]) == _fields(VENUES[venue][0](raw)[0][1])  # a buffer too


def test_an_integer_ts_reads_as_the_reference_reads_it() -> None:
    """OKX sends ts as a string; the reference takes an integer too, and so does the dialect."""
    assert agree("okx", _okx(data__0__ts=1597026383185)) == "c"


def _okx(**changes: Any) -> bytes:
    msg = orjson.loads(orjson.dumps(OKX_UPDATE))
    for path, value in changes.items():
        target = msg
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DROP:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return orjson.dumps(msg)


def _coinbase(**changes: Any) -> bytes:
    """COINBASE_UPDATE with changes: ``events__0__updates__1__side="ask"`` (paths as _okx's)."""
    msg = orjson.loads(orjson.dumps(COINBASE_UPDATE))
    for path, value in changes.items():
        target = msg
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DROP:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return orjson.dumps(msg)


def _bybit(**changes: Any) -> bytes:
    msg = orjson.loads(orjson.dumps(BYBIT_DELTA))
    for path, value in changes.items():
        target = msg["data"] if path.startswith("data__") else msg
        key = path.removeprefix("data__")
        if value is _DROP:
            del target[key]
        else:
            target[key] = value
    return orjson.dumps(msg)


_DROP = object()

# (message, the field the C error names): the reference refuses each one too
OKX_MALFORMED = [
    (_okx(data__0__asks=[["8476.98", "415", "0"]]), "asks"),  # three elements, four expected
    (_okx(data__0__bids=[["8476.5", "-1", "0", "0"]]), "bids"),
    (_okx(data__0__bids=[["abc", "1", "0", "0"]]), "bids"),
    (_okx(data__0__bids=[[8476.5, "1", "0", "0"]]), "bids"),  # a JSON number, a string expected
    (_okx(data__0__asks=_DROP), "asks"),
    (_okx(data__0__ts="15970x"), "ts"),
    (_okx(data__0__seqId="123457"), "seqId"),
    (_okx(data__0__checksum="-855196043"), "checksum"),
    (_okx(data__0__prevSeqId=None), "prevSeqId"),
    (_okx(action="partial"), "action"),
    (_okx(data=[]), "data"),
    (_okx(arg__instId=""), "arg.instId"),
    (_okx(arg__instId=_DROP), "arg.instId"),
]
BYBIT_MALFORMED = [
    (_bybit(data__b=[["30247.20"]]), "b"),
    (_bybit(data__a=[["30248.70", "x"]]), "a"),
    (_bybit(data__s="ETHUSDT"), "s"),
    (_bybit(data__u="177400507"), "u"),
    (_bybit(data__u=_DROP), "u"),
    (_bybit(ts=_DROP), "ts"),
    (_bybit(cts="1687940967464"), "cts"),
    (_bybit(type="partial"), "type"),
    (_bybit(topic="orderbook.x.BTCUSDT"), "topic"),
    (_bybit(topic="orderbook.50.BTC.USDT"), "topic"),
    (_bybit(data=[]), "data"),
]
COINBASE_MALFORMED = [
    (_coinbase(events__0__updates__0__side="ask"), "side"),
    (_coinbase(events__0__updates__0__price_level="-1"), "price_level"),
    (_coinbase(events__0__updates__1__new_quantity=0.5), "new_quantity"),  # a JSON number, a string expected
    (_coinbase(events__0__updates__1__new_quantity=_DROP), "updates[]"),
    (_coinbase(events__0__updates=None), "updates"),
    (_coinbase(events__0__product_id=""), "product_id"),
    (_coinbase(events__0__product_id=_DROP), "events[]"),
    (_coinbase(events__0__type="partial"), "type"),
    (_coinbase(events=[]), "events"),
    (_coinbase(events=_DROP), "events"),
    (_coinbase(sequence_num="14"), "sequence_num"),
    (_coinbase(sequence_num=_DROP), "sequence_num"),
]
MALFORMED = ([("okx", r, f) for r, f in OKX_MALFORMED] + [("bybit", r, f) for r, f in BYBIT_MALFORMED]
             + [("coinbase", r, f) for r, f in COINBASE_MALFORMED])  # fmt: skip


@pytest.mark.parametrize(("venue", "raw", "field"), MALFORMED)
def test_malformed_updates_are_handed_back_naming_the_field(venue: str, raw: bytes, field: str) -> None:
    fast, reference = VENUES[venue]
    with pytest.raises(ProtocolError):
        reference(raw)
    with pytest.raises(ValueError, match=rf"field '{re.escape(field)}'.*expected .*, found "):
        fast(raw)


@pytest.mark.parametrize(
    ("venue", "raw"),
    [
        ("okx", _okx(action="snapshot")),  # snapshots are the reference's (rare; sorted and bounded there)
        ("okx", _okx(arg__channel="tickers")),
        ("okx", b'{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}'),
        ("okx", b"pong"),
        ("bybit", _bybit(type="snapshot")),
        ("bybit", _bybit(data__u=1)),  # u == 1: the documented reset, snapshot data
        ("bybit", _bybit(topic="tickers.BTCUSDT")),
        ("bybit", b'{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}'),
        ("coinbase", _coinbase(channel="heartbeats")),
        ("coinbase", b'{"channel":"subscriptions","client_id":"","timestamp":"2026-08-09T21:05:48.1Z","sequence_num":1,'
                     b'"events":[{"subscriptions":{"level2":["BTC-USD"]}}]}'),
        ("coinbase", b'{"type":"error","message":"Failed to subscribe"}'),
    ],
)
def test_what_is_not_an_update_is_the_references(venue: str, raw: bytes) -> None:
    assert VENUES[venue][0](raw) is None
    assert not _is_update(VENUES[venue][1](raw))


@pytest.mark.parametrize(
    ("venue", "raw"),
    [
        ("okx", _okx().replace(b'"seqId"', b'"seqId":1,"seqId"')),  # a repeated key: orjson keeps the last
        ("okx", _okx().replace(b'"bids"', b'"bi\\u0064s"')),  # an escaped key may spell a known one
        ("okx", _okx().replace(b'"BTC-USDT"', b'"BTC\\u002dUSDT"')),
        ("okx", b'{"data":[{"asks":[],"bids":[],"ts":"1"}],"arg":{"channel":"books","instId":"BTC-USDT"}}'),
        ("bybit", _bybit().replace(b'"u"', b'"u":5,"u"')),
        ("bybit", _bybit().replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"')),
        ("coinbase", _coinbase().replace(b'"sequence_num"', b'"sequence_num":5,"sequence_num"')),
        ("coinbase", _coinbase().replace(b'"side":"bid"', b'"side":"bid","side":"offer"')),
        ("coinbase", _coinbase(events__0__type="snapshot")),  # the whole book: sorted and checked there
        ("coinbase", _coinbase(timestamp="2026-02-30T21:05:48.5Z")),  # strptime refuses it: NO_ID there
        ("coinbase", _coinbase(timestamp="2026-8-09T21:05:48.505Z")),  # strptime reads it, this form is not ours
    ],
)
def test_doubts_are_handed_back(venue: str, raw: bytes) -> None:
    with pytest.raises(ValueError, match="field .*expected"):
        VENUES[venue][0](raw)
    agree(venue, raw)


@pytest.mark.parametrize("venue", ["okx", "bybit", "coinbase"])
def test_invalid_json_is_refused(venue: str) -> None:
    raw = {"okx": _okx, "bybit": _bybit, "coinbase": _coinbase}[venue]()
    for broken in (raw[:-1], raw + b"x", raw.replace(b":", b"", 1), raw.replace(b'"0"', b'"0\x01"', 1)):
        with pytest.raises(ValueError):
            VENUES[venue][0](broken)
        with pytest.raises(ProtocolError):
            VENUES[venue][1](broken)


@pytest.mark.parametrize(("venue", "name"), RECORDINGS)
def test_mutated_recorded_updates_never_read_otherwise(venue: str, name: str) -> None:
    """Byte mutations of recorded updates: the C dialect reads a message only as the reference does."""
    updates = [raw for raw in recorded(name) if _is_update(VENUES[venue][1](raw))]
    rng = random.Random(12)
    alphabet = b'0123456789.-e"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(updates)[:4000].encode())
        raw = raw if len(raw) < 4000 else raw[:-1] + b"}"  # a cut message is invalid anyway: keep most whole
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            choice = rng.random()
            if choice < 0.5:
                raw[at] = rng.choice(alphabet)
            elif choice < 0.75:
                del raw[at]
            else:
                raw.insert(at, rng.choice(alphabet))
        agree(venue, bytes(raw))


def test_snapshots_in_the_recordings_stay_with_the_reference() -> None:
    """Snapshots (and Bybit's u == 1) reset a book: the dialect leaves them to the reference parser."""
    seen = 0
    for venue, name in RECORDINGS:
        fast, reference = VENUES[venue]
        for raw in recorded(name):
            parsed = reference(raw)
            if isinstance(parsed, list) and any(isinstance(event, DepthSnapshot) for _, event in parsed):
                seen += 1
                with pytest.raises(ValueError) if venue == "coinbase" else nullcontext():  # Coinbase: a doubt
                    assert fast(raw) is None
    assert seen > 0


def _python_crc(book: Any, precision: Any) -> int:
    bids, asks = book.levels()
    return okx.checksum(bids, asks, precision)


def test_the_c_checksum_writes_the_numbers_as_the_reference_writes_them() -> None:
    """FastBook.top_crc32 against ldc.venues.okx.checksum: the documented example, random books and decimals
    (fixed and shortest), and None (Python writes it) only where a shortest form has an exponent."""
    from ldc._fastbook import FastBook
    from ldc.venues.base import Precision

    book = FastBook(depth=20)
    book.load_snapshot(DepthSnapshot(1, [(3366.1, 7.0), (3366.0, 6.0)], [(3366.8, 9.0), (3368.0, 8.0)], 400))
    assert book.top_crc32(okx.CHECKSUM_LEVELS, 1, 0) == -1881014294 == _python_crc(book, Precision(1, 0))
    rng = random.Random(7)
    handed_back = 0
    for _ in range(400):
        decimals = (rng.randint(-1, 9), rng.randint(-1, 9))
        scale = 10.0 ** rng.randint(-6, 6)
        mid = rng.uniform(1, 1e5) * scale
        bids = sorted({round(mid - rng.random() * mid / 10, 8) for _ in range(rng.randint(0, 40))} - {0.0}, reverse=True)
        asks = sorted({round(mid + rng.random() * mid / 10, 8) for _ in range(rng.randint(0, 40))})
        sizes = [round(rng.uniform(0, 1000) * 10.0 ** rng.randint(-6, 3), rng.randint(0, 8)) or 1.0 for _ in range(80)]
        book.load_snapshot(DepthSnapshot(1, list(zip(bids, sizes)), list(zip(asks, sizes[40:])), 400))
        got = book.top_crc32(okx.CHECKSUM_LEVELS, *decimals)
        if got is None:
            handed_back += 1
            assert -1 in decimals
            continue
        assert got == _python_crc(book, Precision(*decimals)), (decimals, bids[:3], asks[:3])
    assert handed_back < 400  # the C path is the common one


def test_the_c_checksum_refuses_bad_arguments_naming_them() -> None:
    from ldc._fastbook import FastBook

    with pytest.raises(ValueError, match=r"expected n >= 0 and decimals in -1\.\.30, found 25, -2, 0"):
        FastBook(depth=20).top_crc32(25, -2, 0)


@pytest.mark.parametrize(
    ("price", "size", "decimals"),
    [(2.5, 0.125, (0, 2)), (3.5, 1e-05, (0, 8)), (100.0, 0.0, (3, 3)), (0.0001, 1234.5, (4, 1)),
     (1e13, 7.0, (1, 0)), (8476.98, 415.0, (2, 0)), (0.30000000000000004, 2.675, (17, 2))],
)  # fmt: skip
def test_the_c_checksum_edge_numbers(price: float, size: float, decimals: tuple[int, int]) -> None:
    """Ties (2.5 -> "2", 0.125 -> "0.12": the exact binary value rounded half to even), zeros, tiny and huge."""
    from ldc._fastbook import FastBook
    from ldc.venues.base import Precision

    book = FastBook(depth=20)
    book.load_snapshot(DepthSnapshot(1, [(price, size or 1.0)], [(price * 2, size or 1.0)], 400))
    assert book.top_crc32(okx.CHECKSUM_LEVELS, *decimals) == _python_crc(book, Precision(*decimals))


@pytest.mark.parametrize(
    "timestamp",
    ["2026-08-09T21:05:48.505350477Z", "2026-08-09T21:05:48Z", "2026-08-09T21:05:48.5Z", "2026-08-09T21:05:48.50",
     "2024-02-29T00:00:00.999Z", "1970-01-01T00:00:00.000Z", "2026-08-09T21:05", "", "2026-12-31T23:59:59.1234"],
)  # fmt: skip
def test_coinbase_timestamps_read_as_the_reference_reads_them(timestamp: str) -> None:
    """_time_ms's milliseconds: the first three fraction digits when all are digits, NO_ID below 20 characters."""
    assert agree("coinbase", _coinbase(timestamp=timestamp)) == "c"


def test_coinbase_events_of_several_products_keep_their_order() -> None:
    msg = orjson.loads(_coinbase())
    msg["events"].append({"type": "update", "product_id": "ETH-USD", "updates": []})
    assert [product for product, _ in _fastbook.parse_coinbase(orjson.dumps(msg))] == ["BTC-USD", "ETH-USD"]
    assert agree("coinbase", orjson.dumps(msg)) == "c"


# -- HTX mbp: the dialect reads the gunzipped frame (gzip stays in Python); the reference reads the gzip frame


def htx_reference(text: bytes | str) -> Any:
    parsed = htx.parse_message(gzip.compress(text.encode() if isinstance(text, str) else text))
    return parsed if not isinstance(parsed, list) else [(e.topic, e.event) for e in parsed]


VENUES["htx"] = (_fastbook.parse_htx, htx_reference)
HTX_UPDATE = ('{"ch":"market.btcusdt.mbp.150","ts":1573199608679,"tick":{"seqNum":100020146795,'
              '"prevSeqNum":100020146794,"bids":[[9058.27,0],[9058.1,1.5]],"asks":[[645.14,26.75],[0.0000213,9.121E-7]]}}')  # fmt: skip


def _bench() -> Any:
    """scripts/bench_venues.py: its mbp frames made from the recorded depth.step0 books (no mbp recording exists)."""
    spec = importlib.util.spec_from_file_location("bench_venues", Path(__file__).resolve().parent.parent / "scripts" / "bench_venues.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def htx_texts() -> list[str]:
    if not (venues_dir() / HTX_FILE).is_file():
        pytest.skip(f"{HTX_FILE} is not in {venues_dir()}")
    bench = _bench()
    return [gzip.decompress(frame).decode() for frame in bench.htx_mbp_frames(bench.htx_frames())]


def test_htx_mbp_made_from_the_recording_reads_as_the_reference_reads_it(htx_texts: list[str]) -> None:
    outcomes = [agree("htx", text) for text in htx_texts]
    updates = sum(1 for text in htx_texts if _is_update(htx_reference(text)))
    assert updates > 200 and sum("E-" in text for text in htx_texts) > 100  # exponents (9.121E-7) among them
    assert outcomes.count("c") == updates


def test_htx_recorded_whole_books_stay_with_the_reference() -> None:
    if not (venues_dir() / HTX_FILE).is_file():
        pytest.skip(f"{HTX_FILE} is not in {venues_dir()}")
    frames = _bench().htx_frames()
    assert len(frames) > 100 and all(_fastbook.parse_htx(gzip.decompress(frame)) is None for frame in frames)
    assert htx.HtxStream("depth.step0").fast_parse is None  # no C call at all on that channel


def test_htx_mutated_updates_never_read_otherwise(htx_texts: list[str]) -> None:
    updates = [text for text in htx_texts if _is_update(htx_reference(text))]
    rng = random.Random(13)
    alphabet = b'0123456789.-+eE"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(updates)[:4000].encode())
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            choice = rng.random()
            if choice < 0.5:
                raw[at] = rng.choice(alphabet)
            elif choice < 0.75:
                del raw[at]
            else:
                raw.insert(at, rng.choice(alphabet))
        agree("htx", bytes(raw))


@pytest.mark.parametrize(
    "number",
    ["9.121E-7", "9.121e-7", "1E+2", "0.1", "5", "0", "0.30000000000000004", "123456789012345678901234567890",
     "12345678901234567890.5", "1.7976931348623157e308", "4.9e-324", "2.2250738585072011e-308", "1e-400",
     "9007199254740993", "0.000000000000000000000000001", "8.98846567431158e307"],
)  # fmt: skip
def test_htx_numbers_read_exactly_as_decimal_then_float(number: str) -> None:
    """The correctly rounded double of the exact decimal, as float(Decimal(text)) or float(int(text))."""
    text = HTX_UPDATE.replace("9.121E-7", number)
    assert agree("htx", text) == "c"
    assert _fastbook.parse_htx(text)[0][1].asks[1][1] == float(Decimal(number))  # type: ignore[index]


HTX_MALFORMED = [
    (HTX_UPDATE.replace("[9058.27,0]", "[9058.27]"), "bids"),
    (HTX_UPDATE.replace("[9058.27,0]", '["9058.27",0]'), "bids"),
    (HTX_UPDATE.replace("[9058.27,0]", "[9058.27,-1]"), "bids"),
    (HTX_UPDATE.replace("[645.14,26.75]", "[645.14,26.75,1]"), "asks"),
    (HTX_UPDATE.replace('"prevSeqNum":100020146794,', ""), "prevSeqNum"),
    (HTX_UPDATE.replace('"seqNum":100020146795', '"seqNum":"100020146795"'), "seqNum"),
    (HTX_UPDATE.replace('"ts":1573199608679', '"ts":null'), "ts"),
    (HTX_UPDATE.replace("mbp.150", "mbp.400"), "ch"),
    (HTX_UPDATE.replace("btcusdt", "BTCUSDT"), "ch"),
    (HTX_UPDATE.replace('"tick":{', '"tick":[{').replace("]]}}", "]]}]}"), "tick"),
]


@pytest.mark.parametrize(("text", "field"), HTX_MALFORMED)
def test_htx_malformed_updates_are_handed_back_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ProtocolError):
        htx_reference(text)
    with pytest.raises(ValueError, match=rf"field '{re.escape(field)}'.*expected .*, found "):
        _fastbook.parse_htx(text)


@pytest.mark.parametrize(
    "text",
    ['{"ping":1492420473027}', '{"id":"sub:market.btcusdt.mbp.150","status":"ok","subbed":"market.btcusdt.mbp.150","ts":1}',
     '{"id":"req:market.btcusdt.mbp.150","rep":"market.btcusdt.mbp.150","status":"ok","data":{"seqNum":1,"bids":[],"asks":[]}}',
     '{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":[[1.5,2]],"asks":[],"version":3}}',
     '{"ch":"market.btcusdt.trade.detail","ts":1,"tick":{}}', HTX_UPDATE[:-1] + ',"status":"ok"}'],
)  # fmt: skip
def test_htx_what_is_not_an_update_is_the_references(text: str) -> None:
    assert _fastbook.parse_htx(text) is None
    assert not _is_update(htx_reference(text))


@pytest.mark.parametrize(
    "text",
    [HTX_UPDATE.replace("[9058.1,1.5]", "[9058.1,-0.0]"),  # -0.0 there: a sign is a doubt
     HTX_UPDATE.replace('"seqNum"', '"seqNum":1,"seqNum"'),  # a repeated key: json keeps the last
     HTX_UPDATE.replace('"bids"', '"bi\\u0064s"'), HTX_UPDATE.replace('"ts":1573199608679', '"ts":-1')],
)  # fmt: skip
def test_htx_doubts_are_handed_back(text: str) -> None:
    with pytest.raises(ValueError, match="field .*expected"):
        _fastbook.parse_htx(text)
    agree("htx", text)


def test_htx_venue_gunzips_then_reads_in_c_and_hands_back_a_broken_frame() -> None:
    fast = htx.HtxStream("mbp.150").fast_parse
    assert fast is not None
    frame = gzip.compress(HTX_UPDATE.encode())
    assert _fields(fast(frame)[0][1]) == _fields(htx_reference(HTX_UPDATE)[0][1])  # type: ignore[index]
    assert fast(frame[:-4]) is None and fast(HTX_UPDATE.encode()) is None  # the reference names the fault
    with pytest.raises(ProtocolError):
        htx.parse_message(frame[:-4])
