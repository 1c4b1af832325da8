"""`ldc run CONFIG`: one feeder process per group, restarted with backoff when it dies.

The supervisor owns no sockets and no segments: each group is a child `ldc feed CONFIG --group NAME`,
exactly what `ldc-feeder@NAME.service` runs under systemd. A child that dies is restarted after a
jittered exponential backoff (0.5 s doubling up to 60 s), so a crash loop does not hammer the exchange's
connection limit (300 attempts per 5 minutes per IP). The rule that resets it: a child that stayed up
5 s was a healthy run (a feeder that cannot start dies within a second or two), and its next restart
waits the initial 0.5 s again; a quicker death doubles the wait.

A child whose heartbeat in its segment stops (a frozen or stopped process) is killed after `--watchdog`
seconds and restarted, as the systemd unit's watchdog does. A group that another process already feeds
(a second `ldc run` on the same file, an `ldc feed`, a systemd unit) is not started: at start `ldc run`
refuses (exit 2); a group added by SIGHUP waits, logged once, until that writer is gone.

Signals: SIGTERM / SIGINT stop every child (SIGTERM, then SIGKILL after a grace period) and exit 0.
SIGHUP re-reads the file: a broken file changes nothing (the error is logged); otherwise children of
groups that remain get SIGHUP (they add / remove markets live) or, when a key that only takes effect at a
start changed (depth, endpoints...), are restarted; new groups start, removed groups stop.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import logging
import os
import pwd
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ldc.cli import child_command
from ldc.config import Config, GroupConfig, load_config, restart_keys
from ldc.errors import ConfigError, SegmentError
from ldc.shm.layout import State, segment_path
from ldc.shm.reader import Reader

log = logging.getLogger("ldc.supervisor")

# Restart policy
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_CAP_S = 60.0
RESTART_JITTER_FRACTION = 0.25  # +-25% so feeders restarted together do not reconnect in lock-step
HEALTHY_RUN_S = 5.0  # a child up this long was a healthy run: its next restart waits the initial delay again
# Watchdog: the feeder stores its heartbeat every tick (0.25 s); the unit's WatchdogSec is 30 s too
DEFAULT_WATCHDOG_S = 30.0
WATCHDOG_CHECK_S = 1.0  # how often each child's heartbeat is read
# A group fed by another process is probed again this often (its writer may stop)
FOREIGN_WRITER_RECHECK_S = 5.0
# Shutdown
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def restart_delay_s(failures: int, *, rng: random.Random) -> float:
    """Backoff before restart number ``failures`` (1-based): doubling from the initial delay up to the cap."""
    base: float = min(RESTART_BACKOFF_CAP_S, RESTART_BACKOFF_INITIAL_S * 2.0 ** max(0, failures - 1))
    return base * (1.0 + rng.uniform(-RESTART_JITTER_FRACTION, RESTART_JITTER_FRACTION))


def failures_after_exit(failures: int, uptime_s: float) -> int:
    """The restart number that follows a child's exit: 1 (the initial delay) after a healthy run of
    HEALTHY_RUN_S, else one more than before (the delay doubles)."""
    return 1 if uptime_s >= HEALTHY_RUN_S else failures + 1


def live_writer(group: str) -> str | None:
    """"pid N, user U" of the process that feeds ``group`` now (it holds the segment's lock, running), else
    None. The file's owner is named: a writer of another account is a service or a squatter to look at."""
    try:
        owner = os.stat(segment_path(group), follow_symlinks=False).st_uid
        with Reader(group, owner=owner) as reader:  # whoever owns it: this is to name it, not to read its books
            info = reader.info()
    except (SegmentError, OSError):  # no segment, or one the feeder will judge itself
        return None
    return f"pid {info.writer_pid}, user {_user_name(owner)}" if info.alive else None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def heartbeat_ns(group: str, pid: int) -> int | None:
    """The last heartbeat process ``pid`` stored in ``group``'s segment; None when the segment is not (yet)
    that process's or it is stopping: there is nothing of it to judge."""
    try:
        with Reader(group) as reader:
            info = reader.info()
    except SegmentError:
        return None
    if info.writer_pid != pid or info.state not in (State.INITIALISING, State.RUNNING) or not info.heartbeat_ns:
        return None
    return info.heartbeat_ns


@dataclass
class Child:
    """One group's feeder process and its restart bookkeeping."""

    group: str
    config: GroupConfig
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0  # monotonic time of the next start while proc is None
    restarts: int = 0
    last_exit: int | None = field(default=None)
    next_watch: float = 0.0  # monotonic time of the next heartbeat check
    heartbeat: tuple[int, float] = (0, 0.0)  # the last heartbeat value read and the monotonic time it changed
    foreign_writer: str | None = None  # another process found feeding this group ("pid N, user U"; logged once)


class Supervisor:
    """Keeps one `ldc feed` child per configured group alive until stopped."""

    def __init__(self, config_path: str, *, log_level: str = "INFO", seed: int | None = None,
                 watchdog_s: float = DEFAULT_WATCHDOG_S) -> None:  # fmt: skip
        self._path = config_path
        self._watchdog_s = watchdog_s
        self._log_level = log_level
        self._rng = random.Random(seed)
        self._children: dict[str, Child] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()

    # Control (safe from signal handlers: they only set events)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    # Main loop

    def run(self, config: Config) -> int:
        for group in config.groups:
            self._children[group.name] = Child(group.name, group)
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()
            now = time.monotonic()
            for child in self._children.values():
                self._tend(child, now)
            self._stop.wait(POLL_INTERVAL_S)
        self._stop_all(list(self._children.values()))
        return 0

    def _tend(self, child: Child, now: float) -> None:
        if child.proc is not None:
            code = child.proc.poll()
            if code is None:
                self._watch(child, now)
                return
            child.proc, child.last_exit = None, code
            child.failures = failures_after_exit(child.failures, now - child.started_at)
            delay = restart_delay_s(child.failures, rng=self._rng)
            child.restart_at = now + delay
            log.warning("feeder %s exited with %s; restarting in %.1f s", child.group, _describe_exit(code), delay)
            return
        if now >= child.restart_at:
            self._start(child, now)

    def _watch(self, child: Child, now: float) -> None:
        """Kill a child whose heartbeat stopped (SIGKILL: a stopped or wedged process cannot act on SIGTERM);
        the exit is then handled as any other death."""
        if self._watchdog_s <= 0 or now < child.next_watch or child.proc is None:
            return
        child.next_watch = now + WATCHDOG_CHECK_S
        # judged by whether the value moves on this process's monotonic clock, not by the wall clock the
        # feeder stamps it with: a step of the system clock must not look like a frozen feeder
        value = heartbeat_ns(child.group, child.proc.pid)
        if value is None or value != child.heartbeat[0]:
            child.heartbeat = (value or 0, now)
            return
        still_s = now - child.heartbeat[1]
        if still_s > self._watchdog_s:
            log.error("feeder %s (pid %d) stored no heartbeat for %.1f s (limit %g s): killing it",
                      child.group, child.proc.pid, still_s, self._watchdog_s)  # fmt: skip
            child.proc.kill()

    def _start(self, child: Child, now: float) -> None:
        other = live_writer(child.group)
        if other is not None:
            if child.foreign_writer != other:
                log.error("group %s is fed by another process (%s): not starting a feeder until it stops",
                          child.group, other)  # fmt: skip
            child.foreign_writer, child.restart_at = other, now + FOREIGN_WRITER_RECHECK_S
            return
        child.foreign_writer = None
        cmd = child_command("feed", self._path, "--group", child.group, "--log-level", self._log_level)
        child.proc = subprocess.Popen(cmd, preexec_fn=functools.partial(die_with_parent, os.getpid()))
        child.started_at = now
        if child.last_exit is not None:
            child.restarts += 1
        log.info("feeder %s started as pid %d", child.group, child.proc.pid)

    def _apply_reload(self) -> None:
        try:
            config = load_config(self._path)
        except ConfigError as exc:
            log.error("reload ignored, the running groups stay as they are: %s", exc)
            return
        wanted = {g.name: g for g in config.groups}
        removed = [c for name, c in self._children.items() if name not in wanted]
        restart = [c for c in self._children.values() if c.group in wanted and self._reconfigure(c, wanted[c.group])]
        for name in wanted.keys() - self._children.keys():
            self._children[name] = Child(name, wanted[name])
            log.info("group %s added by reload", name)
        for child in removed:
            del self._children[child.group]
            log.info("group %s removed by reload", child.group)
        self._stop_all(removed + restart)
        for child in restart:
            child.restart_at, child.failures = 0.0, 0  # started again at once, with the new file

    def _reconfigure(self, child: Child, new: GroupConfig) -> bool:
        """A group that stays: SIGHUP when only its symbols changed (the feeder adds / removes markets live);
        True when a key that only takes effect at a start changed (depth, endpoints...): restart it."""
        changed = restart_keys(child.config, new)
        child.config = new
        if child.proc is None:
            return False  # waiting to restart: it reads the new file then
        if changed:
            log.info("group %s: %s changed, restarting its feeder", child.group, ", ".join(changed))
            return True
        child.proc.send_signal(signal.SIGHUP)
        return False

    def _stop_all(self, children: list[Child]) -> None:
        running = [c.proc for c in children if c.proc is not None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("feeder pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, STOP_GRACE_S)
                proc.kill()
                proc.wait()
        for child in children:
            child.proc = None


def die_with_parent(parent_pid: int) -> None:
    """In the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL, so that no orphaned
    feeder keeps a segment locked against the next `ldc run` (prctl PR_SET_PDEATHSIG; Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ldc run", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="path of the TOML configuration file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--watchdog", type=float, default=DEFAULT_WATCHDOG_S, metavar="SECONDS",
                        help=f"kill and restart a feeder whose heartbeat is older than this (default "
                             f"{DEFAULT_WATCHDOG_S:g}, 0 = off)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ldc run: {exc}", file=sys.stderr)
        return 2
    fed = {g.name: writer for g in config.groups if (writer := live_writer(g.name)) is not None}
    if fed:
        owners = ", ".join(f"{name} ({writer})" for name, writer in fed.items())
        print(f"ldc run: already fed by another process: {owners}; one feeder per group "
              f"(another `ldc run` on this file, an `ldc feed` or a systemd unit?): stop it first", file=sys.stderr)  # fmt: skip
        return 2
    supervisor = Supervisor(os.path.abspath(args.config), log_level=args.log_level, watchdog_s=args.watchdog)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: supervisor.request_reload())
    return supervisor.run(config)
