"""Logs for journald (issue 17 item 4): native-protocol datagrams with fields when stderr is the journal,
plain lines otherwise. journald is stood in for by a datagram socket this test binds and reads (the
protocol is the bytes on that socket), pointed at through LDC_JOURNAL_SOCKET."""

from __future__ import annotations

import array
import io
import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from feeder_helpers import group_table, processes, unique_group, wait_until, write_config

from ldc.config import endpoints, load_config
from ldc.io.governor import governor_key
from ldc.logjournal import JournalHandler, StructuredFields, decode_fields, encode_field, priority, stderr_is_journal
from ldc.sim import Simulator

BIG_MESSAGE_BYTES = 400_000  # larger than a datagram may be (net.core.wmem_default is ~208 kB)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal.sock"))
    sock.settimeout(10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    try:
        yield sock
    finally:
        sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    """One journal entry: a datagram, or a memfd passed as SCM_RIGHTS (the protocol's large-entry form)."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
            fds.frombytes(payload[: fds.itemsize])
    if fds:
        with os.fdopen(fds[0], "rb") as handle:
            handle.seek(0)  # the sender's offset is shared: journald maps the file instead
            data = handle.read()
    return dict(decode_fields(data))


def record(message: str, *args: object, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ldc.feeder", level, "/x/feeder.py", 42, message, args, None, func="tick")
    rec.__dict__.update(extra)
    return rec


def test_fields_are_encoded_as_journald_parses_them() -> None:
    assert encode_field("MESSAGE", "plain") == b"MESSAGE=plain\n"
    two_lines = encode_field("MESSAGE", "a\nb")
    assert two_lines == b"MESSAGE\n" + (3).to_bytes(8, "little") + b"a\nb\n"
    assert decode_fields(encode_field("A", "x=y") + two_lines) == [("A", "x=y"), ("MESSAGE", "a\nb")]
    assert [priority(level) for level in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # a stream the service inherited
        assert not stderr_is_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not stderr_is_journal(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not stderr_is_journal(stream)


def test_a_record_is_one_datagram_with_its_fields(journal: socket.socket) -> None:
    handler = JournalHandler(journal.getsockname())
    handler.emit(record("market %s: out of sync: %s", "BTCUSDT", "gap", group="spot", symbol="BTCUSDT", state="buffering", reason="gap"))
    got = receive(journal)
    assert got["MESSAGE"] == "market BTCUSDT: out of sync: gap" and got["PRIORITY"] == "4"
    assert (got["LDC_GROUP"], got["LDC_SYMBOL"], got["LDC_STATE"], got["LDC_REASON"]) == ("spot", "BTCUSDT", "buffering", "gap")
    assert (got["SYSLOG_IDENTIFIER"], got["LOGGER"], got["CODE_LINE"], got["CODE_FUNC"]) == ("ldc", "ldc.feeder", "42", "tick")
    handler.close()


def test_a_traceback_and_a_huge_record_arrive_whole(journal: socket.socket) -> None:
    handler = JournalHandler(journal.getsockname())
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").addHandler(handler)
        logging.getLogger("t").exception("worker failed")
        logging.getLogger("t").removeHandler(handler)
    got = receive(journal)
    assert got["MESSAGE"].startswith("worker failed\nTraceback") and "ValueError: boom" in got["MESSAGE"]
    assert got["PRIORITY"] == "3"
    handler.emit(record("x" * BIG_MESSAGE_BYTES))  # too large for a datagram: a sealed memfd
    assert receive(journal)["MESSAGE"] == "x" * BIG_MESSAGE_BYTES
    handler.close()


def test_an_unreachable_journal_falls_back_to_a_plain_line(tmp_path: Path) -> None:
    out = io.StringIO()
    handler = JournalHandler(str(tmp_path / "nobody-listens"), fallback=out)
    handler.emit(record("market %s: stale", "ETHUSDT"))
    assert out.getvalue().rstrip().endswith("ldc.feeder WARNING market ETHUSDT: stale")


def test_structured_fields_name_the_group_and_a_market_message_s_symbol() -> None:
    fields = StructuredFields("spot")
    rec = record("market %s: %d ms behind", "ETHUSDT", 1500)
    assert fields.filter(rec) and (rec.group, rec.symbol) == ("spot", "ETHUSDT")  # type: ignore[attr-defined]
    other = record("connection %d closed", 3)
    assert fields.filter(other) and not hasattr(other, "symbol")


def test_ldc_feed_under_systemd_sends_fields_and_plain_lines_otherwise(
    tmp_path: Path, sim_factory: object, journal: socket.socket
) -> None:
    spot: Simulator = sim_factory(spot_symbols=("BTCUSDT",))  # type: ignore[operator]
    group = unique_group("jrnl")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    stderr_path = tmp_path / "stderr"
    with processes() as procs, stderr_path.open("wb") as sink:
        procs.groups.append(group)
        procs.governors.append(governor_key(endpoints(load_config(config).group(group)).rest_url))
        st = os.fstat(sink.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "LDC_JOURNAL_SOCKET": journal.getsockname()}
        procs.ldc("feed", str(config), "--group", group, stderr=sink, env=env)
        entries: list[dict[str, str]] = []

        def synced_entry() -> dict[str, str] | None:
            entries.append(receive(journal))
            return next((e for e in entries if e["MESSAGE"].startswith("market BTCUSDT: in sync")), None)

        entry = wait_until(synced_entry, what="the journal entry of BTCUSDT in sync")
    assert (entry["LDC_GROUP"], entry["LDC_SYMBOL"], entry["LDC_STATE"], entry["PRIORITY"]) == (group, "BTCUSDT", "synced", "6")
    assert all(e["LDC_GROUP"] == group for e in entries)
    assert b"in sync" not in stderr_path.read_bytes()  # the journal got it, not the stream

    plain = tmp_path / "plain"
    config2 = write_config(tmp_path / "ldc2.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    with processes() as procs, plain.open("wb") as sink:
        procs.groups.append(group)
        procs.governors.append(governor_key(endpoints(load_config(config2).group(group)).rest_url))
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        procs.ldc("feed", str(config2), "--group", group, stderr=sink, stdout=subprocess.DEVNULL, env=env)
        wait_until(lambda: b"market BTCUSDT: in sync" in plain.read_bytes(), what="the plain line on stderr")
