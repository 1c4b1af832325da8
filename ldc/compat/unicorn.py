"""UNICORN Binance Local Depth Cache's manager over ldc: switch by changing one import.

    from ldc.compat.unicorn import BinanceLocalDepthCacheManager, DepthCacheOutOfSync

    ubldc = BinanceLocalDepthCacheManager(exchange="binance.com", depth_cache_update_interval=100)
    ubldc.create_depthcache("BTCUSDT")
    asks = ubldc.get_asks("BTCUSDT", limit_count=10)   # [[price, qty], ...] floats, lowest first

Behind the manager a real ldc feeder runs, and every read is a shared-memory read (``ldc.Reader``):

- by default the manager starts its own feeder as a child process at the first ``create_depthcache``
  (a group named ``ubldc-<pid>-<n>`` in a private temporary directory) and stops it in ``stop_manager``;
- with ``group="spot"`` (or ``$LDC_COMPAT_GROUP``) it uses the running feeder of that group of the host's
  configuration, and needs the control group's permission only to add or remove markets.

``create_depthcache`` / ``stop_depthcache`` / ``set_resync_request`` / ``set_refresh_request`` are
``ldc.Control`` commands to that feeder. Endpoints: the exchange's, or ``rest_url=`` / ``ws_url=`` (also
``$LDC_COMPAT_REST_URL`` / ``$LDC_COMPAT_WS_URL``, how unchanged UNICORN code is pointed at ``ldc sim``).

Where ldc is stricter than UNICORN:

- A book ldc cannot vouch for raises ``DepthCacheOutOfSync`` instead of returning levels: resyncing,
  stale (no diff for ``stale_after_s``), crossed, or with possible holes in the published depth.
- A dead feeder raises ``FeederDied`` (a ``DepthCacheOutOfSync``, so UNICORN code that catches that still
  works) from every read and from ``is_depth_cache_synchronized``, instead of a book that never changes.
- ``get_asks()`` without ``limit_count`` returns the published top ``depth`` levels (default 100), not
  UNICORN's up to 1,000: ldc publishes only levels it keeps exact.
- An unknown market: ``create_depthcache`` returns False and logs the exchange's answer, and reading it
  raises ``DepthCacheNotFound`` with that answer (UNICORN keeps such a cache out of sync forever).
- ``refresh_interval`` is the group's (``default_refresh_interval``), and a refresh is an audit against a
  new snapshot with no gap for readers; ``set_refresh_request`` starts one now.
- Accepted and without effect (ldc decides these itself): ``high_performance``, ``init_interval``,
  ``init_time_window``, ``auto_data_cleanup_stopped_streams``, the websocket timeouts, ``disable_colorama``,
  ``ubra_manager``, ``warn_on_update``, ``on_restart``, ``set_credentials``. Refused: ``ubdcc_address``
  (UNICORN's cluster), ``get_ubra_manager`` / ``get_ubwa_manager`` (its REST and websocket clients: the
  feeder holds ldc's) and ``print_summary_to_png``.
- ``get_version`` is ldc's version; ``is_update_available`` is always False (nothing asks GitHub).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import re
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ldc import __version__
from ldc.control import CONTROL_DIR_ENV, Control, ControlError, socket_path
from ldc.errors import LdcError, MarketNotFound, OutOfSync, SegmentError, WriterDead
from ldc.shm.layout import Status, segment_path
from ldc.shm.reader import Reader, SnapshotBuffer, _trim
from ldc.venues import binance

__all__ = [
    "BinanceLocalDepthCacheManager",
    "DepthCacheAlreadyStopped",
    "DepthCacheClusterNotReachableError",
    "DepthCacheNotFound",
    "DepthCacheOutOfSync",
    "FeederDied",
]

logger = logging.getLogger("ldc.compat.unicorn")

GROUP_ENV: Final = "LDC_COMPAT_GROUP"
REST_URL_ENV: Final = "LDC_COMPAT_REST_URL"
WS_URL_ENV: Final = "LDC_COMPAT_WS_URL"
# Defaults
DEFAULT_DEPTH: Final = 100  # levels published per side; UNICORN keeps up to 1,000, unvouched
DEFAULT_CAPACITY: Final = 256  # markets the child feeder's segment holds (create_depthcache adds live)
# Timeouts
FEEDER_START_TIMEOUT_S: Final = 30.0  # child feeder: segment and control socket up
FEEDER_STOP_TIMEOUT_S: Final = 15.0
LIVENESS_HEARTBEATS: Final = 4  # a feeder whose heartbeat is older than this many intervals is reported dead
LIVENESS_CHECK_EVERY_S: Final = 0.25  # reads look at the heartbeat at most this often (a clock read otherwise)
POLL_S: Final = 0.02
LOG_TAIL_LINES: Final = 5

_group_numbers = itertools.count(1)


# -- UNICORN's exceptions (unicorn_binance_local_depth_cache.exceptions), same names and messages --------


class _UnicornError(LdcError):
    """UNICORN's market exceptions: its message without a market, and with one; ldc adds why in brackets."""

    without_market = ""
    with_market = ""

    def __init__(self, market: str | None = None, detail: str = "") -> None:
        self.market = market
        self.message = self.without_market if market is None else self.with_market.format(market=market)
        super().__init__(self.message + (f" ({detail})" if detail else ""))


class DepthCacheOutOfSync(_UnicornError):
    """The market's book is not in sync (or its feeder died: ``FeederDied``); try again later."""

    without_market = "The depth_cache is out of sync, please try again later"
    with_market = "The depth_cache for market '{market}' is out of sync, please try again later"


class DepthCacheNotFound(_UnicornError):
    """No depth cache of that market: never created, stopped and removed, or unknown to the exchange."""

    without_market = "The depth_cache does not exist!"
    with_market = "The depth_cache for market '{market}' does not exist!"


class DepthCacheAlreadyStopped(_UnicornError):
    """The market's depth cache was stopped with ``stop_depthcache``."""

    without_market = "The depth_cache is already stopped!"
    with_market = "The depth_cache for market '{market}' is already stopped!"


class DepthCacheClusterNotReachableError(LdcError):
    """UNICORN's cluster client error; ldc has no cluster (``ubdcc_address`` is refused)."""


class FeederDied(DepthCacheOutOfSync):
    """The feeder behind the manager is gone (or hung past the liveness limit): no book will change."""

    def __init__(self, market: str | None, why: str) -> None:
        super().__init__(market, why)
        self.why = why


class BinanceLocalDepthCacheManager:
    """UNICORN's ``BinanceLocalDepthCacheManager`` (2.14) over an ldc feeder; see the module docstring for
    where ldc is stricter. ldc-only keywords: ``group`` (use that running group), ``depth``, ``rest_url``,
    ``ws_url``, ``log_path`` (the child feeder's log)."""

    def __init__(self, exchange: str = "binance.com", default_refresh_interval: int | None = None,
                 depth_cache_update_interval: int | None = None, high_performance: bool = False,
                 auto_data_cleanup_stopped_streams: bool = False, init_interval: float = 4.0,
                 init_time_window: int = 5, on_restart: Any = None, websocket_close_timeout: int = 2,
                 websocket_ping_interval: int = 10, websocket_ping_timeout: int = 20, disable_colorama: bool = False,
                 ubdcc_address: str | None = None, ubdcc_port: int = 80, ubra_manager: Any = None,
                 warn_on_update: bool = True, *, group: str | None = None, depth: int = DEFAULT_DEPTH,
                 rest_url: str | None = None, ws_url: str | None = None, log_path: str | None = None) -> None:  # fmt: skip
        tables = {table.name: table for table in binance.TABLES}  # UNICORN's exchange names are Binance's
        if exchange not in tables:
            raise ValueError(f"exchange expected one of {', '.join(tables)}, found {exchange!r}")
        self._symbol_re = re.compile(tables[exchange].symbol_pattern)
        if ubdcc_address is not None:
            raise DepthCacheClusterNotReachableError(
                f"ubdcc_address {ubdcc_address!r}: ldc has no UNICORN cluster; every process on the host reads "
                "the feeder's shared memory instead"
            )
        self.name = "ldc.compat.unicorn"
        self.version = __version__
        self.exchange = exchange
        self.default_refresh_interval = default_refresh_interval
        self.depth_cache_update_interval = depth_cache_update_interval
        self.depth = depth
        self.stop_request = False
        self._rest_url = rest_url or os.environ.get(REST_URL_ENV)
        self._ws_url = ws_url or os.environ.get(WS_URL_ENV)
        self._attached = group or os.environ.get(GROUP_ENV)  # the host's running group, if any
        self.group = self._attached or f"ubldc-{os.getpid()}-{next(_group_numbers)}"
        self._markets: dict[str, bool] = {}  # lower-case market -> stopped; creation order (UNICORN's list)
        self._ours: set[str] = set()  # markets this manager added to a host group (stop_depthcache removes only those)
        self._errors: dict[str, str] = {}  # market -> the exchange's answer for an unknown market
        self._child: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._log_path = Path(log_path) if log_path else None
        self._reader: Reader | None = None
        self._control: Control | None = None
        self._buf: SnapshotBuffer | None = None
        self._lock = threading.RLock()  # one Reader and buffer, shared by the caller's threads
        self._manage_lock = threading.Lock()  # create / stop, which may start or change the feeder
        self.last_read_update_id = -1  # ldc extension: the update id of the book the last get_asks/get_bids read
        self._next_liveness_check = 0.0
        if self._attached:
            self._attach()

    # -- the feeder behind ------------------------------------------------------------------------

    def _attach(self) -> None:
        try:
            self._reader = Reader(self.group)
        except SegmentError as exc:
            raise DepthCacheNotFound(None, f"group {self.group!r}: {exc}") from None
        found = self._reader.info().exchange
        if found != self.exchange:
            self._reader.close()
            raise ValueError(f"group {self.group!r} feeds exchange {found!r}, expected {self.exchange!r}")
        self._control = Control(self.group)
        self._buf = self._reader.new_buffer()

    def _start_feeder(self, symbols: list[str]) -> None:
        """The child feeder of this manager, with ``symbols``; returns once its segment and socket are up."""
        self._tmp = Path(tempfile.mkdtemp(prefix="ldc-ubldc-"))
        config = self._tmp / "ldc.toml"
        config.write_text(self._config_text(symbols))
        log_path = self._log_path or self._tmp / "feeder.log"
        self._log_path = log_path
        env = dict(os.environ, **{CONTROL_DIR_ENV: str(self._tmp)})  # a socket the caller's own user owns
        with open(log_path, "ab") as log:
            self._child = subprocess.Popen([sys.executable, "-m", "ldc.cli", "feed", str(config), "--group", self.group],
                                           stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
        path = self._tmp / f"{self.group}.sock"
        deadline = time.monotonic() + FEEDER_START_TIMEOUT_S
        while not (path.exists() and Path(segment_path(self.group)).exists()):
            if self._child.poll() is not None:
                raise FeederDied(None, self._child_death())
            if time.monotonic() > deadline:
                raise FeederDied(None, f"feeder of group {self.group!r} not up within {FEEDER_START_TIMEOUT_S:g} s; log {log_path}")
            time.sleep(POLL_S)
        self._reader = Reader(self.group, attach_timeout_s=FEEDER_START_TIMEOUT_S)
        self._control = Control(self.group, path=path)
        self._buf = self._reader.new_buffer()
        logger.info("feeder of group %s started (pid %d) for %s", self.group, self._child.pid, self.exchange)

    def _config_text(self, symbols: list[str]) -> str:
        lines = ["[[group]]", f'name = "{self.group}"', f'exchange = "{self.exchange}"',
                 f"symbols = [{', '.join(repr(s) for s in symbols)}]".replace("'", '"'),
                 f"depth = {self.depth}", f"capacity = {max(DEFAULT_CAPACITY, 2 * len(symbols))}"]  # fmt: skip
        if self.depth_cache_update_interval is not None:
            lines.append(f"update_speed_ms = {int(self.depth_cache_update_interval)}")
        if self.default_refresh_interval is not None:
            lines.append(f"refresh_interval_s = {float(self.default_refresh_interval)}")
        for key, url in (("rest_url", self._rest_url), ("ws_url", self._ws_url)):
            if url:
                lines.append(f'{key} = "{url}"')
        return "\n".join(lines) + "\n"

    def _child_death(self) -> str:
        assert self._child is not None
        tail = ""
        if self._log_path is not None and self._log_path.exists():
            tail = " | ".join(self._log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        return f"feeder of group {self.group!r} (pid {self._child.pid}) exited with status {self._child.returncode}: {tail}"

    def _dead_feeder(self) -> str:
        """Why the feeder is not serving, "" while it is: gone (its lock released, or our child exited), or hung
        with its heartbeat older than LIVENESS_HEARTBEATS intervals."""
        if self._child is not None and self._child.poll() is not None:
            return self._child_death()
        reader = self._reader
        if reader is None:
            return ""
        info = reader.info()
        if not info.alive:
            return f"feeder of group {self.group!r} (pid {info.writer_pid}) is dead: no process holds its segment"
        age_s = (time.time_ns() - info.heartbeat_ns) / 1e9
        limit_s = LIVENESS_HEARTBEATS * info.heartbeat_interval_ms / 1000
        if age_s > limit_s:
            return f"feeder of group {self.group!r} (pid {info.writer_pid}) gave no heartbeat for {age_s:.1f} s (limit {limit_s:g} s)"
        return ""

    # -- creating and stopping --------------------------------------------------------------------

    def create_depthcache(self, markets: str | list[str] | None = None, refresh_interval: int | None = None) -> bool:
        """Create one or more DepthCaches (UNICORN). False when ``markets`` is None or a market is unknown to the
        exchange (its answer is logged, and reading the market raises ``DepthCacheNotFound`` with it)."""
        wanted = _market_list(markets)
        if not wanted:
            return False
        if refresh_interval is not None:
            logger.info("refresh_interval %s: ldc refreshes every market of the group at its own interval", refresh_interval)
        symbols = [m.upper() for m in wanted]
        bad = [s for s in symbols if not self._symbol_re.fullmatch(s)]
        if bad:
            raise ValueError(f"markets expected symbols like 'BTCUSDT', found {bad[0]!r}")
        with self._manage_lock:  # one child feeder however many threads create at once
            if self._reader is None:
                self._start_feeder(symbols)
                self._ours.update(wanted)
            else:
                with self._lock:
                    present = set(self._reader.markets())
                new = [s for s in symbols if s not in present]
                if new:
                    self._ours.update(s.lower() for s in new)
                    self._add(new)
            for market in wanted:
                self._markets[market] = False
        return self._check_unknown(wanted)

    def _add(self, symbols: list[str]) -> None:
        try:
            results = self._ctl().add(*symbols)
        except ControlError as exc:
            raise self._control_failed(None, exc) from None
        for result in results:
            if not result.ok:
                self._errors[result.symbol.lower()] = result.message

    def _check_unknown(self, markets: list[str]) -> bool:
        """Markets the feeder failed (the exchange does not list them): logged with the exchange's answer."""
        reader = self._live_reader()
        ok = True
        for market in markets:
            try:
                with self._lock:
                    status = reader.status(market.upper())
            except MarketNotFound:
                continue
            if status.status & Status.ERROR:
                self._errors[market] = status.message
                logger.error("create_depthcache(%s): %s", market, status.message)
                ok = False
        return ok

    def create_depth_cache(self, markets: str | list[str] | None = None, refresh_interval: int | None = None) -> bool:
        """***Deprecated!*** Please use 'create_depthcache()' instead!"""
        logger.warning("create_depth_cache() is deprecated, please use 'create_depthcache()' instead!")
        return self.create_depthcache(markets=markets, refresh_interval=refresh_interval)

    def stop_depthcache(self, markets: str | list[str] | None = None) -> bool:
        """Stop and delete one or more DepthCaches. In a host's group only the markets this manager added are
        removed from the feeder; the others stay for the host's other readers."""
        wanted = _market_list(markets)
        if not wanted:
            logger.critical("stop_depthcache() - Please provide a market")
            return False
        for market in wanted:
            if market not in self._markets:
                raise DepthCacheNotFound(market=market)
        ours = [m.upper() for m in wanted if m in self._ours]
        if ours:
            try:
                self._ctl().remove(*ours)
            except ControlError as exc:
                raise self._control_failed(None, exc) from None
            self._ours.difference_update(wanted)
        for market in wanted:
            self._markets[market] = True
        return True

    def stop_depth_cache(self, markets: str | list[str] | None = None) -> bool:
        """***Deprecated!*** Please use 'stop_depthcache()' instead!"""
        logger.warning("stop_depth_cache() is deprecated, please use 'stop_depthcache()' instead!")
        return self.stop_depthcache(markets=markets)

    def set_resync_request(self, market: str | None = None, unsubscribe: bool = True) -> bool:
        """Set a DepthCache out of sync and sync it again from a new snapshot (``unsubscribe`` has no effect:
        ldc keeps the stream and joins the new snapshot to it)."""
        if market is None:
            raise ValueError("Parameter 'market' is missing!")
        self._command(market.lower(), "resync")
        return True

    def set_refresh_request(self, markets: str | list[str] | None = None) -> bool:
        """Refresh DepthCaches now: each book is audited against a new snapshot and stays in sync meanwhile."""
        wanted = _market_list(markets)
        if not wanted:
            logger.critical("set_refresh_request() - Please provide a market")
            return False
        for market in wanted:
            self._command(market, "refresh")
        return True

    def _command(self, market: str, command: str) -> str:
        self._known(market)
        try:
            return self._ctl().call(command, [market.upper()])["result"]  # type: ignore[no-any-return]
        except ControlError as exc:
            raise self._control_failed(market, exc) from None

    def _ctl(self) -> Control:
        if self._control is None:
            raise DepthCacheNotFound(None, "no depth cache created yet")
        return self._control

    def _control_failed(self, market: str | None, exc: ControlError) -> LdcError:
        dead = self._dead_feeder()
        if dead:
            return FeederDied(market, dead)
        if market is not None and (market in self._errors or "is not running" in str(exc)):
            return DepthCacheNotFound(market, self._errors.get(market) or str(exc))
        return exc

    def stop_manager(self) -> bool:
        """Stop the manager: its child feeder (if it started one) stops and its segment is marked stopped;
        a host's feeder keeps running."""
        self.stop_request = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(FEEDER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child is not None:
            from ldc.demo import _remove_segments  # the child's segment goes with it, as the demo's do

            _remove_segments([self.group])
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return True

    def __enter__(self) -> BinanceLocalDepthCacheManager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_manager()
        if exc_type:
            logger.critical("An exception occurred: %s - %s - %s", exc_type, exc, tb)

    def __del__(self) -> None:
        try:
            if self._child is not None:
                self.stop_manager()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass

    # -- reads ------------------------------------------------------------------------------------

    def get_asks(self, market: str | None = None, limit_count: int | None = None,
                 threshold_volume: float | None = None) -> list[list[float]]:  # fmt: skip
        """Asks ``[[price, quantity], ...]`` lowest first, trimmed like UNICORN (``limit_count``: the first N;
        ``threshold_volume``: while the running price * quantity stays within it, the first always)."""
        with self._lock:
            buf = self._read(market)
            return _levels(buf.asks, buf.n_asks, limit_count, threshold_volume)

    def get_bids(self, market: str | None = None, limit_count: int | None = None,
                 threshold_volume: float | None = None) -> list[list[float]]:  # fmt: skip
        """Bids ``[[price, quantity], ...]`` highest first, trimmed like ``get_asks``."""
        with self._lock:
            buf = self._read(market)
            return _levels(buf.bids, buf.n_bids, limit_count, threshold_volume)

    def _read(self, market: str | None) -> SnapshotBuffer:
        if market is None:
            raise DepthCacheNotFound(market=None)
        market = market.lower()
        stopped = self._markets.get(market)
        if stopped is None and self._attached is None:
            raise DepthCacheNotFound(market=market)
        if stopped:
            raise DepthCacheAlreadyStopped(market=market)
        reader, buf = self._reader, self._buf
        if reader is None or buf is None:
            raise DepthCacheNotFound(market, "no depth cache created yet")
        try:
            buf = reader.read_into(market.upper(), buf)
        except MarketNotFound:
            raise DepthCacheNotFound(market, self._errors.get(market, "")) from None
        except OutOfSync as exc:
            raise self._out_of_sync(market, str(exc)) from None
        except SegmentError as exc:  # WriterDead, a replaced segment...
            raise FeederDied(market, self._dead_feeder() or str(exc)) from None
        now = time.monotonic()
        if now >= self._next_liveness_check:  # a hung feeder still shows its last book as synced
            self._next_liveness_check = now + LIVENESS_CHECK_EVERY_S
            dead = self._dead_feeder()
            if dead:
                raise FeederDied(market, dead)
        self.last_read_update_id = buf.update_id
        return buf

    def _out_of_sync(self, market: str, detail: str) -> DepthCacheOutOfSync | DepthCacheNotFound:
        if market in self._errors:
            return DepthCacheNotFound(market, self._errors[market])
        dead = self._dead_feeder()
        if dead:
            return FeederDied(market, dead)
        if "ERROR" in detail:
            return DepthCacheNotFound(market, detail)
        return DepthCacheOutOfSync(market, detail)

    def is_depth_cache_synchronized(self, market: str | None = None) -> bool:
        """True while the market's book is in sync. Raises ``DepthCacheNotFound`` for a market not created
        (or unknown to the exchange), and ``FeederDied`` when its feeder is gone: never False forever."""
        if market is None:
            raise DepthCacheNotFound(market=None)
        market = market.lower()
        reader = self._known(market)
        try:
            with self._lock:
                status = reader.status(market.upper())
        except MarketNotFound:
            raise DepthCacheNotFound(market, self._errors.get(market, "")) from None
        except WriterDead as exc:
            raise FeederDied(market, self._dead_feeder() or str(exc)) from None
        if status.status & Status.ERROR:
            raise DepthCacheNotFound(market, status.message)
        dead = self._dead_feeder()
        if dead:
            raise FeederDied(market, dead)
        return status.in_sync

    def _known(self, market: str) -> Reader:
        if self._markets.get(market) is None and self._attached is None:
            raise DepthCacheNotFound(market=market)
        return self._live_reader()

    def _live_reader(self) -> Reader:
        if self._reader is None:
            raise DepthCacheNotFound(None, "no depth cache created yet")
        return self._reader

    def get_last_update_time(self, market: str | None = None) -> int | None:
        """Unix time in ms when the feeder received the market's last published update (None: none yet)."""
        if market is None:
            raise DepthCacheNotFound(market=None)
        reader = self._known(market.lower())
        try:
            with self._lock:
                recv_ns = reader.status(market.upper()).recv_time_ns
        except MarketNotFound:
            raise DepthCacheNotFound(market.lower()) from None
        return recv_ns // 1_000_000 if recv_ns else None

    def get_restart_count(self, market: str | None = None) -> int:
        """Resyncs of the market's book since its slot was made (UNICORN counts its stream's restarts)."""
        if market is None:
            raise DepthCacheNotFound(market=None)
        reader = self._known(market.lower())
        try:
            with self._lock:
                return reader.status(market.upper()).counters["resyncs"]
        except MarketNotFound:
            raise DepthCacheNotFound(market.lower()) from None

    def get_last_restart_time(self, market: str | None = None) -> float | None:
        """None: ldc's connections are not restarted per market (a resync is counted: ``get_restart_count``)."""
        if market is None:
            raise DepthCacheNotFound(market=None)
        self._known(market.lower())
        return None

    def set_credentials(self, api_key: str | None = None, api_secret: str | None = None) -> None:
        """Accepted and unused: depth data is public, the feeder sends no key."""

    def print_summary_to_png(self, *args: Any, **kwargs: Any) -> bool:
        raise LdcError("print_summary_to_png: ldc prints text only (print_summary, or `ldc status`)")

    def get_ubra_manager(self) -> Any:
        raise LdcError("ldc has no UNICORN REST manager: the feeder makes every REST request (see ldc.io.rest)")

    def get_ubwa_manager(self) -> Any:
        raise LdcError("ldc has no UNICORN websocket manager: the feeder holds the connections (see ldc.io.ws)")

    def is_update_available(self) -> bool:
        """Always False: ldc never asks GitHub (nothing leaves the host but the feeder's exchange traffic)."""
        return False

    def get_latest_version(self) -> str | None:
        return None

    def get_list_of_depthcaches(self) -> list[str]:
        """The markets created and not stopped, lower case, in creation order (as UNICORN)."""
        return [market for market, stopped in self._markets.items() if not stopped]

    def get_list_of_depth_caches(self) -> list[str]:
        """***Deprecated!*** Please use 'get_list_of_depthcaches()' instead!"""
        logger.warning("get_list_of_depth_caches() is deprecated, please use 'get_list_of_depthcaches()' instead!")
        return self.get_list_of_depthcaches()

    def is_stop_request(self, market: str | None = None) -> bool:
        if market is None:
            return self.stop_request
        return self.stop_request or bool(self._markets.get(market.lower(), False))

    # -- about ------------------------------------------------------------------------------------

    def get_version(self) -> str:
        """ldc's version (this is ldc's manager, not UNICORN's)."""
        return self.version

    def get_user_agent(self) -> str:
        import platform

        return f"{self.name}_{self.version}-python_{platform.python_version()}"

    def print_summary(self, add_string: str | None = None, footer: str | None = None, title: str | None = None) -> None:
        """Print an overview of the feeder and every DepthCache (one line each)."""
        print(self.summary(add_string=add_string, footer=footer, title=title))

    def summary(self, add_string: str | None = None, footer: str | None = None, title: str | None = None) -> str:
        """``print_summary``'s text."""
        title = title or self.get_user_agent()
        lines = [f"{title}", f" exchange={self.exchange} group={self.group} depth={self.depth} "
                 f"update_interval_ms={self.depth_cache_update_interval}"]  # fmt: skip
        with self._lock:
            self._summary_lines(lines)
        if add_string is not None:
            lines.append(f" {add_string}")
        lines.append(footer or f"Powered by {self.get_user_agent()}")
        return "\n".join(lines)

    def _summary_lines(self, lines: list[str]) -> None:
        reader = self._reader
        if reader is not None:
            info = reader.info()
            control = self._control.path if self._control is not None else "-"
            lines.append(f" feeder pid={info.writer_pid} alive={info.alive} markets={info.market_count} control={control}")
            for market in self.get_list_of_depthcaches():
                try:
                    st = reader.status(market.upper())
                    lines.append(f"  {market:<14} in_sync={st.in_sync!s:<5} update_id={st.update_id} "
                                 f"bids={st.n_bids} asks={st.n_asks} {st.message}")  # fmt: skip
                except LdcError as exc:
                    lines.append(f"  {market:<14} {exc}")


def _market_list(markets: str | Iterable[str] | None) -> list[str]:
    if markets is None:
        return []
    items = [markets] if isinstance(markets, str) else list(markets)
    return [str(m).lower() for m in items]


def _levels(side: Any, n: int, limit_count: int | None, threshold_volume: float | None) -> list[list[float]]:
    """UNICORN's shapes: a list of [price, quantity] float lists. Without a threshold only the rows asked
    for are converted (the hot case, ``limit_count=10`` of a deep book)."""
    if threshold_volume is None:
        rows: list[list[float]] = side[:n][:limit_count].tolist()  # list slicing's rules, as UNICORN's
        return rows
    return _trim(side[:n].tolist(), limit_count, threshold_volume)
