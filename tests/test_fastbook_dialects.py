"""The C dialects of the stream venues (``_fastbook.parse_okx`` / ``parse_bybit`` / ``parse_coinbase`` /
``parse_htx`` / ``parse_kraken``) against their reference parsers.

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
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from ldc import _fastbook
from ldc.depth import DepthDiff, DepthSnapshot
from ldc.errors import ProtocolError
from ldc.venues import bybit, coinbase, htx, kraken, okx
from venue_recordings import BYBIT_FILE, COINBASE_FILE, HTX_FILE, KRAKEN_FILE, OKX_FILE, records, venues_dir

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


def _snapshot_fields(snapshot: DepthSnapshot) -> tuple[Any, ...]:
    """Every field, the levels as (float, float) tuples with their types (a float, never an int or a Decimal)."""
    sides = [[(type(p), p, type(q), q) for p, q in side] for side in (snapshot.bids, snapshot.asks)]
    return (snapshot.last_update_id, sides, snapshot.limit, snapshot.event_time_ms, snapshot.checksum)


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
    for (_, c_event), (_, py_event) in zip(got, want, strict=True):
        if isinstance(py_event, DepthSnapshot):  # a whole book (Coinbase, Kraken, HTX depth.step0)
            assert type(c_event) is DepthSnapshot, f"{venue}: C read a snapshot as {type(c_event).__name__}: {raw[:200]!r}"
            assert _snapshot_fields(c_event) == _snapshot_fields(py_event), raw[:200]
            continue
        assert isinstance(py_event, DepthDiff), f"{venue}: C read a {type(py_event).__name__} as a diff: {raw[:200]!r}"
        assert _fields(c_event) == _fields(py_event), raw[:200]
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
    snapshots = sum(1 for raw in messages if _is_snapshot(reference(raw))) if venue in SNAPSHOTS_IN_C else 0
    assert updates > 100  # the recording holds updates: the comparison is not vacuous
    assert outcomes.count("c") == updates + snapshots, "the C dialect handed back a book message of the recording"


def _is_update(parsed: Any) -> bool:
    return isinstance(parsed, list) and all(isinstance(event, DepthDiff) for _, event in parsed)


def _is_snapshot(parsed: Any) -> bool:
    return isinstance(parsed, list) and any(isinstance(event, DepthSnapshot) for _, event in parsed)


SNAPSHOTS_IN_C = ("coinbase", "htx", "kraken")  # these dialects read whole books too (OKX, Bybit: the reference)


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
        ("coinbase", _coinbase(events__0__type="snapshot", events__0__updates__1__side="bid",
                               events__0__updates__1__price_level="65062.50")),  # a price twice: refused there
        ("coinbase", _coinbase(events__0__type="snapshot").replace(b'"timestamp"', b'"time"')),  # NO_ID there
        ("coinbase", b'{"channel":"l2_data","events":[{"type":"snapshot","product_id":"BTC-USD","updates":[]}],'
                     b'"timestamp":"2026-08-09T21:05:48.5Z","sequence_num":1}'),  # the id after the book: a doubt
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


def _mutated(raw: bytearray, rng: random.Random, alphabet: bytes) -> bytes:
    """``raw`` after one to three byte mutations from ``alphabet``: a byte replaced, deleted or inserted."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(raw))
        choice = rng.random()
        if choice < 0.5:
            raw[at] = rng.choice(alphabet)
        elif choice < 0.75:
            del raw[at]
        else:
            raw.insert(at, rng.choice(alphabet))
    return bytes(raw)


@pytest.mark.parametrize(("venue", "name"), RECORDINGS)
def test_mutated_recorded_updates_never_read_otherwise(venue: str, name: str) -> None:
    """Byte mutations of recorded updates: the C dialect reads a message only as the reference does."""
    updates = [raw for raw in recorded(name) if _is_update(VENUES[venue][1](raw))]
    rng = random.Random(12)
    alphabet = b'0123456789.-e"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(updates)[:4000].encode())
        raw = raw if len(raw) < 4000 else raw[:-1] + b"}"  # a cut message is invalid anyway: keep most whole
        agree(venue, _mutated(raw, rng, alphabet))


def test_okx_and_bybit_snapshots_in_the_recordings_stay_with_the_reference() -> None:
    """OKX's and Bybit's snapshots (and Bybit's u == 1) reset a book: their dialects leave them to the reference
    parser. Coinbase's are read in C (the recording test above: equal to the reference's, field for field)."""
    seen = 0
    for venue, name in RECORDINGS:
        fast, reference = VENUES[venue]
        for raw in recorded(name):
            if _is_snapshot(reference(raw)):
                seen += 1
                if venue in SNAPSHOTS_IN_C:
                    assert agree(venue, raw) == "c"
                else:
                    assert fast(raw) is None
    assert seen > 0


@pytest.mark.parametrize(
    "updates",
    [[("bid", "65062.5", "1"), ("bid", "65062.7", "2"), ("offer", "65070.01", "0.5"), ("offer", "65063", "3")],
     [("offer", "3", "1"), ("offer", "1", "1"), ("offer", "2", "1"), ("bid", "0.5", "0"), ("bid", "0.7", "9")], []],
)  # fmt: skip
def test_coinbase_snapshots_are_sorted_as_the_reference_sorts_them(updates: list[tuple[str, str, str]]) -> None:
    """A snapshot event's levels in any order: sorted into book order, bids descending, asks ascending."""
    raw = _coinbase(events__0__type="snapshot", events__0__updates=[
        {"side": side, "event_time": "2026-08-09T21:05:48.210883Z", "price_level": price, "new_quantity": qty}
        for side, price, qty in updates])  # fmt: skip
    assert agree("coinbase", raw) == "c"
    msg = orjson.loads(raw)
    msg["events"].append(orjson.loads(_coinbase())["events"][0])  # a snapshot then an update in one message
    assert agree("coinbase", orjson.dumps(msg)) == "c"
    assert [type(event).__name__ for _, event in _fastbook.parse_coinbase(orjson.dumps(msg))] == ["DepthSnapshot", "ParsedDiff"]


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
    refreshes = sum(1 for text in htx_texts if _is_snapshot(htx_reference(text)))  # the req answers (rep)
    assert updates > 200 and refreshes > 0 and sum("E-" in text for text in htx_texts) > 100  # exponents among them
    assert outcomes.count("c") == updates + refreshes


def test_htx_recorded_whole_books_read_as_the_reference_reads_them() -> None:
    """depth.step0 (the genuine recording: a whole 150-level book a frame, exponents such as 9.121E-7 among its
    numbers): every frame read in C as a DepthSnapshot equal to the reference's, field for field."""
    if not (venues_dir() / HTX_FILE).is_file():
        pytest.skip(f"{HTX_FILE} is not in {venues_dir()}")
    texts = [gzip.decompress(frame).decode() for frame in _bench().htx_frames()]
    assert len(texts) > 100 and sum("E-" in text for text in texts) > 50
    assert all(agree("htx", text) == "c" for text in texts)
    fast = htx.HtxStream("depth.step0").fast_parse  # the venue's hook: gunzip, then the dialect
    assert fast is not None and all(isinstance(fast(frame)[0][1], DepthSnapshot) for frame in _bench().htx_frames()[:20])  # type: ignore[index]


HTX_REP = ('{"id":"req:market.btcusdt.mbp.5","rep":"market.btcusdt.mbp.5","status":"ok","ts":1618678069870,'
           '"data":{"seqNum":100020146795,"bids":[[9058.27,1],[9058.1,1.5]],"asks":[[9058.3,2E-3]]}}')  # fmt: skip


HTX_STEP0 = ('{"ch":"market.btcusdt.depth.step0","ts":1618678069870,"tick":{"bids":[[9.121E-7,92730.24],[9.12E-7,5]],'
             '"asks":[[9.2E-7,1],[10,2.5]],"version":102734436,"ts":1618678069000}}')  # fmt: skip


@pytest.mark.parametrize(
    ("text", "field"),
    [(HTX_STEP0.replace('"version":102734436,', ""), "version"),
     (HTX_STEP0.replace("[10,2.5]", "[10,-2.5]"), "asks"),
     (HTX_STEP0.replace("[9.12E-7,5]", "[9.13E-7,5]"), "bids"),  # not descending: sorted_levels refuses it
     (HTX_STEP0.replace("[10,2.5]", "[9.2E-7,2.5]"), "asks"),  # a price twice
     (HTX_STEP0.replace('"bids":[', '"bids":[' + "[1,1]," * 150), "tick"),  # 152 levels, at most 150
     (HTX_STEP0.replace("market.btcusdt.", "market.BTC.usdt."), "ch"),
     (HTX_REP.replace('"seqNum":100020146795,', ""), "seqNum"),
     (HTX_REP.replace("[9058.3,2E-3]", "[9058.3,2E-3],[9058.4,1]," * 3 + "[9058.5,1]"), "data"),  # 8 levels, mbp.5
     (HTX_REP.replace("mbp.5", "mbp.400"), "rep"),
     (HTX_REP.replace('"data":{', '"data":[{').replace("]]}}", "]]}]}"), "data")],
)  # fmt: skip
def test_htx_malformed_whole_books_are_handed_back_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ProtocolError):
        htx_reference(text)
    with pytest.raises(ValueError, match=rf"field '{re.escape(field)}'.*expected .*, found "):
        _fastbook.parse_htx(text)


@pytest.mark.parametrize(
    "text",
    [HTX_REP, HTX_REP.replace(',"ts":1618678069870', ""), HTX_REP.replace("mbp.5", "mbp.150"),
     HTX_REP.replace("mbp.5", "depth.step0"),
     '{"rep":"market.btcusdt.mbp.20","data":{"bids":[],"asks":[],"seqNum":7},"status":"ok"}',
     HTX_STEP0, HTX_STEP0.replace('"asks":[[9.2E-7,1],[10,2.5]],', ""), HTX_STEP0.replace(',"ts":1618678069870', ""),
     HTX_STEP0.replace('"bids":[[9.121E-7,92730.24],[9.12E-7,5]]', '"bids":[]'),
     '{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":[[1.5,2]],"asks":[],"version":3}}'],
)  # fmt: skip
def test_htx_whole_books_read_as_the_reference_reads_them(text: str) -> None:
    assert agree("htx", text) == "c"


def test_htx_mutated_whole_books_never_read_otherwise(htx_texts: list[str]) -> None:
    """Recorded depth.step0 books and the refresh answers (rep) of the mbp frames made from them."""
    texts = [gzip.decompress(frame).decode() for frame in _bench().htx_frames()]
    texts += [text for text in htx_texts if _is_snapshot(htx_reference(text))] * 10
    rng = random.Random(14)
    alphabet = b'0123456789.-+eE"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(texts).encode())
        agree("htx", _mutated(raw, rng, alphabet))


def test_htx_mutated_updates_never_read_otherwise(htx_texts: list[str]) -> None:
    updates = [text for text in htx_texts if _is_update(htx_reference(text))]
    rng = random.Random(13)
    alphabet = b'0123456789.-+eE"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(updates)[:4000].encode())
        agree("htx", _mutated(raw, rng, alphabet))


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
     '{"id":"req:market.btcusdt.mbp.150","rep":"market.btcusdt.mbp.150","status":"error","err-code":"bad-request","err-msg":"x"}',
     '{"id":"req:market.btcusdt.mbp.150","rep":"market.btcusdt.mbp.150","data":{"seqNum":1,"bids":[],"asks":[]}}',
     '{"ping":1,"rep":"market.btcusdt.mbp.150","status":"ok","data":{"seqNum":1,"bids":[],"asks":[]}}',
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


# -- Kraken v2 book: JSON numbers read exactly, the timestamp in microseconds the update id

KRAKEN_DEPTH = 10


def kraken_reference(raw: bytes | str, depth: int = KRAKEN_DEPTH) -> Any:
    parsed = kraken.parse_message(raw, depth)
    return parsed if not isinstance(parsed, list) else [(e.symbol, e.event) for e in parsed]


VENUES["kraken"] = (lambda raw: _fastbook.parse_kraken(raw, KRAKEN_DEPTH), kraken_reference)
VENUES["kraken-1000"] = (lambda raw: _fastbook.parse_kraken(raw, 1000), lambda raw: kraken_reference(raw, 1000))
KRAKEN_UPDATE = ('{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],'
                 '"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}')  # fmt: skip
KRAKEN_SNAPSHOT = ('{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5666,"qty":4831.75496356},'
                   '{"price":0.5665,"qty":6658.22734739}],"asks":[{"price":0.5668,"qty":4410.79769741},{"price":0.5669,"qty":1E+2}],'
                   '"checksum":2439117997,"timestamp":"2023-10-06T17:35:55.440295Z"}]}')  # fmt: skip


@pytest.fixture(scope="module")
def kraken_v2() -> list[bytes]:
    """The genuine v1 recording as ``ldc sim --replay`` serves it: v2 book.1000 messages (scripts/bench_venues.py)."""
    if not (venues_dir() / KRAKEN_FILE).is_file():
        pytest.skip(f"{KRAKEN_FILE} is not in {venues_dir()}")
    messages: list[bytes] = _bench().kraken_v2_messages(venues_dir() / KRAKEN_FILE)[0]
    return messages


def test_kraken_recording_served_as_v2_reads_as_the_reference_reads_it(kraken_v2: list[bytes]) -> None:
    outcomes = [agree("kraken-1000", raw) for raw in kraken_v2]
    assert len(outcomes) > 2000 and outcomes.count("c") == len(outcomes)  # snapshots and updates, all in C
    assert sum(b'"type":"snapshot"' in raw for raw in kraken_v2) > 0


@pytest.mark.parametrize("raw", [KRAKEN_UPDATE, KRAKEN_SNAPSHOT])
def test_kraken_documented_messages_read_as_the_reference_reads_them(raw: str) -> None:
    assert agree("kraken", raw) == "c"
    assert agree("kraken", raw.encode()) == "c"
    c_bytes, c_buffer = _fastbook.parse_kraken(raw.encode(), 10), _fastbook.parse_kraken(memoryview(raw.encode()), 10)
    assert c_bytes is not None and c_buffer is not None and repr(c_bytes) == repr(c_buffer)  # a buffer too


def test_kraken_update_ids_are_the_timestamp_in_microseconds() -> None:
    ((symbol, diff),) = _fastbook.parse_kraken(KRAKEN_UPDATE, 10)  # type: ignore[misc]
    assert symbol == "MATIC/USD" and isinstance(diff, _fastbook.ParsedDiff)
    assert diff.first_id == diff.final_id == 1696613755440295 and diff.event_time_ms == 1696613755440
    assert diff.checksum == 2114181697 and diff.bids == [(0.5657, 1098.3947558)] and diff.asks == []
    ((_, snapshot),) = _fastbook.parse_kraken(KRAKEN_SNAPSHOT, 10)  # type: ignore[misc]
    assert isinstance(snapshot, DepthSnapshot) and snapshot.limit == 10 and snapshot.asks[1] == (0.5669, 100.0)


def _kraken(**changes: Any) -> bytes:
    """KRAKEN_UPDATE with changes to data[0] (``bids=...``) or the message (``msg__type=...``)."""
    msg = orjson.loads(KRAKEN_UPDATE)
    for path, value in changes.items():
        target, key = (msg, path[5:]) if path.startswith("msg__") else (msg["data"][0], path)
        if value is _DROP:
            del target[key]
        else:
            target[key] = value
    return orjson.dumps(msg)


KRAKEN_MALFORMED = [
    (_kraken(bids=[{"price": 0.5657}]), "bids"),
    (_kraken(bids=[[0.5657, 1.0]]), "bids"),
    (_kraken(bids=[{"price": "0.5657", "qty": 1.0}]), "price"),  # a string, a number expected
    (_kraken(asks=[{"price": 0.5657, "qty": -1.0}]), "qty"),
    (_kraken(asks=_DROP), "asks"),
    (_kraken(checksum=-1), "checksum"),
    (_kraken(checksum=4294967296), "checksum"),
    (_kraken(checksum="2114181697"), "checksum"),
    (_kraken(checksum=_DROP), "checksum"),
    (_kraken(symbol=""), "symbol"),
    (_kraken(symbol=_DROP), "symbol"),
    (_kraken(timestamp="2023-10-06 17:35:55.440295Z"), "timestamp"),
    (_kraken(timestamp="2023-02-30T17:35:55.440295Z"), "timestamp"),
    (_kraken(timestamp="2023-10-06T17:35:55.4402951234Z"), "timestamp"),  # ten fraction digits
    (_kraken(timestamp="2023-10-06T24:00:00Z"), "timestamp"),
    (_kraken(timestamp=1696613755), "timestamp"),
    (_kraken(msg__type="partial"), "type"),
    (_kraken(msg__data=[]), "data"),
    (orjson.dumps({**orjson.loads(KRAKEN_UPDATE), "data": 2 * orjson.loads(KRAKEN_UPDATE)["data"]}), "data"),
    (KRAKEN_SNAPSHOT.replace('"bids":[', '"bids":[' + '{"price":1,"qty":1},' * 9).encode(), "data"),  # 11 > depth 10
]


@pytest.mark.parametrize(("raw", "field"), KRAKEN_MALFORMED)
def test_kraken_malformed_messages_are_handed_back_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ProtocolError):
        kraken_reference(raw)
    with pytest.raises(ValueError, match=rf"field '{re.escape(field)}'.*expected .*, found "):
        _fastbook.parse_kraken(raw, KRAKEN_DEPTH)


@pytest.mark.parametrize(
    "raw",
    [KRAKEN_SNAPSHOT.replace('{"price":0.5665', '{"price":0.5667'),  # bids not descending: sorted_levels refuses
     KRAKEN_SNAPSHOT.replace('{"price":0.5669', '{"price":0.5668'),  # an ask price twice
     KRAKEN_UPDATE.replace('"checksum"', '"checksum":1,"checksum"'),  # a repeated key: json keeps the last
     KRAKEN_UPDATE.replace('"bids"', '"bi\\u0064s"'), KRAKEN_UPDATE.replace('"qty":1098', '"qty":-0.0,"q":1098'),
     KRAKEN_UPDATE.replace('"qty":1098.3947558', '"qty":1098.3947558,"qty":2'),
     KRAKEN_UPDATE.replace("2023-10-06T", "1969-10-06T")],  # before 1970: not ours to read
)  # fmt: skip
def test_kraken_doubts_are_handed_back(raw: str) -> None:
    with pytest.raises(ValueError, match="field .*expected"):
        _fastbook.parse_kraken(raw, KRAKEN_DEPTH)
    agree("kraken", raw)


@pytest.mark.parametrize(
    "raw",
    ['{"channel":"heartbeat"}', '{"channel":"status","type":"update","data":[{"system":"online"}]}',
     '{"method":"subscribe","result":{"channel":"book","symbol":"BTC/USD","depth":10},"success":true,"time_in":"x"}',
     '{"method":"pong","req_id":1}', '{"error":"Exceeded msg rate"}', '{"channel":null,"data":[]}', "[1,2]"],
)  # fmt: skip
def test_kraken_what_is_not_a_book_message_is_the_references(raw: str) -> None:
    assert _fastbook.parse_kraken(raw, KRAKEN_DEPTH) is None
    try:
        assert not isinstance(kraken_reference(raw), list)
    except ProtocolError:
        pass  # "[1,2]": the reference names it


@pytest.mark.parametrize(
    "timestamp",
    ["2023-10-06T17:35:55Z", "2023-10-06T17:35:55.4Z", "2023-10-06T17:35:55.123456789Z", "2024-02-29T00:00:00.000001Z",
     "1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z"],
)  # fmt: skip
def test_kraken_timestamps_read_as_the_reference_reads_them(timestamp: str) -> None:
    assert agree("kraken", _kraken(timestamp=timestamp)) == "c"


@pytest.mark.parametrize(
    "number",
    ["9.121E-7", "1E+2", "0.1", "5", "0", "0.30000000000000004", "123456789012345678901234567890", "4.9e-324",
     "2.2250738585072011e-308", "1e-400", "9007199254740993", "0.000000000000000000000000001", "1098.39475580"],
)  # fmt: skip
def test_kraken_numbers_read_exactly_as_decimal_then_float(number: str) -> None:
    raw = KRAKEN_UPDATE.replace("1098.3947558", number)
    assert agree("kraken", raw) == "c"
    assert _fastbook.parse_kraken(raw, KRAKEN_DEPTH)[0][1].bids[0][1] == float(Decimal(number))  # type: ignore[index,union-attr]


def test_kraken_mutated_messages_never_read_otherwise(kraken_v2: list[bytes]) -> None:
    rng = random.Random(15)
    alphabet = b'0123456789.-+eE"[]{},:x \\'
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(kraken_v2)[:4000])
        raw = raw if len(raw) < 4000 else raw[:-1] + b"}"
        agree("kraken-1000", _mutated(raw, rng, alphabet))


def test_the_kraken_c_checksum_is_the_references() -> None:
    """FastBook.kraken_crc32 against ldc.venues.kraken.checksum on random books and decimals (rounding ties of the
    product included); None (Python computes it) only beyond 22 decimals or a product beyond 2^62."""
    from ldc._fastbook import FastBook
    from ldc.venues.base import Precision

    rng = random.Random(8)
    book, checked = FastBook(depth=20), 0
    for _ in range(1000):
        pd, sd = rng.randint(0, 10), rng.randint(0, 10)
        mid = rng.choice([1e-4, 0.5, 13.26, 65000.0, 1e7])
        bids = sorted({round(mid * (1 - rng.random() / 10), pd) for _ in range(rng.randint(0, 15))} - {0.0}, reverse=True)
        asks = sorted({round(mid * (1.1 + rng.random() / 10), pd) for _ in range(rng.randint(0, 15))})
        sizes = [rng.choice([round(rng.random() * 1000, sd), 0.5 * 10.0**-sd, 2.5 * 10.0**-sd, rng.random()]) or 1.0 for _ in range(30)]
        book.load_snapshot(DepthSnapshot(1, list(zip(bids, sizes)), list(zip(asks, sizes[15:])), 1000))
        got = book.kraken_crc32(kraken.CHECKSUM_LEVELS, pd, sd)
        if got is None:
            assert max([p * 10.0**pd for p in bids[:10] + asks[:10]] + [q * 10.0**sd for q in sizes]) >= 2**62
            continue
        assert got == kraken.checksum(*book.levels(), Precision(pd, sd)), (pd, sd, bids[:3], asks[:3])
        checked += 1
    assert checked > 900
    assert book.kraken_crc32(10, 23, 0) is None
    with pytest.raises(ValueError, match="expected n >= 0 and decimals >= 0, found 10, -1, 0"):
        book.kraken_crc32(10, -1, 0)


# -- the snapshot sides the dialects hand over (Levels: read as the reference's list of float tuples)


def test_a_snapshot_side_read_in_c_reads_as_the_references_list() -> None:
    import pickle

    from ldc.book import OrderBook
    from ldc._fastbook import FastBook

    ((_, snapshot),) = _fastbook.parse_kraken(KRAKEN_SNAPSHOT, 10)  # type: ignore[misc]
    ((_, reference),) = kraken_reference(KRAKEN_SNAPSHOT)
    asks, want = snapshot.asks, list(reference.asks)
    assert type(asks) is _fastbook.Levels and snapshot == reference and asks == want and not asks != want
    assert len(asks) == 2 and asks[0] == want[0] and asks[-1] == want[-1] and asks[-2:] == want[-2:] and asks[::-1] == want[::-1]
    assert list(asks) == want and [type(x) for pair in asks for x in pair] == [float] * 4 and repr(asks) == repr(want)
    assert asks != want[:1] and asks != [(0.5668, 4410.79769741), (0.5669, 100.5)] and asks != snapshot.bids
    assert pickle.loads(pickle.dumps(asks)) == want
    with pytest.raises(IndexError):
        asks[2]
    with pytest.raises(TypeError):
        hash(asks)
    for book_type in (FastBook, OrderBook):  # loaded from the array (FastBook) or as a sequence (OrderBook)
        c_book, py_book = book_type(depth=20), book_type(depth=20)
        c_book.load_snapshot(snapshot)
        py_book.load_snapshot(reference)
        assert c_book.levels() == py_book.levels() and c_book.coverage() == py_book.coverage()


def test_numbers_with_an_exponent_read_exactly() -> None:
    """The fast path for ``9.121E-7`` (digits times an exact power of ten) against float(Decimal(text))."""
    rng = random.Random(16)
    for _ in range(20000):
        digits = (rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 17))))
        point = rng.randint(1, len(digits))
        mantissa = digits[:point] + ("." + digits[point:] if point < len(digits) else "")
        number = f"{mantissa}{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randint(0, 40)}"
        text = HTX_UPDATE.replace("9.121E-7", number)
        assert _fastbook.parse_htx(text)[0][1].asks[1][1] == float(Decimal(number)), number  # type: ignore[index]


def test_htx_frames_inflate_to_zlibs_bytes_and_broken_ones_are_refused() -> None:
    """htx.decompress (ISA-L's inflate when installed) gives zlib's bytes on every recorded frame, and refuses what
    zlib refuses: a bad CRC or size trailer, a damaged block, a truncated stream."""
    import zlib

    if not (venues_dir() / HTX_FILE).is_file():
        pytest.skip(f"{HTX_FILE} is not in {venues_dir()}")
    frames = _bench().htx_frames()
    assert all(htx.decompress(frame) == zlib.decompress(frame, 31) for frame in frames)
    frame = frames[0]
    for broken in (frame[:-8] + bytes([frame[-8] ^ 1]) + frame[-7:], frame[:-1] + bytes([frame[-1] ^ 1]), frame[:-3],
                   frame[:10] + b"x" * 12 + frame[22:], frame[:40]):  # fmt: skip
        with pytest.raises(zlib.error):
            zlib.decompress(broken, 31)
        with pytest.raises(ProtocolError, match="frame: expected .*gzip"):
            htx.decompress(broken)


def test_htx_venue_fast_path_reads_gzip_frames_only_as_the_reference_does(htx_texts: list[str]) -> None:
    """HtxStream.fast_parse (a short frame inflated in one call, a long one through htx.decompress) on recorded
    frames, broken ones (bad trailer, truncated, two members, trailing bytes, not gzip) and 3,000 byte mutations
    of the compressed frames: a result only where the reference reads the frame, and then the reference's."""
    venue = htx.HtxStream("mbp.150")
    fast = venue.fast_parse
    assert fast is not None

    def same(frame: bytes) -> str:
        try:
            got = fast(frame)
        except ValueError:
            got = None
        try:
            want = venue.parse(frame)
        except ProtocolError:
            assert got is None, frame[:40]
            return "python"
        if got is None:
            return "python"
        assert isinstance(want, list) and [k for k, _ in got] == [k for k, _ in want]
        for (_, c_event), (_, py_event) in zip(got, want, strict=True):
            if isinstance(py_event, DepthSnapshot):
                assert _snapshot_fields(c_event) == _snapshot_fields(py_event)
            else:
                assert _fields(c_event) == _fields(py_event)
        return "c"

    frames = [gzip.compress(text.encode(), mtime=0) for text in htx_texts]
    assert all(same(frame) == "c" for frame in frames if b"ping" not in gzip.decompress(frame))
    frame = frames[1]
    for broken in (frame[:-8] + bytes([frame[-8] ^ 1]) + frame[-7:], frame[:-3], frame[:12], frame + frame,
                   frame + b"zz", gzip.decompress(frame), b"\x1f\x8b", b""):  # fmt: skip
        same(broken)
    rng = random.Random(17)
    for _ in range(FUZZ_MUTATIONS):
        raw = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        same(bytes(raw))
