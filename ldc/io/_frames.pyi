"""Type stub of the C extension ldc/io/_frames.c (websocket frames, the common case)."""

def split_frames(
    buffer: bytearray | bytes | memoryview, pos: int, end: int, out: list[tuple[int, bytes]], /
) -> tuple[int, int, bool]:
    """Whole, final, unmasked text / binary frames of buffer[pos:end] appended to out as (opcode, payload);
    returns (pos, want, uncommon): where it stopped, the size of a cut frame whose header is in (else 0),
    and whether it stopped at a frame it leaves to ldc.io.ws._FrameParser."""
