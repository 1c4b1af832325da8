"""Stream names and diff-event encoding, per Binance's web-socket-streams documents.

Spot: ``<symbol>@depth`` (1000 ms) and ``<symbol>@depth@100ms`` (``@depth@1000ms`` also accepted).
USD-M / COIN-M: ``<symbol>@depth`` (250 ms), ``@depth@500ms``, ``@depth@100ms``, ``@depth@0ms`` (every
update). Payload key order follows the genuine captures in shared/data/binance.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldc.sim.markets import Family

SPOT_INTERVALS_MS = {"": 1000, "@100ms": 100, "@1000ms": 1000}
FUTURES_INTERVALS_MS = {"": 250, "@0ms": 0, "@100ms": 100, "@250ms": 250, "@500ms": 500}
MAX_STREAM_NAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What a subscription delivers: one market's diffs batched over ``interval_ms`` (0: each update)."""

    family: Family
    symbol: str  # upper case, as the exchange names the market
    interval_ms: int


def parse_stream(name: str, family: Family) -> tuple[str, int] | None:
    """``"btcusdt@depth@100ms"`` -> ``("BTCUSDT", 100)``; None for anything that is not a diff stream."""
    if len(name) > MAX_STREAM_NAME_CHARS or name != name.lower():
        return None
    symbol, sep, rest = name.partition("@depth")
    if not sep or not symbol:
        return None
    intervals = SPOT_INTERVALS_MS if family is Family.SPOT else FUTURES_INTERVALS_MS
    interval = intervals.get(rest)
    if interval is None:
        return None
    return symbol.upper(), interval


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
