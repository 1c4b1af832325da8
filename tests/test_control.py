"""ldc.control (issue 18, "What to build" 2 and "Bad input"): a running feeder is changed from code through
its Unix socket, each command answered with its result; the socket belongs to a control group distinct
from the readers' (checked with a real second user through setpriv); SIGHUP and control coexist.
The simulator runs in this process, the feeder in a thread of it (or in a child for SIGHUP)."""

from __future__ import annotations

import grp
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feeder_helpers import FeederRun, check_truth, feeder_in_thread, group_table, processes, unique_group, wait_until, write_config
from ldc.config import endpoints, load_config
from ldc.control import CONTROL_GROUP_ENV, Control, ControlError, ControlServer, MarketInfo, SymbolResult, socket_path
from ldc.io.governor import governor_key
from ldc.shm.layout import Status
from ldc.shm.reader import Reader
from ldc.sim import Simulator

pytestmark = pytest.mark.timeout(120)

NOBODY = "65534"  # a real second user with no business on this feeder
as_root_with_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("groupadd"),
    reason="needs root, setpriv and groupadd: a second user and a control group are made for the test",
)


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT"), rate=20.0, history_events=5000)


@pytest.fixture
def control_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[grp.struct_group]:
    """A control group made for the test (and removed after it), named in the feeder's environment."""
    name = f"ldct{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
    subprocess.run(["groupadd", name], check=True)
    monkeypatch.setenv(CONTROL_GROUP_ENV, name)
    try:
        yield grp.getgrnam(name)
    finally:
        subprocess.run(["groupdel", name], check=False)


def as_user(*args: str, groups: str | None, regid: str = NOBODY) -> subprocess.CompletedProcess[str]:
    """Run python ARGS as uid nobody, with ``regid`` and only ``groups`` as supplementary groups."""
    who = ["setpriv", "--reuid", NOBODY, "--regid", regid] + (["--groups", groups] if groups else ["--clear-groups"])
    return subprocess.run([*who, sys.executable, *args], capture_output=True, text=True, timeout=60, cwd="/")


def control_of(run: FeederRun) -> Control:
    """The feeder's Control, once its socket is up (it comes a moment after the segment)."""
    wait_until(lambda: socket_path(run.group.name).exists(), what="the control socket")
    return Control(run.group.name)


def test_add_list_resync_refresh_remove_are_answered_and_done(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        run.wait_synced()
        control = control_of(run)
        assert control.add("ETHUSDT", "BTCUSDT") == [
            SymbolResult("ETHUSDT", True, "market ETHUSDT added"),
            SymbolResult("BTCUSDT", True, "market BTCUSDT was already running"),
        ]
        run.wait_synced("ETHUSDT")
        wait_until(lambda: check_truth(spot, run.reader, "ETHUSDT", "spot", 10), what="ETHUSDT equal to the truth")
        assert control.list() == [MarketInfo("BTCUSDT", "synced", True, ""), MarketInfo("ETHUSDT", "synced", True, "")]

        resyncs = run.counters("ETHUSDT")["resyncs"]
        assert control.resync("ETHUSDT") == "market ETHUSDT resyncing from a new snapshot"
        assert run.counters("ETHUSDT")["resyncs"] == resyncs + 1
        run.wait_synced("ETHUSDT")

        audits = run.feeder.markets["ETHUSDT"].sync.audits
        assert control.refresh("ETHUSDT") == "market ETHUSDT refreshing against a new snapshot"
        wait_until(lambda: run.feeder.markets["ETHUSDT"].sync.audits == audits + 1, what="the refresh's audit")
        assert run.in_sync("ETHUSDT") and run.counters("ETHUSDT")["audit_mismatches"] == 0

        assert control.remove("ETHUSDT") == [SymbolResult("ETHUSDT", True, "market ETHUSDT removed")]
        assert run.reader.markets() == ["BTCUSDT"]
        assert run.in_sync("BTCUSDT")


def test_unknown_symbol_is_answered_with_the_exchanges_message_in_the_reply_and_the_slot(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        run.wait_synced()
        [result] = control_of(run).add("NOSUCHCOIN")
        assert not result.ok
        assert "exchange error -1121 'Invalid symbol.'" in result.message
        status = run.status("NOSUCHCOIN")
        assert status.status == Status.ERROR and "-1121 'Invalid symbol.'" in status.message
        assert run.in_sync("BTCUSDT")


def test_commands_on_markets_the_feeder_does_not_have_fail_with_the_reason(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        control = control_of(run)
        group = run.group.name
        with pytest.raises(ControlError, match=rf"^market ETHUSDT is not running in group '{group}' \(1 markets\)$"):
            control.resync("ETHUSDT")
        with pytest.raises(ControlError, match="^market ETHUSDT is not running"):
            control.refresh("ETHUSDT")
        assert control.remove("ETHUSDT") == [SymbolResult("ETHUSDT", False, f"market ETHUSDT is not running in group '{group}'")]
        assert control.add("btc-usdt") == [SymbolResult("BTC-USDT", False, "symbol expected like 'BTCUSDT', found 'BTC-USDT'")]
        reply = control.call("explode", check=False)
        assert reply == {"ok": False, "result": None, "error": "command expected one of list, add, remove, resync, refresh, found 'explode'"}
        with pytest.raises(ControlError, match="^command 'resync' expected one symbol, found 2$"):
            control.call("resync", ["BTCUSDT", "ETHUSDT"])


def test_a_malformed_request_is_answered_and_the_next_one_served(spot: Simulator) -> None:
    import socket

    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        control_of(run)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(socket_path(run.group.name)))
            sock.sendall(b"{not json\n" + json.dumps({"command": "list"}).encode() + b"\n")
            stream = sock.makefile("rb")
            first, second = json.loads(stream.readline()), json.loads(stream.readline())
        assert not first["ok"] and first["error"].startswith("request expected one JSON object per line, found b'{not json")
        assert second["ok"] and second["result"][0]["symbol"] == "BTCUSDT"


def test_no_feeder_listening_is_said_by_the_client() -> None:
    group = unique_group("none")
    with pytest.raises(ControlError, match=f"^no feeder of group '{group}' is listening on {socket_path(group)}$"):
        Control(group).list()


@as_root_with_setpriv
def test_reading_a_book_does_not_grant_control_only_the_control_group_does(
    spot: Simulator, control_group: grp.struct_group
) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        run.wait_synced()
        group = control_of(run).group
        path = socket_path(group)
        st = os.stat(path)
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, control_group.gr_gid)
        readers_gid = str(os.stat(f"/dev/shm/ldc-{group}").st_gid)
        # nobody in the readers' group reads the book ...
        read = as_user("-c", f"from ldc import Reader; print(Reader({group!r}).snapshot('BTCUSDT').in_sync)", groups=None, regid=readers_gid)
        assert read.stdout.strip() == "True", read.stderr
        # ... but may not change the feeder: the socket's permissions refuse the connect
        refused = as_user("-m", "ldc.cli", "ctl", group, "remove", "BTCUSDT", groups=None, regid=readers_gid)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (f"ldc ctl: no permission to control group {group!r}: {path} is for the feeder's user "
                                          f"and group {control_group.gr_name!r} (reading a book does not grant it)")  # fmt: skip
        assert run.reader.markets() == ["BTCUSDT"]
        # a member of the control group may
        allowed = as_user("-m", "ldc.cli", "ctl", group, "list", groups=str(control_group.gr_gid))
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["result"] == [{"symbol": "BTCUSDT", "state": "synced", "in_sync": True, "error": ""}]


@as_root_with_setpriv
def test_a_socket_opened_too_wide_still_refuses_strangers_and_logs_them(
    spot: Simulator, control_group: grp.struct_group, caplog: pytest.LogCaptureFixture
) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        group = control_of(run).group
        os.chmod(socket_path(group), 0o666)  # a mistake by hand: the feeder's own peer check still holds
        with caplog.at_level(logging.WARNING, logger="ldc.control"):
            refused = as_user("-m", "ldc.cli", "ctl", group, "remove", "BTCUSDT", groups=None)
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"ldc ctl: refused: uid {NOBODY} gid {NOBODY} pid ")
        assert refused.stderr.rstrip().endswith(f"not in control group {control_group.gr_name!r}")
        assert any(r.getMessage().startswith(f"control: refused uid {NOBODY} gid {NOBODY} pid ") for r in caplog.records)
        assert run.reader.markets() == ["BTCUSDT"]


def test_the_socket_path_appears_only_with_its_final_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is never seen before the socket's group and mode are set: the too-wide test's chmod (and any
    client) used to meet the half-made socket under load, and the server's own chmod then undid the test's."""
    import ldc.control

    group = unique_group("ctlmode")
    seen_at_chmod: list[bool] = []
    real_chmod = os.chmod

    def watching_chmod(path: object, mode: int) -> None:
        seen_at_chmod.append(socket_path(group).exists())
        real_chmod(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(ldc.control.os, "chmod", watching_chmod)

    class Nothing:
        pass

    server = ControlServer(group, Nothing())  # type: ignore[arg-type]
    try:
        assert seen_at_chmod == [False]
        assert os.stat(socket_path(group)).st_mode & 0o777 in (0o600, 0o660)
    finally:
        server.close()
    assert not socket_path(group).exists()


def test_a_second_feeder_of_the_same_group_does_not_steal_the_socket(spot: Simulator) -> None:
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        control_of(run)

        class Nothing:
            pass

        with pytest.raises(OSError, match="is in use: another feeder of this group is running"):
            ControlServer(run.group.name, Nothing())  # type: ignore[arg-type]
        assert control_of(run).list()[0].symbol == "BTCUSDT"


def test_sighup_and_control_coexist_the_last_one_sets_the_running_set(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("ctlhup")
    path = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    with processes() as procs:
        procs.groups.append(group)
        procs.governors.append(governor_key(endpoints(load_config(path).group(group)).rest_url))
        with (tmp_path / "feed.log").open("wb") as log:
            proc = procs.ldc("feed", str(path), "--group", group, stdout=log, stderr=subprocess.STDOUT)
        with Reader(group, attach_timeout_s=20.0) as reader:
            control = Control(group)
            wait_until(lambda: socket_path(group).exists(), what="the control socket")
            assert control.add("ETHUSDT")[0].ok
            write_config(path, [group_table(group, "spot", ("BTCUSDT", "BNBUSDT"), spot)])
            proc.send_signal(signal.SIGHUP)  # the file's set: ETHUSDT (added by control only) goes
            wait_until(lambda: sorted(reader.markets()) == ["BNBUSDT", "BTCUSDT"], what="the reload")
            assert control.add("ETHUSDT")[0].ok  # and control after it wins again
            assert sorted(m.symbol for m in control.list()) == ["BNBUSDT", "BTCUSDT", "ETHUSDT"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not socket_path(group).exists()


def test_ldc_ctl_says_how_it_is_used_and_exits_2_for_a_wrong_call(capsys: pytest.CaptureFixture[str]) -> None:
    from ldc.control import main

    assert main([]) == 2
    assert main(["spot", "explode"]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "usage: ldc ctl GROUP list | add SYMBOL... | remove SYMBOL... | resync SYMBOL | refresh SYMBOL"
    ] * 2
    group = unique_group("absent")
    assert main([group, "list"]) == 2
    assert capsys.readouterr().err == f"ldc ctl: no feeder of group '{group}' is listening on {socket_path(group)}\n"


def test_a_feeder_that_may_not_write_run_ldc_serves_from_the_users_runtime_dir(
    spot: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ldc.control

    monkeypatch.setattr(ldc.control, "DEFAULT_CONTROL_DIR", "/proc/ldc-not-writable")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with feeder_in_thread(spot, "spot", ("BTCUSDT",)) as run:
        path = wait_until(lambda: socket_path(run.group.name) if socket_path(run.group.name).exists() else None,
                          what="the control socket")  # fmt: skip
        assert path == tmp_path / "ldc" / f"{run.group.name}.sock"
        assert Control(run.group.name).list()[0].symbol == "BTCUSDT"
