"""Control of a running feeder from code: ``ldc.Control(group)`` and ``ldc ctl GROUP ...``.

The feeder of group G owns a Unix stream socket, ``/run/ldc/G.sock`` (directory: ``$LDC_CONTROL_DIR``; a
feeder that may not write /run uses ``$XDG_RUNTIME_DIR/ldc``, where ``ldc.Control`` also looks).
The socket is mode 0660, owned by the feeder's user and by the *control* group (``$LDC_CONTROL_GROUP``,
default ``ldc-control``): a group distinct from the readers' (the segment's group, mode 0640), so that
reading a book never grants the right to change a feeder. The kernel refuses everyone else's connect();
the server checks the peer's credentials (SO_PEERCRED) again and logs whom it refused. Without the
control group on the host the socket is 0600: the feeder's own user (and root) only.

Wire protocol: one JSON object per line each way. Request ``{"command": C, "symbols": [...]}``; reply
``{"ok": bool, "result": ..., "error": "..."}``. Commands:

    list                  every market: symbol, state, in_sync, error
    add SYMBOL...         add markets (checked with the exchange first; an unknown symbol's slot and
                          the reply carry the exchange's answer)
    remove SYMBOL...      remove markets
    resync SYMBOL         discard the book and sync it again from a new snapshot
    refresh SYMBOL        audit the book against a new snapshot now (no gap for readers)

add and remove run on the feeder's jobs thread, one at a time with SIGHUP reloads: whichever comes last
sets the running set. Neither is written back to the configuration file: after a restart the file wins.
"""

from __future__ import annotations

import builtins
import errno
import grp
import json
import logging
import os
import pwd
import secrets
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ldc.errors import LdcError, RestError

if TYPE_CHECKING:
    from ldc.feeder import Feeder, Market

log = logging.getLogger("ldc.control")

# Where and who
CONTROL_DIR_ENV: Final = "LDC_CONTROL_DIR"
DEFAULT_CONTROL_DIR: Final = "/run/ldc"
CONTROL_GROUP_ENV: Final = "LDC_CONTROL_GROUP"
DEFAULT_CONTROL_GROUP: Final = "ldc-control"
SOCKET_MODE: Final = 0o660  # owner and control group; nobody else may connect()
OWNER_ONLY_MODE: Final = 0o600  # no control group on the host
DIR_MODE: Final = 0o755  # control-group members must reach the socket inside
# Limits
MAX_LINE_BYTES: Final = 64 * 1024  # one request or reply
CLIENT_IDLE_TIMEOUT_S: Final = 5.0  # a connected client that sends nothing is dropped after this
ACCEPT_POLL_S: Final = 0.2  # how often the server thread looks at its stop flag
DEFAULT_CALL_TIMEOUT_S: Final = 60.0  # add checks symbols with the exchange (REST, paced by the governor)
MAX_SYMBOLS_PER_COMMAND: Final = 1024
CONNECT_REFUSED_RETRY_S: Final = 0.5  # a refused connect is tried again this long (a feeder just starting)
CONNECT_RETRY_POLL_S: Final = 0.01
STAGING_NAME_BYTES: Final = 4  # the socket's private name before it is linked to its path (AF_UNIX: 108 bytes)
_PEERCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}

COMMANDS: Final = ("list", "add", "remove", "resync", "refresh")


class ControlError(LdcError):
    """A control command could not be delivered, was refused, or failed; the message says which."""


@dataclass(frozen=True)
class SymbolResult:
    """One symbol's outcome of ``add`` / ``remove``: ``message`` is the reason when not ``ok``."""

    symbol: str
    ok: bool
    message: str


@dataclass(frozen=True)
class MarketInfo:
    """One running market as the feeder sees it (``list``)."""

    symbol: str
    state: str  # BookSync state, lower case ("synced", "buffering", ...), or "failed"
    in_sync: bool
    error: str  # a market-level failure (an unknown symbol's exchange answer), else ""


class Controlled(Protocol):
    """What the control socket may ask of a feeder: the narrow interface ``ControlServer`` calls."""

    def add_symbols(self, symbols: Sequence[str]) -> list[SymbolResult]: ...

    def remove_symbols(self, symbols: Sequence[str]) -> list[SymbolResult]: ...

    def resync(self, symbol: str) -> str: ...

    def refresh(self, symbol: str) -> str: ...

    def list_markets(self) -> list[MarketInfo]: ...


def control_dirs() -> list[Path]:
    """Where control sockets live: ``$LDC_CONTROL_DIR`` when set; else /run/ldc, then (for a feeder run by a
    user who may not write /run) ``$XDG_RUNTIME_DIR/ldc``."""
    chosen = os.environ.get(CONTROL_DIR_ENV)
    if chosen:
        return [Path(chosen)]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [Path(DEFAULT_CONTROL_DIR)] + ([Path(runtime) / "ldc"] if runtime else [])


def socket_path(group: str) -> Path:
    """The control socket of ``group``'s feeder: the first that exists, else where the first would be."""
    paths = [directory / f"{group}.sock" for directory in control_dirs()]
    return next((path for path in paths if path.exists()), paths[0])


def control_group() -> str:
    return os.environ.get(CONTROL_GROUP_ENV) or DEFAULT_CONTROL_GROUP


# -- server ------------------------------------------------------------------------------------


class ControlServer:
    """The feeder's side: a thread accepting one connection at a time, each request answered in order."""

    def __init__(self, group: str, target: Controlled) -> None:
        self.group = group
        self._target = target
        self._stop = threading.Event()
        self._gid = _group_id(control_group())
        self._sock = self._bind_first()
        self._thread = threading.Thread(target=self._serve, name=f"ldc-control-{group}", daemon=True)
        self._thread.start()

    def _bind_first(self) -> socket.socket:
        """The socket in the first control directory this process may write."""
        refused: OSError | None = None
        for directory in control_dirs():
            self.path = directory / f"{self.group}.sock"
            try:
                return self._bind()
            except (PermissionError, FileNotFoundError) as exc:  # /run/ldc is root's: try the user's runtime dir
                refused = exc
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise
                refused = exc
        assert refused is not None
        raise refused

    def _bind(self) -> socket.socket:
        self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        _remove_stale_socket(self.path)
        # Bound under a private name and linked to its path only once its group and mode are final: a client
        # (or an admin's chmod) that sees the path never meets the socket half made (a group member refused
        # by the interim 0600, or a later chmod undone by ours).
        staging = self.path.with_name(f".{secrets.token_hex(STAGING_NAME_BYTES)}")  # no longer than the path
        staging.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Linux makes the socket file with the socket inode's mode (less the umask): never open to others,
        # not even before the chmod below; the process-wide umask is left alone (other threads run)
        os.fchmod(sock.fileno(), OWNER_ONLY_MODE)
        try:
            sock.bind(str(staging))
            sock.listen(8)  # before the link: a client that sees the path is never refused
            self._finish_mode(staging)
            os.link(staging, self.path)  # EEXIST: another feeder of the group got there first
        except FileExistsError:
            sock.close()
            raise OSError(f"{self.path} is in use: another feeder of this group is running") from None
        except OSError:
            sock.close()
            raise
        finally:
            staging.unlink(missing_ok=True)
        self._inode = os.lstat(self.path).st_ino
        sock.settimeout(ACCEPT_POLL_S)
        return sock

    def _finish_mode(self, staging: Path) -> None:
        """The socket file's group (the control group, when it exists and may be given) and mode."""
        mode = OWNER_ONLY_MODE
        if self._gid is not None:
            try:
                os.chown(staging, -1, self._gid)
                mode = SOCKET_MODE
            except OSError as exc:  # the feeder's user is not a member of the control group
                log.warning("control socket %s stays %o: cannot give it to group %s: %s", self.path, mode,
                            control_group(), exc.strerror)  # fmt: skip
        else:  # the safe default (a host without the group, a developer's machine): said, not warned
            log.info("control group %r does not exist: %s is for the feeder's user and root only", control_group(), self.path)
        os.chmod(staging, mode)
        log.info("control socket %s (mode %o, group %s)", self.path, mode, control_group() if mode == SOCKET_MODE else "-")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(ACCEPT_POLL_S * 5 + CLIENT_IDLE_TIMEOUT_S)
        self._sock.close()
        try:
            if os.lstat(self.path).st_ino == self._inode:  # not a successor's socket
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # out of descriptors, say: the socket stays, the next accept may work
                if self._stop.is_set():
                    return
                log.error("control socket %s: accept failed: %s", self.path, exc)
                self._stop.wait(ACCEPT_POLL_S)
                continue
            with conn:
                try:
                    self._session(conn)
                except OSError as exc:  # a client that went away mid-reply: the next one is served
                    log.info("control connection dropped: %s", exc)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_IDLE_TIMEOUT_S)
        refusal = self._refusal(conn)
        if refusal:
            log.warning("control: refused %s", refusal)
            _send(conn, {"ok": False, "result": None, "error": f"refused: {refusal}"})
            return
        stream = conn.makefile("rb")
        while not self._stop.is_set():
            try:
                line = stream.readline(MAX_LINE_BYTES + 1)
            except TimeoutError:
                return
            if not line:
                return
            _send(conn, self.answer(line))

    def _refusal(self, conn: socket.socket) -> str:
        """Why this peer may not control the feeder ("" when it may): a second check behind the socket's mode."""
        pid, uid, gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid in (0, os.geteuid()):
            return ""
        if self._gid is not None and self._gid in _groups_of(pid, uid, gid):
            return ""
        return f"uid {uid} gid {gid} pid {pid}: not in control group {control_group()!r}"

    def answer(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line; never raises (a failed command is an ``ok: false`` reply)."""
        try:
            command, symbols = _parse_request(line)
            result = self._dispatch(command, symbols)
        except ControlError as exc:
            return {"ok": False, "result": None, "error": str(exc)}
        except Exception as exc:  # a bug must not take the control thread (or the feeder) down
            log.exception("control command failed")
            return {"ok": False, "result": None, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if isinstance(result, list) and result and isinstance(result[0], SymbolResult):
            failed = [r.message for r in result if not r.ok]
            return {"ok": not failed, "result": [asdict(r) for r in result], "error": "; ".join(failed)}
        if isinstance(result, list):
            return {"ok": True, "result": [asdict(r) for r in result], "error": ""}
        return {"ok": True, "result": result, "error": ""}

    def _dispatch(self, command: str, symbols: list[str]) -> Any:
        target = self._target
        log.info("control: %s %s", command, " ".join(symbols))
        if command == "list":
            return target.list_markets()
        if not symbols:
            raise ControlError(f"command {command!r} expected at least one symbol, found none")
        if command == "add":
            return target.add_symbols(symbols)
        if command == "remove":
            return target.remove_symbols(symbols)
        if len(symbols) != 1:
            raise ControlError(f"command {command!r} expected one symbol, found {len(symbols)}")
        return target.resync(symbols[0]) if command == "resync" else target.refresh(symbols[0])


def serve(group: str, target: Controlled) -> ControlServer | None:
    """Start the control socket of ``group``; a feeder runs on without one (logged) if it cannot be made."""
    try:
        return ControlServer(group, target)
    except OSError as exc:
        log.error("no control socket for group %s: %s: %s", group, socket_path(group), exc.strerror or exc)
        return None


def serve_feeder(feeder: Feeder) -> ControlServer | None:
    """The feeder's hook: its group's control socket, answering through ``FeederControl``."""
    return serve(feeder.group.name, FeederControl(feeder))


class FeederControl:
    """``Controlled`` over a running ``Feeder``. add / remove go through the feeder's jobs thread, one at a
    time with SIGHUP reloads (each is a REST check, then ``apply_group``); resync, refresh and list take
    the feeder's lock for microseconds."""

    def __init__(self, feeder: Feeder) -> None:
        self._feeder = feeder

    def add_symbols(self, symbols: Sequence[str]) -> list[SymbolResult]:
        return self._on_jobs_thread(lambda: self._add(symbols))

    def remove_symbols(self, symbols: Sequence[str]) -> list[SymbolResult]:
        return self._on_jobs_thread(lambda: self._remove(symbols))

    def _on_jobs_thread(self, job: Callable[[], list[SymbolResult]]) -> list[SymbolResult]:
        try:
            future = self._feeder._jobs.submit(job)
        except RuntimeError:
            raise ControlError("the feeder is stopping") from None
        return future.result()

    def _add(self, symbols: Sequence[str]) -> list[SymbolResult]:
        import dataclasses

        import re

        from ldc.venues import venue_table

        feeder = self._feeder
        venue = venue_table(feeder.group.exchange)
        pattern = re.compile(venue.symbol_pattern)
        results = {s: SymbolResult(s, False, f"symbol expected like {venue.symbol_form}, found {s!r}") for s in symbols
                   if not pattern.fullmatch(s)}  # fmt: skip
        running = set(feeder.markets)
        for symbol in symbols:
            if symbol in running and symbol not in results:
                results[symbol] = SymbolResult(symbol, True, f"market {symbol} was already running")
        new = tuple(dict.fromkeys(s for s in symbols if s not in results))
        if new:
            unknown = {s: self._exchange_answer(s, why) for s, why in feeder.catalogue.check(new).items()}
            feeder.apply_group(dataclasses.replace(feeder.group, symbols=feeder.group.symbols + new), unknown)
            for symbol in new:
                market = feeder.markets.get(symbol)
                if market is None:
                    results[symbol] = SymbolResult(symbol, False, f"market {symbol} not added: the segment is full")
                else:
                    results[symbol] = SymbolResult(symbol, not market.error, market.error or f"market {symbol} added")
        return [results[s] for s in dict.fromkeys(symbols)]

    def _exchange_answer(self, symbol: str, why: str) -> str:
        """The exchange's own answer for a symbol its listing lacks: one cheap depth request (the slot and
        the reply quote it); the listing's verdict when that request does not say."""
        feeder = self._feeder
        limit = feeder.venue.snapshot_limits[0].limit  # the cheapest request the venue allows
        try:
            feeder._rest.snapshot(feeder.venue.snapshot_path, symbol=symbol, limit=limit,
                                  weight=feeder.venue.snapshot_weight(limit), stop=feeder._stop)  # fmt: skip
        except RestError as exc:
            text = str(exc)
            if exc.code is not None and "exchange error" in text:  # kept short: a slot message holds 127 bytes
                answer = text[text.index("exchange error") :]
                return f"unknown symbol {symbol}: {feeder.group.exchange} {feeder.venue.snapshot_path} answered {answer}"
        return why

    def _remove(self, symbols: Sequence[str]) -> list[SymbolResult]:
        import dataclasses

        feeder = self._feeder
        gone = set(symbols)
        results = [SymbolResult(s, s in feeder.markets, f"market {s} removed" if s in feeder.markets else
                                f"market {s} is not running in group {feeder.group.name!r}") for s in dict.fromkeys(symbols)]  # fmt: skip
        kept = tuple(s for s in feeder.group.symbols if s not in gone)
        feeder.apply_group(dataclasses.replace(feeder.group, symbols=kept), {})
        return results

    def resync(self, symbol: str) -> str:
        from ldc.shm.layout import Status
        from ldc.sync import OutOfSyncReason

        feeder = self._feeder
        with feeder._lock:
            market = self._market(symbol)
            market.handoff.settle()
            # the book is discarded and synced again from a new snapshot, as after a gap (counted as a resync)
            feeder._carry_out(market, market.sync._resync(OutOfSyncReason.GAP, None))
            feeder._rearm(market)
            feeder.writer.set_status(market.slot, Status.RESYNCING, "resync requested through the control socket")
            feeder.writer.notify()
        return f"market {symbol} resyncing from a new snapshot"

    def refresh(self, symbol: str) -> str:
        from ldc.sync import BOOK_STATES

        feeder = self._feeder
        with feeder._lock:
            market = self._market(symbol)
            market.handoff.settle()
            sync = market.sync
            if sync.state not in BOOK_STATES:
                feeder._rearm(market)
                return f"market {symbol} is {sync.state.name.lower()}: a new snapshot is already on its way"
            if sync.refreshing:
                feeder._rearm(market)
                return f"market {symbol}: a refresh was already under way"
            # an audit: a shadow book from a new snapshot replaces the live one with no gap for readers
            feeder._carry_out(market, sync._start_shadow(time.monotonic()))
            feeder._rearm(market)
        return f"market {symbol} refreshing against a new snapshot"

    def list_markets(self) -> list[MarketInfo]:
        from ldc.sync import SyncState

        feeder = self._feeder
        with feeder._lock:
            return [MarketInfo(m.symbol, "failed" if m.error else m.sync.state.name.lower(),
                               not m.error and m.sync.state is SyncState.SYNCED, m.error)
                    for m in feeder.markets.values()]  # fmt: skip

    def _market(self, symbol: str) -> Market:
        feeder = self._feeder
        market = feeder.markets.get(symbol)
        if market is None:
            raise ControlError(f"market {symbol} is not running in group {feeder.group.name!r} "
                               f"({len(feeder.markets)} markets)")  # fmt: skip
        if market.error:
            raise ControlError(f"market {symbol} failed: {market.error}")
        return market


def _parse_request(line: bytes) -> tuple[str, list[str]]:
    if len(line) > MAX_LINE_BYTES:
        raise ControlError(f"request longer than {MAX_LINE_BYTES} bytes")
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"request expected one JSON object per line, found {line[:80]!r}: {exc}") from None
    if not isinstance(doc, dict):
        raise ControlError(f"request expected a JSON object, found {type(doc).__name__}")
    command, symbols = doc.get("command"), doc.get("symbols", [])
    if command not in COMMANDS:
        raise ControlError(f"command expected one of {', '.join(COMMANDS)}, found {command!r}")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ControlError(f"symbols expected a list of strings, found {symbols!r}"[:200])
    if len(symbols) > MAX_SYMBOLS_PER_COMMAND:
        raise ControlError(f"symbols expected at most {MAX_SYMBOLS_PER_COMMAND}, found {len(symbols)}")
    return str(command), [s.upper() for s in symbols]


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall(json.dumps(reply).encode() + b"\n")


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _groups_of(pid: int, uid: int, gid: int) -> set[int]:
    """The peer's groups: its gid, its process's supplementary groups, its user's groups in /etc/group."""
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except OSError:  # ProtectProc=invisible hides other users' processes: /etc/group still says
        pass
    try:
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except KeyError:
        pass
    return groups


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a feeder that died is removed; one that answers belongs to a live feeder."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use: another feeder of this group is running")


# -- client ------------------------------------------------------------------------------------


class Control:
    """Control a running feeder of ``group`` through its socket. Each call sends one command and returns
    its result; a refused or failed command raises ``ControlError`` naming why."""

    def __init__(self, group: str, *, timeout_s: float = DEFAULT_CALL_TIMEOUT_S, path: Path | None = None) -> None:
        self.group = group
        self.path = path or socket_path(group)
        self.timeout_s = timeout_s

    def list(self) -> builtins.list[MarketInfo]:
        return [MarketInfo(**row) for row in self.call("list")["result"]]

    def add(self, *symbols: str) -> builtins.list[SymbolResult]:
        """Add markets; each symbol's outcome (an unknown one: the exchange's answer). Never raises for a
        symbol's failure: check ``ok`` per result."""
        return [SymbolResult(**row) for row in self.call("add", symbols, check=False)["result"] or []]

    def remove(self, *symbols: str) -> builtins.list[SymbolResult]:
        return [SymbolResult(**row) for row in self.call("remove", symbols, check=False)["result"] or []]

    def resync(self, symbol: str) -> str:
        return str(self.call("resync", (symbol,))["result"])

    def refresh(self, symbol: str) -> str:
        return str(self.call("refresh", (symbol,))["result"])

    def call(self, command: str, symbols: Sequence[str] = (), *, check: bool = True) -> dict[str, Any]:
        """Send one command and return the reply; ``check``: raise ``ControlError`` unless it is ok."""
        request = json.dumps({"command": command, "symbols": list(symbols)}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout_s)
            self._connect(sock)
            try:
                try:
                    sock.sendall(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a refusing server replies and closes before reading: its reply is still there
                line = sock.makefile("rb").readline(MAX_LINE_BYTES + 1)
            except TimeoutError:
                raise ControlError(f"feeder of group {self.group!r} did not answer {command!r} within {self.timeout_s:g} s") from None
            except OSError as exc:
                raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from None
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            raise ControlError(f"control socket {self.path}: expected a JSON reply line, found {line[:80]!r}") from None
        if check and not reply.get("ok"):
            raise ControlError(str(reply.get("error") or "command failed"))
        if str(reply.get("error", "")).startswith("refused:"):
            raise ControlError(str(reply["error"]))
        return reply

    def _connect(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + CONNECT_REFUSED_RETRY_S
        while True:
            try:
                return self._connect_once(sock)
            except ConnectionRefusedError:  # a feeder between bind and listen, or a dead feeder's socket file
                if time.monotonic() >= deadline:
                    raise ControlError(f"no feeder of group {self.group!r} is listening on {self.path}") from None
                time.sleep(CONNECT_RETRY_POLL_S)

    def _connect_once(self, sock: socket.socket) -> None:
        try:
            sock.connect(str(self.path))
        except PermissionError:
            message = (f"no permission to control group {self.group!r}: {self.path} is for the feeder's user and "
                       f"group {control_group()!r} (reading a book does not grant it)")  # fmt: skip
            log.warning("control: %s", message)
            raise ControlError(message) from None
        except FileNotFoundError:
            raise ControlError(f"no feeder of group {self.group!r} is listening on {self.path}") from None


# -- ldc ctl -----------------------------------------------------------------------------------

Printer = Callable[[str], None]


def main(argv: list[str], out: Printer = print) -> int:
    """``ldc ctl GROUP list|add SYM...|remove SYM...|resync SYM|refresh SYM``: prints the reply as JSON;
    exit 0 when ok, 1 when the command failed, 2 when it could not be delivered or was refused."""
    if len(argv) < 2 or argv[0] in ("-h", "--help") or argv[1] not in COMMANDS:
        out("usage: ldc ctl GROUP list | add SYMBOL... | remove SYMBOL... | resync SYMBOL | refresh SYMBOL")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    group, command, symbols = argv[0], argv[1], argv[2:]
    log.addHandler(logging.NullHandler())  # the refusal is printed below once, not also by logging's last resort
    try:
        reply = Control(group).call(command, symbols, check=False)
    except ControlError as exc:
        import sys

        print(f"ldc ctl: {exc}", file=sys.stderr)
        return 2
    out(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1
