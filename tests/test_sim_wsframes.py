"""RFC 6455 framing helpers: the handshake key (the RFC's own example), frame lengths, masking, and the
header checks a server must make on client frames."""

from __future__ import annotations

import pytest

from ldc.sim.wsframes import OP_CLOSE, OP_PING, OP_TEXT, FrameError, accept_key, close_payload, encode_frame, parse_close, parse_head, unmask


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(("size", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_server_frames_are_unmasked_with_the_right_length_field(size: int, header_len: int) -> None:
    frame = encode_frame(OP_TEXT, b"x" * size)
    assert frame[0] == 0x81 and frame[1] & 0x80 == 0
    assert len(frame) == header_len + size


def test_unmask_is_its_own_inverse() -> None:
    mask = b"\x01\x02\x03\x04"
    data = b"hello, binance"
    assert unmask(unmask(data, mask), mask) == data
    assert unmask(b"\x69\x67\x6f\x68", mask) == bytes(a ^ b for a, b in zip(b"\x69\x67\x6f\x68", mask))


def test_client_header_checks() -> None:
    assert parse_head(0x81, 0x85) == (True, OP_TEXT, True, 5)
    with pytest.raises(FrameError, match="reserved bits set"):
        parse_head(0xC1, 0x80)
    with pytest.raises(FrameError, match="unknown opcode 0x3"):
        parse_head(0x83, 0x80)
    with pytest.raises(FrameError, match="fragmented control frame"):
        parse_head(OP_PING, 0x80)


def test_close_payloads() -> None:
    assert parse_close(close_payload(1001, "bye")) == (1001, "bye")
    assert parse_close(b"") == (1005, "")
    with pytest.raises(FrameError, match="1-byte payload"):
        parse_close(b"\x03")
    assert encode_frame(OP_CLOSE, b"")[0] == 0x88
