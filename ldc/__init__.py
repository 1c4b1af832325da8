"""ldc: local depth cache.

Exact local copies of exchange order books, shared with every process on the host through
seqlock-protected POSIX shared memory. ``from ldc import Reader`` is the consumer entry point.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Control", "Reader", "__version__"]


def __getattr__(name: str) -> Any:
    # lazy, so `import ldc` stays cheap for the feeder and the simulator
    if name == "Reader":
        from ldc.shm.reader import Reader

        return Reader
    if name == "Control":
        from ldc.control import Control

        return Control
    raise AttributeError(f"module 'ldc' has no attribute {name!r}")
