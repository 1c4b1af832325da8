"""`ldc sim` as a process: first stdout line is the URL JSON, ready fast, clean exit on SIGTERM; options
map onto SimConfig; bad options fail before anything starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import requests

from ldc.errors import SimError
from ldc.sim.cli import build_parser, config_from_args, main
from ldc.sim.faults import FaultKind
from conftest import start_sim_process

READY_BUDGET_S = 10.0  # generous on a loaded 2-core machine; the simulator itself needs well under 1 s


def test_first_line_is_json_urls_and_sigterm_exits_cleanly() -> None:
    started = time.monotonic()
    proc, urls = start_sim_process("--symbols", "BTCUSDT,ETHUSDT", "--coinm-symbols", "BTCUSD_PERP")
    try:
        assert time.monotonic() - started < READY_BUDGET_S
        port = urls["rest"].rsplit(":", 1)[1]
        assert urls["rest"] == f"http://127.0.0.1:{port}" and urls["ws"] == f"ws://127.0.0.1:{port}"
        assert urls["markets"] == {"spot": ["BTCUSDT", "ETHUSDT"], "usdm": [], "coinm": ["BTCUSD_PERP"]}
        assert requests.get(f"{urls['rest']}/api/v3/ping", timeout=5).json() == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0
    assert "Traceback" not in stderr


def test_generated_markets_and_options_map_to_the_config() -> None:
    args = build_parser().parse_args(
        ["--markets", "3", "--usdm-markets", "2", "--coinm-symbols", "btcusd_perp", "--seed", "7", "--speed", "4", "--weight-limit", "50", "--fault", "drop:count=2,symbol=ethusdt"]
    )
    config = config_from_args(args)
    assert config.spot_symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    assert config.usdm_symbols == ("BTCUSDT", "ETHUSDT")
    assert config.coinm_symbols == ("BTCUSD_PERP",)
    assert (config.seed, config.speed, config.weights.spot_limit) == (7, 4.0, 50)
    assert config.faults[0].kind is FaultKind.DROP and config.faults[0].count == 2 and config.faults[0].symbol == "ETHUSDT"


def test_no_market_option_serves_spot_btcusdt() -> None:
    assert config_from_args(build_parser().parse_args([])).spot_symbols == ("BTCUSDT",)


def test_bad_fault_option_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fault", "drop:count"]) == 2
    assert "fault option must be key=value, found 'count'" in capsys.readouterr().err
    with pytest.raises(SimError, match="rate and speed must be > 0"):
        config_from_args(build_parser().parse_args(["--rate", "0"]))


def test_help_documents_markets_routes_faults_and_replay() -> None:
    out = subprocess.run([sys.executable, "-m", "ldc.cli", "sim", "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    for word in ("--usdm-symbols", "--coinm-markets", "/_sim/book", "/_sim/faults", "--replay-pace", "stale_snapshot", "/public/stream"):
        assert word in out


def test_a_second_process_can_read_the_truth(sim_process: dict[str, object]) -> None:
    book = requests.get(f"{sim_process['rest']}/_sim/book", params={"symbol": "ETHUSDT", "family": "spot", "limit": 3}, timeout=5).json()
    assert book["symbol"] == "ETHUSDT" and len(book["bids"]) == 3 and len(book["asks"]) == 3
    assert json.loads(json.dumps(book))["update_id"] > 0
