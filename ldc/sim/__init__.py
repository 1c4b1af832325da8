"""Local Binance exchange simulator (independent of the client code: no import of book, sync, venues, io).

In process::

    from ldc.sim import Simulator, SimConfig, FaultRule, FaultKind
    with Simulator(SimConfig(spot_symbols=("BTCUSDT",))) as sim:
        sim.rest_url, sim.ws_url, sim.truth("BTCUSDT"), sim.add_fault(FaultRule(FaultKind.DROP, count=1))

As a process: ``ldc sim --port 0 --symbols BTCUSDT,ETHUSDT`` (first stdout line: JSON urls).
"""

from ldc.sim.config import ReplaySource, SimConfig
from ldc.sim.faults import FaultKind, FaultRule, rule_from_cli, rule_from_json
from ldc.sim.markets import Family
from ldc.sim.simulator import Simulator
from ldc.sim.weights import WeightConfig

__all__ = ["Family", "FaultKind", "FaultRule", "ReplaySource", "SimConfig", "Simulator", "WeightConfig", "rule_from_cli", "rule_from_json"]
