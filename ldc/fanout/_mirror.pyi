"""Type stub of the C extension ldc/fanout/_mirror.c (the mirror's per-message and per-update path)."""

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

class Market:
    """What the mirror knows of one market's slot (mutable, owned by the event loop; apply_batch reads it)."""

    slot: int
    epoch: int
    seq: int
    origin_gen: int
    counters: tuple[int, ...]
    status: int  # the origin's status last applied
    message: bytes  # the message last written into the slot
    resyncing: bool
    newest: Any  # codec.Update | None: newest stream update seen while resyncing
    behind_once: bool  # the last heartbeat claimed a later sequence
    def __init__(self, slot: int, epoch: int = ..., seq: int = ..., origin_gen: int = ..., counters: tuple[int, ...] = ...,
                 status: int = ..., message: bytes = ..., resyncing: bool = ..., newest: Any = ...,
                 behind_once: bool = ...) -> None: ...

class Fast:
    """A socket read of the group's batch frames alone, delivered and applied in C (``wait``'s sixth argument)."""

    reads: int
    frames: int
    batches: int
    applied: int
    unwanted: int
    def __init__(self, direct: Any, mirror: Any, subject: bytes) -> None: ...

def apply_batch(data: bytes, segment: object, group: bytes, markets: dict[str, Market], wanted: AbstractSet[str] | None,
                stale: bool, slow: Callable[[bytes, int, int], None], /) -> tuple[int, int] | None:
    """One stream batch: (entries applied in C, entries of unwanted markets), the rest handed to
    ``slow(data, entry_offset, epoch)`` in place; None when the batch is refused or another group's
    (nothing applied: the Python path names and counts it)."""

def frames(data: bytes, sids: AbstractSet[int], max_control: int, /) -> tuple[list[tuple[bytes, bytes]], int]:
    """The whole MSG frames of ``sids`` at the start of ``data``: ([(subject, payload)], bytes consumed)."""

def offsets() -> dict[str, int]:
    """The wire offsets the module assumes (mirror.py checks them against codec)."""

def wait(epfd: int, sockfd: int, timeout_s: float, on_data: Callable[[bytes], bool], max_size: int, fast: Fast | None = None, /) -> None:
    """The event loop's wait on ``epfd`` with ``sockfd``'s reads handed to ``on_data`` while it is the only
    file with news and ``on_data`` returns True (lean.LoopReads); a read ``fast`` takes whole never reaches it."""
