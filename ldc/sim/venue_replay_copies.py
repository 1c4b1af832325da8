"""Copies and loops of the OKX and Bybit replays, for benchmarks that need many long markets.

The recordings are short (OKX: ~95 messages a market, Bybit: ~300-660) and hold 2-4 markets; a feeder's
CPU per diff needs thousands of diffs on ten markets. So:

- ``loops`` > 1: after the recording's last message, one update turns the book back into the recording's
  snapshot (every level of the last book absent from the snapshot deleted, every level of the snapshot
  that differs sent as recorded), then the recorded updates again; ids run on (OKX: more synthesized
  ``seqId``; Bybit: ``u`` +1 per message, ``seq`` moved up by the recording's span per pass). Since the
  book is the recording's own again after that update, every recorded OKX ``checksum`` stays valid; the
  transition update carries the checksum of the snapshot's top 25.
- ``copies`` > 1: each market is also served under other names (OKX ``BTC2-USDT``, ``UNI3-USD-SWAP``:
  the number on the base currency; Bybit ``BTCUSDT2``). OKX's checksum holds no name, so the recorded
  ones stay; a Bybit copy's messages are encoded anew with its name in ``topic`` and ``s``.

A looped or copied Bybit market serves its ``orderbook`` topic only (the recorded ``tickers`` refer to the
recorded ``seq`` and would mislead a check against the renumbered stream).
"""

from __future__ import annotations

from ldc.errors import SimError
from ldc.sim.bybit import book_message as bybit_book_message
from ldc.sim.okx import okx_checksum
from ldc.sim.venue_book import BookMessage, ReplayBooks, StringBook
from ldc.sim.venue_replay import BybitReplayMarket, OkxReplayMarket, _BybitEntry, _OkxMessage

MAX_REPLAY_LOOPS = 10_000  # a bound on the served messages (memory: the truth keeps a book every 32)
MAX_REPLAY_COPIES = 1_000
LOOP_GAP_S = 0.1  # recorded time between a pass's last message and the next pass's first


def check_counts(copies: int, loops: int) -> None:
    if not 1 <= copies <= MAX_REPLAY_COPIES:
        raise SimError(f"replay copies must be within [1, {MAX_REPLAY_COPIES}], found {copies}")
    if not 1 <= loops <= MAX_REPLAY_LOOPS:
        raise SimError(f"replay loops must be within [1, {MAX_REPLAY_LOOPS}], found {loops}")


def back_to_start(books: list[BookMessage]) -> tuple[list[list[str]], list[list[str]]]:
    """The update that turns the book after ``books`` into the book after ``books[0]`` (a snapshot)."""
    last, first = ReplayBooks(books).book_after(len(books) - 1), StringBook()
    first.apply(books[0].bids, books[0].asks)
    out: tuple[list[list[str]], list[list[str]]] = ([], [])
    for side in (0, 1):
        now, then = last.sides[side], first.sides[side]
        gone = [[now[p][0], *["0"] * (len(now[p]) - 1)] for p in now if p not in then]  # OKX's 4 strings, Bybit's 2
        changed = [level for p, level in then.items() if now.get(p) != level]
        out[side].extend(gone + changed)
    return out


# -- OKX


def okx_looped(market: OkxReplayMarket, loops: int) -> list[_OkxMessage]:
    messages = market.messages
    if loops == 1:
        return messages
    bids, asks = back_to_start([BookMessage(m.action == "snapshot", m.item["bids"], m.item["asks"]) for m in messages])
    first = messages[0].item
    span = messages[-1].time - messages[0].time + LOOP_GAP_S
    out = list(messages)
    for k in range(1, loops):
        ts = str(int(first.get("ts", "0")) + int(k * span * 1000))
        back = {"asks": asks, "bids": bids, "ts": ts, "checksum": okx_checksum(first["bids"], first["asks"])}
        out.append(_OkxMessage(messages[0].time + k * span, "update", back))
        out += [_OkxMessage(m.time + k * span, m.action, m.item) for m in messages[1:]]
    return out


def okx_copy_name(inst_id: str, n: int) -> str:
    base, _, rest = inst_id.partition("-")
    return f"{base}{n}-{rest}"


def okx_copies(markets: list[OkxReplayMarket], *, copies: int, loops: int, pace: float | None) -> list[OkxReplayMarket]:
    check_counts(copies, loops)
    if copies == 1 and loops == 1:
        return markets
    out = []
    for market in markets:
        messages = okx_looped(market, loops)
        for n in range(1, copies + 1):
            name = market.inst_id if n == 1 else okx_copy_name(market.inst_id, n)
            instrument = None if market._instrument is None else {**market._instrument, "instId": name}
            out.append(OkxReplayMarket(name, messages, instrument, pace=pace))
    return out


# -- Bybit


def bybit_copies(markets: list[BybitReplayMarket], *, copies: int, loops: int, pace: float | None) -> list[BybitReplayMarket]:
    check_counts(copies, loops)
    if copies == 1 and loops == 1:
        return markets
    out = []
    for market in markets:
        books = bybit_looped(market, loops)
        for n in range(1, copies + 1):
            out.append(bybit_market(market, books, market.symbol if n == 1 else f"{market.symbol}{n}", pace=pace))
    return out


def bybit_looped(market: BybitReplayMarket, loops: int) -> list[tuple[float, dict[str, object]]]:
    """(recorded time, data with "type") of every book message of the looped stream."""
    times = [e.time for e in market.entries if e.book_index >= 0]
    data = market.book_data
    out: list[tuple[float, dict[str, object]]] = list(zip(times, data))
    if loops == 1:
        return out
    bids, asks = back_to_start([BookMessage(d["type"] == "snapshot", d["b"], d["a"]) for d in data])
    u0, seq0 = int(data[0]["u"]), int(data[0]["seq"])
    u_span, seq_span = int(data[-1]["u"]) - u0 + 1, int(data[-1]["seq"]) - seq0 + 1
    span = times[-1] - times[0] + LOOP_GAP_S
    for k in range(1, loops):
        t, du, dseq = k * span, k * u_span, k * seq_span
        out.append((times[0] + t, {"type": "delta", "b": bids, "a": asks, "u": u0 + du, "seq": seq0 + dseq}))
        out += [(tm + t, {**d, "u": int(d["u"]) + du, "seq": int(d["seq"]) + dseq}) for tm, d in zip(times[1:], data[1:])]
    return out


def bybit_market(market: BybitReplayMarket, books: list[tuple[float, dict[str, object]]], symbol: str, *, pace: float | None) -> BybitReplayMarket:
    topic = f"orderbook.{market.depth}.{symbol}"
    entries, book_data = [], []
    for index, (t, d) in enumerate(books):
        kind = str(d["type"])
        raw = bybit_book_message(market.category, topic, kind, symbol, d["b"], d["a"], u=int(str(d["u"])), seq=int(str(d["seq"])), ts_ms=int(t * 1000))  # type: ignore[arg-type]
        entries.append(_BybitEntry(t, topic, raw, index))
        book_data.append({**d, "s": symbol})
    instrument = None if market._instrument is None else {**market._instrument, "symbol": symbol}
    return BybitReplayMarket(market.category, symbol, entries, book_data, instrument, pace=pace)
