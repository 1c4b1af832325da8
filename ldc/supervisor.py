"""`ldc run CONFIG`: one feeder process per group, restarted with backoff when it dies.

The supervisor owns no sockets and no segments: each group is a child `ldc feed CONFIG --group NAME`,
exactly what `ldc-feeder@NAME.service` runs under systemd. A child that dies is restarted after a
jittered exponential backoff that resets once the child has stayed up for a while, so a crash loop
does not hammer the exchange's connection limit (300 attempts per 5 minutes per IP).

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
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ldc.cli import child_command
from ldc.config import Config, GroupConfig, load_config, restart_keys
from ldc.errors import ConfigError

log = logging.getLogger("ldc.supervisor")

# Restart policy
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_CAP_S = 60.0
RESTART_JITTER_FRACTION = 0.25  # +-25% so feeders restarted together do not reconnect in lock-step
STABLE_AFTER_S = 30.0  # a child that ran this long restarts with the initial backoff again
# Shutdown
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def restart_delay_s(failures: int, *, rng: random.Random) -> float:
    """Backoff before restart number ``failures`` (1-based): doubling from the initial delay up to the cap."""
    base: float = min(RESTART_BACKOFF_CAP_S, RESTART_BACKOFF_INITIAL_S * 2.0 ** max(0, failures - 1))
    return base * (1.0 + rng.uniform(-RESTART_JITTER_FRACTION, RESTART_JITTER_FRACTION))


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


class Supervisor:
    """Keeps one `ldc feed` child per configured group alive until stopped."""

    def __init__(self, config_path: str, *, log_level: str = "INFO", seed: int | None = None) -> None:
        self._path = config_path
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
                return
            child.proc, child.last_exit = None, code
            child.failures = 1 if now - child.started_at >= STABLE_AFTER_S else child.failures + 1
            delay = restart_delay_s(child.failures, rng=self._rng)
            child.restart_at = now + delay
            log.warning("feeder %s exited with %s; restarting in %.1f s", child.group, _describe_exit(code), delay)
            return
        if now >= child.restart_at:
            self._start(child, now)

    def _start(self, child: Child, now: float) -> None:
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ldc run: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(os.path.abspath(args.config), log_level=args.log_level)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: supervisor.request_reload())
    return supervisor.run(config)
