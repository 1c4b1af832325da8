"""The simulator's configuration: one frozen dataclass, keyword-only, literal defaults by topic."""

from __future__ import annotations

from dataclasses import dataclass, field

from ldc.sim.faults import FaultRule
from ldc.sim.venue_faults import VenueFault
from ldc.sim.weights import WeightConfig

# Binance's websocket limits (web-socket-streams.md; derivatives "Websocket Market Streams")
SPOT_PING_INTERVAL_S = 20.0
SPOT_PONG_TIMEOUT_S = 60.0
FUTURES_PING_INTERVAL_S = 180.0
FUTURES_PONG_TIMEOUT_S = 600.0
MAX_CONNECTION_LIFETIME_S = 24 * 3600.0
MAX_STREAMS_PER_CONNECTION = 1024
SPOT_MAX_INCOMING_PER_S = 5
FUTURES_MAX_INCOMING_PER_S = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySource:
    """One capture file (``path``) served as market ``symbol`` (None: the recorded symbol)."""

    path: str
    symbol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    # Where
    port: int = 0  # 0: pick a free port; the host is always 127.0.0.1
    tls: bool = False  # every port speaks TLS (https://, wss://) with a certificate made at start (ldc.sim.tls)
    # Markets
    spot_symbols: tuple[str, ...] = ("BTCUSDT",)
    usdm_symbols: tuple[str, ...] = ()
    coinm_symbols: tuple[str, ...] = ()
    seed: int = 1
    # Model clock
    rate: float = 20.0  # base events per simulated second per market
    changes_per_event: int = 4  # mean level changes per base event
    speed: float = 1.0  # simulated seconds per wall second
    history_events: int = 2000  # base events per market the truth can rewind
    # Limits
    weights: WeightConfig = field(default_factory=WeightConfig)
    ping_interval_s: float | None = None  # None: Binance's per family (20 s spot, 180 s futures)
    pong_timeout_s: float | None = None  # None: 60 s spot, 600 s futures
    max_lifetime_s: float = MAX_CONNECTION_LIFETIME_S
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    spot_max_incoming_per_s: int = SPOT_MAX_INCOMING_PER_S
    futures_max_incoming_per_s: int = FUTURES_MAX_INCOMING_PER_S
    # Faults active from the start
    faults: tuple[FaultRule, ...] = ()
    # Replay instead of (alongside) the model
    replay: tuple[ReplaySource, ...] = ()
    replay_copies: int = 1  # each replayed market is also served as SYMBOL2..SYMBOLn
    replay_loops: int = 1  # OKX / Bybit replays: the recording played this many times, ids running on
    replay_pace: str = "recorded"  # "recorded", "client" (as fast as the slowest subscriber reads) or a factor "x10"
    # OKX v5 (ldc.sim.okx), Bybit v5 (ldc.sim.bybit), HTX (ldc.sim.htx), Kraken v2 (ldc.sim.kraken), Coinbase
    # Advanced Trade (ldc.sim.coinbase), each on its own port; none started when empty
    okx_symbols: tuple[str, ...] = ()  # BTC-USDT (SPOT), BTC-USDT-SWAP (SWAP), BTC-USD-250926 (FUTURES)
    okx_port: int = 0
    okx_checksum: bool = True  # False: checksum 0, as OKX production since 2026-06-23
    okx_ws_snapshot: bool = True  # False: no websocket snapshot (REST book with seqId), OKX's announced change
    okx_idle_s: float = 30.0  # nothing pushed for this long: the connection is closed
    okx_no_change_update_s: float = 60.0  # a channel unchanged this long sends an empty update (prevSeqId == seqId)
    okx_faults: tuple[VenueFault, ...] = ()
    bybit_spot_symbols: tuple[str, ...] = ()
    bybit_linear_symbols: tuple[str, ...] = ()
    bybit_inverse_symbols: tuple[str, ...] = ()
    bybit_port: int = 0
    bybit_ping_timeout_s: float = 600.0  # no {"op":"ping"} for this long: the connection is closed
    bybit_level1_repush_s: float = 3.0  # orderbook.1 unchanged this long is re-sent with the same u
    bybit_faults: tuple[VenueFault, ...] = ()
    # HTX spot (ldc.sim.htx): lower-case symbols such as btcusdt
    htx_symbols: tuple[str, ...] = ()
    htx_port: int = 0
    htx_ping_interval_s: float = 5.0  # the server's {"ping": ts}; two unanswered close the connection
    htx_faults: tuple[VenueFault, ...] = ()
    # Kraken websocket v2 (ldc.sim.kraken): symbols such as BTC/USD
    kraken_symbols: tuple[str, ...] = ()
    kraken_port: int = 0
    kraken_faults: tuple[VenueFault, ...] = ()
    # Coinbase Advanced Trade (ldc.sim.coinbase): product ids such as BTC-USD
    coinbase_symbols: tuple[str, ...] = ()
    coinbase_port: int = 0
    coinbase_idle_s: float = 60.0  # nothing sent for this long (no heartbeats subscribed): the connection is closed
    coinbase_faults: tuple[VenueFault, ...] = ()
    venue_replay: tuple[str, ...] = ()  # genuine OKX / Bybit / HTX / Kraken recordings (shared/data/venues), paced by replay_pace
