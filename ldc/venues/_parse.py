"""JSON helpers the venues' reference parsers share: errors name the field, what was expected and found."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any

import orjson

from ldc.depth import NO_ID, Level
from ldc.errors import ProtocolError

__all__ = [
    "ControlKind",
    "VenueControl",
    "decimal",
    "exact_number",
    "expect_dict",
    "int_field",
    "levels",
    "load",
    "load_exact",
    "show",
    "sorted_levels",
]


class ControlKind(IntEnum):
    """A venue message that is not book data."""

    ACK = 1  # a subscribe / unsubscribe answer
    ERROR = 2  # the venue refused a request: ``message`` is its own words, ``topic`` the market's stream if named
    SHUTDOWN = 3  # the server will close this connection (a service upgrade): reconnect now
    PONG = 4  # the answer to our keep-alive
    OTHER = 5  # another channel's data (tickers...): not ours to use
    PING = 6  # the server's keep-alive: send ``reply`` back on the same connection (HTX ``{"pong": ts}``)
    SNAPSHOT_FAILED = 7  # the venue refused a snapshot requested on the websocket (HTX ``req``) for ``topic``


@dataclass(frozen=True, slots=True)
class VenueControl:
    kind: ControlKind
    message: str = ""
    code: str = ""
    topic: str = ""  # the stream (Bybit topic, OKX instId) an error names, "" when it names none
    reply: bytes = b""  # PING: the answer the venue expects
    sequence: int = NO_ID  # the connection's sequence number the message carried (Coinbase), NO_ID if none


def load(raw: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not valid json: {exc}") from None


def load_exact(raw: bytes | str, what: str) -> Any:
    """JSON whose numbers are prices (Kraken v2, HTX): every number with a point or exponent read as Decimal,
    exactly as written, never through a binary float first."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what} is not valid json: {exc}") from None


def exact_number(value: Any, field: str, index: int) -> float:
    """A price or size sent as a JSON number (read by ``load_exact``) as float64: the correctly rounded double
    of the exact decimal."""
    if (type(value) is not Decimal and type(value) is not int) or not value >= 0 or not Decimal(value).is_finite():
        raise ProtocolError(f"field {field!r}[{index}]: expected a non-negative JSON number, found {show(value)}")
    return float(value)


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect_dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"field {field!r}: expected an object, found {show(value)}")
    return value


def int_field(msg: dict[str, Any], field: str, *, text: bool = False, optional: bool = False) -> int:
    """An integer field (``text``: sent as a decimal string, as OKX's ``ts``); NO_ID when ``optional`` and absent."""
    if field not in msg and optional:
        return NO_ID
    value = msg.get(field)
    if text and type(value) is str and value.isdigit():
        return int(value)
    if type(value) is not int:
        found = "nothing" if field not in msg else show(value)
        raise ProtocolError(f"field {field!r}: expected an integer{' string' if text else ''}, found {found}")
    return value


def decimal(text: Any, field: str, index: int) -> float:
    """A price or size string as float64 (exact as a key: see each venue's precision note)."""
    try:
        number = float(text) if type(text) is str else math.nan
    except ValueError:
        number = math.nan
    if not (number >= 0.0 and number != math.inf):  # catches nan, inf and negatives
        raise ProtocolError(f"field {field!r}[{index}]: expected a non-negative decimal string, found {show(text)}")
    return number


def levels(value: Any, field: str, width: int) -> list[Level]:
    """``[[price, size, ...], ...]`` with exactly ``width`` strings per level (Bybit 2, OKX 4)."""
    if not isinstance(value, list):
        raise ProtocolError(f"field {field!r}: expected a list of levels, found {show(value)}")
    out: list[Level] = []
    for index, level in enumerate(value):
        if not isinstance(level, list) or len(level) != width:
            raise ProtocolError(f"field {field!r}[{index}]: expected {width} strings [price, size, ...], found {show(level)}")
        out.append((decimal(level[0], field, index), decimal(level[1], field, index)))
    return out


def sorted_levels(side: list[Level], field: str, descending: bool) -> list[Level]:
    """``side`` itself when its prices are strictly in book order (bids descending, asks ascending)."""
    sign = -1.0 if descending else 1.0
    for index in range(1, len(side)):
        if (side[index][0] - side[index - 1][0]) * sign <= 0.0:
            order = "descending" if descending else "ascending"
            raise ProtocolError(f"field {field!r}[{index}]: expected prices strictly {order}, found "
                                f"{side[index - 1][0]!r} then {side[index][0]!r}")  # fmt: skip
    return side
