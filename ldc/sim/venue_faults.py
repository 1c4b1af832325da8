"""Fault rules of the OKX and Bybit simulator families (``ldc.sim.okx``, ``ldc.sim.bybit``).

The same shape as the Binance rules (``ldc.sim.faults``): one JSON object (``POST {venue rest}/_sim/faults``)
or one ``--okx-fault`` / ``--bybit-fault KIND:key=value,...`` option. Kinds:

==============  ====================================================================================
kind            effect
==============  ====================================================================================
drop            a book message is not sent on the matching connection (that client sees a gap)
duplicate       a book message is sent twice
reorder         a book message is held and sent after the next one on that connection
disconnect      matching connections are dropped now (``count`` of them), or each after ``every_s``
checksum        OKX: a book message carries a wrong ``checksum`` (the book itself is right)
reset           OKX: the market's next ``seqId`` is lower than its ``prevSeqId`` (maintenance reset);
                Bybit: the topic restarts with a ``snapshot`` whose ``u`` is 1
stale_snapshot  a snapshot (REST, or the websocket one sent on subscribe) is ``behind`` model events old
rest_error      a REST book or instruments answer is ``status`` (5xx) with the venue's error body
==============  ====================================================================================

Selectors: ``conn`` (connection id from ``/_sim/connections``), ``symbol`` (instId or symbol). ``count``
is how many times the rule fires (omitted: unlimited), ``probability`` the chance each match fires.
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ldc.errors import SimError
from ldc.sim.faults import fault_fields, fault_object_from_cli

DEFAULT_STALE_EVENTS_BEHIND = 50


class VenueFaultKind(enum.Enum):
    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    DISCONNECT = "disconnect"
    CHECKSUM = "checksum"
    RESET = "reset"
    STALE_SNAPSHOT = "stale_snapshot"
    REST_ERROR = "rest_error"


STREAM_KINDS = frozenset((VenueFaultKind.DROP, VenueFaultKind.DUPLICATE, VenueFaultKind.REORDER, VenueFaultKind.CHECKSUM))


@dataclass(frozen=True, slots=True)
class VenueFault:
    kind: VenueFaultKind
    count: int | None = None
    probability: float = 1.0
    conn: int | None = None
    symbol: str | None = None
    status: int = 500
    every_s: float | None = None
    behind: int = DEFAULT_STALE_EVENTS_BEHIND

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["kind"] = self.kind.value
        return out


_INT_FIELDS = frozenset(("count", "conn", "status", "behind"))
_FLOAT_FIELDS = frozenset(("probability", "every_s"))
_FIELD_NAMES = frozenset(f.name for f in fields(VenueFault)) - {"kind"}


def venue_fault_from_json(obj: object) -> VenueFault:
    """A rule from its JSON object; :class:`SimError` names the bad key and value. A ``symbol`` keeps its case:
    it is matched without regard to case (HTX's are lower case, the others upper)."""
    kind, values = fault_fields(obj, VenueFaultKind, _FIELD_NAMES, _INT_FIELDS, _FLOAT_FIELDS, upper_symbol=False)
    rule = VenueFault(kind, **values)
    if not 0.0 <= rule.probability <= 1.0:
        raise SimError(f"fault probability must be within [0, 1], found {rule.probability}")
    if rule.count is not None and rule.count < 1:
        raise SimError(f"fault count must be >= 1, found {rule.count}")
    if rule.kind is VenueFaultKind.REST_ERROR and not 500 <= rule.status <= 599:
        raise SimError(f"rest_error status must be 5xx, found {rule.status}")
    return rule


def venue_fault_from_cli(text: str) -> VenueFault:
    """``"checksum:count=1,symbol=BTC-USDT"`` -> a rule."""
    return venue_fault_from_json(fault_object_from_cli(text))


def same_symbol(selector: str | None, symbol: str | None) -> bool:
    """True when a rule's ``symbol`` selector (None: any) names ``symbol``, whatever the case."""
    return selector is None or (symbol is not None and selector.upper() == symbol.upper())


@dataclass(slots=True)
class _Active:
    rule: VenueFault
    remaining: int | None


class VenueFaultTable:
    """The active rules of one venue server. Single-threaded: only the simulator's loop touches it."""

    def __init__(self, *, seed: int, venue: str) -> None:
        self._rng = random.Random(f"faults/{venue}/{seed}")
        self._rules: list[_Active] = []
        self.stream_active = False  # read for every book message sent
        self.fired: dict[str, int] = {}

    def add(self, rule: VenueFault) -> None:
        self._rules.append(_Active(rule, rule.count))
        self._refresh()

    def clear(self) -> None:
        self._rules.clear()
        self._refresh()

    def rules(self) -> list[VenueFault]:
        return [replace(a.rule, count=a.remaining) for a in self._rules]

    def take(self, kind: VenueFaultKind, *, conn: int | None = None, symbol: str | None = None) -> VenueFault | None:
        """The first rule of ``kind`` matching the target that fires now (its count is used up)."""
        for active in self._rules:
            rule = active.rule
            if rule.kind is not kind or rule.every_s is not None:
                continue
            if (rule.conn is not None and rule.conn != conn) or not same_symbol(rule.symbol, symbol):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if active.remaining is not None:
                active.remaining -= 1
                if active.remaining <= 0:
                    self._rules.remove(active)
                    self._refresh()
            self.count(kind)
            return rule
        return None

    def count(self, kind: VenueFaultKind) -> None:
        self.fired[kind.value] = self.fired.get(kind.value, 0) + 1

    def periodic(self, kind: VenueFaultKind) -> list[VenueFault]:
        """Rules of ``kind`` with ``every_s`` (checked by the housekeeping loop, never used up)."""
        return [a.rule for a in self._rules if a.rule.kind is kind and a.rule.every_s is not None]

    def _refresh(self) -> None:
        self.stream_active = any(a.rule.kind in STREAM_KINDS for a in self._rules)
