"""The config file as bytes (issue 14 item 5): a byte that is not UTF-8 is a bad config like any other, a clean
one-line error (exit 2) at the start of `ldc run` / `ldc feed`, and a reload that changes nothing on SIGHUP of
`ldc run` or of a feeder (every group keeps running with the old config, the error is logged, no traceback).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from feeder_helpers import group_table, processes, unique_group, wait_until, write_config
from ldc.config import load_config
from ldc.errors import ConfigError
from ldc.sim import Simulator
from test_supervisor import EXIT_TIMEOUT_S, _all_synced, one_group_run, spot  # noqa: F401  (spot is a fixture)

pytestmark = pytest.mark.timeout(90)

LATIN1_E_ACUTE = b"\xe9"  # what an editor saving in Latin-1 writes for "é"


def break_utf8(path: Path) -> None:
    """Append a comment holding a Latin-1 byte: valid TOML once decoded, but not UTF-8."""
    path.write_bytes(path.read_bytes() + b"# caf" + LATIN1_E_ACUTE + b"\n")


def test_load_config_names_the_byte_that_is_not_utf8(tmp_path: Path, spot: Simulator) -> None:
    path = write_config(tmp_path / "ldc.toml", [group_table("g", "spot", ("BTCUSDT",), spot)])
    lines = path.read_bytes().count(b"\n")
    break_utf8(path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    offset = path.read_bytes().index(LATIN1_E_ACUTE)
    assert str(caught.value) == f"{path}: expected UTF-8 text (TOML), found byte 0xe9 at line {lines + 1}, offset {offset}"


@pytest.mark.parametrize("command", ["run", "feed"])
def test_start_with_a_non_utf8_config_is_a_one_line_error_exit_2(tmp_path: Path, spot: Simulator, command: str) -> None:
    group = unique_group("utf")
    path = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    break_utf8(path)
    args = ["--group", group] if command == "feed" else []
    with processes() as procs:
        procs.groups.append(group)
        proc = procs.ldc(command, str(path), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert (proc.returncode, out) == (2, "")
    raw = path.read_bytes()
    at = raw.index(LATIN1_E_ACUTE)
    line = raw.count(b"\n", 0, at) + 1
    assert err.splitlines() == [f"ldc {command}: {path}: expected UTF-8 text (TOML), found byte 0xe9 at line {line}, offset {at}"]
    assert spot.stats()["connections"] == 0


def test_sighup_with_a_non_utf8_config_keeps_every_group_running(tmp_path: Path, spot: Simulator) -> None:
    with one_group_run(tmp_path, spot, "utfhup") as run:
        reader, log = run.reader, run.log
        feeder_pid = reader.info().writer_pid
        break_utf8(run.config)
        run.supervisor.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload ignored, the running groups stay as they are" in log.read_text(), what="the supervisor's error logged")
        os.kill(feeder_pid, signal.SIGHUP)  # as `systemctl reload` does to a feeder
        wait_until(lambda: "reload ignored, the running markets stay as they are" in log.read_text(), what="the feeder's error logged")
        assert run.supervisor.poll() is None and reader.writer_alive() and reader.info().writer_pid == feeder_pid
        assert _all_synced(reader)
    text = log.read_text()
    assert "Traceback" not in text and "UnicodeDecodeError" not in text
    assert text.count("expected UTF-8 text (TOML), found byte 0xe9") == 2

