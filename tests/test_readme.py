"""The README as a newcomer runs it (issue 14): its Python snippet, pasted as is against a live segment whose
writer never stops publishing, reaches every line (it looped forever before its `get_asks` line) and ends.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from shm_helpers import book, group_fixture

ROOT = Path(__file__).resolve().parents[1]
PUBLISH_EVERY_S = 0.002  # a busy market: wait_for_update always has something new
SNIPPET_TIMEOUT_S = 30.0  # 100 updates take well under a second; forever takes longer


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def readme_python_snippet() -> str:
    """The "Reading from Python" snippet: the README's one Python block that opens `Reader("spot")`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    readers = [block for block in blocks if 'Reader("spot")' in block]
    assert len(readers) == 1, f"the README has one Python snippet reading group 'spot', found {len(readers)}"
    return str(readers[0])


def test_the_readme_python_snippet_runs_to_its_end_against_a_busy_market(group: str) -> None:
    snippet = readme_python_snippet()
    assert 'Reader("spot")' in snippet and "get_asks" in snippet
    code = snippet.replace('Reader("spot")', f"Reader({group!r})") + '\nprint("END OF SNIPPET")\n'
    stop = threading.Event()
    with SegmentWriter(group, depth=10, capacity=2, exchange="binance.com") as writer:
        slot = writer.add_market("BTCUSDT")
        bids, asks = book(10)

        def keep_publishing() -> None:
            update_id = 1
            while not stop.is_set():
                writer.publish(slot, update_id=update_id, event_time_ms=1, recv_time_ns=time.time_ns(), status=Status.SYNCED,
                               bids=bids, asks=asks, n_bids=10, n_asks=10)  # fmt: skip
                writer.notify()
                update_id += 1
                time.sleep(PUBLISH_EVERY_S)

        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)
        finally:
            stop.set()
            publisher.join()
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "END OF SNIPPET"
    assert lines[1] == str([[float(p), float(q)] for p, q in asks[:5]])  # the get_asks line ran
