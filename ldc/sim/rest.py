"""REST: Binance's public market-data endpoints, and the simulator's private ``/_sim/*`` endpoints.

Error bodies are Binance's ``{"code": ..., "msg": ...}`` with its codes (rest-api.md "Error codes"):
-1102 mandatory parameter missing, -1121 invalid symbol, -1100 illegal characters, -1130 invalid
parameter value, -1003 too much request weight, -1001 internal error.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from ldc.errors import SimError
from ldc.sim.context import RestContext
from ldc.sim.exchangeinfo import SymbolInfo, exchange_info
from ldc.sim.faults import BAN_STATUS, FaultKind, rule_from_json
from ldc.sim.httpmsg import Request, Response
from ldc.sim.markets import Family
from ldc.sim.weights import futures_depth_weight, spot_depth_weight

SPOT_DEFAULT_LIMIT = 100
SPOT_MAX_LIMIT = 5000  # larger limits are truncated to this, as Binance does
FUTURES_DEFAULT_LIMIT = 500
FUTURES_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
EXCHANGE_INFO_WEIGHT = {Family.SPOT: 20, Family.USDM: 1, Family.COINM: 1}
SYMBOL_STATUSES = ("TRADING", "HALT", "BREAK")
PREFIXES = {"/api/v3": Family.SPOT, "/fapi/v1": Family.USDM, "/dapi/v1": Family.COINM}
LIMIT_LEGAL = "'^[0-9]{1,20}$'"
# Sent with every answer of api.binance.com / fapi / dapi, besides Date, x-mbx-uuid and the weights (as
# logged from live answers in public issue threads). The CDN's own headers (X-Cache, Via, X-Amz-Cf-*) and
# Strict-Transport-Security (this is plain HTTP) are left out: docs/SIMULATOR.md.
BINANCE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)


def error(status: int, code: int, msg: str) -> Response:
    return Response(status, orjson.dumps({"code": code, "msg": msg}))


def ok(obj: object) -> Response:
    return Response(200, orjson.dumps(obj))


class RestApi:
    def __init__(self, state: RestContext) -> None:
        self.state = state  # what the server lends the REST API (ldc.sim.context)

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_sim/"):
            return self._private(req)
        response = self._public(req)
        if not any(name == "X-MBX-USED-WEIGHT-1M" for name, _ in response.headers):
            prefix = req.path.rpartition("/")[0]
            group = "spot" if PREFIXES.get(prefix, Family.SPOT) is Family.SPOT else "futures"
            response.headers.append(("X-MBX-USED-WEIGHT-1M", str(self.state.limiter.used(req.client, group, time.time()))))
        response.headers[:0] = [("x-mbx-uuid", str(uuid.uuid4()))]
        response.headers += BINANCE_HEADERS
        return response

    def _public(self, req: Request) -> Response:
        prefix, _, endpoint = req.path.rpartition("/")
        family = PREFIXES.get(prefix)
        if family is None:
            return error(404, -1000, f"unknown path {req.path!r}")
        if req.method != "GET":
            return error(405, -1000, f"method {req.method} not allowed on {req.path}, expected GET")
        state = self.state
        state.counters["rest_requests"] = state.counters.get("rest_requests", 0) + 1
        if endpoint == "depth":
            weight = self._depth_weight(family, req.query.get("limit"))
            return self._charged(req, family, weight, lambda: self._depth(family, req))
        if endpoint == "exchangeInfo":
            return self._charged(req, family, EXCHANGE_INFO_WEIGHT[family], lambda: self._exchange_info(family, req))
        if endpoint == "ping":
            return self._charged(req, family, 1, lambda: ok({}))
        if endpoint == "time":
            return self._charged(req, family, 1, lambda: ok({"serverTime": int(time.time() * 1000)}))
        return error(404, -1000, f"unknown path {req.path!r}")

    # -- weight and REST faults

    def _charged(self, req: Request, family: Family, weight: int, answer: Any) -> Response:
        state = self.state
        group = "spot" if family is Family.SPOT else "futures"
        now = time.time()  # Binance's windows start on the wall clock's minute
        symbol = req.query.get("symbol", "").upper() or None
        faults = state.faults
        storm = faults.take(FaultKind.RATE_LIMIT, port=req.client_port, symbol=symbol)
        if storm is not None:
            used = state.limiter.used(req.client, group, now)
            return self._limited(429, used, max(1, storm.ms // 1000 or 1), state.limiter.limit_for(group))
        decision = state.limiter.charge(req.client, group, weight, now)
        if decision.status != 200:
            state.counters[f"rest_{decision.status}"] = state.counters.get(f"rest_{decision.status}", 0) + 1
            return self._limited(decision.status, decision.used, decision.retry_after_s, state.limiter.limit_for(group))
        failure = faults.take(FaultKind.REST_ERROR, port=req.client_port, symbol=symbol)
        if failure is not None and failure.status == BAN_STATUS:
            ban_s = failure.ms / 1000.0 if failure.ms else state.limiter.config.ban_s
            banned = state.limiter.ban(req.client, group, now, ban_s)
            state.counters["rest_418"] = state.counters.get("rest_418", 0) + 1
            return self._limited(418, banned.used, banned.retry_after_s, state.limiter.limit_for(group))
        if failure is not None:
            response = error(failure.status, -1001, "Internal error; unable to process your request. Please try again.")
        else:
            response = answer()
        response.headers.append(("X-MBX-USED-WEIGHT-1M", str(decision.used)))
        response.headers.append(("X-MBX-USED-WEIGHT", str(decision.used)))
        slow = faults.take(FaultKind.REST_DELAY, port=req.client_port, symbol=symbol)
        if slow is not None:
            response.delay_s = slow.ms / 1000.0
        return response

    @staticmethod
    def _limited(status: int, used: int, retry_after_s: int, limit: int) -> Response:
        if status == 418:
            msg = f"Way too much request weight used; IP banned until {int(time.time() * 1000) + retry_after_s * 1000}."
        else:
            msg = f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE."
        response = error(status, -1003, msg)
        response.headers += [("Retry-After", str(retry_after_s)), ("X-MBX-USED-WEIGHT-1M", str(used))]
        return response

    @staticmethod
    def _depth_weight(family: Family, limit_text: str | None) -> int:
        default = SPOT_DEFAULT_LIMIT if family is Family.SPOT else FUTURES_DEFAULT_LIMIT
        limit = int(limit_text) if limit_text and limit_text.isdigit() else default
        return spot_depth_weight(limit) if family is Family.SPOT else futures_depth_weight(limit)

    # -- endpoints

    def _depth(self, family: Family, req: Request) -> Response:
        symbol = req.query.get("symbol", "")
        if not symbol:
            return error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        market = self.state.exchange.find(family, symbol.upper())
        if market is None:
            return error(400, -1121, "Invalid symbol.")
        limit_text = req.query.get("limit")
        if limit_text is None or limit_text == "":
            limit = SPOT_DEFAULT_LIMIT if family is Family.SPOT else FUTURES_DEFAULT_LIMIT
        elif not limit_text.isdigit() or len(limit_text) > 20:
            return error(400, -1100, f"Illegal characters found in parameter 'limit'; legal range is {LIMIT_LEGAL}.")
        else:
            limit = int(limit_text)
            if family is Family.SPOT:
                if limit < 1:
                    return error(400, -1130, "Data sent for parameter 'limit' is not valid.")
                limit = min(limit, SPOT_MAX_LIMIT)
            elif limit not in FUTURES_LIMITS:
                return error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        status = req.query.get("symbolStatus") if family is Family.SPOT else None  # spot only, since 2025-10-28
        if status is not None and status not in SYMBOL_STATUSES:
            return error(400, -1130, "Data sent for parameter 'symbolStatus' is not valid.")
        if status is not None and status != "TRADING":  # every simulated market trades
            return error(400, -1220, "The symbol's status does not match the requested symbolStatus.")
        stale = self.state.faults.take(FaultKind.STALE_SNAPSHOT, port=req.client_port, symbol=market.symbol)
        last_id, bids, asks = market.snapshot(limit, behind=stale.behind if stale else 0)
        self.state.counters["snapshots"] = self.state.counters.get("snapshots", 0) + 1
        if family is Family.SPOT:
            return ok({"lastUpdateId": last_id, "bids": bids, "asks": asks})
        now_ms = int(time.time() * 1000)
        body: dict[str, object] = {"lastUpdateId": last_id, "E": now_ms, "T": now_ms - 1}
        if family is Family.COINM:
            body["symbol"] = market.symbol
            body["pair"] = market.symbol.split("_")[0]
        body["bids"], body["asks"] = bids, asks
        return ok(body)

    def _exchange_info(self, family: Family, req: Request) -> Response:
        state = self.state
        listed = [market for (fam, _), market in state.exchange.markets.items() if fam is family]
        if family is Family.SPOT:  # spot's optional symbol / symbols (rest-api.md); futures take none
            wanted = _requested_symbols(req.query)
            if isinstance(wanted, Response):
                return wanted
            if wanted is not None:
                by_name = {m.symbol: m for m in listed}
                if any(name not in by_name for name in wanted):
                    return error(400, -1121, "Invalid symbol.")
                listed = [by_name[name] for name in wanted]
        infos = [SymbolInfo(m.symbol, family, *m.filters()) for m in listed]
        limit = state.limiter.limit_for("spot" if family is Family.SPOT else "futures")
        return ok(exchange_info(family, infos, weight_limit=limit, server_ms=int(time.time() * 1000)))

    # -- private endpoints (no weight)

    def _private(self, req: Request) -> Response:
        name = req.path[len("/_sim/") :]
        if name == "book":
            return self._truth(req)
        if name == "stats":
            return ok(self.state.stats())
        if name == "connections":
            return ok({"connections": self.state.connections_json()})
        if name == "faults":
            return self._faults(req)
        return error(404, -1000, f"unknown path {req.path!r}")

    def _truth(self, req: Request) -> Response:
        symbol = req.query.get("symbol", "").upper()
        family_text = req.query.get("family")
        families = [Family(family_text)] if family_text in ("spot", "usdm", "coinm") else list(Family)
        market = next((m for f in families if (m := self.state.exchange.find(f, symbol)) is not None), None)
        if market is None:
            return error(404, -1121, f"unknown symbol {symbol!r} (family {family_text or 'any'})")
        try:
            update_id = int(req.query["update_id"]) if req.query.get("update_id") else None
            limit = int(req.query["limit"]) if req.query.get("limit") else None
        except ValueError:
            return error(400, -1100, "update_id and limit must be integers")
        book = market.truth(update_id, limit)
        if book is None:
            return error(404, -1, f"update id {update_id} is outside the kept history of {symbol}")
        return ok(book)

    def _faults(self, req: Request) -> Response:
        state = self.state
        if req.method == "DELETE":
            state.faults.clear()
        elif req.method == "POST":
            try:
                payload = orjson.loads(req.body or b"null")
                rules = [rule_from_json(item) for item in (payload if isinstance(payload, list) else [payload])]
            except (orjson.JSONDecodeError, SimError) as exc:
                return error(400, -1130, str(exc))
            for rule in rules:
                state.apply_fault(rule)
        elif req.method != "GET":
            return error(405, -1000, f"method {req.method} not allowed on /_sim/faults")
        return ok({"faults": [r.to_json() for r in state.faults.rules()]})


def _requested_symbols(query: dict[str, str]) -> list[str] | None | Response:
    """``symbol=BTCUSDT`` or ``symbols=["BTCUSDT","ETHUSDT"]`` (a JSON array), None when neither is sent."""
    if "symbol" in query and "symbols" in query:
        return error(400, -1101, "Combination of optional parameters invalid. Recommendation: 'symbol' and 'symbols' cannot be sent together.")
    if query.get("symbol"):
        return [query["symbol"].upper()]
    text = query.get("symbols")
    if not text:
        return None
    try:
        names = orjson.loads(text)
    except orjson.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return error(400, -1100, f"Illegal characters found in parameter 'symbols'; expected a JSON array of symbol names, found {text[:80]!r}.")
    return [n.upper() for n in names]
