"""systemd/ldc-relay@.service and ldc-mirror@.service (issue 16): `systemd-analyze verify` passes, and
they run the commands as the feeder's static user with /dev/shm shared with the host."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
INSTALLED_LDC = "/usr/local/bin/ldc"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("role", ["relay", "mirror"])
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, role: str) -> None:
    text = (UNITS / f"ldc-{role}@.service").read_text().replace(INSTALLED_LDC, str(Path(sys.executable).parent / "ldc"))
    (tmp_path / f"ldc-{role}@.service").write_text(text)
    shutil.copy(UNITS / "ldc.target", tmp_path / "ldc.target")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / f"ldc-{role}@spot.service")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    ours = [line for line in result.stderr.splitlines() if f"ldc-{role}" in line or "ldc.target" in line]
    assert (result.returncode, ours) == (0, [])


@pytest.mark.parametrize("role", ["relay", "mirror"])
def test_unit_runs_the_command_as_ldc_with_dev_shm_shared(role: str) -> None:
    text = (UNITS / f"ldc-{role}@.service").read_text()
    assert f"ExecStart={INSTALLED_LDC} {role} /etc/ldc/nats.toml --group %i" in text
    assert "User=ldc" in text and "RemoveIPC=no" in text
    for forbidden in ("PrivateDevices=yes", "PrivateIPC=yes", "DynamicUser=yes"):
        assert forbidden not in text
