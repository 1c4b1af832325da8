"""The recording's compressor: ``python -m ldc.record_compress PATH...`` turns closed spool files
(``<group>-<UTC start>.spool``, plain lines written by the feeder, ``ldc/record.py``) into the ``.gz`` files of
the recording format, in a process of its own at the lowest priority (``SCHED_IDLE`` where allowed, else
``nice`` 19), so that the feeder never pays for deflate.

A PATH that is a directory stands for its spool files. For each spool file, in name order:

- a spool still locked (``flock``) is skipped: its feeder writes it, or another compressor has it (one
  that another compressor removed meanwhile is skipped too);
- an empty spool is removed;
- otherwise its complete lines (a last line cut by a killed feeder is left out, with a warning) are
  gzip-compressed into ``<stem>.gz.part``, which is synced, renamed ``<stem>.gz`` and only then is the spool
  removed. A compressor killed at any moment leaves the spool (replayable as is, compressed by the next
  one); a ``.gz`` already there (killed between the rename and the removal) is kept and the spool removed.

The ``.gz`` holds the spool's bytes exactly (one gzip member), so every line is byte for byte what the
feeder received. One log line per file says its sizes and the CPU it took; the exit status is 1 when any
file failed (its spool is kept), else 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

log = logging.getLogger("ldc.record")

FILE_SUFFIX: Final = ".gz"
SPOOL_SUFFIX: Final = ".spool"
PART_SUFFIX: Final = ".part"  # a .gz being written; never listed as a recording
COMPRESS_LEVEL: Final = 1  # ISA-L's level 1 compresses Binance JSON ~4-5x at ~1 us per KB
GZIP_WBITS: Final = 31  # zlib's window bits for a gzip header and trailer
BLOCK_BYTES: Final = 1 << 20  # read and compressed this much at a time
NICE_INCREMENT: Final = 19  # the lowest priority when SCHED_IDLE is not allowed
FILE_MODE: Final = 0o640


def _deflate_module() -> ModuleType:
    """ISA-L's deflate: the same gzip format at ~1/3 of zlib level 1's CPU."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the portable fallback
        return zlib
    return isal_zlib


_deflate: Final = _deflate_module()


@dataclass(frozen=True)
class Compressed:
    """One spool turned into its .gz."""

    spool: str
    target: str
    spool_bytes: int  # the complete lines compressed
    gz_bytes: int
    cut_bytes: int  # a last line without its line feed, left out
    cpu_s: float  # this process's CPU for the file


def lower_priority() -> str:
    """Run only on otherwise idle CPU: ``SCHED_IDLE`` if allowed, and ``nice`` 19 as well. Says which held."""
    try:
        os.nice(NICE_INCREMENT)
        niced = "nice"
    except OSError:  # a seccomp filter refusing setpriority: the compression still has to happen
        niced = "normal priority"
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not allowed here (a container's seccomp): nice alone
        return niced
    return "SCHED_IDLE"


def spool_files(paths: list[str]) -> list[str]:
    """Each path, a directory standing for its spool files in name (= time) order."""
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            out += [str(p) for p in sorted(Path(path).iterdir()) if p.name.endswith(SPOOL_SUFFIX)]
        else:
            out.append(path)
    return out


def target_of(spool: str) -> str:
    if not spool.endswith(SPOOL_SUFFIX):
        raise ValueError(f"expected a spool file name ending in {SPOOL_SUFFIX!r}, found {spool!r}")
    return spool[: -len(SPOOL_SUFFIX)] + FILE_SUFFIX


def compress_spool(spool: str) -> Compressed | None:
    """The spool's .gz (see the module's docstring); None when it was skipped (locked) or removed (empty).
    ``OSError`` when it cannot be read or the .gz cannot be written: the spool is then kept."""
    target = target_of(spool)
    try:
        fd = os.open(spool, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # another compressor was first
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its feeder still writes it (or another compressor has it)
        status = os.fstat(fd)
        if status.st_nlink == 0:
            return None  # compressed and removed by another compressor between the open and the lock
        size = status.st_size
        if size == 0 or os.path.exists(target):
            os.unlink(spool)  # nothing recorded / compressed already, the removal was all that was left
            return None
        start = time.process_time()
        end = _complete_end(fd, size)
        gz_bytes = _write_gz(fd, end, target)
        os.unlink(spool)
        return Compressed(spool, target, end, gz_bytes, size - end, time.process_time() - start)
    finally:
        os.close(fd)


def _complete_end(fd: int, size: int) -> int:
    """Where the last complete line ends (0: none): a killed writer may have left a line cut short."""
    end = size
    while end > 0:
        start = max(0, end - BLOCK_BYTES)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _write_gz(fd: int, length: int, target: str) -> int:
    """The first ``length`` bytes of ``fd`` as one gzip member in ``target`` (written as .part, synced, renamed)."""
    part = target + PART_SUFFIX
    out = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        compressor = _deflate.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        written, offset = 0, 0
        while offset < length:
            block = os.pread(fd, min(BLOCK_BYTES, length - offset), offset)
            if not block:
                raise OSError(f"the spool ends at {offset} bytes, expected {length}")
            offset += len(block)
            written += _write_all(out, compressor.compress(block))
        written += _write_all(out, compressor.flush(zlib.Z_FINISH))
        os.fsync(out)  # the .gz is on disk before the spool goes
    except BaseException:
        os.close(out)
        os.unlink(part)
        raise
    os.close(out)
    os.rename(part, target)
    return written


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s ldc.record_compress[%(process)d]: %(message)s")
    if not argv:
        print("usage: python -m ldc.record_compress SPOOL_OR_DIRECTORY...", file=sys.stderr)
        return 2
    priority = lower_priority()
    status, files = 0, 0
    for spool in spool_files(argv):
        try:
            done = compress_spool(spool)
        except (OSError, ValueError) as exc:
            log.error("compressing %s failed, the spool is kept (replayable as is): %s", spool, exc)
            status = 1
            continue
        if done is None:
            continue
        files += 1
        if done.cut_bytes:
            log.warning("%s: its last %d bytes are a line cut short (its writer was killed): left out", spool, done.cut_bytes)
        log.info("compressed %s: %d -> %d bytes (%.2fx), %.3f s CPU at %s (%.3f s per MB)", done.target, done.spool_bytes,
                 done.gz_bytes, done.spool_bytes / max(1, done.gz_bytes), done.cpu_s, priority,
                 done.cpu_s / max(1e-6, done.spool_bytes / 1e6))  # fmt: skip
    usage = resource.getrusage(resource.RUSAGE_SELF)
    log.info("compressor done: %d files, %.3f s CPU for the whole process (interpreter start included)",
             files, usage.ru_utime + usage.ru_stime)  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
