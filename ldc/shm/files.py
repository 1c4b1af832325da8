"""Files in /dev/shm that only the feeders' user may own: opened without following links, adopted only
when this user owns them with the mode ldc sets, created with ``O_EXCL``; and the open-file-description
(OFD) byte-range locks of docs/LAYOUT.md section 10.

/dev/shm is writable by every local account (sticky, mode 1777): any of them can create a name
before the feeder does. Adopting such a file would let its owner change what readers see (issue 14),
so a file of another owner, or with another mode, is refused with both named.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
import struct
from typing import Final

from ldc.errors import SegmentError

# struct flock on Linux (x86-64, arm64): short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid, padded to 32 bytes. OFD locks need l_pid == 0.
_FLOCK: Final = struct.Struct("=hh4xqqi4x")
WHOLE_FILE: Final = (0, 0)  # (start, length): length 0 reaches past any end of file


def owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_owned(fd: int, path: str, mode: int) -> os.stat_result:
    """Refuse a file that is not a regular file of this process's user with exactly ``mode``."""
    st = os.fstat(fd)
    me = os.geteuid()
    if not stat.S_ISREG(st.st_mode) or st.st_uid != me or stat.S_IMODE(st.st_mode) != mode:
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else "not a regular file"
        raise SegmentError(
            f"{path} is {kind} of {owner_name(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}; "
            f"ldc adopts only a file of its own user {owner_name(me)} with mode {mode:04o}: "
            "remove it (its owner or root) and start again"
        )
    return st


def open_owned(path: str, flags: int, mode: int, *, create: bool = False) -> int | None:
    """Open ``path`` (never through a symbolic link) and check it is ours with ``mode``. None when it
    does not exist and ``create`` is False; with ``create`` a missing file is made with ``O_EXCL``."""
    while True:
        if create:
            try:
                return create_exclusive(path, mode, flags)
            except FileExistsError:
                pass
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                continue  # removed between the two opens: create it after all
            return None
        except OSError as exc:
            raise refusal(path, exc) from None
        try:
            check_owned(fd, path, mode)
        except BaseException:
            os.close(fd)
            raise
        return fd


def create_exclusive(path: str, mode: int, flags: int = os.O_RDWR) -> int:
    """A new file of ours: ``O_CREAT | O_EXCL | O_NOFOLLOW``, then the exact mode (the umask masked
    it). FileExistsError when the name is taken; other failures as SegmentError naming the file."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise
    except OSError as exc:
        raise refusal(path, exc) from None
    os.fchmod(fd, mode)
    return fd


def unlink_own(path: str) -> bool:
    """Remove ``path`` if it is a file of this user (never another's, never through a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        raise SegmentError(f"{path} is not a file of this user: it belongs to {owner_name(st.st_uid)}; remove it by hand")
    os.unlink(path)
    return True


def same_file(fd: int, path: str) -> bool:
    """``path`` (not followed if a link) still names the file open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def ofd_lock(fd: int, *, write: bool) -> bool:
    """Try to take an OFD lock over the whole file; False when another holder conflicts."""
    kind = fcntl.F_WRLCK if write else fcntl.F_RDLCK
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, *WHOLE_FILE, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def ofd_holder(fd: int) -> bool:
    """True when some open file description holds a write lock on the file (F_OFD_GETLK: asks, takes nothing)."""
    raw = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, *WHOLE_FILE, 0))
    return bool(_FLOCK.unpack(raw)[0] != fcntl.F_UNLCK)


def write_locked(path: str) -> bool:
    """Some process holds a write lock over the file at ``path`` (a live writer's, a hot standby's build
    file); False when it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return ofd_holder(fd)
    finally:
        os.close(fd)


def refusal(path: str, exc: OSError) -> SegmentError:
    """The error for a file ldc will not open, naming why (a link, another user's file)."""
    if exc.errno == errno.ELOOP:
        return SegmentError(f"{path} is a symbolic link; ldc never follows one in /dev/shm: remove it")
    if exc.errno == errno.EACCES:
        try:
            st = os.lstat(path)
            return SegmentError(
                f"{path} belongs to {owner_name(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o} and cannot be "
                f"opened by {owner_name(os.geteuid())}: remove it (its owner or root) and start again"
            )
        except OSError:
            pass
    return SegmentError(f"cannot open {path}: {exc.strerror}")


def ofd_wait_write_lock(fd: int) -> None:
    """Block until this open file description holds a write lock over the whole file (F_OFD_SETLKW). The
    kernel grants it the instant the holder's last descriptor closes, a death included. EINTR is retried
    (Python's fcntl does). The GIL is released while it waits."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, *WHOLE_FILE, 0))
