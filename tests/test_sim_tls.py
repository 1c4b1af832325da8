"""`ldc sim --tls` / `SimConfig(tls=True)`: every port the simulator opens (Binance's and each venue family's)
speaks TLS with a certificate made at start; a client that trusts the printed CA file verifies it, host name
included, and anything else is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from ldc.sim import Simulator
from conftest import start_sim_process

TIMEOUT_S = 10.0
VENUES = dict(
    okx_symbols=("BTC-USDT",), bybit_linear_symbols=("BTCUSDT",), htx_symbols=("btcusdt",),
    kraken_symbols=("BTC/USD",), coinbase_symbols=("BTC-USD",),
)  # fmt: skip


def get_json(url: str, ca_file: str | None) -> Any:
    context = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
        return json.loads(response.read())


def handshake(url: str, ca_file: str | None, **sslopt: Any) -> None:
    """A websocket upgrade over TLS, verified against ``ca_file`` (ssl's defaults: CERT_REQUIRED, host name checked)."""
    ws = websocket.create_connection(url, timeout=TIMEOUT_S, sslopt={"ca_certs": ca_file, **sslopt})
    ws.close()


def tls_peer(port: int, ca_file: str, server_hostname: str) -> str | None:
    """Open a TLS connection to the simulator's ``port``; the verified certificate's subject CN."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            cert: Any = tls.getpeercert()
    return next((str(value) for rdn in cert["subject"] for key, value in rdn if key == "commonName"), None)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def test_ldc_sim_tls_prints_its_ca_file_serves_https_and_wss_and_removes_it_at_stop() -> None:
    proc, urls = start_sim_process("--tls", "--symbols", "BTCUSDT", "--okx-symbols", "BTC-USDT")
    try:
        ca_file = urls["ca_file"]
        assert os.path.isfile(ca_file)
        port = port_of(urls["rest"])
        assert urls["rest"] == f"https://127.0.0.1:{port}" and urls["ws"] == f"wss://127.0.0.1:{port}"
        assert urls["ws_usdm"].startswith("wss://") and urls["okx"]["rest"].startswith("https://")
        assert urls["okx"]["ws_public"].startswith("wss://")
        assert get_json(f"{urls['rest']}/api/v3/ping", ca_file) == {}
        assert get_json(f"{urls['okx']['rest']}/api/v5/market/books?instId=BTC-USDT", ca_file)["code"] == "0"
        handshake(f"{urls['ws']}/ws/btcusdt@depth@100ms", ca_file)
        with pytest.raises(Exception):  # the port speaks TLS only: plain HTTP gets no answer it can read
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/ping", timeout=TIMEOUT_S).read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=TIMEOUT_S)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0 and "Traceback" not in stderr
    assert not os.path.exists(os.path.dirname(ca_file))


def test_without_tls_the_first_line_has_no_ca_file(sim_urls: dict[str, Any]) -> None:
    assert "ca_file" not in sim_urls and sim_urls["rest"].startswith("http://")


def test_every_family_speaks_tls_rest_and_websocket(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(tls=True, spot_symbols=("BTCUSDT",), **VENUES)
    urls, ca_file = sim.urls(), sim.ca_file
    assert ca_file is not None and urls["ca_file"] == ca_file
    assert get_json(f"{sim.rest_url}/api/v3/ping", ca_file) == {}
    handshake(f"{sim.usdm_ws_url}/ws", ca_file)
    venues = ("okx", "bybit", "htx", "kraken", "coinbase")
    for venue in venues:
        entry = urls[venue]
        assert entry["rest"].startswith("https://") and "markets" in get_json(f"{entry['rest']}/_sim/stats", ca_file)
        ws = next((v for k, v in entry.items() if k.startswith("ws_")), entry["ws"])
        assert ws.startswith("wss://")
        handshake(ws, ca_file)


def test_verification_is_real_another_ca_the_system_store_and_a_wrong_host_name_are_refused(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(tls=True, spot_symbols=("BTCUSDT",))
    other = sim_factory(tls=True, spot_symbols=("BTCUSDT",))
    assert sim.ca_file is not None and other.ca_file is not None
    # the certificate names 127.0.0.1 and localhost, and nothing else
    assert tls_peer(sim.port, sim.ca_file, "127.0.0.1") == "127.0.0.1"
    assert tls_peer(sim.port, sim.ca_file, "localhost") == "127.0.0.1"
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        tls_peer(sim.port, sim.ca_file, "example.com")
    # another simulator's CA (a CA of the same shape, its own key) does not vouch for this one
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        tls_peer(sim.port, other.ca_file, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(f"{sim.ws_url}/ws/btcusdt@depth", other.ca_file)
    # the system's trust store knows no simulator
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get_json(f"{sim.rest_url}/api/v3/ping", None)
    assert get_json(f"{sim.rest_url}/api/v3/ping", sim.ca_file) == {}


def test_a_cli_sim_without_openssl_fails_with_a_clear_message() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    done = subprocess.run([sys.executable, "-m", "ldc.cli", "sim", "--tls"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "openssl command line" in done.stderr and "Traceback" not in done.stderr
