"""Helpers for the shared-memory tests: unique group names, cleanup, deterministic books."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ldc.shm.layout import lock_path, segment_path, temp_path, waiters_path


def unique_group(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:10]}"


def unlink_group(group: str) -> None:
    """Remove every file a group can have in /dev/shm (the segment, its ownership lock, a half-built
    segment, a layout 1.x waiters file)."""
    for path in (segment_path(group), lock_path(group), temp_path(group), waiters_path(group)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def group_fixture() -> Iterator[str]:
    group = unique_group()
    try:
        yield group
    finally:
        unlink_group(group)


def book(depth: int, *, mid: float = 100.0, tick: float = 0.5, qty: float = 1.0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A full (depth, 2) bids/asks pair around ``mid``, best first, quantities qty, qty+1, ..."""
    steps = np.arange(depth, dtype=np.float64)
    bids = np.column_stack([mid - tick * (steps + 1), qty + steps])
    asks = np.column_stack([mid + tick * (steps + 1), qty + steps])
    return np.ascontiguousarray(bids), np.ascontiguousarray(asks)
