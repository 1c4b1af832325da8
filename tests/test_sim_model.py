"""The market model and its truth: seeded determinism, an uncrossed book, exact rewinds, update-id
rules per family (spot contiguous U/u, futures ids that skip), prices across a power of ten, and the
exchange's string formats."""

from __future__ import annotations

from ldc.sim.markets import Family, fixed_str, generated_symbols, make_spec, parse_symbols
from ldc.sim.model import ASK, BID, MarketModel


def model(symbol: str = "BTCUSDT", family: Family = Family.SPOT, *, history: int = 500, seed: int = 3) -> MarketModel:
    return MarketModel(make_spec(symbol, family, seed=seed), seed=seed, history_events=history)


def test_same_seed_same_market() -> None:
    a, b = model(), model()
    for _ in range(200):
        assert a.step(4) == b.step(4)
    assert a.books == b.books and a.last_id == b.last_id
    assert model(seed=4).initial_id != a.initial_id


def test_book_never_crosses_and_sorted_index_matches_the_dicts() -> None:
    for symbol in generated_symbols(Family.SPOT, 8):
        m = model(symbol)
        for _ in range(1500):
            m.step(4)
            assert m.best_bid < m.best_ask
        assert sorted(m.books[BID]) == m._sorted[BID] and sorted(m.books[ASK]) == m._sorted[ASK]
        assert all(q > 0 for side in m.books for q in side.values())


def test_book_at_rewinds_exactly() -> None:
    m = model(history=1000)
    saved = []
    for _ in range(300):
        event = m.step(4)
        saved.append((event.final_id, dict(m.books[BID]), dict(m.books[ASK])))
    for final_id, bids, asks in saved[::37]:
        assert m.book_at(final_id) == (bids, asks)
    inside = saved[100][0] - 1  # inside event 101's id range: the book after event 100's last update
    assert m.book_at(inside) is not None
    assert m.book_at(m.last_id + 1) is None


def test_history_is_bounded() -> None:
    m = model(history=10)
    first = m.step(4)
    for _ in range(20):
        m.step(4)
    assert m.book_at(first.final_id) is None
    assert m.book_at(m.oldest_id) is not None


def test_spot_ids_are_contiguous_and_jump_inside_events() -> None:
    m = model()
    events = [m.step(4) for _ in range(300)]
    assert all(b.first_id == a.final_id + 1 for a, b in zip(events, events[1:]))
    assert any(e.final_id - e.first_id + 1 > len(e.changes) for e in events)  # netted updates
    assert all(b.prev_final_id == a.final_id for a, b in zip(events, events[1:]))


def test_futures_ids_skip_between_events() -> None:
    m = model(family=Family.USDM)
    events = [m.step(4) for _ in range(300)]
    assert any(b.first_id > a.final_id + 1 for a, b in zip(events, events[1:]))
    assert all(b.prev_final_id == a.final_id for a, b in zip(events, events[1:]))


def test_some_market_crosses_a_power_of_ten() -> None:
    crossing = []
    for symbol in generated_symbols(Family.SPOT, 40):
        spec = make_spec(symbol, Family.SPOT, seed=1)
        if spec.base_ticks != 10_000:
            continue
        m = MarketModel(spec, seed=1, history_events=10)
        seen = set()
        for _ in range(3000):
            m.step(4)
            seen.add(m.best_bid >= 10_000)
        crossing.append(seen == {True, False})
    assert crossing and any(crossing)
    assert make_spec("SOLUSDT", Family.SPOT, seed=1).price_str(9999) == "99.99000000"


def test_exchange_string_formats() -> None:
    assert fixed_str(6183763000000, 8) == "61837.63000000"
    assert make_spec("BTCUSDT", Family.USDM, seed=1).qty_str(2909) == "2.909"
    coin = make_spec("BTCUSD_PERP", Family.COINM, seed=1)
    assert coin.qty_str(35) == "35" and coin.price_str(618047) == "61804.7" and coin.pair == "BTCUSD"
    assert parse_symbols(" btcusdt, ETHUSDT,,btcusdt") == ["BTCUSDT", "ETHUSDT"]


def test_thin_and_deep_books_exist() -> None:
    depths = [make_spec(s, Family.SPOT, seed=1).depth_levels for s in generated_symbols(Family.SPOT, 30)]
    assert min(depths) < 100 and max(depths) >= 1500


def test_well_known_names_trade_at_their_real_price_level() -> None:
    """The demo's books look like the exchange's (issue 14: spot BTCUSDT traded near 150, USD-M ETHUSDT near
    61,800): each well-known market starts at its real level, with the tick Binance quotes there."""
    for symbol, family, mid, tick in (("BTCUSDT", Family.SPOT, "61800.00000000", "0.01000000"),
                                      ("ETHUSDT", Family.USDM, "3200.00", "0.01"),
                                      ("BTCUSDT", Family.USDM, "61800.00", "0.10"),
                                      ("XRPUSDT", Family.SPOT, "0.58000000", "0.00010000"),
                                      ("BTCUSD_PERP", Family.COINM, "61800.0", "0.1")):  # fmt: skip
        spec = make_spec(symbol, family, seed=7)
        assert (spec.price_str(spec.base_ticks), str(spec.tick_size)) == (mid, tick), symbol
        m = MarketModel(spec, seed=7, history_events=10)
        for _ in range(500):
            m.step(4)
        assert 0.8 * float(mid) < float(spec.price_str(m.best_bid)) < 1.2 * float(mid), symbol
