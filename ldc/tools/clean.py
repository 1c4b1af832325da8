"""``ldc clean [--dry-run] [--group G ...]``: remove the /dev/shm files of groups no writer runs.

A stopped feeder leaves its segment (readers can then tell "stopped" from "never started", and the
next writer replaces it), and the files stay until reboot. This removes, per group without a live
writer: the segment, the ownership lock ``ldc-G.lock``, a half-built ``ldc-G.new`` and a layout 1.x
``ldc-G.waiters``; and every REST weight ledger ``ldc-governor-*`` no process has open. A group
whose writer lives is left alone (its ownership lock is held); files of another user are listed,
never removed (their owner or root removes them by hand, as the writer's refusal said).

Readers still attached keep their mapping of a removed segment and report its writer stopped.
Exit status 0; 1 when a file could not be removed.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import stat
import sys
from dataclasses import dataclass
from typing import Final

from ldc.errors import SegmentError
from ldc.shm.files import ofd_holder, ofd_lock, open_owned, owner_name
from ldc.shm.layout import GROUP_NAME_RE, LOCK_MODE, LOCK_SUFFIX, SEGMENT_PREFIX, SHM_DIR, TEMP_NAME_RE, TEMP_SUFFIX, WAITERS_SUFFIX

GOVERNOR_PREFIX: Final = "ldc-governor-"
SUFFIXES: Final = ("", WAITERS_SUFFIX, LOCK_SUFFIX)  # the lock file last: it guards the others
_GROUP_FILE: Final = re.compile(rf"{re.escape(SEGMENT_PREFIX)}(?P<group>[A-Za-z0-9_-]{{1,63}})(?:\.(?:lock|waiters)|{TEMP_NAME_RE.pattern})?")


@dataclass(frozen=True)
class Outcome:
    path: str
    action: str  # "removed", "would remove", "kept", "not ours", "failed"
    why: str


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ldc clean", description="remove the /dev/shm files of groups no writer runs")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    parser.add_argument("--group", action="append", default=None, help="only this group (repeatable)")
    return parser.parse_args(argv)


def groups_on_host(shm_dir: str = SHM_DIR) -> list[str]:
    """Every group with any file in ``shm_dir`` (segment, lock, half-built or 1.x waiters file)."""
    found = set()
    for name in _listdir(shm_dir):
        match = _GROUP_FILE.fullmatch(name)
        if match and not name.startswith(GOVERNOR_PREFIX):
            found.add(match["group"])
    return sorted(found)


def clean_group(group: str, *, dry_run: bool, shm_dir: str = SHM_DIR) -> list[Outcome]:
    """Remove a group's files unless its writer lives; holding the ownership lock while removing, so
    no writer can start in between (a writer checks, once it holds the lock, that it is still the
    file at the name)."""
    base = f"{shm_dir}/{SEGMENT_PREFIX}{group}"
    paths = _group_paths(group, shm_dir)
    if not paths:
        return []
    lock_fd = _take_ownership(base + LOCK_SUFFIX, create=not dry_run)
    if lock_fd is not None and lock_fd >= 0 and base + LOCK_SUFFIX not in paths:
        paths.append(base + LOCK_SUFFIX)  # ours, made just now: it goes last, like any lock file
    try:
        if lock_fd == -1:
            return [Outcome(p, "kept", "its writer is running (the ownership lock is held)") for p in paths]
        if _segment_alive(base):
            return [Outcome(p, "kept", "a writer still holds the segment's lock") for p in paths]
        return [_remove(path, dry_run) for path in paths]
    finally:
        if lock_fd is not None and lock_fd >= 0:
            os.close(lock_fd)


def _group_paths(group: str, shm_dir: str) -> list[str]:
    """The group's files that exist: segment, build files (the fixed and the random names), 1.x
    waiters file, and the ownership lock last (it guards the others)."""
    name = f"{SEGMENT_PREFIX}{group}"
    builds = sorted(f"{shm_dir}/{n}" for n in _listdir(shm_dir) if n.startswith(name) and TEMP_NAME_RE.fullmatch(n[len(name):]))
    fixed = [f"{shm_dir}/{name}{suffix}" for suffix in SUFFIXES]
    present = [p for p in fixed if os.path.lexists(p)]
    return [p for p in present if p == fixed[0]] + builds + [p for p in present if p != fixed[0]]


def clean_ledgers(*, dry_run: bool, shm_dir: str = SHM_DIR) -> list[Outcome]:
    """Remove every governor ledger no process has open (feeders keep theirs open while they run)."""
    ledgers = [f"{shm_dir}/{n}" for n in _listdir(shm_dir) if n.startswith(GOVERNOR_PREFIX)]
    in_use = _open_files()
    out = []
    for path in sorted(ledgers):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) in in_use:
            out.append(Outcome(path, "kept", "a feeder has it open"))
        else:
            out.append(_remove(path, dry_run))
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    groups = args.group or groups_on_host()
    bad = [g for g in groups if not GROUP_NAME_RE.fullmatch(g)]
    if bad:
        print(f"ldc clean: group name must match {GROUP_NAME_RE.pattern}, got {bad[0]!r}", file=sys.stderr)
        return 2
    outcomes = [o for g in groups for o in clean_group(g, dry_run=args.dry_run)]
    if args.group is None:
        outcomes += clean_ledgers(dry_run=args.dry_run)
    for o in outcomes:
        print(f"{o.action:<12} {o.path}  ({o.why})")
    if not outcomes:
        print("nothing to clean")
    return 1 if any(o.action == "failed" for o in outcomes) else 0


def _take_ownership(path: str, *, create: bool) -> int | None:
    """The group's ownership lock, as a writer takes it (a missing lock file is created, so that a
    writer starting meanwhile waits for us instead of building a file we would then remove): an fd
    holding it, None when the lock file is not ours (its owner is named when removing), -1 when a
    writer holds it."""
    try:
        fd = open_owned(path, os.O_RDWR, LOCK_MODE, create=create)
    except SegmentError:
        return None
    if fd is None:  # a dry run creates nothing
        return None
    if ofd_lock(fd, write=True):
        return fd
    os.close(fd)
    return -1


def _segment_alive(base: str) -> bool:
    """A writer holds the segment's liveness lock (2.x) or its flock (1.x)."""
    try:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if ofd_holder(fd):
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
    finally:
        os.close(fd)


def _remove(path: str, dry_run: bool) -> Outcome:
    st = os.lstat(path)
    kind = _kind(path)
    if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
        what = "a regular file" if stat.S_ISREG(st.st_mode) else "not a regular file"
        return Outcome(path, "not ours", f"{what} of {owner_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}: remove it by hand")
    if dry_run:
        return Outcome(path, "would remove", kind)
    try:
        os.unlink(path)
    except OSError as exc:
        return Outcome(path, "failed", exc.strerror or str(exc))
    return Outcome(path, "removed", kind)


def _kind(path: str) -> str:
    name = os.path.basename(path)
    if name.startswith(GOVERNOR_PREFIX):
        return "REST weight ledger"
    if TEMP_SUFFIX in name:
        return "half-built segment"
    kinds = {LOCK_SUFFIX: "ownership lock", WAITERS_SUFFIX: "layout 1.x waiters file"}
    return next((kind for suffix, kind in kinds.items() if name.endswith(suffix)), "segment of a stopped or dead writer")


def _open_files() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every file some process we may inspect has open."""
    found: set[tuple[int, int]] = set()
    for pid in _listdir("/proc"):
        if not pid.isdigit():
            continue
        for fd in _listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
