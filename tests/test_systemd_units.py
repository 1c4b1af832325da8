"""systemd/ units: `systemd-analyze verify` (systemd.unit(5), systemd.service(5), systemd.exec(5)) and the
properties the feeder relies on (Type=notify, watchdog, a static user, /dev/shm shared with readers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
INSTALLED_LDC = "/usr/local/bin/ldc"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def _keys(unit: Path) -> dict[str, list[str]]:
    """``Key`` -> every value it is given in the unit (systemd keys may repeat)."""
    keys: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def _verify(tmp_path: Path, service_text: str, unit: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ldc-feeder@.service").write_text(service_text)
    shutil.copy(UNITS / "ldc.target", tmp_path / "ldc.target")
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / unit)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def _our_warnings(stderr: str) -> list[str]:
    # verify also reports on units of the host it loads as dependencies; ours are the ones that matter
    return [line for line in stderr.splitlines() if "ldc-feeder" in line or "ldc.target" in line]


def _runnable_service() -> str:
    # the installed path does not exist here: point ExecStart at this checkout's console script
    ldc = Path(sys.executable).parent / "ldc"
    return (UNITS / "ldc-feeder@.service").read_text().replace(INSTALLED_LDC, str(ldc))


@needs_analyze
@pytest.mark.parametrize("unit", ["ldc-feeder@spot.service", "ldc.target"])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, unit: str) -> None:
    result = _verify(tmp_path, _runnable_service(), unit)
    assert (result.returncode, _our_warnings(result.stderr)) == (0, [])


@needs_analyze
def test_verify_catches_a_bad_key_so_the_check_above_can_fail(tmp_path: Path) -> None:
    result = _verify(tmp_path, _runnable_service().replace("ProtectClock=", "ProtectClok="), "ldc-feeder@spot.service")
    assert any("Unknown key 'ProtectClok'" in line for line in _our_warnings(result.stderr))


@needs_analyze
def test_verify_catches_a_missing_executable(tmp_path: Path) -> None:
    result = _verify(tmp_path, (UNITS / "ldc-feeder@.service").read_text(), "ldc-feeder@spot.service")
    assert result.returncode != 0
    assert f"Command {INSTALLED_LDC} is not executable" in result.stderr


def test_feeder_unit_runs_one_group_under_notify_and_watchdog() -> None:
    keys = _keys(UNITS / "ldc-feeder@.service")
    assert keys["ExecStart"] == [f"{INSTALLED_LDC} feed /etc/ldc/ldc.toml --group %i"]
    assert keys["ExecStartPre"] == [f"+{INSTALLED_LDC} clean --group %i --foreign-owner ldc"]  # as root: squatters gone
    assert (keys["Type"], keys["Restart"], keys["NotifyAccess"]) == (["notify"], ["always"], ["main"])
    assert int(keys["WatchdogSec"][0]) > 0
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["WantedBy"] == ["ldc.target"]


def test_feeder_unit_keeps_dev_shm_shared_and_uses_a_static_user() -> None:
    keys = _keys(UNITS / "ldc-feeder@.service")
    for hides_shm in ("PrivateDevices", "PrivateIPC", "DynamicUser", "InaccessiblePaths", "TemporaryFileSystem"):
        assert hides_shm not in keys
    assert (keys["User"], keys["Group"], keys["RemoveIPC"]) == (["ldc"], ["ldc"], ["no"])
    assert keys["NoNewPrivileges"] == ["yes"] and keys["ProtectSystem"] == ["strict"]
    sysusers = (UNITS / "sysusers.d" / "ldc.conf").read_text().splitlines()
    assert "g ldc -" in sysusers and any(line.startswith("u ldc -:ldc ") for line in sysusers)


def test_target_is_wanted_by_multi_user() -> None:
    assert _keys(UNITS / "ldc.target")["WantedBy"] == ["multi-user.target"]
