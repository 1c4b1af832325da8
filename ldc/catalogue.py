"""The symbol catalogue: which configured symbols the venue lists, and each market's price / size precision.

A feeder asks its venue's instrument list here, never itself:

- ``check(symbols)``: symbol -> error text for the symbols the venue does not list (a REST-snapshot venue reads
  its whole listing, Binance's exchangeInfo, before it opens a connection: an unknown stream in the connection
  URL can make the exchange refuse the whole connection, every market with it). When the listing cannot be
  had, the symbols are kept as pending and ``due()`` says when to ``recheck()`` them, with a doubling backoff.
- ``precision(symbols)``: symbol -> price / size decimals for a venue's book checksum (OKX, Kraken), best
  effort: a request that fails is logged and the others are still read.

The venue says where its list is and how to read it (a :class:`Listing`); the REST client is the feeder's,
passed in as ``get`` (its governor, timeouts and stop event apply). Thread-safe: a start, a SIGHUP reload,
``ldc ctl`` and the retry run on different threads; the lock is never held over a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ldc.errors import LdcError
from ldc.venues.base import Precision, StreamVenue

RETRY_MIN_S = 1.0  # the listing could not be had: check the pending symbols again after this, doubling
RETRY_CAP_S = 60.0  # up to this

# A REST GET through the feeder's client: (path, params, weight) -> the answer's body; raises LdcError.
Get = Callable[[str, dict[str, str], int], bytes]
# One request of a listing: (path, params, weight).
ListingRequest = tuple[str, dict[str, str], int]


@dataclass(frozen=True, slots=True)
class Listing:
    """Where a venue lists its instruments, and how one answer is read."""

    name: str  # what the error texts call it: "exchangeInfo", "instrument list"
    requests: Callable[[Sequence[str]], list[ListingRequest]]  # the requests that cover these symbols
    read: Callable[[bytes], Mapping[str, Precision | None]]  # an answer's symbols, with their precision when known
    complete: bool  # the answers list every instrument: a symbol missing from them does not exist


def stream_venue_listing(venue: StreamVenue) -> Listing:
    """A stream venue's instrument list (``instrument_requests`` / ``instruments``): read for the checksum's
    precision only; a symbol it lacks is not called unknown (the venue's subscribe answer says so)."""
    return Listing(
        name="instrument list",
        requests=lambda symbols: [(path, params, 1) for path, params in venue.instrument_requests(symbols)],
        read=venue.instruments,
        complete=False,
    )


class SymbolCatalogue:
    """One group's view of its venue's listing: unknown symbols, pending checks, precisions."""

    def __init__(self, exchange: str, listing: Listing, get: Get, *, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.exchange = exchange
        self.listing = listing
        self._get = get
        self._log = log  # the feeder's logger: its lines stay the feeder's
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # symbols the listing could not check yet
        self._retry_at = 0.0
        self._backoff_s = RETRY_MIN_S

    @property
    def pending(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pending)

    def unknown_text(self, symbol: str) -> str:
        """The slot's and the log's text for a symbol the venue does not list."""
        return f"unknown symbol {symbol}: not listed by {self.exchange} {self.listing.name}"

    def check(self, symbols: Iterable[str]) -> dict[str, str]:
        """symbol -> error for the symbols the venue does not list ({} when the listing cannot be had: the
        symbols are then pending, for ``recheck``). A REST request: call it outside the feeder's lock."""
        wanted = tuple(symbols)
        if not wanted:
            return {}
        unknown = self._unknown(wanted)
        if unknown is None:
            with self._lock:
                self._pending.update(wanted)
                self._retry_at = self._clock() + self._backoff_s
            return {}
        return unknown

    def due(self) -> bool:
        """Whether symbols are pending and their next check is due."""
        with self._lock:
            return bool(self._pending) and self._clock() >= self._retry_at

    def recheck(self) -> dict[str, str]:
        """Check the pending symbols again: symbol -> error for those the venue does not list. When the listing
        still cannot be had they stay pending and the next check waits twice as long (up to RETRY_CAP_S)."""
        pending = tuple(sorted(self.pending))
        if not pending:
            return {}
        unknown = self._unknown(pending)
        with self._lock:
            if unknown is None:
                self._backoff_s = min(self._backoff_s * 2.0, RETRY_CAP_S)
                self._retry_at = self._clock() + self._backoff_s
                return {}
            self._pending.difference_update(pending)
            self._backoff_s = RETRY_MIN_S
        self._log.info("symbols validated: %d listed, %d unknown", len(pending) - len(unknown), len(unknown))
        return unknown

    def _unknown(self, symbols: Sequence[str]) -> dict[str, str] | None:
        """symbol -> error for the symbols the listing lacks; None when any of its answers cannot be had."""
        if not self.listing.complete:
            raise TypeError(f"the {self.exchange} {self.listing.name} does not list every instrument: it cannot say a symbol is unknown")
        listed: set[str] = set()
        for path, params, weight in self.listing.requests(symbols):
            try:
                listed.update(self.listing.read(self._get(path, params, weight)))
            except LdcError as exc:
                self._log.warning("symbols not validated: %s %s failed: %s", self.exchange, path, exc)
                return None
        return {s: self.unknown_text(s) for s in symbols if s not in listed}

    def precision(self, symbols: Sequence[str]) -> dict[str, Precision]:
        """symbol -> price / size decimals from the venue's instrument list, best effort: an answer that cannot
        be had or read is logged and left out (the feeder says in the market's slot what that costs)."""
        out: dict[str, Precision] = {}
        for path, params, weight in self.listing.requests(symbols):
            try:
                found = self.listing.read(self._get(path, params, weight))
            except (LdcError, ValueError) as exc:
                self._log.warning("instrument list %s %s not read: %s", path, params, exc)
                continue
            out.update({symbol: p for symbol, p in found.items() if p is not None})
        return out
