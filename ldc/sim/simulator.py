"""The in-process simulator: serves on a background thread, for tests, benchmarks and ``ldc demo``.

    with Simulator(SimConfig(spot_symbols=("BTCUSDT",))) as sim:
        requests.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT"})
        websocket.create_connection(f"{sim.ws_url}/ws/btcusdt@depth@100ms")
        sim.add_fault(FaultRule(FaultKind.DROP, count=1))
        sim.truth("BTCUSDT", update_id=...)

OKX and Bybit (``ldc.sim.families``) run on their own ports when ``SimConfig.okx_symbols``,
``bybit_*_symbols`` or ``venue_replay`` name markets:

    with Simulator(SimConfig(okx_symbols=("BTC-USDT",), bybit_linear_symbols=("BTCUSDT",))) as sim:
        sim.okx_rest_url, sim.okx_ws_url          # http://127.0.0.1:P, ws://127.0.0.1:P/ws/v5/public
        sim.bybit_rest_url, sim.bybit_ws_url("linear")   # ws://127.0.0.1:Q/v5/public/linear
        sim.venue_truth("okx", "BTC-USDT", update_id=seq_id, limit=25)
        sim.venue_truth("bybit", "BTCUSDT", category="linear", update_id=u, depth=50)
        sim.add_venue_fault("bybit", venue_fault_from_cli("reset:count=1,symbol=BTCUSDT"))

With ``SimConfig(tls=True)`` every port speaks TLS: the URLs are ``https://`` / ``wss://`` and ``sim.ca_file`` is
the CA to trust (``ssl.create_default_context(cafile=sim.ca_file)``), made at start and removed at stop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import tempfile
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Callable, TypeVar

from ldc.errors import SimError
from ldc.sim.config import SimConfig
from ldc.sim.families import VenueFamilies
from ldc.sim.faults import FaultRule
from ldc.sim.server import HOST, ServerState
from ldc.sim.tls import SimTls, make_sim_tls, schemes
from ldc.sim.venue_faults import VenueFault

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
T = TypeVar("T")


class Simulator:
    """A running simulator. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state: ServerState | None = None
        self._stop: asyncio.Event | None = None
        self._families: VenueFamilies | None = None
        self._tls: SimTls | None = None
        self.port = 0

    # -- URLs

    def _rest_base(self, port: int) -> str:
        return f"{schemes(self.config.tls)[0]}://{HOST}:{port}"

    def _ws_base(self, port: int) -> str:
        return f"{schemes(self.config.tls)[1]}://{HOST}:{port}"

    @property
    def ca_file(self) -> str | None:
        """The CA file a client trusts with ``SimConfig(tls=True)`` (None without TLS); it lives while the simulator runs."""
        return self._tls.ca_file if self._tls is not None else None

    @property
    def rest_url(self) -> str:
        return self._rest_base(self.port)

    @property
    def ws_url(self) -> str:
        """Base for spot (``/ws``, ``/stream``); root paths also find futures-only symbols."""
        return self._ws_base(self.port)

    @property
    def usdm_ws_url(self) -> str:
        """Base for USD-M (append ``/ws``, ``/stream``, ``/public/ws``, ``/public/stream``)."""
        return f"{self._ws_base(self.port)}/usdm"

    @property
    def coinm_ws_url(self) -> str:
        return f"{self._ws_base(self.port)}/coinm"

    def urls(self) -> dict[str, Any]:
        """What ``ldc sim`` prints as its first line."""
        markets: dict[str, list[str]] = {"spot": [], "usdm": [], "coinm": []}
        for family, symbol in self.state.exchange.markets:
            markets[family.value].append(symbol)
        venues = self._families.urls() if self._families is not None else {}
        tls = {"ca_file": self.ca_file} if self.ca_file is not None else {}
        return {"rest": self.rest_url, "ws": self.ws_url, "ws_usdm": self.usdm_ws_url, "ws_coinm": self.coinm_ws_url, **tls, "markets": markets, **venues}

    @property
    def families(self) -> VenueFamilies:
        if self._families is None:
            raise SimError("simulator is not running, call start() first")
        return self._families

    @property
    def okx_rest_url(self) -> str:
        return self._rest_base(self.families.server("okx").port)

    @property
    def okx_ws_url(self) -> str:
        return f"{self._ws_base(self.families.server('okx').port)}/ws/v5/public"

    @property
    def bybit_rest_url(self) -> str:
        return self._rest_base(self.families.server("bybit").port)

    def bybit_ws_url(self, category: str) -> str:
        """``category`` is spot, linear or inverse."""
        return f"{self._ws_base(self.families.server('bybit').port)}/v5/public/{category}"

    @property
    def htx_rest_url(self) -> str:
        return self._rest_base(self.families.server("htx").port)

    @property
    def kraken_rest_url(self) -> str:
        return self._rest_base(self.families.server("kraken").port)

    @property
    def kraken_ws_url(self) -> str:
        return f"{self._ws_base(self.families.server('kraken').port)}/v2"

    @property
    def coinbase_rest_url(self) -> str:
        return self._rest_base(self.families.server("coinbase").port)

    @property
    def coinbase_ws_url(self) -> str:
        return self._ws_base(self.families.server("coinbase").port)

    def htx_ws_url(self, path: str = "/feed") -> str:
        """``/feed`` (mbp and its req) or ``/ws`` (depth.step0)."""
        return f"{self._ws_base(self.families.server('htx').port)}{path}"

    @property
    def state(self) -> ServerState:
        if self._state is None:
            raise SimError("simulator is not running, call start() first")
        return self._state

    # -- life cycle

    def start(self) -> Simulator:
        if self._thread is not None:
            raise SimError("simulator already started")
        ready: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="ldc-sim", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, ready: Future[int]) -> None:
        try:
            asyncio.run(self.serve(ready))
        except BaseException as exc:  # surfaced to start() when it happens before ready
            if not ready.done():
                ready.set_exception(exc)
            else:
                raise

    async def serve(self, ready: Future[int] | None = None, *, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (or the task is cancelled). Used by the thread and by ``ldc sim``."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._state = state = ServerState(self.config)
        families = self._families = VenueFamilies(self.config)
        tls = self._start_tls()
        try:
            await self._serve(state, families, tls, ready, on_ready)
        finally:
            if self._tls is not None:
                shutil.rmtree(self._tls.directory, ignore_errors=True)

    async def _serve(self, state: ServerState, families: VenueFamilies, tls: ssl.SSLContext | None,
                     ready: Future[int] | None, on_ready: Callable[[], None] | None) -> None:  # fmt: skip
        assert self._stop is not None
        server = await asyncio.start_server(state.handle, HOST, self.config.port, limit=64 * 1024, ssl=tls)
        self.port = server.sockets[0].getsockname()[1]
        await families.start(tls)
        tasks = [asyncio.create_task(state.model_loop()), asyncio.create_task(state.housekeeping_loop())]
        if ready is not None:
            ready.set_result(self.port)
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
        finally:
            server.close()
            await families.stop()
            await state.close_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_tls(self) -> ssl.SSLContext | None:
        """With ``config.tls``: a new CA and server certificate (ldc.sim.tls) and the context every port serves."""
        if not self.config.tls:
            return None
        directory = tempfile.mkdtemp(prefix="ldc-sim-tls-")
        os.chmod(directory, 0o755)  # a feeder running as another user reads ca.pem; server.key stays 0600
        try:
            self._tls = make_sim_tls(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return self._tls.server_context()

    def request_stop(self) -> None:
        """Thread-safe and signal-safe: ask the serving loop to finish."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- controls (thread-safe: they run on the simulator's loop)

    def call(self, fn: Callable[[ServerState], T]) -> T:
        """Run ``fn(state)`` on the simulator's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise SimError("simulator is not running, call start() first")

        async def run() -> T:
            return fn(self.state)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=START_TIMEOUT_S)

    def add_fault(self, rule: FaultRule) -> None:
        self.call(lambda state: state.apply_fault(rule))

    def clear_faults(self) -> None:
        self.call(lambda state: state.faults.clear())

    def truth(self, symbol: str, *, update_id: int | None = None, limit: int | None = None, family: str | None = None) -> dict[str, object] | None:
        def find(state: ServerState) -> dict[str, object] | None:
            for (fam, name), market in state.exchange.markets.items():
                if name == symbol and (family is None or fam.value == family):
                    return market.truth(update_id, limit)
            raise SimError(f"unknown symbol {symbol!r}, expected one of {sorted(n for _, n in state.exchange.markets)}")

        return self.call(find)

    def stats(self) -> dict[str, Any]:
        return self.call(lambda state: state.stats())

    # -- OKX and Bybit (thread-safe as above)

    def add_venue_fault(self, venue: str, rule: VenueFault) -> None:
        """``venue`` is "okx", "bybit", "htx", "kraken" or "coinbase"."""
        self.call(lambda _: self.families.apply_fault(venue, rule))

    def clear_venue_faults(self, venue: str) -> None:
        self.call(lambda _: self.families.server(venue).faults.clear())

    def venue_truth(
        self,
        venue: str,
        symbol: str,
        *,
        update_id: int | None = None,
        limit: int | None = None,
        category: str | None = None,
        depth: int | None = None,
        conn: int | None = None,
        port: int | None = None,
    ) -> dict[str, object]:
        """The ``/_sim/book`` answer of that venue; :class:`SimError` says why there is none. ``category``
        and ``depth`` are Bybit's (depth also Kraken's), ``conn`` / ``port`` Coinbase's (its numbers are per
        connection)."""
        given = (("symbol", symbol), ("update_id", update_id), ("limit", limit), ("category", category), ("depth", depth), ("conn", conn), ("port", port))
        query = {k: str(v) for k, v in given if v is not None}
        found = self.call(lambda _: self.families.server(venue).dialect.truth(query))
        if isinstance(found, str):
            raise SimError(found)
        return found

    def venue_stats(self, venue: str) -> dict[str, object]:
        return self.call(lambda _: self.families.server(venue).stats())
