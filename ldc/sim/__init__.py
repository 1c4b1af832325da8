"""Local Binance exchange simulator (independent of the client code)."""
