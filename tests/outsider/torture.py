"""Kill/restart torture of the outsider's Java reader against real feeders (`ldc sim` + `ldc feed`).

    .venv/bin/python tests/outsider/torture.py --cycles 100 [--stop] [--classes DIR]

Each cycle arms the Java reader for the running feeder's pid, lets it read for a moment, sends SIGKILL, watches
the writer's robust word until the kernel clears it (the writer is dead then) and tells the reader when: every
read it accepted as live and in sync whose copy began after that instant is the dead writer's data (must be
0); those that began between the SIGKILL and that instant are counted apart (`racing_reads`). Every third restart uses another depth (the file is
replaced with a new geometry). `--stop` SIGSTOPs one feeder for its `stale_after_ms` + 1.5 s: reads accepted
after the limit must be 0. Sampled accepted books are compared with the simulator's truth at their update id.
One JSON line of results on stdout.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # run as a script from anywhere
from ldc.io.governor import governor_key, unlink_governor  # noqa: E402
from ldc.tools.clean import clean_group  # noqa: E402

JAVA_SOURCE = Path(__file__).with_name("OutsiderReader.java")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTHS = (20, 7)
NEW_WRITER_TIMEOUT_S = 20.0   # a restarted feeder on a loaded 2-core machine: start, snapshot, first publish
REPLY_TIMEOUT_S = 10.0
STOP_MARGIN_S = 1.5
CONTROL_READ_S = 0.5
ROBUST_WORD_OFFSET = 320  # LAYOUT.md section 3: writer_lock, the TID in its first u32
FUTEX_TID_MASK = 0x3FFFFFFF


def compile_reader(out_dir: Path) -> None:
    subprocess.run(["javac", "-d", str(out_dir), str(JAVA_SOURCE)], check=True, capture_output=True, text=True)


def write_config(path: Path, group: str, depth: int, urls: dict[str, Any]) -> None:
    path.write_text(
        "[[group]]\n"
        f'name = "{group}"\nexchange = "binance.com"\nsymbols = {json.dumps(list(SYMBOLS))}\n'
        f'depth = {depth}\nrest_url = "{urls["rest"]}"\nws_url = "{urls["ws"]}"\n'
    )


@dataclass
class Truth:
    """Checks sampled books against `/_sim/book` at their update id, in a thread of its own."""

    rest: str
    samples: "queue.Queue[dict[str, Any] | None]" = field(default_factory=queue.Queue)
    checked: int = 0
    matched: int = 0
    unavailable: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> None:
        while (s := self.samples.get()) is not None:
            self.check(s)

    def check(self, s: dict[str, Any]) -> None:
        url = f'{self.rest}/_sim/book?symbol={s["symbol"]}&update_id={s["update_id"]}&limit={s["depth"]}&family=spot'
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                truth = json.load(answer)
        except (urllib.error.URLError, OSError):
            self.unavailable += 1   # the id left the simulator's kept history before we asked
            return
        want = [[[float(p), float(q)] for p, q in truth[side]] for side in ("bids", "asks")]
        self.checked += 1
        if want == [s["bids"], s["asks"]]:
            self.matched += 1
        elif len(self.mismatches) < 3:
            self.mismatches.append({"sample": s, "truth": truth})


class Java:
    """The spinning Java reader: commands on stdin, JSON lines on stdout."""

    def __init__(self, classes: Path, group: str, truth: Truth, control: bool) -> None:
        flags = ["-Doutsider.skipProbe=true"] if control else []
        self.proc = subprocess.Popen(
            ["java", *flags, "-cp", str(classes), "OutsiderReader", "spin", group, ",".join(SYMBOLS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.replies: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.pids_seen: set[int] = set()
        self.last_sample: dict[str, Any] | None = None
        self.truth = truth
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg["ev"] == "sample":
                self.pids_seen.add(msg["writer_pid"])
                self.last_sample = msg
                self.truth.samples.put(msg)
            else:
                self.replies.put(msg)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.replies.get(timeout=REPLY_TIMEOUT_S)

    def wait_for_writer(self, pid: int) -> float:
        """Seconds until an accepted in-sync book of writer `pid` was sampled."""
        start = time.monotonic()
        while pid not in self.pids_seen:
            if time.monotonic() - start > NEW_WRITER_TIMEOUT_S:
                raise TimeoutError(f"no in-sync read of writer {pid} within {NEW_WRITER_TIMEOUT_S} s")
            time.sleep(0.01)
        return time.monotonic() - start

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class RobustWord:
    """The writer's robust futex word (LAYOUT.md section 10) of the file now at the group's name: the
    kernel clears its TID bits when the writer dies, before the lock goes and before it can be reaped.
    A copy that began after that instant is the dead writer's data for certain."""

    def __init__(self, group: str) -> None:
        self._fd = os.open(f"/dev/shm/ldc-{group}", os.O_RDONLY | os.O_NOFOLLOW)
        self._map = mmap.mmap(self._fd, ROBUST_WORD_OFFSET + 4, access=mmap.ACCESS_READ)

    def __enter__(self) -> RobustWord:
        return self

    def __exit__(self, *exc: object) -> None:
        self._map.close()
        os.close(self._fd)

    def wait_cleared(self) -> int:
        """CLOCK_REALTIME ns just after the word was first seen without a TID."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while int.from_bytes(self._map[ROBUST_WORD_OFFSET : ROBUST_WORD_OFFSET + 4], "little") & FUTEX_TID_MASK:
            if time.monotonic() > deadline:
                raise TimeoutError("the killed writer's robust word still holds a TID")
        return time.time_ns()


def start_feeder(config: Path, group: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ldc.cli", "feed", str(config), "--group", group, "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def run(cycles: int, stop: bool, classes: Path, group: str, control: bool = False,
        on_live: Callable[[subprocess.Popen[bytes], Truth], None] | None = None) -> dict[str, Any]:
    """The torture; `on_live(feeder, truth)` is called once the first feeder is read in sync."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "ldc.cli", "sim", "--port", "0", "--symbols", ",".join(SYMBOLS)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    feeder: subprocess.Popen[bytes] | None = None
    java: Java | None = None
    rest: str | None = None
    result: dict[str, Any] = {"cycles": 0, "dead_reads": 0, "racing_reads": 0, "frozen_reads": None}
    try:
        assert sim.stdout is not None
        urls = json.loads(sim.stdout.readline())
        rest = urls["rest"]
        truth = Truth(urls["rest"])
        threading.Thread(target=truth.run, daemon=True).start()
        with tempfile.TemporaryDirectory() as tmp:
            configs = [Path(tmp) / f"d{d}.toml" for d in DEPTHS]
            for path, depth in zip(configs, DEPTHS):
                write_config(path, group, depth, urls)
            feeder = start_feeder(configs[0], group)
            java = Java(classes, group, truth, control)
            recover = [java.wait_for_writer(feeder.pid)]
            if on_live is not None:
                on_live(feeder, truth)
            for cycle in range(cycles):
                pid = feeder.pid
                assert java.ask(f"arm {pid}")["ev"] == "armed"
                time.sleep(random.uniform(0.05, 0.3))
                with RobustWord(group) as word:
                    t_kill = time.time_ns()
                    feeder.send_signal(signal.SIGKILL)
                    t_dead = word.wait_cleared()
                feeder.wait()
                feeder = start_feeder(configs[(cycle + 1) // 3 % 2], group)
                if control:   # a reader that never probes never follows a replaced file: let it read the dead one
                    time.sleep(CONTROL_READ_S)
                verdict = java.ask(f"dead {pid} {t_kill} {t_dead}")
                result["dead_reads"] += verdict["accepted_after"]
                result["racing_reads"] += verdict["accepted_after_signal"]
                if not control:
                    recover.append(java.wait_for_writer(feeder.pid))
                result["cycles"] = cycle + 1
            if stop:
                result["frozen_reads"] = freeze(java, feeder)
            result["stats"] = java.ask("stats")
            recover.sort()
            result["recover_s_median"] = round(recover[len(recover) // 2], 3) if recover else None
            result["recover_s_max"] = round(recover[-1], 3) if recover else None
            feeder.send_signal(signal.SIGTERM)
            feeder.wait(timeout=15)
            java.close()
            truth.samples.put(None)
            time.sleep(0.5)
            result["truth"] = {"checked": truth.checked, "matched": truth.matched,
                               "unavailable": truth.unavailable, "mismatches": truth.mismatches}
    finally:
        for proc in (feeder, java.proc if java else None, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if rest is not None:   # the feeders' REST weight ledger for the simulator's port goes with it
            unlink_governor(governor_key(rest))
    return result


def freeze(java: Java, feeder: subprocess.Popen[bytes]) -> int:
    """SIGSTOP the feeder past its published limit; reads accepted after the limit must be 0."""
    assert java.last_sample is not None
    stale_ms = int(java.last_sample["stale_after_ms"])
    assert java.ask(f"arm {feeder.pid}")["ev"] == "armed"
    t_stop = time.time_ns()
    feeder.send_signal(signal.SIGSTOP)
    try:
        time.sleep(stale_ms / 1000 + STOP_MARGIN_S)
        verdict = java.ask(f"frozen {feeder.pid} {t_stop} {stale_ms}")
    finally:
        feeder.send_signal(signal.SIGCONT)
    return int(verdict["accepted_after"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--stop", action="store_true", help="also SIGSTOP one feeder past its stale_after_ms")
    ap.add_argument("--classes", type=Path, help="compiled OutsiderReader (default: compile into a temp dir)")
    ap.add_argument("--control", action="store_true", help="negative control: the reader skips the liveness probe")
    ap.add_argument("--group", default=f"outsider{os.getpid()}")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        classes = args.classes or Path(tmp)
        if args.classes is None:
            compile_reader(classes)
        try:
            result = run(args.cycles, args.stop, classes, args.group, args.control)
        finally:
            clean_group(args.group, dry_run=False)  # the last feeder's stopped segment and lock file
    print(json.dumps(result))
    return 0 if result["dead_reads"] == 0 and not result["frozen_reads"] else 1


if __name__ == "__main__":
    sys.exit(main())
