"""`ldc demo-hosts` (issue 16, item 6): simulator, a real feeder, nats-server, relay and a mirror on a
second "host"; the reader there checks every in-sync snapshot against the simulator's truth."""

from __future__ import annotations

import json
import subprocess
import sys

from ldc.fanout.demo import isolated_hosts


def test_demo_hosts_mirror_equals_the_exchange() -> None:
    done = subprocess.run([sys.executable, "-m", "ldc.cli", "demo-hosts", "--duration", "4", "--group-prefix", "tdemohosts"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["synced"] == summary["markets"] == 3
    assert summary["checked"] > 0 and summary["equal"] == summary["checked"] and not summary["mismatches"]
    if isolated_hosts():
        assert "its own mount namespace and /dev/shm" in done.stdout
