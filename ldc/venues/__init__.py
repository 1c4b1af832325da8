"""One module per exchange protocol: URLs, stream names, control messages, parsers, limits.

``ldc.venues.binance`` covers binance.com (spot), its testnet, USD-M and COIN-M futures and
Binance.US. Venue modules do no I/O; ``ldc.sync`` applies their sequence rules.
"""
