"""The stream feeder records through the same recorder (issue 17 item 2): OKX's genuine book messages served
to a StreamFeeder whose group records come back from its .gz byte for byte, in order; its pongs do not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from feeder_helpers import wait_until
from shm_helpers import group_fixture
from test_record import COMPRESS_TIMEOUT_S
from test_stream_feeder import _okx_book_messages, _serve
from venue_recordings import OKX_FILE, venues_dir
from websockets.sync.server import ServerConnection

from ldc.config import GroupConfig
from ldc.record import read_recording, recording_files
from ldc.shm.reader import Reader
from ldc.stream_feeder import StreamFeeder

pytestmark = pytest.mark.skipif(not (venues_dir() / OKX_FILE).is_file(), reason="shared/data/venues recordings not present")


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def test_an_okx_feeder_records_every_book_message_as_received(group: str, tmp_path: Path) -> None:
    books = _okx_book_messages()
    sent: list[str] = []

    def okx_server(ws: ServerConnection) -> None:
        for message in ws:
            if message == "ping":
                ws.send("pong")
                continue
            request = json.loads(message)
            for arg in request["args"]:
                ws.send(json.dumps({"id": request["id"], "event": "subscribe", "arg": arg, "connId": "a4d3ae55"}))
            for arg in request["args"]:
                for raw in books[arg["instId"]]:
                    sent.append(raw)
                    ws.send(raw)

    for port in _serve(okx_server):
        config = GroupConfig(name=group, exchange="okx", symbols=tuple(books), depth=10, ws_url=f"ws://127.0.0.1:{port}",
                             rest_url="http://127.0.0.1:9", channel="books", capacity=4, streams_per_connection=30,
                             rest_timeout_s=1.0, record=str(tmp_path))  # fmt: skip
        feeder = StreamFeeder(config)
        feeder.start()
        try:
            with Reader(group) as reader:
                wait_until(lambda: all(reader.status(s).update_id == len(m) - 1 for s, m in books.items()), what="every message applied")
                wait_until(lambda: feeder._recorder.stats().frames >= len(sent), what="every message in the spool")  # type: ignore[union-attr]
                feeder.tick()  # the recorder's counts into the feeder-stats block
                stats = reader.feeder_stats()
                assert stats is not None and stats.counters["record_written"] >= len(sent)
                assert (stats.counters["record_dropped"], stats.counters["record_errors"]) == (0, 0)
        finally:
            feeder.close()
        recorder = feeder._recorder
        assert recorder is not None and recorder.wait_compressed(COMPRESS_TIMEOUT_S)
    [path] = recording_files(str(tmp_path / group))
    got = read_recording(path, wanted=(b"{",))
    recorded = [payload.decode() for _, payload in got.lines]
    assert got.damage == "" and [r for r in recorded if '"action"' in r] == sent  # acks recorded too, pongs never
    assert recorder.stats().frames == len(recorded) and recorder.stats().dropped == 0
