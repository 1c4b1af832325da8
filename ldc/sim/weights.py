"""Request weight per client, as Binance counts it.

Binance counts REQUEST_WEIGHT per IP in fixed one-minute windows (the counter resets at the minute
boundary) and reports it in ``X-MBX-USED-WEIGHT-1M``. A request that would go past the limit gets 429
with ``Retry-After`` (seconds to the window's end); a client that keeps sending after 429s is banned
with 418 and a ``Retry-After`` covering the ban. Spot (api) and futures (fapi, dapi) hosts have separate
limits. The window and ban lengths are configurable so tests run in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SPOT_WEIGHT_LIMIT_1M = 6000
FUTURES_WEIGHT_LIMIT_1M = 2400
WEIGHT_WINDOW_S = 60.0
REQUESTS_AFTER_429_BEFORE_BAN = 5  # Binance does not publish this number
BAN_S = 120.0  # Binance's first ban is 2 minutes, scaling up to 3 days for repeat offenders
MAX_BAN_S = 3 * 24 * 3600.0  # rest-api.md "IP Limits": bans scale from 2 minutes to 3 days


@dataclass(frozen=True, slots=True)
class WeightConfig:
    spot_limit: int = SPOT_WEIGHT_LIMIT_1M
    futures_limit: int = FUTURES_WEIGHT_LIMIT_1M
    window_s: float = WEIGHT_WINDOW_S
    requests_after_429_before_ban: int = REQUESTS_AFTER_429_BEFORE_BAN
    ban_s: float = BAN_S


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200, 429 or 418
    used: int  # weight used in the current window, after this request
    retry_after_s: int  # 0 when status is 200


@dataclass(slots=True)
class _Client:
    window_start: float = -1.0
    used: int = 0
    rejected: int = 0  # requests answered 429 in this window
    banned_until: float = 0.0


@dataclass(slots=True)
class WeightLimiter:
    config: WeightConfig
    _clients: dict[tuple[str, str], _Client] = field(default_factory=dict)

    def limit_for(self, group: str) -> int:
        return self.config.spot_limit if group == "spot" else self.config.futures_limit

    def charge(self, client: str, group: str, weight: int, now: float) -> Decision:
        """Count ``weight`` for ``client`` on ``group`` ("spot" or "futures") at ``now`` (seconds)."""
        state = self._clients.setdefault((client, group), _Client())
        window = self.config.window_s
        start = math.floor(now / window) * window
        if start != state.window_start:
            state.window_start, state.used, state.rejected = start, 0, 0
        if now < state.banned_until:
            return Decision(418, state.used, max(1, math.ceil(state.banned_until - now)))
        limit = self.limit_for(group)
        if state.used + weight > limit:
            state.rejected += 1
            if state.rejected > self.config.requests_after_429_before_ban:
                state.banned_until = now + self.config.ban_s
                return Decision(418, state.used, max(1, math.ceil(self.config.ban_s)))
            return Decision(429, state.used, max(1, math.ceil(start + window - now)))
        state.used += weight
        return Decision(200, state.used, 0)

    def ban(self, client: str, group: str, now: float, seconds: float) -> Decision:
        """Ban ``client`` on ``group`` for ``seconds`` from ``now`` (an injected 418): every request
        until then is answered 418, as after a ban Binance decided itself."""
        state = self._clients.setdefault((client, group), _Client())
        state.banned_until = max(state.banned_until, now + seconds)
        return Decision(418, state.used, max(1, math.ceil(state.banned_until - now)))

    def used(self, client: str, group: str, now: float) -> int:
        state = self._clients.get((client, group))
        if state is None or state.window_start != math.floor(now / self.config.window_s) * self.config.window_s:
            return 0
        return state.used


def spot_depth_weight(limit: int) -> int:
    """GET /api/v3/depth weight by limit (in force since 2023-10-19)."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def futures_depth_weight(limit: int) -> int:
    """GET /fapi/v1/depth (and /dapi/v1/depth) weight by limit."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20
