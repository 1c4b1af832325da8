"""Type stub of the C extension built from ldc/fastbook/*.c (the book hot path)."""

from typing import Any, Callable, Final, Iterator

import numpy as np
import numpy.typing as npt

from ldc.depth import DepthDiff, DepthSnapshot, Level

NO_ID: Final[int]

class ParsedDiff:
    """A depthUpdate parsed by parse_depth(): the attributes of DepthDiff, levels held in C."""

    @property
    def symbol(self) -> str: ...
    @property
    def first_id(self) -> int: ...
    @property
    def final_id(self) -> int: ...
    @property
    def prev_final_id(self) -> int: ...
    @property
    def event_time_ms(self) -> int: ...
    @property
    def transaction_time_ms(self) -> int: ...
    @property
    def bids(self) -> list[Level]: ...
    @property
    def asks(self) -> list[Level]: ...
    @property
    def checksum(self) -> int:
        """The venue's checksum of its top levels after this diff (OKX), 0: none sent."""
    @property
    def level_count(self) -> int: ...

def parse_depth(raw: bytes | bytearray | memoryview | str, /) -> ParsedDiff | None:
    """A raw Binance depthUpdate (raw /ws or combined form); None when the message is something
    else; ValueError naming the field when a depthUpdate is malformed (reparse it the slow way)."""

OKX_CHANNELS: Final[tuple[str, ...]]  # the OKX book channels parse_okx reads (ldc.venues.okx.CHANNELS)

def parse_okx(raw: bytes | bytearray | memoryview | str, /) -> list[tuple[str, ParsedDiff]] | None:
    """An OKX v5 book update -> [(instId, diff)] as ldc.venues.okx.parse_message reads it; None for what that
    reference parser reads (control, other channels, snapshots); ValueError on any doubt (hand it over)."""

def parse_bybit(raw: bytes | bytearray | memoryview | str, /) -> list[tuple[str, ParsedDiff]] | None:
    """A Bybit v5 book delta -> [(topic, diff)] as ldc.venues.bybit.parse_message reads it; None for what that
    reference parser reads (control, other topics, snapshots, the u == 1 reset); ValueError on any doubt."""

def parse_coinbase(raw: bytes | bytearray | memoryview | str, /) -> list[tuple[str, ParsedDiff | DepthSnapshot]] | None:
    """A Coinbase l2_data message -> [(product_id, diff or snapshot)] as ldc.venues.coinbase.parse_message reads
    it; None for what that reference parser reads (control, other channels); ValueError on any doubt."""

def parse_htx(inflated: bytes | bytearray | memoryview | str, /) -> list[tuple[str, ParsedDiff | DepthSnapshot]] | None:
    """An HTX mbp update or depth.step0 book, gunzipped -> [(topic, diff or snapshot)] as
    ldc.venues.htx.parse_message reads it (numbers as the correctly rounded double of their exact decimal); None
    for what that reference parser reads (ping, acks, refused refreshes, other channels); ValueError on any doubt (a
    sign, a malformed topic, a repeated key)."""

# issue 15: snapshot sides read in C (dialect_snapshot.c), Kraken v2 (dialect_kraken.c)
class Levels:
    """A snapshot side read by a C dialect: a read-only sequence of (price, qty) float tuples, best first (equal
    to the list of them); FastBook.load_snapshot reads its array without making the tuples."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Level: ...
    def __iter__(self) -> Iterator[Level]: ...

# issue 15: Kraken v2 (dialect_kraken.c)
def parse_kraken(raw: bytes | bytearray | memoryview | str, depth: int, /) -> list[tuple[str, ParsedDiff | DepthSnapshot]] | None:
    """A Kraken v2 book message at the subscribed ``depth`` -> [(symbol, diff or snapshot)] as
    ldc.venues.kraken.parse_message reads it (JSON numbers exactly, the timestamp in us the update id); None for
    what that reference parser reads (other channels, control); ValueError on any doubt."""

def parse_snapshot_levels(
    raw: bytes | bytearray | memoryview | str, limit: int, /
) -> tuple[int, int, list[Level], list[Level]]:
    """A REST depth body -> (last_update_id, event_time_ms or NO_ID, bids, asks), validated as
    ldc.venues.binance.parse_snapshot does; ValueError for anything that parser might refuse."""

class FastBook:
    def __init__(self, *, depth: int = 20) -> None: ...
    @property
    def depth(self) -> int: ...
    @property
    def window(self) -> int | None: ...
    def load_snapshot(self, snapshot: DepthSnapshot, /) -> None: ...
    def apply_diff(self, diff: DepthDiff | ParsedDiff, /) -> bool: ...
    def top(
        self, n: int, bids_out: npt.NDArray[np.float64], asks_out: npt.NDArray[np.float64], /
    ) -> tuple[int, int]: ...
    def best_bid(self) -> Level | None: ...
    def best_ask(self) -> Level | None: ...
    def crossed(self) -> bool: ...
    def covers(self, n: int, /) -> bool: ...
    def coverage(self) -> tuple[float, float]: ...
    def levels(self) -> tuple[list[Level], list[Level]]: ...
    def count_differences(self, other: FastBook, bid_floor: float, ask_ceiling: float, /) -> int:
        """Levels (bid price >= bid_floor, ask price <= ask_ceiling) in one book only or with
        another quantity in the other."""
    def top_crc32(self, n: int, price_decimals: int, size_decimals: int, /) -> int | None:
        """OKX's signed CRC32 of the top ``n`` levels a side, interleaved ``bid:size:ask:size:...``, each number
        fixed to its decimals and trimmed (-1: its shortest round-trip form), as ldc.venues.okx.checksum writes
        them; None when a number must be written by Python (its shortest form has an exponent)."""
    def kraken_crc32(self, n: int, price_decimals: int, size_decimals: int, /) -> int | None:
        """Kraken's unsigned CRC32 of the top ``n`` asks then bids, each number as ``rint(value * 10**decimals)``
        (ldc.venues.kraken._crc); None when Python must compute it (decimals beyond 22, a product beyond 2^62)."""
    def __len__(self) -> int: ...

HOT_PASS: Final[int]  # nothing done: BookSync decides
HOT_DONE: Final[int]  # applied and published
HOT_TOP_FAULT: Final[int]  # applied, not published: a crossed top or a coverage change (BookSync.top_fault)
HOT_CHECKSUM_FAULT: Final[int]  # applied, not published: its venue checksum not confirmed in C (BookSync.checksum_fault)
HOT_IGNORED: Final[int]  # with skips_old: an update ending at or before the book, counted (take_ignored)
HOT_CRC_OKX: Final[int]  # set_checksum's kind: OKX's signed CRC32 of the texts (ldc.venues.okx.book_checksum)
HOT_CRC_KRAKEN: Final[int]  # Kraken's unsigned CRC32 of the asks then bids as integers (FastBook.kraken_crc32)

class HotPath:
    """One market's diffs while its book is in sync: continuity check, apply, top N into the slot, in one
    call. Armed as ``BookSync.fast_path()`` says; ``take_applied`` / ``update_id`` go to ``BookSync.adopt``."""

    def __init__(self, segment: object, slot: int, *, futures: bool, unsequenced: bool = False) -> None:
        """``unsequenced``: sequence rule NONE (Kraken): every update with an id applies, the book's id is the
        larger of its id and the update's (never goes back); an id-less update is BookSync's."""
    @property
    def armed(self) -> bool: ...
    @property
    def update_id(self) -> int: ...
    @property
    def slot(self) -> int: ...
    conn: int  # the connection whose diffs feed the book (-1: none); a Router leaves the others' diffs to Python
    last_event_ms: int  # exchange event time of the last diff routed to the market (-1: none)
    last_recv_ns: int  # when that diff was received
    def arm(
        self, book: FastBook, update_id: int, status: int, uncovered: bool = False,
        record: list[Any] | None = None, record_limit: int = 0, /,
    ) -> None: ...
    def disarm(self) -> None: ...
    def feed(self, diff: ParsedDiff | DepthDiff, recv_time_ns: int, /) -> int: ...
    def take_applied(self) -> int: ...
    def set_checksum(self, levels: int, price_decimals: int, size_decimals: int, kind: int = ..., /) -> None:
        """Verify the venue's CRC32 of the top ``levels`` (0: none) on every diff carrying a non-zero checksum.
        ``kind`` HOT_CRC_OKX (the default): OKX's signed CRC32, numbers written with these decimals (-1: shortest
        form) and, when those are not the shortest form, again in it (``ldc.venues.okx.book_checksum``);
        HOT_CRC_KRAKEN: ``FastBook.kraken_crc32`` (decimals >= 0). A diff whose checksum is not confirmed is
        HOT_CHECKSUM_FAULT (applied, neither recorded nor published)."""
    crc_cache: bool  # Kraken: reuse the last checksum while the top 10 is bitwise as it was (False: whole every time)
    @property
    def crc_reused(self) -> int: ...  # Kraken checksums answered from that cache (both sides unchanged)
    @property
    def crc_bids_only(self) -> int: ...  # Kraken checksums that rewrote the bids alone (the asks unchanged)
    def take_checksums(self) -> int:
        """Checksums verified equal since the last call (and reset to 0)."""
    skips_old: bool  # drop and count an update ending at or before the book (verdict OLD; not OKX's reset)
    window_whole: bool  # the venue keeps the book whole to its window (keeps_window_whole): no coverage check
    @property
    def unsequenced(self) -> bool: ...
    def take_ignored(self) -> int:
        """Updates dropped as old (``skips_old``) since the last call (and reset to 0)."""

ROUTE_END: Final[int]  # every message from start applied and published
ROUTE_DIFF: Final[int]  # value: a diff for BookSync
ROUTE_TOP_FAULT: Final[int]  # value: a diff applied, not published (HOT_TOP_FAULT)
ROUTE_CONTROL: Final[int]  # not a depthUpdate
ROUTE_MALFORMED: Final[int]  # value: parse_depth's error message
ROUTE_CHECKSUM_FAULT: Final[int]  # StreamRouter: value: events, the first applied, not published (HOT_CHECKSUM_FAULT)

class Router:
    """The frames of one socket read to their markets' HotPaths in one call (see ldc/fastbook/router.c)."""

    def __init__(self) -> None: ...
    @property
    def paths(self) -> dict[str, HotPath]: ...
    def feed(self, raws: list[bytes], start: int, conn_id: int, recv_time_ns: int, /) -> tuple[int, int, Any]:
        """(index, kind, value): raws[start:index] are done; raws[index] is ``kind`` (ROUTE_*)."""

class StreamRouter:
    """A stream venue's book updates of one socket read to their markets' HotPaths in one call
    (see ldc/fastbook/stream_router.c): the venue's C dialect (``parse_okx``, ``parse_bybit``, ``parse_kraken``
    with ``depth``, its subscribed depth; ValueError for any other) reads each message."""

    def __init__(self, dialect: Callable[..., list[tuple[str, Any]] | None], depth: int = 0) -> None: ...
    @property
    def paths(self) -> dict[str, HotPath]: ...
    @property
    def dialect(self) -> Callable[..., list[tuple[str, Any]] | None]: ...
    @property
    def fault_stream(self) -> str | None:
        """The stream whose HotPath raised in the last ``feed`` (its book may be half-applied), or None."""
    @property
    def fault_index(self) -> int:
        """The index in raws of that stream's message (-1: none); the messages after it were not read."""
    def feed(self, raws: list[bytes], start: int, conn_id: int, recv_time_ns: int, /) -> tuple[int, int, Any]:
        """(index, kind, value): raws[start:index] are done; raws[index] is ``kind`` (ROUTE_*); for ROUTE_DIFF,
        ROUTE_TOP_FAULT and ROUTE_CHECKSUM_FAULT, value is the message's [(stream, ParsedDiff)] from the one
        Python must see on."""
