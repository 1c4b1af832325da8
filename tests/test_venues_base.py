"""ldc.venues.base: the sequence rule in one place, and the boundaries of the seam.

The rule's APPLY case is repeated inline by BookSync's fast paths and by the C HotPath (for speed);
these tests drive random id triples through all three and require the same answer."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

import orjson

from ldc._fastbook import HOT_PASS, FastBook, HotPath, ParsedDiff, parse_depth
from ldc.depth import NO_ID, DepthDiff, DepthSnapshot
from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from ldc.sync import PUBLISH_CHANGED, PUBLISH_UNCHANGED, BookSync, SnapshotPurpose, SnapshotResult, SyncConfig, SyncState
from ldc.venues.base import JoinWait, SequenceRule, Verdict, hot_path_links_prev, join_index, verdict
from shm_helpers import group_fixture

BOOK_ID = 1000
RULES = [SequenceRule.RANGE, SequenceRule.PREV_LINK, SequenceRule.PREV_LINK_RESET, SequenceRule.PLUS_ONE]


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _ids(rng: random.Random, rule: SequenceRule) -> tuple[int, int, int]:
    final = BOOK_ID + rng.randint(-3, 3)
    first = final if rule is SequenceRule.PLUS_ONE else final - rng.randint(0, 3)
    prev = BOOK_ID + rng.randint(-3, 3) if rule is not SequenceRule.RANGE and rule is not SequenceRule.PLUS_ONE else NO_ID
    return first, final, prev


def _diff(first: int, final: int, prev: int) -> ParsedDiff:
    """The C parser's diff (what the HotPath takes), Binance-shaped: the ids are what matter here."""
    msg = {"e": "depthUpdate", "E": 1, "s": "X", "U": first, "u": final, "b": [["99", "1"]], "a": []}
    if prev != NO_ID:
        msg["T"], msg["pu"] = 1, prev
    parsed = parse_depth(orjson.dumps(msg))
    assert parsed is not None
    return parsed


def _synced(rule: SequenceRule) -> BookSync:
    from ldc.venues.base import SnapshotSource

    config = SyncConfig(rule=rule, depth=1, snapshot_limit=10, snapshot_source=SnapshotSource.STREAM, refresh_interval_s=None)
    sync = BookSync("X", lambda: FastBook(depth=1), config)
    sync.feed(SnapshotResult(DepthSnapshot(BOOK_ID, [(100.0, 1.0)], [(101.0, 1.0)], 10), SnapshotPurpose.LIVE), 0.0)
    assert sync.state is SyncState.SYNCED and sync.update_id == BOOK_ID
    return sync


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_python_fast_path_general_path_and_c_hot_path_agree_with_the_rule(rule: SequenceRule, group: str) -> None:
    rng = random.Random(rule.value)
    with SegmentWriter(group, depth=1, capacity=1) as writer:
        slot = writer.add_market("X")
        for _ in range(400):
            first, final, prev = _ids(rng, rule)
            expected = verdict(rule, first, final, prev, BOOK_ID)
            # BookSync: the fast path, falling back to the general one
            sync = _synced(rule)
            actions = sync.on_diff(_diff(first, final, prev), 0.0)  # type: ignore[arg-type]
            moved = sync.update_id != BOOK_ID
            assert moved == (expected in (Verdict.APPLY, Verdict.RESET)), (first, final, prev, expected, actions)
            assert (sync.gaps == 1) == (expected is Verdict.GAP)
            if expected is Verdict.APPLY:
                assert actions is PUBLISH_CHANGED or actions is PUBLISH_UNCHANGED
            # the C HotPath applies exactly the APPLY cases (a reset goes to BookSync)
            book = FastBook(depth=1)
            book.load_snapshot(DepthSnapshot(BOOK_ID, [(100.0, 1.0)], [(101.0, 1.0)], 10))
            hot = HotPath(writer.segment, slot, futures=hot_path_links_prev(rule))
            hot.arm(book, BOOK_ID, int(Status.SYNCED))
            applied = hot.feed(_diff(first, final, prev), 1) != HOT_PASS
            # on RANGE the C path takes only U == b + 1 (an overlapping diff goes to BookSync, which applies it)
            strict = rule is not SequenceRule.RANGE or first == BOOK_ID + 1
            assert applied == (expected is Verdict.APPLY and strict), (first, final, prev, expected)


def test_okx_documented_sequence_with_keepalive_and_reset() -> None:
    """OKX's own example: snapshot(-1 -> 10), update(10 -> 15), keep-alive (15 -> 15), reset (15 -> 3), 3 -> 5."""
    rule = SequenceRule.PREV_LINK_RESET
    assert verdict(rule, NO_ID, 15, 10, 10) is Verdict.APPLY
    assert verdict(rule, NO_ID, 15, 15, 15) is Verdict.OLD  # the empty keep-alive: nothing to apply
    assert verdict(rule, NO_ID, 3, 15, 15) is Verdict.RESET
    assert verdict(rule, NO_ID, 5, 3, 3) is Verdict.APPLY
    assert verdict(rule, NO_ID, 9, 7, 5) is Verdict.GAP
    assert verdict(rule, NO_ID, NO_ID, NO_ID, 5) is Verdict.APPLY  # a message from before seqId
    # Binance futures never move the book backwards
    assert verdict(SequenceRule.PREV_LINK, NO_ID, 3, 15, 15) is Verdict.OLD


def test_plus_one_needs_exactly_the_next_id() -> None:
    rule = SequenceRule.PLUS_ONE
    assert [verdict(rule, u, u, NO_ID, 10) for u in (9, 10, 11, 12)] == [Verdict.OLD, Verdict.OLD, Verdict.APPLY, Verdict.GAP]


def _buffer(*pairs: tuple[int, int]) -> list[DepthDiff]:
    return [DepthDiff("X", first, final, NO_ID, 1, NO_ID, [], []) for first, final in pairs]


def test_join_index_follows_the_documented_rules() -> None:
    spot = _buffer((101, 105), (106, 110))
    assert join_index(SequenceRule.RANGE, spot, 100) is JoinWait.TOO_OLD  # the document's step 4 is strict
    assert join_index(SequenceRule.RANGE, spot, 101) == 0
    assert join_index(SequenceRule.RANGE, spot, 107) == 1
    assert join_index(SequenceRule.RANGE, spot, 110) == 2
    assert join_index(SequenceRule.RANGE, spot, 111) is JoinWait.NOT_YET
    futures = _buffer((101, 105), (108, 110))
    assert join_index(SequenceRule.PREV_LINK, futures, 106) is JoinWait.TOO_OLD  # in the hole
    assert join_index(SequenceRule.PREV_LINK, futures, 105) == 0


def test_venue_tables_and_the_rule_import_without_the_c_extension() -> None:
    """config.py keeps no copy of the venue tables: they must import where _fastbook cannot."""
    code = (
        "import sys; sys.modules['ldc._fastbook'] = None\n"
        "import ldc.venues, ldc.venues.base, ldc.venues.binance, ldc.config\n"
        "print(sorted(ldc.venues.VENUES))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "binance.com" in out


def test_the_core_imports_no_io() -> None:
    code = (
        "import sys\n"
        "import ldc.book, ldc.sync, ldc.depth, ldc.venues, ldc.venues.base, ldc.venues.binance\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'socket', 'ssl', 'urllib3', 'websocket', 'requests', 'posix_ipc'}"
        " or m.startswith('ldc.io') or m.startswith('ldc.shm'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_okx_join_drops_the_update_at_the_snapshots_seq_id() -> None:
    """OKX's 2026 procedure: drop buffered events with seqId <= the snapshot's; the first kept one has
    prevSeqId <= snapshot seqId < seqId (Binance futures, unlike it, apply the event whose u equals lastUpdateId)."""
    okx_buffer = _buffer((100, 103), (103, 106), (106, 109))  # (prevSeqId, seqId)
    assert join_index(SequenceRule.PREV_LINK_RESET, okx_buffer, 106) == 2
    assert join_index(SequenceRule.PREV_LINK_RESET, okx_buffer, 104) == 1  # a snapshot between two updates joins too
    assert join_index(SequenceRule.PREV_LINK_RESET, okx_buffer, 99) is JoinWait.TOO_OLD
    assert join_index(SequenceRule.PREV_LINK, okx_buffer, 106) == 1
