"""The TOML of the issue-15 venues: exact names, each venue's symbol syntax (a wrong one names the form), book
channels, and ``ws_url`` / ``rest_url`` as bases the venue adds its path to (HTX: the channel picks the path)."""

from __future__ import annotations

import pytest

from ldc.config import endpoints, known_exchanges, parse_config
from ldc.errors import ConfigError


def _group(extra: str = "", *, exchange: str, symbols: str) -> str:
    return f'[[group]]\nname = "g1"\nexchange = "{exchange}"\nsymbols = {symbols}\n{extra}\n'


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="ldc.toml")
    return str(info.value)


@pytest.mark.parametrize("exchange", ["coinbase", "kraken", "htx"])
def test_the_three_venues_are_known_by_their_exact_names(exchange: str) -> None:
    assert exchange in known_exchanges()


@pytest.mark.parametrize(("exchange", "symbols", "form"), [
    ("coinbase", '["BTCUSD"]', "'BTC-USD', found 'BTCUSD'"),
    ("kraken", '["BTC-USD"]', "'BTC/USD', found 'BTC-USD'"),
    ("htx", '["btc-usdt"]', "'btcusdt', found 'btc-usdt'"),
])  # fmt: skip
def test_a_symbol_in_another_venues_syntax_names_the_expected_form(exchange: str, symbols: str, form: str) -> None:
    assert _error(_group(exchange=exchange, symbols=symbols)) == f"ldc.toml: group 'g1': key 'symbols' expected symbols like {form}"


def test_each_venue_adds_its_path_to_a_base_url_and_takes_its_channels() -> None:
    base = 'ws_url = "ws://127.0.0.1:9001"\nrest_url = "http://127.0.0.1:9002"'
    coinbase = parse_config(_group(base, exchange="coinbase", symbols='["btc-usd"]')).groups[0]
    assert (coinbase.symbols, coinbase.channel, endpoints(coinbase).ws_stream_url) == (("BTC-USD",), "level2", "ws://127.0.0.1:9001")
    kraken = parse_config(_group(base + '\nchannel = "book.100"', exchange="kraken", symbols='["BTC/USD"]')).groups[0]
    assert (kraken.channel, endpoints(kraken).ws_stream_url, endpoints(kraken).rest_url) == ("book.100", "ws://127.0.0.1:9001/v2", "http://127.0.0.1:9002")
    htx = parse_config(_group(base, exchange="htx", symbols='["BTCUSDT", "ethusdt"]')).groups[0]
    assert (htx.symbols, htx.channel, endpoints(htx).ws_stream_url) == (("btcusdt", "ethusdt"), "mbp.150", "ws://127.0.0.1:9001/feed")
    step0 = parse_config(_group('channel = "depth.step0"', exchange="htx", symbols='["btcusdt"]')).groups[0]
    assert endpoints(step0).ws_stream_url == "wss://api.huobi.pro/ws"
    assert _error(_group('channel = "mbp.400"', exchange="htx", symbols='["btcusdt"]')) == (
        "ldc.toml: group 'g1': key 'channel' expected one of mbp.5, mbp.20, mbp.150, depth.step0 for htx, found 'mbp.400'")


def test_coinbase_markets_per_connection_bound_what_one_gap_costs() -> None:
    group = parse_config(_group("streams_per_connection = 2", exchange="coinbase", symbols='["BTC-USD", "ETH-USD", "SOL-USD"]')).groups[0]
    assert group.streams_per_connection == 2
