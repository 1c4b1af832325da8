"""ldc.sim.families: which venue servers start from a SimConfig, and bad market names refused before start."""

from __future__ import annotations

import pytest
import requests

from ldc.errors import SimError
from ldc.sim import SimConfig, Simulator
from ldc.sim.cli import main
from ldc.sim.families import VenueFamilies
from ldc.sim.venue_faults import venue_fault_from_cli


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"okx_symbols": ("BTCUSDT",)}, "OKX instId must look like BTC-USDT, BTC-USDT-SWAP or BTC-USD-250926, found 'BTCUSDT'"),
        ({"bybit_linear_symbols": ("BTC-USDT",)}, "Bybit symbol must look like BTCUSDT, found 'BTC-USDT'"),
        ({"htx_symbols": ("BTCUSDT",)}, "HTX symbol must look like btcusdt, found 'BTCUSDT'"),
        ({"kraken_symbols": ("BTCUSD",)}, "Kraken symbol must look like BTC/USD, found 'BTCUSD'"),
        ({"coinbase_symbols": ("BTC/USD",)}, "Coinbase product id must look like BTC-USD, found 'BTC/USD'"),
        ({"okx_symbols": ("BTC-USDT", "BTC-USDT")}, "OKX instId 'BTC-USDT' is listed twice"),
        ({"htx_faults": (venue_fault_from_cli("drop"),)}, "a htx fault was given but no htx market is served"),
    ],
)
def test_a_name_in_another_venue_s_syntax_is_refused_with_the_expected_form(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SimError) as caught:
        VenueFamilies(SimConfig(**fields))  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_one_server_per_venue_on_its_own_port_and_none_without_markets() -> None:
    assert VenueFamilies(SimConfig()).servers == {}
    config = SimConfig(spot_symbols=(), okx_symbols=("BTC-USDT",), bybit_spot_symbols=("BTCUSDT",), htx_symbols=("btcusdt",), kraken_symbols=("BTC/USD",), coinbase_symbols=("BTC-USD",))
    with Simulator(config) as sim:
        urls = sim.urls()
        rests = [urls[v]["rest"] for v in ("okx", "bybit", "htx", "kraken", "coinbase")]
        assert len(set(rests)) == 5 and urls["rest"] not in rests
        assert all(urls[v]["ws"] == urls[v]["rest"].replace("http://", "ws://") for v in ("okx", "bybit", "htx", "kraken", "coinbase"))
        assert urls["okx"]["ws_public"] == sim.okx_ws_url and urls["bybit"]["ws_linear"] == sim.bybit_ws_url("linear")
        assert (urls["htx"]["ws_feed"], urls["kraken"]["ws_v2"]) == (sim.htx_ws_url("/feed"), sim.kraken_ws_url)
        assert urls["bybit"]["markets"] == {"spot": ["BTCUSDT"], "linear": [], "inverse": []}
        answer = requests.get(f"{sim.okx_rest_url}/_sim/book", params={"symbol": "BTC-USDT", "limit": "x"}, timeout=5)
        assert answer.status_code == 404 and answer.json()["msg"] == "limit must be an integer, found 'x'"


def test_ldc_sim_refuses_a_bad_name_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kraken-symbols", "XBTUSD"]) == 2
    assert capsys.readouterr().err == "ldc sim: Kraken symbol must look like BTC/USD, found 'XBTUSD'\n"
