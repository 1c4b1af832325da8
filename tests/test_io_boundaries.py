"""The I/O layer names no exchange (issue 12: "outside ldc/venues/ nothing names an exchange"): ``ldc/io`` imports
nothing of the venues nor of the layers above it, and the venue hands it a protocol object instead
(``ldc.venues.base.StreamProtocol`` / ``RestProtocol``), whose fields ``ldc.io`` declares again as its own
``StreamRules`` / ``RestRules``. Same style as tests/test_sim_boundaries.py."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from ldc.io.rest import RestRules
from ldc.io.ws import StreamRules, WsOptions, WsPool
from ldc.venues import binance
from ldc.venues.base import ControlAction, FrameKind, RestProtocol, StreamProtocol
from test_ws import TEXT, Recorder, ScriptedServer, _server_frame, wait_for
from boundary_helpers import imported_modules

ROOT = Path(__file__).resolve().parents[1]
IO_DIR = ROOT / "ldc" / "io"
FIXTURES = Path(__file__).parent / "fixtures" / "binance"
# what the I/O layer may not import: the venues, and everything that sits above it
ABOVE_IO = ("ldc.venues", "ldc.feeder", "ldc.stream_feeder", "ldc.sync", "ldc.book", "ldc.depth", "ldc.config",
            "ldc._fastbook", "ldc.fastbook", "ldc.publish")  # fmt: skip
# exchange names beyond the venue modules' own (old names and header prefixes the modules use)
OTHER_NAMES = ("huobi", "mbx", "serverShutdown", "bitget", "deribit", "kucoin")


def exchange_names() -> set[str]:
    """Every venue module's name (``ldc/venues/okx.py`` -> okx) and the first word of every exchange name in
    the venue tables (binance.com -> binance, bybit-linear -> bybit): a new venue is covered without a change here."""
    from ldc.venues import VENUES  # noqa: PLC0415 - the tables, as configuration reads them

    modules = {p.stem for p in (ROOT / "ldc" / "venues").glob("*.py") if not p.stem.startswith("_") and p.stem != "base"}
    tables = {re.split(r"[.\-_]", name)[0] for name in VENUES}
    return {name.lower() for name in modules | tables | set(OTHER_NAMES)}


def test_the_exchange_list_is_not_empty() -> None:
    assert {"binance", "okx", "bybit"} <= exchange_names()


def test_no_io_module_imports_a_venue_or_a_layer_above() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(IO_DIR.glob("*.py"))
        for name in imported_modules(path)
        if name.startswith(ABOVE_IO)
    }
    assert offenders == set()


@pytest.mark.parametrize("path", sorted(p for p in IO_DIR.iterdir() if p.suffix in (".py", ".c", ".pyi")), ids=lambda p: p.name)
def test_no_exchange_is_named_in_the_io_layer(path: Path) -> None:
    """Code, docstrings and comments alike: an example host is ``example.com``, a venue is "the venue"."""
    names = exchange_names()
    found = sorted(
        f"line {number}: {word!r}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for word in re.findall(r"[A-Za-z]+", line)
        if word.lower() in names
    )
    assert found == [], f"{path.name} names an exchange"


def test_importing_the_io_layer_loads_no_venue_module() -> None:
    code = "import sys, ldc.io.ws, ldc.io.rest, ldc.io.governor; print(sorted(m for m in sys.modules if m.startswith('ldc')))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    assert [m for m in ast.literal_eval(loaded) if m.startswith(ABOVE_IO)] == []


def protocol_members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_the_io_layers_rules_are_the_venue_seams_protocols_field_for_field() -> None:
    """ldc.io declares what it reads of a venue; the venue seam's dataclasses carry exactly those fields (mypy
    checks their types where the feeder hands them over)."""
    assert protocol_members(StreamRules) == {f.name for f in dataclasses.fields(StreamProtocol)}
    assert protocol_members(RestRules) == {f.name for f in dataclasses.fields(RestProtocol)}


def fixture(name: str) -> bytes:
    lines = (FIXTURES / name).read_bytes().splitlines()
    return b"\n".join(line for line in lines if not line.startswith(b"#"))


def test_a_venue_classifies_its_small_frames_for_the_socket_layer() -> None:
    """Binance's StreamProtocol: serverShutdown raw or wrapped in the combined stream, answers and refusals to
    our requests are consumed; data, and a payload too broken to read, go to the consumer (None)."""
    classify = binance.STREAM_PROTOCOL.classify
    assert classify(fixture("server_shutdown.txt")) == ("shutdown", "serverShutdown")
    assert classify(fixture("server_shutdown_combined.txt")) == ("shutdown", "serverShutdown")
    assert classify(fixture("subscribe_result.txt")) == ("answer", "")
    assert classify(fixture("list_subscriptions_result.txt")) == ("answer", "")
    kind, detail = classify(fixture("error_wrapped.txt")) or ("", "")
    assert kind == "refused" and "request ID must be an unsigned integer" in detail
    assert classify(fixture("error_flat.txt")) is None  # the documented flat form: the consumer reads it
    assert classify(fixture("spot_combined_depth_update.txt")) is None
    assert classify(b'{"id":1,"res') is None
    assert classify(b'{"id":7}') is None  # neither result nor error: not an answer


def test_a_venue_builds_its_requests_and_urls_for_the_socket_layer() -> None:
    protocol = binance.stream_protocol(binance.exchange("binance.com-futures"))
    assert protocol.control_request("subscribe", ["a@depth"], 3) == b'{"method":"SUBSCRIBE","params":["a@depth"],"id":3}'
    assert protocol.control_request("unsubscribe", ["a@depth"], 4) == b'{"method":"UNSUBSCRIBE","params":["a@depth"],"id":4}'
    assert protocol.control_request("list", [], 5) == b'{"method":"LIST_SUBSCRIPTIONS","id":5}'
    assert protocol.stream_url("ws://127.0.0.1:1/stream", ["a", "b"]) == "ws://127.0.0.1:1/stream?streams=a/b"
    # one message a second below the venue's limit (futures 10/s, spot 5/s), the 24 h cut
    assert (protocol.control_msgs_per_s, binance.STREAM_PROTOCOL.control_msgs_per_s) == (9.0, 4.0)
    assert protocol.connection_lifetime_s == 24 * 3600.0
    assert binance.REST_PROTOCOL.error_of(b'{"code":-1121,"msg":"Invalid symbol."}') == (-1121, "Invalid symbol.")
    assert binance.REST_PROTOCOL.error_of(b"<html>") == (None, "")


def _toy_request(action: ControlAction, streams: Sequence[str], request_id: int) -> bytes:
    return json.dumps({"op": action, "topics": list(streams), "n": request_id}).encode()


def _toy_classify(raw: bytes) -> tuple[FrameKind, str] | None:
    if raw.startswith(b"ack"):
        return "answer", ""
    if raw.startswith(b"nak"):
        return "refused", raw.decode()
    return ("shutdown", "bye") if raw == b"bye" else None


TOY = StreamProtocol(stream_url=lambda endpoint, streams: f"{endpoint}/feed", control_request=_toy_request,
                     classify=_toy_classify, small_frame_bytes=16, max_streams_per_connection=2, url_streams_max=0,
                     subscribe_batch=1, control_msgs_per_s=50.0, connection_lifetime_s=math.inf)  # fmt: skip
TOY_OPTIONS = WsOptions(backoff_initial_s=0.05, backoff_cap_s=0.2, read_poll_s=0.05)


def test_the_pool_speaks_whatever_protocol_the_venue_hands_it() -> None:
    """A made-up venue: its own request JSON, one stream a request, none in the URL, its own answers (small
    frames only: a long frame is data whatever it starts with), no lifetime. The pool sends what the protocol
    builds and consumes what it classifies."""
    long_ack = b"ack, but longer than 16 bytes: data"
    script = b"".join(_server_frame(f) for f in (b"ack 1", b"data-1", b"nak 2", long_ack))
    server, recorder = ScriptedServer(script), Recorder()
    pool = WsPool(f"ws://127.0.0.1:{server.port}", recorder, protocol=TOY, options=TOY_OPTIONS)
    pool.start(["a", "b"])
    try:
        wait_for(lambda: server.received and len([f for f in server.received[0] if f[0] == TEXT]) >= 2, "both requests")
        wait_for(lambda: len(recorder.messages) >= 2, "the data")
    finally:
        pool.stop()
        server.close()
    assert recorder.opens()[0][1:] == (("a", "b"), None)
    assert [raw for _, raw, _ in recorder.messages] == [b"data-1", long_ack]
    requests = [json.loads(payload) for opcode, payload in server.received[0] if opcode == TEXT]
    assert requests == [{"op": "subscribe", "topics": ["a"], "n": 1}, {"op": "subscribe", "topics": ["b"], "n": 2}]
    assert pool.limits.max_streams_per_connection == 2 and pool.limits.rollover_after_s == math.inf


def test_the_venues_shutdown_notice_opens_the_successor() -> None:
    server, recorder = ScriptedServer(_server_frame(b"data-1") + _server_frame(b"bye")), Recorder()
    pool = WsPool(f"ws://127.0.0.1:{server.port}", recorder, protocol=TOY, options=TOY_OPTIONS)
    pool.start(["a"])
    try:
        wait_for(lambda: len(recorder.opens()) >= 2, "the successor opened on the shutdown notice")
    finally:
        pool.stop()  # every successor meets the notice too: a chain until the stop
        server.close()
    first, second = recorder.opens()[:2]
    assert second[2] == first[0]  # it replaces the first
    assert b"bye" not in [raw for _, raw, _ in recorder.messages]
