"""Type stub of the C extension ldc/_spool.c (the recording's spool: a ring written by a native thread)."""

class Spool:
    def __init__(self, capacity: int, poll_ms: int) -> None: ...
    def append(self, frames: list[bytes], recv_time_ns: int, /) -> bool:
        """One read's frames as lines ``<recv_time_ns> <frame>``; False: dropped and counted (no room, failed, closed)."""
    def append_line(self, line: bytes, /) -> bool:
        """One whole snapshot line ending in a line feed; False: dropped and counted."""
    def switch(self, fd: int, /) -> int:
        """Later lines go to ``fd`` once the earlier ones are written; returns the previous fd (-1: none) to close."""
    def fail(self, errno: int, /) -> None:
        """Stop for good, as after a write error: pending and later lines count as dropped."""
    def close(self) -> None:
        """Write what is appended and end the writer thread."""
    def stats(self) -> tuple[int, int, int, int, int, int, int]:
        """(frames written, snapshots written, dropped, errno or 0, bytes in the current file, bytes written, pending bytes)."""
