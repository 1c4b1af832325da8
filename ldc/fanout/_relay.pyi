"""Type stub of the C extension ldc/fanout/_relay.c (the relay's scan, copy, encode and send)."""

from typing import Any

PUMP_SLICE: int
PUMP_DIRECTORY: int
PUMP_SHORT: int
PUMP_ERROR: int
PUMP_READABLE: int

class Collector:
    published: int  # entries put into batches
    batches: int
    sends: int
    wakes: int
    skipped_copies: int
    batch_seq: int
    dir_seq: int
    need_directory: bool
    paced_us: int
    ring: bool  # paced sends and sleeps through io_uring (set False: send() and futex())
    ring_errno: int  # why the kernel refused the ring (0: it did not, or not tried yet)
    def __init__(self, mapping: Any, layout: dict[str, int], group: bytes, subject: bytes, epoch: int) -> None: ...
    def set_markets(self, dir_seq: int, markets: list[tuple[bytes, int, int, int, int, bytes | None]], /) -> None:
        """(symbol, slot, gen, seq word last sent, the relay's sequence, last entry or None), in scan order."""
    def markets(self) -> list[tuple[bytes, int, int, bytes | None]]:
        """(symbol, seq word last sent, sequence, last entry or None) per market."""
    def last(self, symbol: bytes, /) -> bytes | None: ...
    def entries(self) -> list[tuple[int, int, bytes]]:
        """(market index, sequence, entry) of every market changed since the last look."""
    def collect(self, limit: int, /) -> list[bytes]:
        """The changed markets' batch payloads, split at ``limit`` bytes of entries."""
    def collect_frames(self, limit: int, /) -> tuple[bytes, int, int]:
        """(PUB frames, messages, payload bytes) of the changed markets."""
    def pump(self, fd: int, limit: int, slice_s: float, window_s: float, wait_s: float, /) -> tuple[int, bytes | None, int, int, int, int]:
        """(code, unsent frames or None, messages built, their payload bytes, errno, entries of the frames not wholly sent)."""
    def release(self) -> None: ...

def set_timer_slack_ns(ns: int, /) -> None: ...
