"""``ldc clean [--dry-run] [--group G ...] [--foreign-owner USER]``: remove the /dev/shm files of groups no writer runs.

A stopped feeder leaves its segment (readers can then tell "stopped" from "never started", and the
next writer replaces it), and the files stay until reboot. This removes, per group without a live
writer: the segment, the ownership lock ``ldc-G.lock``, a half-built ``ldc-G.new`` (``ldc-G.new-T``: one
a live hot standby holds stays) and a layout 1.x ``ldc-G.waiters``; and every REST weight ledger ``ldc-governor-*`` no process has open. A group
whose writer lives is left alone (its ownership lock is held); files of another user are listed,
never removed (their owner or root removes them by hand, as the writer's refusal said).

``ldc clean --group G --foreign-owner USER`` (root, the systemd unit's pre-start step) is the other
way round: it removes every file at G's names and every ledger that USER does not own, live or not,
and creates G's ownership lock as USER's, so another local account cannot stop the group by creating
those names before the feeder (in sticky /dev/shm the feeder itself cannot remove them).

Readers still attached keep their mapping of a removed segment and report its writer stopped.
Exit status 0; 1 when a file could not be removed.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pwd
import re
import shutil
import stat
import sys
from dataclasses import dataclass
from typing import Final

from ldc.errors import SegmentError
from ldc.shm.files import ofd_holder, ofd_lock, open_owned, owner_name, write_locked
from ldc.shm.layout import GROUP_NAME_RE, LOCK_MODE, LOCK_SUFFIX, SEGMENT_PREFIX, SHM_DIR, TEMP_NAME_RE, TEMP_SUFFIX, WAITERS_SUFFIX

GOVERNOR_PREFIX: Final = "ldc-governor-"
FOREIGN_RETRIES: Final = 100  # removals of a lock-file name another account keeps re-creating, then give up
SUFFIXES: Final = ("", WAITERS_SUFFIX, LOCK_SUFFIX)  # the lock file last: it guards the others
_GROUP_FILE: Final = re.compile(rf"{re.escape(SEGMENT_PREFIX)}(?P<group>[A-Za-z0-9_-]{{1,63}})(?:\.(?:lock|waiters)|{TEMP_NAME_RE.pattern})?")


@dataclass(frozen=True)
class Outcome:
    path: str
    action: str  # "removed", "would remove", "kept", "not ours", "created", "failed"
    why: str


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ldc clean", description="remove the /dev/shm files of groups no writer runs")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    parser.add_argument("--group", action="append", default=None, help="only this group (repeatable)")
    parser.add_argument("--foreign-owner", metavar="USER", default=None,
                        help="instead: remove every file at the --group names (and every REST weight ledger) that USER "
                             "does not own, then create the group's ownership lock for USER; run as root before the "
                             "feeder starts (the systemd unit's ExecStartPre=+), so no other account can stop a group "
                             "by creating its names first")  # fmt: skip
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
        return [_remove_unless_standby(path, dry_run) for path in paths]
    finally:
        if lock_fd is not None and lock_fd >= 0:
            os.close(lock_fd)


def _remove_unless_standby(path: str, dry_run: bool) -> Outcome:
    """A build file whose lock is held is a live hot standby's (``ldc feed --standby``): it names it when it
    takes the group over, so it stays."""
    name = os.path.basename(path)  # a group name has no ".": the suffix starts at the first
    if "." in name and TEMP_NAME_RE.fullmatch(name[name.index(".") :]) and write_locked(path):
        return Outcome(path, "kept", "a hot standby holds it (it names it when it takes the group over)")
    return _remove(path, dry_run)


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
    if args.foreign_owner is not None:
        if args.group is None:
            print("ldc clean: --foreign-owner needs --group", file=sys.stderr)
            return 2
        try:
            owner = _user(args.foreign_owner)
        except KeyError:
            print(f"ldc clean: no user {args.foreign_owner!r} on this host", file=sys.stderr)
            return 2
        outcomes = [o for g in groups for o in clean_foreign(g, owner, dry_run=args.dry_run)]
    else:
        outcomes = [o for g in groups for o in clean_group(g, dry_run=args.dry_run)]
    if args.group is None:
        outcomes += clean_ledgers(dry_run=args.dry_run)
    for o in outcomes:
        print(f"{o.action:<12} {o.path}  ({o.why})")
    if not outcomes:
        print("nothing to clean")
    return 1 if any(o.action == "failed" for o in outcomes) else 0


def clean_foreign(group: str, owner: pwd.struct_passwd, *, dry_run: bool, shm_dir: str = SHM_DIR) -> list[Outcome]:
    """Remove whatever stands at the group's names (segment, build files, 1.x waiters, ownership lock)
    and at the REST weight ledgers' names without belonging to ``owner``, whoever holds it open, then
    create the ownership lock as ``owner``'s (0600), so that between this step and the feeder's start no
    other account can take that name. Needs root (in sticky /dev/shm only a file's owner or root may
    remove it). The feeder's own files are never touched."""
    ledgers = sorted(f"{shm_dir}/{n}" for n in _listdir(shm_dir) if n.startswith(GOVERNOR_PREFIX))
    out = []
    for path in _group_paths(group, shm_dir) + ledgers:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != owner.pw_uid:
            out.append(_remove_foreign(path, st, owner, dry_run))
    if not dry_run:
        out += _lock_for(f"{shm_dir}/{SEGMENT_PREFIX}{group}{LOCK_SUFFIX}", owner)
    return out


def _remove_foreign(path: str, st: os.stat_result, owner: pwd.struct_passwd, dry_run: bool) -> Outcome:
    what = "a regular file" if stat.S_ISREG(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    why = f"{what} of {owner_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, not of the feeder's user {owner.pw_name}"
    if dry_run:
        return Outcome(path, "would remove", why)
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # fd-based on Linux: never follows a link planted inside
        else:
            os.unlink(path)  # a symbolic link itself, never its target
    except OSError as exc:
        return Outcome(path, "failed", f"{why}: {exc.strerror or exc}")
    return Outcome(path, "removed", why)


def _lock_for(path: str, owner: pwd.struct_passwd) -> list[Outcome]:
    """Create the ownership lock file as ``owner``'s, mode 0600 (kept when it is already theirs). A file
    another account planted meanwhile is removed again; bounded, then reported as failed."""
    for _ in range(FOREIGN_RETRIES):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_MODE)
        except FileExistsError:
            st = os.lstat(path)
            if st.st_uid == owner.pw_uid:
                return []
            _remove_foreign(path, st, owner, dry_run=False)
            continue
        try:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
            os.fchmod(fd, LOCK_MODE)
        finally:
            os.close(fd)
        return [Outcome(path, "created", f"ownership lock for {owner.pw_name}, mode {LOCK_MODE:04o}")]
    return [Outcome(path, "failed", f"another account kept re-creating it ({FOREIGN_RETRIES} attempts)")]


def _user(name: str) -> pwd.struct_passwd:
    return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)


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
