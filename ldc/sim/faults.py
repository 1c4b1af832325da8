"""Fault rules: what to break, where, how often. Seeded, settable from the CLI and at run time.

A rule is one JSON object (``POST /_sim/faults``) or one ``--fault KIND:key=value,...`` option:

==============  ====================================================================================
kind            effect
==============  ====================================================================================
drop            a diff frame is not sent on the matching connection (that client sees a gap)
duplicate       a diff frame is sent twice
delay           the connection's output is held for ``ms`` (frames keep their order)
reorder         a diff frame is held and sent after the next frame of the same symbol on that
                connection (a gap for that market, however many markets share the connection)
malformed       ``detail=json``: a diff is replaced by truncated JSON; ``detail=frame``: a frame with
                reserved bits set (an RFC 6455 violation the client must fail on)
disconnect      matching connections are dropped now (``count`` of them), or each one after it has
                lived ``every_s`` seconds
shutdown        a ``serverShutdown`` event is sent, the connection is closed ``ms`` later
stale_snapshot  REST depth answers the book from ``behind`` model events ago (older than the stream)
rest_delay      REST answers ``ms`` later
rest_error      REST answers ``status`` (5xx) with Binance's error body; ``status=418`` bans the client's
                IP for ``ms`` (0: the configured ban, 2 min) with Retry-After, every request 418 until then
rate_limit      REST answers 429 with Retry-After (a 429 storm), whatever the weight
==============  ====================================================================================

Selectors: ``conn`` (connection id from ``/_sim/connections``), ``port`` (the client's local TCP port),
``symbol``. ``count`` is how many times the rule fires (omitted: unlimited), ``probability`` the
chance each match fires (drawn from the simulator's seeded generator).
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass, fields, replace
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from ldc.errors import SimError
from ldc.sim.weights import MAX_BAN_S


class FaultKind(enum.Enum):
    DROP = "drop"
    DUPLICATE = "duplicate"
    DELAY = "delay"
    REORDER = "reorder"
    MALFORMED = "malformed"
    DISCONNECT = "disconnect"
    SHUTDOWN = "shutdown"
    STALE_SNAPSHOT = "stale_snapshot"
    REST_DELAY = "rest_delay"
    REST_ERROR = "rest_error"
    RATE_LIMIT = "rate_limit"


STREAM_KINDS = frozenset((FaultKind.DROP, FaultKind.DUPLICATE, FaultKind.DELAY, FaultKind.REORDER, FaultKind.MALFORMED))
REST_KINDS = frozenset((FaultKind.STALE_SNAPSHOT, FaultKind.REST_DELAY, FaultKind.REST_ERROR, FaultKind.RATE_LIMIT))
IMMEDIATE_KINDS = frozenset((FaultKind.SHUTDOWN,))  # act once on the connections open when set

DEFAULT_STALE_EVENTS_BEHIND = 50
BAN_STATUS = 418
DEFAULT_SHUTDOWN_GRACE_MS = 500


@dataclass(frozen=True, slots=True)
class FaultRule:
    kind: FaultKind
    count: int | None = None
    probability: float = 1.0
    conn: int | None = None
    port: int | None = None
    symbol: str | None = None
    ms: int = 0
    status: int = 500
    every_s: float | None = None
    behind: int = DEFAULT_STALE_EVENTS_BEHIND
    detail: str = "json"

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["kind"] = self.kind.value
        return out


_INT_FIELDS = {"count", "conn", "port", "ms", "status", "behind"}
_FLOAT_FIELDS = {"probability", "every_s"}
_STR_FIELDS = {"symbol", "detail"}
_FIELD_NAMES = {f.name for f in fields(FaultRule)}


K = TypeVar("K", bound=enum.Enum)


def fault_fields(obj: object, kinds: type[K], names: AbstractSet[str], ints: AbstractSet[str], floats: AbstractSet[str],
                 *, upper_symbol: bool) -> tuple[K, dict[str, Any]]:  # fmt: skip
    """A fault rule's JSON object read into its kind and typed fields (every simulator family's rules have this
    shape); :class:`SimError` names the bad key and value."""
    if not isinstance(obj, dict):
        raise SimError(f"fault must be a json object, found {type(obj).__name__}")
    try:
        kind = kinds(obj.get("kind"))
    except ValueError:
        raise SimError(f"fault kind must be one of {[k.value for k in kinds]}, found {obj.get('kind')!r}") from None
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "kind":
            continue
        if key not in names:
            raise SimError(f"unknown fault key {key!r}, expected one of {sorted(names)}")
        values[key] = _convert(key, value, ints, floats, upper_symbol)
    return kind, values


def _convert(key: str, value: object, ints: AbstractSet[str], floats: AbstractSet[str], upper_symbol: bool) -> object:
    if value is None:
        return None
    try:
        if key in ints:
            return int(str(value))
        if key in floats:
            return float(str(value))
    except ValueError:
        raise SimError(f"fault key {key!r} must be a number, found {value!r}") from None
    if key == "symbol" and upper_symbol:
        return str(value).upper()
    return str(value)


def fault_object_from_cli(text: str) -> dict[str, object]:
    """``"drop:count=1,symbol=BTCUSDT"`` -> ``{"kind": "drop", "count": "1", "symbol": "BTCUSDT"}``."""
    kind, _, rest = text.partition(":")
    obj: dict[str, object] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SimError(f"fault option must be key=value, found {item!r} in {text!r}")
        obj[key.strip()] = value.strip()
    return obj


def rule_from_json(obj: object) -> FaultRule:
    """A rule from its JSON object; :class:`SimError` names the bad key and value."""
    kind, values = fault_fields(obj, FaultKind, _FIELD_NAMES, _INT_FIELDS, _FLOAT_FIELDS, upper_symbol=True)
    rule = FaultRule(kind, **values)
    _check(rule)
    return rule


def _check(rule: FaultRule) -> None:
    if not 0.0 <= rule.probability <= 1.0:
        raise SimError(f"fault probability must be within [0, 1], found {rule.probability}")
    if rule.count is not None and rule.count < 1:
        raise SimError(f"fault count must be >= 1, found {rule.count}")
    if rule.kind is FaultKind.MALFORMED and rule.detail not in ("json", "frame"):
        raise SimError(f"malformed detail must be 'json' or 'frame', found {rule.detail!r}")
    if rule.kind is FaultKind.REST_ERROR and not (500 <= rule.status <= 599 or rule.status == BAN_STATUS):
        raise SimError(f"rest_error status must be 5xx or {BAN_STATUS} (an IP ban), found {rule.status}")
    if rule.kind is FaultKind.REST_ERROR and rule.status == BAN_STATUS and not 0 <= rule.ms <= MAX_BAN_S * 1000:
        raise SimError(f"rest_error 418 ban length ms must be within [0, {int(MAX_BAN_S * 1000)}] (3 days), found {rule.ms}")


def rule_from_cli(text: str) -> FaultRule:
    """``"drop:count=1,symbol=BTCUSDT"`` -> a rule."""
    return rule_from_json(fault_object_from_cli(text))


@dataclass(slots=True)
class _Active:
    rule: FaultRule
    remaining: int | None


class FaultTable:
    """The active rules. Single-threaded: only the simulator's event loop touches it."""

    def __init__(self, *, seed: int) -> None:
        self._rng = random.Random(f"faults/{seed}")
        self._rules: list[_Active] = []
        self.stream_active = False  # fast-path flag read for every frame sent
        self.fired: dict[str, int] = {}

    def add(self, rule: FaultRule) -> None:
        self._rules.append(_Active(rule, rule.count))
        self._refresh()

    def clear(self) -> None:
        self._rules.clear()
        self._refresh()

    def rules(self) -> list[FaultRule]:
        return [replace(a.rule, count=a.remaining) for a in self._rules]

    def take(self, kind: FaultKind, *, conn: int | None = None, port: int | None = None, symbol: str | None = None) -> FaultRule | None:
        """The first rule of ``kind`` matching the target that fires now (its count is used up)."""
        for active in self._rules:
            rule = active.rule
            if rule.kind is not kind:
                continue
            if rule.conn is not None and rule.conn != conn:
                continue
            if rule.port is not None and rule.port != port:
                continue
            if rule.symbol is not None and rule.symbol != symbol:
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if active.remaining is not None:
                active.remaining -= 1
                if active.remaining <= 0:
                    self._rules.remove(active)
                    self._refresh()
            self.fired[kind.value] = self.fired.get(kind.value, 0) + 1
            return rule
        return None

    def periodic(self, kind: FaultKind) -> list[FaultRule]:
        """Rules of ``kind`` with ``every_s`` (checked by the housekeeping loop, never used up)."""
        return [a.rule for a in self._rules if a.rule.kind is kind and a.rule.every_s is not None]

    def _refresh(self) -> None:
        self.stream_active = any(a.rule.kind in STREAM_KINDS for a in self._rules)
