"""ldc.sim.venue_book: a venue channel's view of the model (what each window sends) and replay books."""

from __future__ import annotations

import pytest

from ldc.errors import SimError
from ldc.sim.model import BID
from ldc.sim.okx import okx_spec
from ldc.sim.venue_book import BookMessage, DepthView, ModelBook, NumberFormat, ReplayBooks


def model_book() -> ModelBook:
    return ModelBook(okx_spec("BTC-USDT", "SPOT"), seed=1, history_events=100)


def test_a_level_changed_and_restored_inside_the_window_is_still_sent() -> None:
    """OKX's updates carry every level changed in the interval: a REST book taken between the two
    changes holds the interim size, and only the update's final size puts it right."""
    book = model_book()
    view = DepthView(5, resend_touched=True)
    view.refresh(book.model)
    price, lots = book.model.top(5)[0][2]
    for size in (lots + 7, lots):
        book.model._set(BID, price, size)
        view.note([(BID, price, size)])
    assert view.refresh(book.model) == ([(price, lots)], [])


def test_a_level_added_and_removed_inside_the_window_is_sent_as_a_deletion() -> None:
    book = model_book()
    view = DepthView(5, resend_touched=True)
    view.refresh(book.model)
    price = book.model.best_bid + 1
    for size in (3, 0):
        book.model._set(BID, price, size)
        view.note([(BID, price, size)])
    assert view.refresh(book.model) == ([(price, 0)], [])


def test_without_resend_a_restored_level_is_not_sent() -> None:
    """Bybit, HTX, Kraken: the update is the difference of the two books."""
    book = model_book()
    view = DepthView(5)
    view.refresh(book.model)
    price, lots = book.model.top(5)[0][2]
    for size in (lots + 7, lots):
        book.model._set(BID, price, size)
        view.note([(BID, price, size)])
    assert view.refresh(book.model) == ([], [])


@pytest.mark.parametrize("resend", [False, True])
def test_applying_every_refresh_keeps_exactly_the_model_s_top(resend: bool) -> None:
    """Against the plain rule (compare every level of the old and new top N) over many model steps."""
    book = model_book()
    view = DepthView(40, resend_touched=resend)
    shadow_bids, shadow_asks = (dict(side) for side in view.refresh(book.model))
    for step in range(600):
        view.note(book.model.step(6, spread=True).changes)
        if step % 3:
            continue
        before = (dict(shadow_bids), dict(shadow_asks))
        bids, asks = view.refresh(book.model)
        for shadow, changes in ((shadow_bids, bids), (shadow_asks, asks)):
            for price, lots in changes:
                if lots:
                    shadow[price] = lots
                else:
                    shadow.pop(price, None)
        top_bids, top_asks = book.model.top(40)
        assert (shadow_bids, shadow_asks) == (dict(top_bids), dict(top_asks)), step
        if not resend:  # exactly the plain difference, nothing more
            plain = {p for p, q in top_bids if before[0].get(p) != q} | (before[0].keys() - dict(top_bids).keys())
            assert {p for p, _ in bids} == plain


def test_levels_falling_out_of_the_depth_are_deleted_and_the_next_one_comes_in() -> None:
    book = model_book()
    view = DepthView(3)
    view.refresh(book.model)
    bids = book.model.top(4)[0]
    new_best = book.model.best_bid + 1
    book.model._set(BID, new_best, 5)
    view.note([(BID, new_best, 5)])
    assert view.refresh(book.model) == ([(new_best, 5), (bids[2][0], 0)], [])
    assert sorted(view.bids, reverse=True) == [new_best, bids[0][0], bids[1][0]]


def test_number_formats_trim_or_keep_decimals() -> None:
    assert NumberFormat(2, True).text(6514000) == "65140" and NumberFormat(2, True).text(192320) == "1923.2"
    assert NumberFormat(2, False).text(6511420) == "65114.20" and NumberFormat(3, False).text(6) == "0.006"


def test_replay_books_answer_any_index_and_a_snapshot_replaces_the_book() -> None:
    messages = [BookMessage(True, [["10", "1"]], [["11", "2"]])]
    messages += [BookMessage(False, [[str(10 - i % 5), str(i)]], []) for i in range(1, 80)]
    messages.append(BookMessage(True, [["9", "4"]], [["12", "1"]]))
    books = ReplayBooks(messages)
    assert books.book_after(0).top(None) == ([["10", "1"]], [["11", "2"]])
    assert books.book_after(4).top(2) == ([["10", "1"], ["9", "1"]], [["11", "2"]])
    assert books.book_after(79).top(1)[0] == [["10", "75"]]
    assert books.book_after(80).top(None) == ([["9", "4"]], [["12", "1"]])
    with pytest.raises(SimError, match=r"message index must be within \[0, 81\), found 81"):
        books.book_after(81)
