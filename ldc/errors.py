"""One error tree for ldc.

    LdcError
    ├── ConfigError            bad configuration: names the key, the expected and the found value
    ├── ProtocolError          a malformed or unexpected exchange message (field, expected, found)
    ├── SyncError              a sync-rule violation the caller must act on
    ├── RestError              a REST request failed (status, the exchange's error code)
    │   └── RateLimitError     429 / 418 from the exchange, with retry_after_s
    ├── SegmentError           shared-memory segment problems
    │   ├── SegmentNotFound    no segment for that group
    │   ├── LayoutError        wrong magic, other major version, truncated or inconsistent sizes
    │   ├── WriterDead         the segment's writer process is gone
    │   ├── MarketNotFound     no such market in the segment
    │   ├── OutOfSync          the market is not synced (its status says why)
    │   └── ReadContention     a consistent copy could not be taken within the retry bound
    └── SimError               the local exchange simulator was misused

Messages are short, lowercase and carry the numbers: what was expected and what was found.
"""

from __future__ import annotations


class LdcError(Exception):
    """Base class of every error ldc raises on purpose."""


class ConfigError(LdcError):
    """Invalid configuration; raised before anything starts."""


class ProtocolError(LdcError):
    """A malformed or unexpected exchange message."""


class SyncError(LdcError):
    """A sync-rule violation."""


class RestError(LdcError):
    """A REST request failed."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # Binance's {"code": -1121, "msg": ...}, when the body carried one


class RateLimitError(RestError):
    """The exchange answered 429 (rate limit) or 418 (IP ban)."""

    def __init__(self, message: str, *, status: int, retry_after_s: float) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class SegmentError(LdcError):
    """A shared-memory segment problem."""


class SegmentNotFound(SegmentError):
    """No segment exists for the group."""


class LayoutError(SegmentError):
    """The segment's bytes do not match the layout this code understands."""


class WriterDead(SegmentError):
    """The segment's writer process is not alive."""


class MarketNotFound(SegmentError, KeyError):
    """The market is not in the segment's directory."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class OutOfSync(SegmentError):
    """The market's book is not synced."""


class ReadContention(SegmentError):
    """No consistent copy could be taken within the retry bound."""


class SimError(LdcError):
    """The simulator was given something it cannot serve."""
