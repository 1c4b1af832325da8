"""RFC 6455 framing for the server side: handshake key, unmasked server frames, masked client frames.

Server frames are never masked (RFC 6455 5.1); client frames must be. No extension is negotiated, so
any RSV bit from a client is a protocol error (5.2). Control frames carry at most 125 bytes and are
never fragmented (5.5).
"""

from __future__ import annotations

import base64
import hashlib
import struct

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY))
CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))

MAX_CONTROL_PAYLOAD_BYTES = 125
MAX_CLIENT_MESSAGE_BYTES = 1 << 20  # control messages are tiny; this bounds a hostile client

# Close codes (RFC 6455 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009


class FrameError(Exception):
    """A client broke the framing rules; ``code`` is the close code to answer with."""

    def __init__(self, message: str, *, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def accept_key(client_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((client_key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def frame_header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked server frame."""
    return frame_header(opcode, len(payload), fin=fin, rsv=rsv) + payload


def text_frame(payload: bytes) -> bytes:
    return frame_header(OP_TEXT, len(payload)) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")[:MAX_CONTROL_PAYLOAD_BYTES - 2]


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (done on one big integer: no per-byte Python loop)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def parse_head(first: int, second: int) -> tuple[bool, int, bool, int]:
    """Split the first two header bytes; the length is 126/127 when an extended length follows."""
    if first & 0x70:
        raise FrameError(f"reserved bits set without an extension, found 0x{first & 0x70:02x}")
    opcode = first & 0x0F
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise FrameError(f"unknown opcode 0x{opcode:x}")
    fin = bool(first & 0x80)
    if opcode in CONTROL_OPCODES and not fin:
        raise FrameError(f"fragmented control frame, opcode 0x{opcode:x}")
    return fin, opcode, bool(second & 0x80), second & 0x7F


def parse_close(payload: bytes) -> tuple[int, str]:
    """The (code, reason) of a close frame; 1005 when the frame carries no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte payload, expected 0 or >= 2 bytes")
    code = struct.unpack("!H", payload[:2])[0]
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("close reason is not utf-8", code=CLOSE_INVALID_DATA) from exc
    return code, reason
