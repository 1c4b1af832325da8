"""The ldc configuration file: one TOML document of ``[[group]]`` tables.

Every value is checked before anything starts; a bad file raises ``ConfigError`` naming the group, the key,
what was expected and what was found. ``examples/ldc.toml`` is the commented schema.

    [[group]]
    name = "spot"                     # segment /ldc-spot, unit ldc-feeder@spot.service
    exchange = "binance.com"          # UNICORN's exchange names
    symbols = ["BTCUSDT", "ETHUSDT"]
    depth = 20                        # levels published per side

SIGHUP support: ``reload_group(path, name)`` re-reads and re-validates the whole file and returns that group;
``symbol_changes(old, new)`` says which markets to add and remove, ``restart_keys(old, new)`` which changed
keys only take effect after a restart.
"""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ldc import record as record_limits
from ldc.errors import ConfigError
from ldc.shm.layout import DEFAULT_NOTIFY_PACED_US, MAX_NOTIFY_PACED_US
from ldc.venues import VENUES, venue_table
from ldc.venues.base import VenueTable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project runs on 3.11, pyproject declares tomli for 3.10
    import tomli as tomllib

# Exchanges: the venue tables (ldc.venues.VENUES) are the one source of names, families, endpoints, symbol
# syntax, update speeds, channels and limits; they import without the C extension, so none is copied here.

# Defaults and bounds
DEFAULT_DEPTH = 20
MAX_DEPTH = 1000  # the futures snapshot maximum; deeper books cannot be kept exact on every venue
DEFAULT_REFRESH_INTERVAL_S = 1800.0  # shadow-book refresh against a new snapshot; 0 disables it
DEFAULT_STALE_AFTER_S = 30.0  # no diff for this long: the market is flagged stale
DEFAULT_REST_TIMEOUT_S = 10.0
MAX_REST_TIMEOUT_S = 120.0
DEFAULT_WEIGHT_BUDGET_FRACTION = 0.8  # share of the exchange's weight limit ldc may use; the rest is headroom
CAPACITY_HEADROOM = 2  # default capacity: this many slots per configured symbol (room for SIGHUP additions)
MIN_DEFAULT_CAPACITY = 16
MAX_CAPACITY = 65_536
MAX_SYMBOLS = MAX_CAPACITY

GROUP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")  # also a POSIX shm name and a systemd instance


@dataclass(frozen=True)
class GroupConfig:
    """One market group: one feeder process, one shared-memory segment."""

    name: str
    exchange: str
    symbols: tuple[str, ...]
    depth: int = DEFAULT_DEPTH
    update_speed_ms: int = 100
    rest_url: str | None = None
    ws_url: str | None = None
    ca_file: str | None = None  # CA certificates (PEM) trusted for https:// and wss://; None: the system's store
    refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    rest_timeout_s: float = DEFAULT_REST_TIMEOUT_S
    capacity: int = MIN_DEFAULT_CAPACITY
    weight_limit_per_min: int = 0  # 0: the venue table's (its exchange's weight limit per minute)
    weight_budget_fraction: float = DEFAULT_WEIGHT_BUDGET_FRACTION
    streams_per_connection: int = 0  # 0: the venue table's maximum per connection
    channel: str = ""  # the venue's book channel (OKX "books", Bybit "orderbook.200"); "" for Binance
    record: str | None = None  # directory of raw-feed recordings (ldc/record.py); None: no recording
    record_rotate_mb: float = record_limits.DEFAULT_ROTATE_MB
    record_rotate_s: float = record_limits.DEFAULT_ROTATE_S
    notify_paced_us: int = DEFAULT_NOTIFY_PACED_US  # the segment's paced notify window (LAYOUT.md section 11); 0: off

    def __post_init__(self) -> None:
        """A group built in code without limits takes its venue's (a TOML group always names them: load())."""
        table = VENUES.get(self.exchange)  # an unknown name is refused where the group is used
        if table is not None and not self.weight_limit_per_min:
            object.__setattr__(self, "weight_limit_per_min", table.weight_limit_per_min)
        if table is not None and not self.streams_per_connection:
            object.__setattr__(self, "streams_per_connection", table.max_streams_per_connection)

    @property
    def family(self) -> str:
        """Which API family's rules and limits apply: Binance ``spot`` / ``usdm`` / ``coinm``, ``okx``, ``bybit-linear``..."""
        return venue_table(self.exchange).family

    @property
    def weight_budget_per_min(self) -> int:
        """The request weight per minute this group lets the host spend (limit times the budget fraction)."""
        return max(1, int(self.weight_limit_per_min * self.weight_budget_fraction))


@dataclass(frozen=True)
class Config:
    """A whole configuration file."""

    path: str
    groups: tuple[GroupConfig, ...]

    def group(self, name: str) -> GroupConfig:
        """The group called ``name``; ``ConfigError`` naming the known groups otherwise."""
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join(repr(g.name) for g in self.groups)
        raise ConfigError(f"{self.path}: no group {name!r}, expected one of {known}")


@dataclass(frozen=True)
class Endpoints:
    """Where a group's feeder connects."""

    rest_url: str  # REST base, e.g. https://api.binance.com
    ws_stream_url: str  # the stream endpoint: wss://fstream.binance.com/public/stream, wss://ws.okx.com:8443/ws/v5/public


def endpoints(group: GroupConfig) -> Endpoints:
    """The exchange's endpoints, or the group's overrides: ``rest_url`` replaces the REST base, ``ws_url``
    replaces the websocket base and the venue's path still follows (USD-M ``/public/stream``, OKX
    ``/ws/v5/public``, Bybit ``/v5/public/linear``)."""
    venue = venue_table(group.exchange)
    ws_base = group.ws_url or venue.ws_base_url
    return Endpoints(rest_url=group.rest_url or venue.rest_base_url, ws_stream_url=f"{ws_base}{venue.path_of(group.channel)}")


def load_config(path: str | Path) -> Config:
    """Read and validate a configuration file; ``ConfigError`` on any problem, before anything starts."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a ValueError here would escape every caller's ConfigError
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{source}: expected UTF-8 text (TOML), found byte 0x{raw[exc.start]:02x} at line {line}, offset {exc.start}"
        ) from None
    return parse_config(text, source=source)


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Validate a configuration document given as text (``source`` names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    _no_unknown_keys(doc, {"group"}, where=f"{source}: top level")
    tables = doc.get("group")
    if not isinstance(tables, list) or not tables:
        found = _describe(tables) if tables is not None else "no [[group]] table"
        raise ConfigError(f"{source}: key 'group' expected at least one [[group]] table, found {found}")
    groups = tuple(_parse_group(table, index, source) for index, table in enumerate(tables))
    _unique([g.name for g in groups], f"{source}: key 'name'", "group names")
    return Config(path=source, groups=groups)


def reload_group(path: str | Path, name: str) -> GroupConfig:
    """Re-read the file for SIGHUP and return group ``name``; the running set must stay as is on ConfigError."""
    return load_config(path).group(name)


def symbol_changes(old: GroupConfig, new: GroupConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(added, removed) symbols between two versions of a group, each in configuration order."""
    before, after = set(old.symbols), set(new.symbols)
    return tuple(s for s in new.symbols if s not in before), tuple(s for s in old.symbols if s not in after)


def restart_keys(old: GroupConfig, new: GroupConfig) -> tuple[str, ...]:
    """Keys other than ``symbols`` whose change needs a feeder restart to take effect."""
    return tuple(
        f.name
        for f in dataclasses.fields(GroupConfig)
        if f.name != "symbols" and getattr(old, f.name) != getattr(new, f.name)
    )


# Group parsing ---------------------------------------------------------------------------------------------

_GROUP_KEYS = {f.name for f in dataclasses.fields(GroupConfig)}


def _parse_group(table: object, index: int, source: str) -> GroupConfig:
    where = f"{source}: group #{index + 1}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, found {_describe(table)}")
    name = _string(table, "name", where, required=True)
    if not GROUP_NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: key 'name' expected 1-48 of [A-Za-z0-9_-] starting alphanumeric, found {name!r}")
    where = f"{source}: group {name!r}"
    exchange = _exchange(table, where)
    venue = venue_table(exchange)
    # Binance groups choose an update speed, the other venues a book channel
    _no_unknown_keys(table, _GROUP_KEYS - ({"channel"} if venue.update_speeds_ms else {"update_speed_ms"}), where=where)
    symbols = _symbols(table, where, venue)
    limit = venue.max_streams_per_connection
    channel = _text_choice(table, "channel", where, venue.default_channel, exchange, venue.channels) if venue.channels else ""
    levels = venue.channel_levels[venue.channels.index(channel)] if channel else MAX_DEPTH
    return GroupConfig(
        name=name,
        exchange=exchange,
        symbols=symbols,
        depth=_integer(table, "depth", where, min(DEFAULT_DEPTH, levels), 1, min(MAX_DEPTH, levels)),
        update_speed_ms=_choice(
            table, "update_speed_ms", where, venue.default_update_speed_ms, venue.family, venue.update_speeds_ms
        ) if venue.update_speeds_ms else 0,
        channel=channel,
        rest_url=_url(table, "rest_url", where, ("http", "https")),
        ws_url=_url(table, "ws_url", where, ("ws", "wss")),
        ca_file=_ca_file(table, where),
        refresh_interval_s=_number(table, "refresh_interval_s", where, DEFAULT_REFRESH_INTERVAL_S, 0.0, math.inf),
        stale_after_s=_number(table, "stale_after_s", where, DEFAULT_STALE_AFTER_S, 0.001, math.inf, open_low=False),
        rest_timeout_s=_number(table, "rest_timeout_s", where, DEFAULT_REST_TIMEOUT_S, 0.001, MAX_REST_TIMEOUT_S),
        capacity=_integer(table, "capacity", where, _default_capacity(len(symbols)), len(symbols), MAX_CAPACITY),
        weight_limit_per_min=_integer(table, "weight_limit_per_min", where, venue.weight_limit_per_min, 1, 1_000_000),
        weight_budget_fraction=_number(
            table, "weight_budget_fraction", where, DEFAULT_WEIGHT_BUDGET_FRACTION, 0.01, 1.0
        ),
        streams_per_connection=_integer(table, "streams_per_connection", where, limit, 1, limit),
        notify_paced_us=_integer(table, "notify_paced_us", where, DEFAULT_NOTIFY_PACED_US, 0, MAX_NOTIFY_PACED_US),
        **_record_keys(table, where),
    )


def _record_keys(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``record`` (an absolute directory) and its rotation: a new file after so many MB or seconds."""
    directory = _string(table, "record", where, required=False) or None
    if directory is not None and not directory.startswith("/"):
        raise ConfigError(f"{where}: key 'record' expected an absolute directory path, found {directory!r}")
    return dict(
        record=directory,
        record_rotate_mb=_number(table, "record_rotate_mb", where, record_limits.DEFAULT_ROTATE_MB,
                                 record_limits.MIN_ROTATE_MB, record_limits.MAX_ROTATE_MB),  # fmt: skip
        record_rotate_s=_number(table, "record_rotate_s", where, record_limits.DEFAULT_ROTATE_S,
                                record_limits.MIN_ROTATE_S, record_limits.MAX_ROTATE_S),  # fmt: skip
    )


def _default_capacity(n_symbols: int) -> int:
    return min(MAX_CAPACITY, max(MIN_DEFAULT_CAPACITY, n_symbols * CAPACITY_HEADROOM))


def _exchange(table: dict[str, Any], where: str) -> str:
    exchange = _string(table, "exchange", where, required=True)
    known = known_exchanges()
    if exchange not in known:
        raise ConfigError(f"{where}: key 'exchange' expected one of {', '.join(known)}, found {exchange!r}")
    return exchange


def known_exchanges() -> tuple[str, ...]:
    """The exchange names a group may use (ldc.venues.VENUES), sorted."""
    return tuple(sorted(VENUES))


def _symbols(table: dict[str, Any], where: str, venue: VenueTable) -> tuple[str, ...]:
    raw = table.get("symbols")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: key 'symbols' expected a non-empty list of strings, found {_describe(raw)}")
    if len(raw) > MAX_SYMBOLS:
        raise ConfigError(f"{where}: key 'symbols' expected at most {MAX_SYMBOLS} symbols, found {len(raw)}")
    symbols = []
    pattern = re.compile(venue.symbol_pattern)
    for item in raw:
        symbol = (item.lower() if venue.symbols_lower_case else item.upper()) if isinstance(item, str) else None
        if symbol is None or not pattern.fullmatch(symbol):
            raise ConfigError(f"{where}: key 'symbols' expected symbols like {venue.symbol_form}, found {item!r}")
        symbols.append(symbol)
    _unique(symbols, f"{where}: key 'symbols'", "symbols")
    return tuple(symbols)


# Typed getters: each names the key, the expected and the found value -----------------------------------------


def _string(table: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        if value is None and not required:
            return ""
        raise ConfigError(f"{where}: key {key!r} expected a non-empty string, found {_describe(value)}")
    return value


def _integer(table: dict[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: key {key!r} expected an integer in {low}..{high}, found {_describe(value)}")
    return value


def _number(
    table: dict[str, Any], key: str, where: str, default: float, low: float, high: float, *, open_low: bool = False
) -> float:
    value = table.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high or (open_low and value == low):
        bound = f"{low:g}..{high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ConfigError(f"{where}: key {key!r} expected a number {bound}, found {_describe(value)}")
    return float(value)


def _choice(table: dict[str, Any], key: str, where: str, default: int, family: str, allowed: tuple[int, ...]) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or value not in allowed:
        choices = ", ".join(map(str, allowed))
        raise ConfigError(f"{where}: key {key!r} expected one of {choices} for {family}, found {_describe(value)}")
    return int(value)


def _text_choice(table: dict[str, Any], key: str, where: str, default: str, exchange: str, allowed: tuple[str, ...]) -> str:
    value = table.get(key, default)
    if value not in allowed:
        raise ConfigError(f"{where}: key {key!r} expected one of {', '.join(allowed)} for {exchange}, found {_describe(value)}")
    return str(value)


def _url(table: dict[str, Any], key: str, where: str, schemes: tuple[str, ...]) -> str | None:
    if key not in table:
        return None
    value = _string(table, key, where, required=True)
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        expected = " or ".join(f"{s}://host[:port][/path]" for s in schemes)
        raise ConfigError(f"{where}: key {key!r} expected {expected}, found {value!r}")
    return value.rstrip("/")


def _ca_file(table: dict[str, Any], where: str) -> str | None:
    """An absolute path (a feeder's working directory is not the config's) that loads as PEM CA certificates."""
    if "ca_file" not in table:
        return None
    path = _string(table, "ca_file", where, required=True)
    if not path.startswith("/"):
        raise ConfigError(f"{where}: key 'ca_file' expected an absolute path, found {path!r}")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:  # read, but no certificate in it
        raise ConfigError(f"{where}: key 'ca_file' expected PEM CA certificates, found {path!r} with none ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: key 'ca_file' expected a readable file, found {path!r}: {exc.strerror or exc}") from None
    return path


def _no_unknown_keys(table: dict[str, Any], allowed: set[str], *, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}, expected one of {', '.join(sorted(allowed))}")


def _unique(items: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ConfigError(f"{where} expected unique {what}, found {item!r} twice")
        seen.add(item)


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return f"{type(value).__name__} {value!r}"[:80]
    return repr(value)
