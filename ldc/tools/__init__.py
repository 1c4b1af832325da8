"""Command-line readers of ldc segments: ``ldc status``, ``ldc book``, ``ldc top``.

They attach like any other reader (read-only, ``ldc.shm.reader.Reader``); nothing here writes to a
segment. Shared formatting lives here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from ldc.shm.layout import SEGMENT_PREFIX, SHM_DIR, WAITERS_SUFFIX, GROUP_NAME_RE, Status
from ldc.shm.reader import Snapshot

PRICE_FORMAT: Final = ".12g"  # Binance prices have at most 8 decimals and < 15 significant digits


def flag_names(status: int) -> list[str]:
    """Names of the status flags set, e.g. ["SYNCED", "REFRESHING"]; [] for 0 (no data yet)."""
    return [flag.name or "" for flag in Status if status & flag]


def list_groups(shm_dir: str = SHM_DIR) -> list[str]:
    """Groups that have a segment file on this host, sorted."""
    try:
        names = os.listdir(shm_dir)
    except FileNotFoundError:
        return []
    groups = [
        name[len(SEGMENT_PREFIX):]
        for name in names
        if name.startswith(SEGMENT_PREFIX) and not name.endswith(WAITERS_SUFFIX)
    ]
    return sorted(g for g in groups if GROUP_NAME_RE.fullmatch(g))


def levels_json(levels: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[float(price), float(qty)] for price, qty in levels]


def ladder(snap: Snapshot) -> list[str]:
    """Asks above (best ask lowest, next to the spread), bids below, one level per line."""
    width = 18
    lines = [f"{'price':>{width}}  {'quantity':>{width}}"]
    for price, qty in reversed(snap.asks.tolist()):
        lines.append(f"{format(price, PRICE_FORMAT):>{width}}  {format(qty, PRICE_FORMAT):>{width}}  ask")
    if len(snap.bids) and len(snap.asks):
        spread = snap.asks[0, 0] - snap.bids[0, 0]
        lines.append(f"{'-' * width}  spread {format(spread, PRICE_FORMAT)}")
    else:
        lines.append("-" * width)
    for price, qty in snap.bids.tolist():
        lines.append(f"{format(price, PRICE_FORMAT):>{width}}  {format(qty, PRICE_FORMAT):>{width}}  bid")
    return lines


def header_line(snap: Snapshot, now_ns: int) -> str:
    age_ms = (now_ns - snap.publish_time_ns) / 1e6 if snap.publish_time_ns else float("nan")
    flags = "|".join(flag_names(snap.status)) or "no data yet"
    return f"{snap.symbol}  update_id {snap.update_id}  {flags}  published {age_ms:.1f} ms ago"
