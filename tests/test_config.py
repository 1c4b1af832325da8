"""ldc.config: the [[group]] schema of DESIGN.md "Operating it" and examples/ldc.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldc.config import (
    DEFAULT_DEPTH,
    DEFAULT_REFRESH_INTERVAL_S,
    GroupConfig,
    endpoints,
    known_exchanges,
    load_config,
    parse_config,
    reload_group,
    restart_keys,
    symbol_changes,
)
from ldc.errors import ConfigError
from ldc.venues import venue_table

MAX_STREAMS_PER_CONNECTION = venue_table("binance.com").max_streams_per_connection  # 1024, the venue's

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
[[group]]
name = "spot"
exchange = "binance.com"
symbols = ["btcusdt", "ETHUSDT"]
"""


def _group(extra: str = "", *, exchange: str = "binance.com", symbols: str = '["BTCUSDT"]') -> str:
    return f'[[group]]\nname = "g1"\nexchange = "{exchange}"\nsymbols = {symbols}\n{extra}\n'


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="ldc.toml")
    return str(info.value)


def test_minimal_group_gets_the_named_defaults() -> None:
    group = parse_config(MINIMAL).group("spot")
    assert group.symbols == ("BTCUSDT", "ETHUSDT")
    assert group.depth == DEFAULT_DEPTH
    assert group.update_speed_ms == 100
    assert group.refresh_interval_s == DEFAULT_REFRESH_INTERVAL_S
    assert group.rest_url is None and group.ws_url is None
    assert group.capacity == 16
    assert group.weight_limit_per_min == 6000
    assert group.weight_budget_per_min == 4800
    assert group.streams_per_connection == MAX_STREAMS_PER_CONNECTION
    assert group.family == "spot"


def test_futures_group_uses_futures_limits_and_speeds() -> None:
    group = parse_config(_group("update_speed_ms = 0", exchange="binance.com-futures")).groups[0]
    assert (group.family, group.weight_limit_per_min, group.update_speed_ms) == ("usdm", 2400, 0)


def test_overrides_are_kept_and_urls_lose_their_trailing_slash() -> None:
    extra = 'rest_url = "http://127.0.0.1:8080/"\nws_url = "ws://127.0.0.1:8081/stream"\ndepth = 100\ncapacity = 4'
    group = parse_config(_group(extra)).groups[0]
    assert (group.rest_url, group.ws_url, group.depth, group.capacity) == (
        "http://127.0.0.1:8080",
        "ws://127.0.0.1:8081/stream",
        100,
        4,
    )


def test_example_file_is_a_valid_config() -> None:
    config = load_config(REPO / "examples" / "ldc.toml")
    assert [g.exchange for g in config.groups][:2] == ["binance.com", "binance.com-futures"]
    assert all(isinstance(g, GroupConfig) for g in config.groups)


def test_systemd_example_config_is_valid() -> None:
    assert load_config(REPO / "systemd" / "ldc.toml.example").groups


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("depth = 0", "ldc.toml: group 'g1': key 'depth' expected an integer in 1..1000, found 0"),
        ("depth = 1001", "ldc.toml: group 'g1': key 'depth' expected an integer in 1..1000, found 1001"),
        ('depth = "20"', "ldc.toml: group 'g1': key 'depth' expected an integer in 1..1000, found '20'"),
        ("depth = true", "ldc.toml: group 'g1': key 'depth' expected an integer in 1..1000, found True"),
        ("update_speed_ms = 250", "ldc.toml: group 'g1': key 'update_speed_ms' expected one of 100, 1000 for spot, found 250"),
        ("stale_after_s = -1", "ldc.toml: group 'g1': key 'stale_after_s' expected a number >= 0.001, found -1"),
        ("weight_budget_fraction = 1.5", "ldc.toml: group 'g1': key 'weight_budget_fraction' expected a number 0.01..1, found 1.5"),
        ("streams_per_connection = 2000", "ldc.toml: group 'g1': key 'streams_per_connection' expected an integer in 1..1024, found 2000"),
        ("capacity = 0", "ldc.toml: group 'g1': key 'capacity' expected an integer in 1..65536, found 0"),
        ("notify_paced_us = 200000", "ldc.toml: group 'g1': key 'notify_paced_us' expected an integer in 0..100000, found 200000"),
        ('rest_url = "ftp://x"', "ldc.toml: group 'g1': key 'rest_url' expected http://host[:port][/path] or https://host[:port][/path], found 'ftp://x'"),
        ('ws_url = "http://127.0.0.1:1"', "ldc.toml: group 'g1': key 'ws_url' expected ws://host[:port][/path] or wss://host[:port][/path], found 'http://127.0.0.1:1'"),
        ("speed = 100", "ldc.toml: group 'g1': unknown key 'speed', expected one of ca_file, capacity, depth, exchange, name, "
         "notify_paced_us, record, record_rotate_mb, record_rotate_s, refresh_interval_s, rest_timeout_s, rest_url, stale_after_s, streams_per_connection, symbols, "
         "update_speed_ms, weight_budget_fraction, weight_limit_per_min, ws_url"),
    ],
)
def test_bad_value_names_group_key_expected_and_found(extra: str, message: str) -> None:
    assert _error(_group(extra)) == message


def test_unknown_exchange_lists_the_known_ones() -> None:
    message = _error(_group(exchange="binance.com-margin"))
    assert message == (
        "ldc.toml: group 'g1': key 'exchange' expected one of " + ", ".join(known_exchanges()) + ", found 'binance.com-margin'"
    )


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        ("[]", "ldc.toml: group 'g1': key 'symbols' expected a non-empty list of strings, found list []"),
        ('"BTCUSDT"', "ldc.toml: group 'g1': key 'symbols' expected a non-empty list of strings, found 'BTCUSDT'"),
        ('["BTC/USDT"]', "ldc.toml: group 'g1': key 'symbols' expected symbols like 'BTCUSDT', found 'BTC/USDT'"),
        ("[1]", "ldc.toml: group 'g1': key 'symbols' expected symbols like 'BTCUSDT', found 1"),
        ('["btcusdt", "BTCUSDT"]', "ldc.toml: group 'g1': key 'symbols' expected unique symbols, found 'BTCUSDT' twice"),
    ],
)
def test_bad_symbols_are_named(symbols: str, message: str) -> None:
    assert _error(_group(symbols=symbols)) == message


def test_capacity_below_symbol_count_is_rejected() -> None:
    assert _error(_group("capacity = 1", symbols='["A1", "B1"]')) == (
        "ldc.toml: group 'g1': key 'capacity' expected an integer in 2..65536, found 1"
    )


def test_document_level_errors() -> None:
    assert _error("") == "ldc.toml: key 'group' expected at least one [[group]] table, found no [[group]] table"
    assert _error("x = 1\n" + MINIMAL) == "ldc.toml: top level: unknown key 'x', expected one of group"
    assert _error(MINIMAL + MINIMAL) == "ldc.toml: key 'name' expected unique group names, found 'spot' twice"
    assert _error('[[group]]\nname = "a b"').startswith("ldc.toml: group #1: key 'name' expected 1-48 of")
    assert _error('[[group]]\nexchange = "binance.com"') == (
        "ldc.toml: group #1: key 'name' expected a non-empty string, found nothing"
    )
    assert _error("[[group]\n").startswith("ldc.toml: not valid TOML: ")


def test_unknown_group_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no group 'nope', expected one of 'spot'"):
        parse_config(MINIMAL, source="x").group("nope")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")


def test_reload_reports_added_removed_and_restart_keys(tmp_path: Path) -> None:
    path = tmp_path / "ldc.toml"
    path.write_text(MINIMAL)
    old = reload_group(path, "spot")
    path.write_text(MINIMAL.replace('["btcusdt", "ETHUSDT"]', '["ETHUSDT", "BNBUSDT"]') + "depth = 50\n")
    new = reload_group(path, "spot")
    assert symbol_changes(old, new) == (("BNBUSDT",), ("BTCUSDT",))
    assert restart_keys(old, new) == ("depth",)


def test_reload_of_a_broken_file_raises_and_leaves_the_old_group(tmp_path: Path) -> None:
    path = tmp_path / "ldc.toml"
    path.write_text(MINIMAL)
    old = reload_group(path, "spot")
    path.write_text(MINIMAL.replace('"ETHUSDT"', '"ETH USDT"'))
    with pytest.raises(ConfigError, match="found 'ETH USDT'"):
        reload_group(path, "spot")
    assert old.symbols == ("BTCUSDT", "ETHUSDT")


def test_endpoints_come_from_the_venue_table_or_the_overrides() -> None:
    spot = parse_config(_group()).groups[0]
    assert (endpoints(spot).rest_url, endpoints(spot).ws_stream_url) == (
        "https://api.binance.com",
        "wss://stream.binance.com:9443/stream",
    )
    usdm = parse_config(_group('ws_url = "ws://127.0.0.1:9000/usdm"', exchange="binance.com-futures")).groups[0]
    assert (endpoints(usdm).rest_url, endpoints(usdm).ws_stream_url) == (
        "https://fapi.binance.com",
        "ws://127.0.0.1:9000/usdm/public/stream",  # the 2026 URL split's route follows the override
    )


# -- other venues (issue 12): names, symbol syntax, channels, endpoints ------------------------------------------


@pytest.mark.parametrize("exchange", ["okx", "bybit-spot", "bybit-linear", "bybit-inverse"])
def test_the_other_venues_are_known_by_their_exact_names(exchange: str) -> None:
    assert exchange in known_exchanges()


def test_okx_group_takes_okx_symbols_a_channel_and_adds_its_path_to_a_base_url() -> None:
    text = _group('channel = "books-l2-tbt"\nws_url = "ws://127.0.0.1:9001"\nrest_url = "http://127.0.0.1:9002"',
                  exchange="okx", symbols='["BTC-USDT", "btc-usdt-swap", "BTC-USD-250926"]')  # fmt: skip
    group = parse_config(text).groups[0]
    assert (group.symbols, group.channel, group.family) == (("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250926"), "books-l2-tbt", "okx")
    assert endpoints(group) == type(endpoints(group))("http://127.0.0.1:9002", "ws://127.0.0.1:9001/ws/v5/public")
    assert parse_config(_group(exchange="okx", symbols='["ETH-USDT"]')).groups[0].channel == "books"


@pytest.mark.parametrize(
    ("exchange", "symbols", "message"),
    [
        ("okx", '["BTCUSDT"]', "ldc.toml: group 'g1': key 'symbols' expected symbols like 'BTC-USDT', 'BTC-USDT-SWAP' or 'BTC-USD-250926', found 'BTCUSDT'"),
        ("bybit-linear", '["BTC-USDT"]', "ldc.toml: group 'g1': key 'symbols' expected symbols like 'BTCUSDT', found 'BTC-USDT'"),
    ],
)
def test_a_symbol_in_another_venues_syntax_names_the_expected_form(exchange: str, symbols: str, message: str) -> None:
    assert _error(_group(exchange=exchange, symbols=symbols)) == message


def test_bybit_groups_take_an_orderbook_depth_and_one_url_per_category() -> None:
    group = parse_config(_group('channel = "orderbook.50"\nws_url = "ws://127.0.0.1:9001"', exchange="bybit-inverse",
                                symbols='["BTCUSD"]')).groups[0]  # fmt: skip
    assert (group.channel, endpoints(group).ws_stream_url) == ("orderbook.50", "ws://127.0.0.1:9001/v5/public/inverse")
    assert endpoints(parse_config(_group(exchange="bybit-spot")).groups[0]).ws_stream_url == "wss://stream.bybit.com/v5/public/spot"
    assert _error(_group('channel = "orderbook.25"', exchange="bybit-spot")) == (
        "ldc.toml: group 'g1': key 'channel' expected one of orderbook.1, orderbook.50, orderbook.200, orderbook.1000 "
        "for bybit-spot, found 'orderbook.25'")
    assert _error(_group("update_speed_ms = 100", exchange="bybit-spot")).startswith(
        "ldc.toml: group 'g1': unknown key 'update_speed_ms', expected one of ca_file, capacity, channel, depth")
