"""Drop-in facades over ldc for code written against other depth-cache libraries.

``ldc.compat.unicorn``: UNICORN Binance Local Depth Cache's ``BinanceLocalDepthCacheManager``.
"""
