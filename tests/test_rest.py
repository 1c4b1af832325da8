"""ldc.io.rest against a scripted HTTP server on 127.0.0.1 speaking Binance's REST error conventions
(rest-api.md: error JSON {"code","msg"}, 429 / 418 with Retry-After, X-MBX-USED-WEIGHT-1M)."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ldc.errors import RateLimitError, RestError
from ldc.io.governor import STATUS_LOCAL, RateGovernor, unlink_governor
from ldc.io.rest import RestClient

SNAPSHOT = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'


@dataclass
class Reply:
    status: int = 200
    body: bytes = SNAPSHOT
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class ScriptedServer:
    """Answers each GET with the next scripted reply (the last one repeats) and records the paths."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.paths: list[str] = []
        self.times: list[float] = []
        self.ports: set[int] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.paths.append(self.path)
                outer.times.append(time.monotonic())
                outer.ports.add(self.client_address[1])
                reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def governor() -> Iterator[RateGovernor]:
    key = f"test-rest-{uuid.uuid4().hex[:12]}"
    gov = RateGovernor(key, budget=100)
    yield gov
    gov.close()
    unlink_governor(key)


def test_snapshot_returns_the_body_and_the_exchange_weight(server: ScriptedServer, governor: RateGovernor) -> None:
    server.replies = [Reply(headers={"X-MBX-USED-WEIGHT-1M": "42"})]
    with RestClient(server.url, governor=governor) as client:
        response = client.snapshot("/api/v3/depth", symbol="BNBBTC", limit=100, weight=5)
    assert (response.status, response.body, response.used_weight) == (200, SNAPSHOT, 42)
    assert server.paths == ["/api/v3/depth?symbol=BNBBTC&limit=100"]
    assert governor.used() == 42  # the exchange's count won over our 5


def test_requests_reuse_one_connection(server: ScriptedServer) -> None:
    with RestClient(server.url, governor=None) as client:
        for _ in range(5):
            client.snapshot("/api/v3/depth", symbol="BNBBTC", limit=5, weight=5)
    assert len(server.paths) == 5
    assert len(server.ports) == 1


def test_binance_error_json_becomes_rest_error_with_code(server: ScriptedServer) -> None:
    server.replies = [Reply(status=400, body=b'{"code":-1121,"msg":"Invalid symbol."}')]
    with RestClient(server.url, governor=None) as client, pytest.raises(RestError) as info:
        client.snapshot("/api/v3/depth", symbol="NOPE", limit=100, weight=5)
    assert (info.value.status, info.value.code) == (400, -1121)
    assert str(info.value) == (
        "GET /api/v3/depth?symbol=NOPE&limit=100: status 400, expected 200, exchange error -1121 'Invalid symbol.'"
    )


def test_non_json_server_error_quotes_the_body(server: ScriptedServer) -> None:
    server.replies = [Reply(status=502, body=b"<html>bad gateway</html>")]
    with RestClient(server.url, governor=None) as client, pytest.raises(RestError) as info:
        client.get("/api/v3/depth", params={"symbol": "BTCUSDT"}, weight=1)
    assert (info.value.status, info.value.code) == (502, None)
    assert str(info.value).endswith("status 502, expected 200, body b'<html>bad gateway</html>'")


def test_read_timeout_is_a_rest_error_without_status(server: ScriptedServer) -> None:
    server.replies = [Reply(delay_s=1.5)]
    with RestClient(server.url, governor=None, read_timeout_s=0.2) as client, pytest.raises(RestError) as info:
        client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)
    assert info.value.status is None
    assert "no answer within 0.2 s" in str(info.value)


def test_refused_connection_is_a_rest_error() -> None:
    with RestClient("http://127.0.0.1:9", governor=None) as client, pytest.raises(RestError, match="request failed"):
        client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)


def test_429_raises_with_retry_after_and_bans_the_host(server: ScriptedServer, governor: RateGovernor) -> None:
    server.replies = [Reply(status=429, body=b'{"code":-1003,"msg":"Too many requests."}', headers={"Retry-After": "30"})]
    with RestClient(server.url, governor=governor, grant_timeout_s=1) as client:
        with pytest.raises(RateLimitError) as info:
            client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)
        assert (info.value.status, info.value.retry_after_s) == (429, 30.0)
        assert "status 429 rate limited, retry after 30 s, exchange error -1003" in str(info.value)
        with pytest.raises(RateLimitError) as refused:
            client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)
    assert refused.value.status == STATUS_LOCAL
    assert len(server.paths) == 1  # the second request never left the host


def test_418_is_an_ip_ban(server: ScriptedServer, governor: RateGovernor) -> None:
    server.replies = [Reply(status=418, body=b'{"code":-1003,"msg":"Way too many requests; IP banned."}', headers={"Retry-After": "120"})]
    with RestClient(server.url, governor=governor) as client, pytest.raises(RateLimitError, match="status 418 ip banned"):
        client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)
    assert governor.ledger().ban_status == 418


def test_429_storm_sends_nothing_more_until_retry_after(server: ScriptedServer, governor: RateGovernor) -> None:
    server.replies = [Reply(status=429, headers={"Retry-After": "1"}), Reply(status=429, headers={"Retry-After": "1"}), Reply()]
    with RestClient(server.url, governor=governor, grant_timeout_s=5) as client:
        while True:
            try:
                client.snapshot("/api/v3/depth", symbol="BTCUSDT", limit=5, weight=5)
                break
            except RateLimitError as exc:
                assert exc.status == 429
    assert len(server.paths) == 3  # each retry waited for the ban to pass, none was refused locally
    assert server.times[1] - server.times[0] >= 0.95 and server.times[2] - server.times[1] >= 0.95
