"""Issue 19: each peer's own Binance client, pointed at the simulator unchanged but for base URLs, syncs
and holds the simulator's truth at the same update id (``scripts/peers_vs_sim.py``).

Skipped for a peer that is not installed: the peers are the ``peers`` extra (``pip install -e '.[peers]'``),
not the ``test`` one.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "peers_vs_sim.py"
# Long enough for each peer's start-up: UNICORN spaces its first snapshots 4-5 s apart by design.
SECONDS = {"python-binance": 6.0, "unicorn": 16.0, "cryptofeed": 6.0, "ccxt": 8.0}
MIN_CHECKED = 10


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers_vs_sim", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("peers_vs_sim", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("peer", sorted(SECONDS))
def test_peer_client_syncs_and_matches_the_truth(peer: str) -> None:
    script = load_script()
    pytest.importorskip(script.PEER_MODULES[peer], reason=f"{peer} is in the peers extra: pip install -e '.[peers]'")
    with script.simulator([], tls=peer in script.WSS_ONLY) as urls:
        report: dict[str, Any] = script.compare_peer(peer, urls, SECONDS[peer], script.DEFAULT_LEVELS)
    assert report["error"] is None, report["error"]
    assert report["checked"] >= MIN_CHECKED, report
    assert report["matched"] == report["checked"], report["mismatches"]
    expected = {"python-binance": 2, "unicorn": 3, "cryptofeed": 4, "ccxt": 4}[peer]  # markets each one follows
    assert len(report["markets"]) == expected, report["markets"]


GUARD_PROBE = """
import runpy, socket, sys
runpy.run_path(sys.argv[1])["guard_loopback"]()
def attempt(action):
    try:
        action()
    except OSError as exc:
        return "refused" if "peers_vs_sim" in str(exc) else type(exc).__name__
    return "allowed"
probe = socket.socket()
print(attempt(lambda: socket.getaddrinfo("0.0.0.0", 9)), attempt(lambda: probe.connect(("0.0.0.0", 9))))
print(socket.getaddrinfo("127.0.0.1", 9)[0][4][0])
"""


def test_the_guard_refuses_anything_but_the_loopback() -> None:
    """The children cannot reach an exchange even through a URL the script forgot to redirect. The probe
    uses 0.0.0.0 (not the loopback to the guard, yet never leaving the host should the guard fail)."""
    done = subprocess.run([sys.executable, "-c", GUARD_PROBE, str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["refused", "refused", "127.0.0.1"], done.stdout + done.stderr
