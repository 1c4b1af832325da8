"""ldc.stream_feeder end to end on the genuine OKX and Bybit recordings: a local websocket server speaking the
venue's protocol (subscribe answers, its keep-alive answer, the recorded book messages of the markets asked
for, the venue's error for an unknown one) -> StreamFeeder -> segment -> Reader. The published top 20 must
equal an independent Decimal replay of the recording, and an unknown market's slot must carry the venue's words."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from websockets.sync.server import ServerConnection, serve

from ldc.config import GroupConfig
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.stream_feeder import StreamFeeder
from shm_helpers import group_fixture
from venue_recordings import BYBIT_FILE, OKX_FILE, DecimalBook, records, venues_dir

DEPTH = 20
WAIT_S = 30.0
pytestmark = pytest.mark.skipif(not (venues_dir() / OKX_FILE).is_file(), reason="shared/data/venues recordings not present")


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def _okx_book_messages() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in records(OKX_FILE):
        if record["t"] == "recv" and '"channel":"books"' in str(record["data"]) and '"action"' in str(record["data"]):
            out.setdefault(json.loads(str(record["data"]))["arg"]["instId"], []).append(str(record["data"]))
    return out


def _bybit_book_messages(conn: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in records(BYBIT_FILE):
        if record["t"] == "recv" and record["conn"] == conn and str(record["data"]).startswith('{"topic":"orderbook.'):
            out.setdefault(json.loads(str(record["data"]))["topic"], []).append(str(record["data"]))
    return out


def _serve(handler: Callable[[ServerConnection], None]) -> Iterator[int]:
    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()


def _replay(messages: list[str], book_of: Callable[[dict[str, Any]], tuple[str, list[list[str]], list[list[str]]]]) -> DecimalBook:
    ref = DecimalBook()
    for raw in messages:
        kind, bids, asks = book_of(json.loads(raw))
        (ref.reset if kind == "snapshot" else ref.apply)(bids, asks)
    return ref


def _wait_for(reader: Reader, symbol: str, update_id: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if reader.status(symbol).update_id == update_id:
            return
        time.sleep(0.05)
    raise AssertionError(f"{symbol}: update id {reader.status(symbol).update_id}, expected {update_id} within {WAIT_S} s")


def _run(group: GroupConfig) -> StreamFeeder:
    feeder = StreamFeeder(group)
    feeder.start()
    return feeder


def test_okx_recording_through_the_feeder_equals_a_decimal_replay_and_an_unknown_market_says_okx_words(group: str) -> None:
    books = _okx_book_messages()

    def okx_server(ws: ServerConnection) -> None:
        for message in ws:
            if message == "ping":
                ws.send("pong")
                continue
            request = json.loads(message)
            for arg in request["args"]:
                if arg["instId"] not in books:
                    ws.send(json.dumps({"event": "error", "code": "60018", "connId": "a4d3ae55",
                                        "msg": f"Wrong URL or channel:books,instId:{arg['instId']} doesn't exist"}))
                    continue
                ws.send(json.dumps({"id": request["id"], "event": "subscribe", "arg": arg, "connId": "a4d3ae55"}))
            for arg in request["args"]:
                for raw in books.get(arg["instId"], []):
                    ws.send(raw)

    for port in _serve(okx_server):
        config = GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT", "UNI-USD-SWAP", "NOPE-USDT"), depth=DEPTH,
                             ws_url=f"ws://127.0.0.1:{port}", rest_url="http://127.0.0.1:9", channel="books",
                             capacity=4, streams_per_connection=30, rest_timeout_s=1.0)  # fmt: skip
        feeder = _run(config)
        try:
            with Reader(group) as reader:
                for symbol, messages in books.items():
                    _wait_for(reader, symbol, len(messages) - 1)  # ids count the messages after the snapshot
                    snap = reader.snapshot(symbol)
                    ref = _replay(messages, lambda m: (m["action"], m["data"][0]["bids"], m["data"][0]["asks"]))
                    assert (snap.bids.tolist(), snap.asks.tolist()) == ref.top_floats(DEPTH)
                    assert snap.status == Status.SYNCED
                deadline = time.monotonic() + WAIT_S
                while reader.status("NOPE-USDT").status != Status.ERROR and time.monotonic() < deadline:
                    time.sleep(0.05)
                nope = reader.status("NOPE-USDT")
                assert nope.status == Status.ERROR and "instId:NOPE-USDT doesn't exist" in nope.message
                counters = {symbol: reader.status(symbol).counters for symbol in books}
            assert all(c.get("resyncs", 0) == 0 and c.get("gaps", 0) == 0 for c in counters.values()), counters
            assert sum(m.sync.checksums for m in feeder.markets.values()) == 191
            assert sum(m.sync.checksum_mismatches for m in feeder.markets.values()) == 0
        finally:
            feeder.close()


def test_bybit_recording_through_the_feeder_equals_a_decimal_replay(group: str) -> None:
    books = _bybit_book_messages("BYBIT.ws.2")  # the linear connection
    requests: list[dict[str, Any]] = []

    def bybit_server(ws: ServerConnection) -> None:
        for message in ws:
            request = json.loads(message)
            requests.append(request)
            if request["op"] == "ping":
                ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": request["req_id"], "op": "ping"}))
                continue
            ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": request["req_id"], "op": request["op"]}))
            for topic in request["args"]:
                for raw in books.get(topic, []):
                    ws.send(raw)

    for port in _serve(bybit_server):
        config = GroupConfig(name=group, exchange="bybit-linear", symbols=("BTCUSDT", "ETHUSDT"), depth=DEPTH,
                             ws_url=f"ws://127.0.0.1:{port}", channel="orderbook.200", capacity=4, streams_per_connection=500)  # fmt: skip
        feeder = _run(config)
        try:
            with Reader(group) as reader:
                for topic, messages in books.items():
                    symbol = topic.rsplit(".", 1)[1]
                    _wait_for(reader, symbol, json.loads(messages[-1])["data"]["u"])
                    snap = reader.snapshot(symbol)
                    ref = _replay(messages, lambda m: (m["type"], m["data"]["b"], m["data"]["a"]))
                    assert (snap.bids.tolist(), snap.asks.tolist()) == ref.top_floats(DEPTH)
            assert requests[0] == {"req_id": "1", "op": "subscribe", "args": ["orderbook.200.BTCUSDT", "orderbook.200.ETHUSDT"]}
        finally:
            feeder.close()


def test_okx_requests_are_kept_within_480_an_hour_per_connection(group: str) -> None:
    from ldc.stream_feeder import StreamConnection

    feeder = StreamFeeder(GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT",), channel="books", capacity=2))
    try:
        connection = StreamConnection(feeder, 0, ["BTC-USDT"])
        now = time.monotonic()
        connection._sent_at = [now - 10.0] * 479
        assert connection._requests_left(now) == 1  # a resubscription (2 requests) now waits
        connection._sent_at = [now - 3601.0] * 479 + [now - 1.0]
        assert connection._requests_left(now) == 479
    finally:
        feeder.close()


def test_bybit_gap_resubscribes_that_topic_alone_and_the_new_snapshot_brings_it_back(group: str) -> None:
    books = _bybit_book_messages("BYBIT.ws.2")
    requests: list[dict[str, Any]] = []
    dropped = books["orderbook.200.ETHUSDT"][50]

    def lossy_server(ws: ServerConnection) -> None:
        for message in ws:
            request = json.loads(message)
            requests.append(request)
            if request["op"] == "ping":
                ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": request["req_id"], "op": "ping"}))
                continue
            ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": request["req_id"], "op": request["op"]}))
            if request["op"] != "subscribe":
                continue
            first = sum(1 for r in requests if r["op"] == "subscribe") == 1
            for topic in request["args"]:
                for raw in books.get(topic, []):
                    if not (first and raw is dropped):  # the first subscription loses one ETHUSDT delta
                        ws.send(raw)

    for port in _serve(lossy_server):
        config = GroupConfig(name=group, exchange="bybit-linear", symbols=("BTCUSDT", "ETHUSDT"), depth=DEPTH,
                             ws_url=f"ws://127.0.0.1:{port}", channel="orderbook.200", capacity=4, streams_per_connection=500)  # fmt: skip
        feeder = _run(config)
        try:
            with Reader(group) as reader:
                for topic, messages in books.items():
                    symbol = topic.rsplit(".", 1)[1]
                    _wait_for(reader, symbol, json.loads(messages[-1])["data"]["u"])
                    deadline = time.monotonic() + WAIT_S
                    while reader.status(symbol).status != Status.SYNCED and time.monotonic() < deadline:
                        time.sleep(0.05)
                    snap = reader.snapshot(symbol)
                    ref = _replay(messages, lambda m: (m["type"], m["data"]["b"], m["data"]["a"]))
                    assert (snap.bids.tolist(), snap.asks.tolist()) == ref.top_floats(DEPTH)
                eth, btc = reader.status("ETHUSDT").counters, reader.status("BTCUSDT").counters
            assert (eth["gaps"], eth["resyncs"], btc["gaps"], btc["resyncs"]) == (1, 1, 0, 0)
            again = [(r["op"], r["args"]) for r in requests[1:] if r["op"] != "ping"]
            assert again == [("unsubscribe", ["orderbook.200.ETHUSDT"]), ("subscribe", ["orderbook.200.ETHUSDT"])]
        finally:
            feeder.close()


def test_the_stream_feeder_tells_systemd_ready_status_and_watchdog(group: str, tmp_path: Any) -> None:
    import socket

    from ldc.sdnotify import Notifier

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10.0)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        config = GroupConfig(name=group, exchange="bybit-spot", symbols=("BTCUSDT",), channel="orderbook.50",
                             ws_url="ws://127.0.0.1:9", capacity=2)  # fmt: skip
        feeder = StreamFeeder(config, notifier=notifier)
        runner = threading.Thread(target=feeder.run)
        runner.start()
        seen: set[str] = set()
        try:
            while not {"READY=1", "WATCHDOG=1", "STATUS=0/1 markets in sync"} <= seen:
                seen.update(sock.recv(4096).decode().split("\n"))
        finally:
            feeder.request_stop()
            runner.join(timeout=15.0)
        assert not runner.is_alive()


def test_regression_a_market_whose_stream_stays_silent_is_resubscribed_before_it_ever_received(group: str) -> None:
    """A subscription the venue acknowledged but never served: after stale_after_s that market alone is asked again
    (it was dropped: the market had no connection until its first message)."""
    books = _bybit_book_messages("BYBIT.ws.2")
    subscribes: list[list[str]] = []

    def forgetful_server(ws: ServerConnection) -> None:
        for message in ws:
            request = json.loads(message)
            if request["op"] == "ping":
                continue
            ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": request["req_id"], "op": request["op"]}))
            if request["op"] == "subscribe":
                subscribes.append(request["args"])
                for topic in request["args"]:
                    if len(subscribes) > 1 or topic.endswith("BTCUSDT"):  # ETHUSDT served only when asked again
                        for raw in books[topic]:
                            ws.send(raw)

    for port in _serve(forgetful_server):
        config = GroupConfig(name=group, exchange="bybit-linear", symbols=("BTCUSDT", "ETHUSDT"), depth=DEPTH, stale_after_s=1.0,
                             ws_url=f"ws://127.0.0.1:{port}", channel="orderbook.200", capacity=4, streams_per_connection=500)  # fmt: skip
        feeder = StreamFeeder(config)
        runner = threading.Thread(target=feeder.run)  # ticks: staleness is judged on them
        runner.start()
        try:
            with Reader(group) as reader:
                _wait_for(reader, "ETHUSDT", json.loads(books["orderbook.200.ETHUSDT"][-1])["data"]["u"])
            assert "orderbook.200.ETHUSDT" in subscribes[1]  # (BTCUSDT too goes silent once its replay ends)
        finally:
            feeder.request_stop()
            runner.join(timeout=15.0)


def test_sighup_adds_and_removes_markets_on_the_running_connection(group: str, tmp_path: Any) -> None:
    books = _bybit_book_messages("BYBIT.ws.2")
    requests: list[dict[str, Any]] = []

    def bybit_server(ws: ServerConnection) -> None:
        for message in ws:
            request = json.loads(message)
            requests.append(request)
            if request["op"] == "ping":
                continue
            ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": request["req_id"], "op": request["op"]}))
            if request["op"] == "subscribe":
                for topic in request["args"]:
                    for raw in books.get(topic, []):
                        ws.send(raw)

    def write(symbols: str) -> Any:
        path = tmp_path / "ldc.toml"
        path.write_text(f'[[group]]\nname = "{group}"\nexchange = "bybit-linear"\nsymbols = {symbols}\n'
                        f'ws_url = "ws://127.0.0.1:{port}"\ncapacity = 4\n')  # fmt: skip
        return path

    for port in _serve(bybit_server):
        from ldc.config import load_config

        path = write('["BTCUSDT"]')
        feeder = StreamFeeder(load_config(path).group(group), config_path=str(path))
        runner = threading.Thread(target=feeder.run)
        runner.start()
        try:
            with Reader(group) as reader:
                _wait_for(reader, "BTCUSDT", json.loads(books["orderbook.200.BTCUSDT"][-1])["data"]["u"])
                write('["ETHUSDT"]')
                feeder.request_reload()
            deadline = time.monotonic() + WAIT_S
            while "ETHUSDT" not in feeder._symbols() and time.monotonic() < deadline:
                time.sleep(0.05)
            with Reader(group) as reader:  # a reader attached before sees the markets of its time
                _wait_for(reader, "ETHUSDT", json.loads(books["orderbook.200.ETHUSDT"][-1])["data"]["u"])
            assert feeder.group.symbols == ("ETHUSDT",) and len(feeder.connections) == 1
            ops = [(r["op"], r["args"]) for r in requests if r["op"] != "ping"]
            assert ops == [("subscribe", ["orderbook.200.BTCUSDT"]), ("unsubscribe", ["orderbook.200.BTCUSDT"]),
                           ("subscribe", ["orderbook.200.ETHUSDT"])]  # fmt: skip
        finally:
            feeder.request_stop()
            runner.join(timeout=15.0)


def test_okx_checksum_mismatch_resyncs_that_market_alone_counted_and_it_comes_back(group: str) -> None:
    books = _okx_book_messages()
    corrupted = json.loads(books["BTC-USDT"][30])
    corrupted["data"][0]["checksum"] += 1
    subscribes: list[list[str]] = []

    def okx_server(ws: ServerConnection) -> None:
        for message in ws:
            if message == "ping":
                ws.send("pong")
                continue
            request = json.loads(message)
            for arg in request["args"]:
                ws.send(json.dumps({"id": request["id"], "event": request["op"], "arg": arg, "connId": "a4d3ae55"}))
            if request["op"] != "subscribe":
                continue
            subscribes.append([arg["instId"] for arg in request["args"]])
            for arg in request["args"]:
                for index, raw in enumerate(books[arg["instId"]]):
                    bad = len(subscribes) == 1 and arg["instId"] == "BTC-USDT" and index == 30
                    ws.send(json.dumps(corrupted) if bad else raw)

    for port in _serve(okx_server):
        config = GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT", "UNI-USD-SWAP"), depth=DEPTH,
                             ws_url=f"ws://127.0.0.1:{port}", rest_url="http://127.0.0.1:9", channel="books",
                             capacity=4, streams_per_connection=30, rest_timeout_s=1.0)  # fmt: skip
        feeder = _run(config)
        try:
            with Reader(group) as reader:
                for symbol, messages in books.items():
                    _wait_for(reader, symbol, len(messages) - 1)
                    ref = _replay(messages, lambda m: (m["action"], m["data"][0]["bids"], m["data"][0]["asks"]))
                    snap = reader.snapshot(symbol)
                    assert (snap.bids.tolist(), snap.asks.tolist()) == ref.top_floats(DEPTH)
                btc, uni = reader.status("BTC-USDT").counters, reader.status("UNI-USD-SWAP").counters
            assert (btc["resyncs"], uni["resyncs"]) == (1, 0)
            assert [m.sync.checksum_mismatches for m in feeder.markets.values()] == [1, 0]
            assert subscribes == [["BTC-USDT", "UNI-USD-SWAP"], ["BTC-USDT"]]
        finally:
            feeder.close()


def test_okx_channel_without_its_snapshot_joins_a_rest_book_by_seq_ids(group: str) -> None:
    """OKX's 2026 procedure (its channels may stop sending the initial snapshot): the updates are buffered, the
    book comes from GET /api/v5/market/books with its seqId, and the first kept update has prevSeqId <= seqId <
    its own seqId. Ids jump (not contiguous), as OKX's do."""
    import http.server

    ids = [100 + 3 * i for i in range(40)]  # seqIds 100, 103, ...
    start = [[f"{1000 - i}", f"{i + 1}", "0", "1"] for i in range(30)], [[f"{1001 + i}", f"{i + 1}", "0", "1"] for i in range(30)]
    updates: list[dict[str, Any]] = []
    for n, (prev, seq) in enumerate(zip(ids, ids[1:])):
        bids = [[f"{1000 - n % 7}", f"{n + 5}", "0", "2"]]
        asks = [[f"{1001 + n % 5}", "0" if n % 3 == 0 else f"{n + 2}", "0", "1"]]
        updates.append({"prevSeqId": prev, "seqId": seq, "bids": bids, "asks": asks})
    rest_at = 7  # the REST book is at ids[rest_at]: the updates up to it are dropped
    ref = DecimalBook()
    ref.reset(*start)
    for update in updates[:rest_at]:
        ref.apply(update["bids"], update["asks"])
    rest_bids, rest_asks = ref.top(400)

    class Books(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            assert self.path.startswith("/api/v5/market/books?instId=BTC-USDT&sz=400"), self.path
            data = {"asks": [[p, q, "0", "1"] for p, q in rest_asks], "bids": [[p, q, "0", "1"] for p, q in rest_bids],
                    "ts": "1597026383085", "seqId": ids[rest_at]}  # fmt: skip
            body = json.dumps({"code": "0", "msg": "", "data": [data]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    def okx_server(ws: ServerConnection) -> None:
        for message in ws:
            if message == "ping":
                ws.send("pong")
                continue
            request = json.loads(message)
            ws.send(json.dumps({"id": request["id"], "event": "subscribe", "arg": request["args"][0], "connId": "c"}))
            for update in updates:  # no snapshot first
                ws.send(json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": [
                    {**update, "ts": "1597026383185", "checksum": 0}]}))  # fmt: skip

    rest = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Books)
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    try:
        for port in _serve(okx_server):
            config = GroupConfig(name=group, exchange="okx", symbols=("BTC-USDT",), depth=DEPTH, channel="books", capacity=2,
                                 ws_url=f"ws://127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{rest.server_address[1]}")  # fmt: skip
            feeder = _run(config)
            try:
                with Reader(group) as reader:
                    _wait_for(reader, "BTC-USDT", ids[-1])
                    snap = reader.snapshot("BTC-USDT")
                for update in updates[rest_at:]:
                    ref.apply(update["bids"], update["asks"])
                assert (snap.bids.tolist(), snap.asks.tolist()) == ref.top_floats(DEPTH)
                market = feeder.markets["BTC-USDT"]
                assert (market.sync.gaps, market.sync.resyncs, market.sync.diffs_ignored) == (0, 0, rest_at)
            finally:
                feeder.close()
    finally:
        rest.shutdown()
