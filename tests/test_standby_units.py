"""systemd/ldc-standby@.service and systemd/standby.conf (issue 17 item 3): the standby unit is the feeder
unit but for ``--standby`` (so it cannot drift from the feeder's hardening), the drop-in gives the feeder unit
``--standby`` too (the roles alternate), and the standby unit passes ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_systemd_units import INSTALLED_LDC, UNITS, _keys

STANDBY_START = f"{INSTALLED_LDC} feed /etc/ldc/ldc.toml --group %i --standby"


def test_the_standby_unit_is_the_feeder_unit_but_for_standby() -> None:
    feeder, standby = _keys(UNITS / "ldc-feeder@.service"), _keys(UNITS / "ldc-standby@.service")
    assert standby.pop("ExecStart") == [STANDBY_START]
    assert standby.pop("Description") == ["ldc depth cache feeder, hot standby, group %i"]
    feeder.pop("ExecStart"), feeder.pop("Description")
    assert standby == feeder


def test_the_drop_in_gives_the_feeder_unit_standby() -> None:
    keys = _keys(UNITS / "standby.conf")
    assert keys == {"ExecStart": ["", STANDBY_START]}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_standby_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    ldc = Path(sys.executable).parent / "ldc"  # the installed path does not exist here
    (tmp_path / "ldc-standby@.service").write_text((UNITS / "ldc-standby@.service").read_text().replace(INSTALLED_LDC, str(ldc)))
    shutil.copy(UNITS / "ldc.target", tmp_path / "ldc.target")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "ldc-standby@spot.service")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "ldc-standby" in line or "ldc.target" in line]
    assert (result.returncode, ours) == (0, [])
