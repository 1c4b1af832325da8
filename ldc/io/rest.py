"""REST snapshot client: one ``requests.Session`` per REST host, every request paid for through the host's
weight governor (``ldc.io.governor``).

A request either returns the response body as bytes (the venue parses it) or raises:

- ``RateLimitError`` for 429 / 418 (``retry_after_s`` from ``Retry-After``); the ban is already stored for
  every feeder on the host, and also when the governor itself refuses (status ``STATUS_LOCAL``, not sent);
- ``RestError`` for anything else: a timeout or connection failure (``status`` None), or an HTTP error
  with Binance's ``{"code": -1121, "msg": "Invalid symbol."}`` in ``code`` and the message.

There are no retries here: whether and when to ask again is the sync engine's decision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import orjson
import requests
from requests.adapters import HTTPAdapter

from ldc.errors import RateLimitError, RestError
from ldc.io.governor import RateGovernor

# Timeouts
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 10.0  # per socket read, as requests counts it
DEFAULT_GRANT_TIMEOUT_S = 65.0  # waiting for weight: a little over one window
# Limits
POOL_MAXSIZE = 16  # keep-alive connections to the host: as many as snapshots fetched at once
ERROR_BODY_SHOWN = 120  # bytes of a non-JSON error body quoted in the message
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
RETRY_AFTER_HEADER = "Retry-After"
USER_AGENT = "ldc/0.1 (local depth cache)"


@dataclass(frozen=True, slots=True)
class RestResponse:
    """A successful (2xx) answer."""

    status: int
    body: bytes
    used_weight: int | None  # the exchange's X-MBX-USED-WEIGHT-1M, if sent
    recv_time_ns: int  # wall clock when the body had arrived


class RestClient:
    """GET requests against one REST base URL, e.g. ``https://api.binance.com`` or the simulator's."""

    def __init__(
        self,
        base_url: str,
        *,
        governor: RateGovernor | None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        grant_timeout_s: float = DEFAULT_GRANT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._governor = governor
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._grant_timeout_s = grant_timeout_s
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_MAXSIZE, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session_lock = threading.Lock()  # Session is shared by snapshot threads; close() must not race

    def get(
        self, path: str, *, params: Mapping[str, str | int], weight: int, stop: threading.Event | None = None
    ) -> RestResponse:
        """GET ``path`` after reserving ``weight`` with the governor (waiting for it up to the grant timeout)."""
        if self._governor is not None:
            self._governor.acquire(weight, timeout_s=self._grant_timeout_s, stop=stop)
        what = f"GET {path}{_query(params)}"
        try:
            response = self._session.get(self.base_url + path, params=dict(params), timeout=self._timeout)
            body = response.content
        except requests.Timeout as exc:
            raise RestError(f"{what}: no answer within {self._timeout[1]:g} s ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise RestError(f"{what}: request failed: {exc}") from exc
        recv_time_ns = time.time_ns()
        used = _int_header(response.headers.get(USED_WEIGHT_HEADER))
        retry_after = _float_header(response.headers.get(RETRY_AFTER_HEADER))
        if self._governor is not None:
            self._governor.observe_response(status=response.status_code, used_weight=used, retry_after_s=retry_after)
        if response.status_code >= 300:
            raise _status_error(what, response.status_code, body, retry_after)
        return RestResponse(response.status_code, body, used, recv_time_ns)

    def snapshot(
        self, path: str, *, symbol: str, limit: int, weight: int, stop: threading.Event | None = None
    ) -> RestResponse:
        """A depth snapshot, e.g. ``snapshot("/api/v3/depth", symbol="BTCUSDT", limit=100, weight=5)``."""
        return self.get(path, params={"symbol": symbol, "limit": limit}, weight=weight, stop=stop)

    def close(self) -> None:
        with self._session_lock:
            self._session.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _status_error(what: str, status: int, body: bytes, retry_after_s: float | None) -> RestError:
    code, msg = _binance_error(body)
    detail = f"exchange error {code} {msg!r}" if code is not None else f"body {body[:ERROR_BODY_SHOWN]!r}"
    if status in (418, 429):
        wait = "no Retry-After" if retry_after_s is None else f"retry after {retry_after_s:g} s"
        kind = "ip banned" if status == 418 else "rate limited"
        return RateLimitError(
            f"{what}: status {status} {kind}, {wait}, {detail}", status=status, retry_after_s=retry_after_s or 0.0
        )
    return RestError(f"{what}: status {status}, expected 200, {detail}", status=status, code=code)


def _binance_error(body: bytes) -> tuple[int | None, str]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    if isinstance(doc, dict) and type(doc.get("code")) is int:
        return doc["code"], str(doc.get("msg", ""))
    return None, ""


def _query(params: Mapping[str, str | int]) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float_header(value: str | None) -> float | None:
    # Binance sends delta-seconds; an HTTP-date form is not used by it and is ignored
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
