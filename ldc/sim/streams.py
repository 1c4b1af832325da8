"""Stream names and diff-event encoding, per Binance's web-socket-streams documents.

Spot: ``<symbol>@depth`` (1000 ms) and ``<symbol>@depth@100ms`` (``@depth@1000ms`` also accepted).
USD-M / COIN-M: ``<symbol>@depth`` (250 ms), ``@depth@500ms``, ``@depth@100ms``, ``@depth@0ms`` (every
update). Partial books ``<symbol>@depth<5|10|20>[@speed]``: spot sends ``{"lastUpdateId", "bids", "asks"}``,
futures a ``depthUpdate`` holding the top levels. Payload key order follows the genuine captures in
shared/data/binance. The other stream types of those documents (trades, tickers, klines, book tickers, mark
prices...) are accepted for a listed market and stay silent: a client that also asks for them still gets
its depth streams, as it would from Binance, which refuses only names it does not know (HTTP 400 in the
URL, error code 2 in a SUBSCRIBE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ldc.sim.markets import Family

SPOT_INTERVALS_MS = {"": 1000, "@100ms": 100, "@1000ms": 1000}
FUTURES_INTERVALS_MS = {"": 250, "@0ms": 0, "@100ms": 100, "@250ms": 250, "@500ms": 500}
MAX_STREAM_NAME_CHARS = 64
_KLINE_INTERVALS = "1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M"
_SILENT_MARKET_STREAM = re.compile(
    r"([a-z0-9_]+)@(?:aggTrade|trade|miniTicker|ticker|ticker_(?:1h|4h|1d)|bookTicker|avgPrice|markPrice(?:@1s)?"
    rf"|forceOrder|compositeIndex|kline_(?:{_KLINE_INTERVALS})(?:@\+08:00)?)"
)
_SILENT_ALL_MARKETS_STREAM = re.compile(
    r"!(?:miniTicker@arr|ticker@arr|ticker_(?:1h|4h|1d)@arr|bookTicker|markPrice@arr(?:@1s)?|forceOrder@arr"
    r"|contractInfo|assetIndex@arr)"
)


PARTIAL_LEVELS = (5, 10, 20)
# Binance's websocket host names, accepted as a first path segment (``ws://127.0.0.1:P/fstream.binance.com/ws``):
# some clients tell the family by the host they connected to (ccxt.pro takes a URL containing "/stream"
# for spot), and on the loopback the host is always 127.0.0.1.
HOST_PREFIXES = {
    "stream.binance.com": Family.SPOT,
    "data-stream.binance.vision": Family.SPOT,
    "fstream.binance.com": Family.USDM,
    "dstream.binance.com": Family.COINM,
}


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What a subscription delivers: one market's diffs batched over ``interval_ms`` (0: each update),
    or with ``levels`` > 0 the partial book stream ``@depth<levels>`` (top levels every interval);
    ``silent``: a valid non-depth stream, which delivers nothing here."""

    family: Family
    symbol: str  # upper case, as the exchange names the market ("" for an all-market stream)
    interval_ms: int
    levels: int = 0
    silent: bool = False


def silent_stream_symbol(name: str) -> str | None:
    """The market (upper case; "" for an all-market ``!...`` stream) of a valid non-depth stream name, e.g.
    ``"btcusdt@aggTrade"`` -> ``"BTCUSDT"``; None for anything else."""
    if len(name) > MAX_STREAM_NAME_CHARS:
        return None
    if _SILENT_ALL_MARKETS_STREAM.fullmatch(name):
        return ""
    match = _SILENT_MARKET_STREAM.fullmatch(name)
    return match.group(1).upper() if match else None


def path_stream_names(segments: list[str]) -> list[str]:
    """The stream names among the path segments after ``/ws``: those with an ``@`` or a leading ``!``.

    Binance documents ``/ws/<streamName>``; the same path also takes a user-data listen key
    (``/ws/<listenKey>``, no ``@``), and ccxt.pro connects to ``/ws/<index>`` (``/ws/0``) and then
    SUBSCRIBEs, which Binance accepts. So a segment that is no stream name is accepted and delivers
    nothing here (the simulator has no user data); a name that looks like a stream but is not one
    (``nosuch@depth``, ``BTCUSDT@depth``) is still refused, as Binance refuses it."""
    return [s for s in segments if s and ("@" in s or s.startswith("!"))]


def parse_stream(name: str, family: Family) -> tuple[str, int, int] | None:
    """``"btcusdt@depth@100ms"`` -> ``("BTCUSDT", 100, 0)``, ``"btcusdt@depth5"`` -> ``("BTCUSDT", 1000, 5)``
    on spot; None for anything that is not a depth stream of that family."""
    if len(name) > MAX_STREAM_NAME_CHARS or name != name.lower():
        return None
    symbol, sep, rest = name.partition("@depth")
    if not sep or not symbol:
        return None
    levels = 0
    for candidate in PARTIAL_LEVELS:
        if rest.startswith(str(candidate)) and not rest[len(str(candidate)) :][:1].isdigit():
            levels, rest = candidate, rest[len(str(candidate)) :]
            break
    intervals = SPOT_INTERVALS_MS if family is Family.SPOT else FUTURES_INTERVALS_MS
    interval = intervals.get(rest)
    if interval is None or (levels and interval == 0):
        return None
    return symbol.upper(), interval, levels


def encode_partial_spot(last_update_id: int, bids: str, asks: str) -> bytes:
    """Spot ``@depth<levels>`` payload: ``{"lastUpdateId", "bids", "asks"}``."""
    return f'{{"lastUpdateId":{last_update_id},"bids":[{bids}],"asks":[{asks}]}}'.encode()


def levels_json(levels: list[tuple[str, str]]) -> str:
    return ",".join(f'["{p}","{q}"]' for p, q in levels)


def encode_diff(
    family: Family,
    symbol: str,
    *,
    event_ms: int,
    first_id: int,
    final_id: int,
    prev_final_id: int,
    bids: str,
    asks: str,
    pair: str = "",
) -> bytes:
    """The raw ``depthUpdate`` payload; ``bids``/``asks`` are already-joined level lists."""
    if family is Family.SPOT:
        text = f'{{"e":"depthUpdate","E":{event_ms},"s":"{symbol}","U":{first_id},"u":{final_id},"b":[{bids}],"a":[{asks}]}}'
    elif family is Family.USDM:
        text = (
            f'{{"e":"depthUpdate","E":{event_ms},"T":{event_ms - 1},"s":"{symbol}","U":{first_id},"u":{final_id},'
            f'"pu":{prev_final_id},"b":[{bids}],"a":[{asks}]}}'
        )
    else:
        text = (
            f'{{"e":"depthUpdate","E":{event_ms},"T":{event_ms - 1},"s":"{symbol}","ps":"{pair}","U":{first_id},'
            f'"u":{final_id},"pu":{prev_final_id},"b":[{bids}],"a":[{asks}]}}'
        )
    return text.encode()


def wrap_combined(stream: str, raw: bytes) -> bytes:
    """The combined-stream envelope ``{"stream": ..., "data": ...}``."""
    return b'{"stream":"' + stream.encode() + b'","data":' + raw + b"}"


def server_shutdown(event_ms: int) -> bytes:
    return f'{{"e":"serverShutdown","E":{event_ms}}}'.encode()
