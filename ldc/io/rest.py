"""REST snapshot client: one urllib3 connection pool per REST host, every request paid for through the host's
weight governor (``ldc.io.governor``).

urllib3 is what ``requests`` is built on, without its per-request machinery (hooks, cookie jar, adapters,
prepared requests): a snapshot GET costs ~0.4 ms of CPU instead of ~1.3 ms here, and that CPU is taken
from the thread that feeds the books (the GIL). Like ``requests`` it keeps connections alive, verifies
TLS, asks for gzip and follows the ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` environment.

What the client reads of a venue's answers beyond HTTP comes from the venue (``protocol``, a ``RestRules``:
``ldc.venues.base.RestProtocol``): the header carrying its count of the weight used, the code and message of
its error bodies, the ``Retry-After`` header. Without one, no weight is read and an error body is quoted.

A request either returns the response body as bytes (the venue parses it) or raises:

- ``RateLimitError`` for 429 / 418 (``retry_after_s`` from ``Retry-After``); the ban is already stored for
  every feeder on the host, and also when the governor itself refuses (status ``STATUS_LOCAL``, not sent);
- ``RestError`` for anything else: a timeout or connection failure (``status`` None), or an HTTP error
  with the venue's error code (``protocol.error_of`` of the body) in ``code`` and its message.

There are no retries here: whether and when to ask again is the sync engine's decision.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from types import TracebackType
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from ldc.errors import RateLimitError, RestError
from ldc.io.governor import RateGovernor

# Timeouts
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 10.0  # per socket read
DEFAULT_GRANT_TIMEOUT_S = 65.0  # waiting for weight: a little over one window
# Limits
POOL_MAXSIZE = 16  # keep-alive connections to the host: as many as snapshots fetched at once
ERROR_BODY_SHOWN = 120  # bytes of a non-JSON error body quoted in the message
RETRY_AFTER_HEADER = "Retry-After"
USER_AGENT = "ldc/0.1 (local depth cache)"


class RestRules(Protocol):
    """What the client asks of the venue: ``ldc.venues.base.RestProtocol`` has these fields, the venue module
    builds the instance (declared here again, read-only, so that ``ldc.io`` imports nothing of the venues)."""

    @property
    def used_weight_header(self) -> str | None: ...

    @property
    def error_of(self) -> Callable[[bytes], tuple[int | None, str]]: ...

    @property
    def retry_after_header(self) -> str: ...


def _no_error_code(body: bytes) -> tuple[int | None, str]:
    return None, ""


@dataclass(frozen=True, slots=True)
class RestResponse:
    """A successful (2xx) answer."""

    status: int
    body: bytes
    used_weight: int | None  # the venue's used-weight header, if it has one and sent it
    recv_time_ns: int  # wall clock when the body had arrived


class RestClient:
    """GET requests against one REST base URL, e.g. ``https://api.example.com`` or the simulator's."""

    def __init__(
        self,
        base_url: str,
        *,
        governor: RateGovernor | None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        grant_timeout_s: float = DEFAULT_GRANT_TIMEOUT_S,
        ca_file: str | None = None,  # CA certificates trusted for https://; None: the system's store
        on_answer: Callable[[int, int | None], None] | None = None,  # (status, used weight) of every answer
        protocol: RestRules | None = None,  # the venue's; None: no used-weight header, error bodies quoted
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._governor = governor
        self._connect_timeout_s, self._read_timeout_s = connect_timeout_s, read_timeout_s
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._grant_timeout_s = grant_timeout_s
        self._pools = _pool_manager(self.base_url, ca_file)
        self._on_answer = on_answer
        self._weight_header = protocol.used_weight_header if protocol is not None else None
        self._retry_after_header = protocol.retry_after_header if protocol is not None else RETRY_AFTER_HEADER
        self._error_of = protocol.error_of if protocol is not None else _no_error_code
        self._pool_lock = threading.Lock()  # the pools are shared by snapshot threads; close() must not race

    def get(
        self, path: str, *, params: Mapping[str, str | int], weight: int, stop: threading.Event | None = None
    ) -> RestResponse:
        """GET ``path`` after reserving ``weight`` with the governor (waiting for it up to the grant timeout)."""
        if self._governor is not None:
            self._governor.acquire(weight, timeout_s=self._grant_timeout_s, stop=stop)
        what = f"GET {path}{_query(params)}"
        url = self.base_url + path + ("?" + urlencode(params) if params else "")
        try:
            response = self._pools.request("GET", url, timeout=self._timeout, retries=False, redirect=False)
            body = response.data
        except NewConnectionError as exc:  # a ConnectTimeoutError subclass: refused, unreachable, DNS
            raise RestError(f"{what}: request failed: {exc}") from exc
        except ConnectTimeoutError as exc:
            raise RestError(f"{what}: no connection within {self._connect_timeout_s:g} s ({type(exc).__name__})") from exc
        except ReadTimeoutError as exc:
            raise RestError(f"{what}: no answer within {self._read_timeout_s:g} s ({type(exc).__name__})") from exc
        except HTTPError as exc:  # a dropped connection, a bad TLS handshake, a malformed answer
            raise RestError(f"{what}: request failed: {exc}") from exc
        recv_time_ns = time.time_ns()
        status = response.status
        used = _int_header(response.headers.get(self._weight_header)) if self._weight_header else None
        retry_after = _float_header(response.headers.get(self._retry_after_header))
        if self._governor is not None:
            self._governor.observe_response(status=status, used_weight=used, retry_after_s=retry_after)
        if self._on_answer is not None:
            self._on_answer(status, used)
        if status >= 300:
            raise _status_error(what, status, self._error_of(body), body, retry_after)
        return RestResponse(status, body, used, recv_time_ns)

    def snapshot(
        self, path: str, *, symbol: str, limit: int, weight: int, stop: threading.Event | None = None
    ) -> RestResponse:
        """A depth snapshot, e.g. ``snapshot("/v1/depth", symbol="BTCUSDT", limit=100, weight=5)``."""
        return self.get(path, params={"symbol": symbol, "limit": limit}, weight=weight, stop=stop)

    def close(self) -> None:
        with self._pool_lock:
            self._pools.clear()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pool_manager(base_url: str, ca_file: str | None = None) -> urllib3.PoolManager:
    """Keep-alive pools for ``base_url``'s host, through the environment's proxy when it names one for it.
    urllib3 verifies the certificate and the host name (CERT_REQUIRED) against ``ca_file`` or the system's store."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    url = urllib3.util.parse_url(base_url)
    proxy = urllib.request.getproxies().get(url.scheme or "http")
    if proxy and not urllib.request.proxy_bypass(url.host or ""):
        return urllib3.ProxyManager(proxy, num_pools=1, maxsize=POOL_MAXSIZE, headers=headers, ca_certs=ca_file)
    return urllib3.PoolManager(num_pools=1, maxsize=POOL_MAXSIZE, headers=headers, ca_certs=ca_file)


def _status_error(what: str, status: int, error: tuple[int | None, str], body: bytes, retry_after_s: float | None) -> RestError:
    code, msg = error
    detail = f"exchange error {code} {msg!r}" if code is not None else f"body {body[:ERROR_BODY_SHOWN]!r}"
    if status in (418, 429):
        wait = "no Retry-After" if retry_after_s is None else f"retry after {retry_after_s:g} s"
        kind = "ip banned" if status == 418 else "rate limited"
        return RateLimitError(
            f"{what}: status {status} {kind}, {wait}, {detail}", status=status, retry_after_s=retry_after_s or 0.0
        )
    return RestError(f"{what}: status {status}, expected 200, {detail}", status=status, code=code)


def _query(params: Mapping[str, str | int]) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float_header(value: str | None) -> float | None:
    # delta-seconds (RFC 9110 10.2.3); the HTTP-date form is not read (RestProtocol.retry_after_header)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
