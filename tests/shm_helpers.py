"""Helpers for the shared-memory tests: unique group names, cleanup, deterministic books."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import posix_ipc

from ldc.shm.layout import segment_name, waiters_name


def unique_group(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:10]}"


def unlink_group(group: str) -> None:
    for name in (segment_name(group), waiters_name(group)):
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
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
