"""C extensions. Metadata lives in pyproject.toml; only the compiled parts are declared here."""
import os

from setuptools import Extension, setup

CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"]

# ldc._fastbook's compilation units (ldc/fastbook/fastbook.h says what each holds)
FASTBOOK_UNITS = ["scan", "number", "dialect_binance", "dialect_okx_bybit", "dialect_coinbase", "dialect_htx",
                  "dialect_snapshot", "dialect_kraken",  # issue 15: stream snapshots, Kraken v2
                  "side", "book",
                  "checksum", "hotpath", "router", "stream_router", "module"]

EXTENSIONS = [
    # fenced whole-slot seqlock write/read (see docs/LAYOUT.md, "Memory ordering")
    Extension("ldc.shm._seqlock", ["ldc/shm/_seqlock.c"], depends=["ldc/shm/ldc_seqlock_api.h", "ldc/shm/ldc_shm_inline.h"], extra_compile_args=CFLAGS),
    # the book hot path: raw depth message -> levels applied -> top N (-> slot, through _seqlock's C API)
    Extension("ldc._fastbook", [f"ldc/fastbook/{unit}.c" for unit in FASTBOOK_UNITS],
              depends=["ldc/fastbook/fastbook.h", "ldc/shm/ldc_seqlock_api.h"],
              # the units' ldc_fb_ functions stay inside the .so: direct calls, not through the PLT; link-time
              # optimisation inlines across the units as the single file did (without it, book_only on the USD-M
              # capture ran 0.84-0.96x the single file's, scripts/bench_book.py alternated)
              extra_compile_args=[*CFLAGS, "-fvisibility=hidden", "-flto"], extra_link_args=["-flto", "-O2"]),
    # websocket frames off the socket: whole text / binary frames split in C, the rest in ldc/io/ws.py
    Extension("ldc.io._frames", ["ldc/io/_frames.c"], extra_compile_args=CFLAGS),
    # the relay's per-update and per-send path: changed slots copied, encoded as wire batches, sent as NATS PUB frames
    Extension("ldc.fanout._relay", ["ldc/fanout/_relay.c"], depends=["ldc/shm/ldc_shm_inline.h", "ldc/fanout/ldc_uring.h"], extra_compile_args=CFLAGS),
    # the recording's spool: a read's frames copied into a ring, written to the spool file by a native thread
    Extension("ldc._spool", ["ldc/_spool.c"], extra_compile_args=CFLAGS),
    # the mirror's per-message and per-update path: a stream batch checked and applied into the slots (issue 16)
    Extension("ldc.fanout._mirror", ["ldc/fanout/_mirror.c"], depends=["ldc/shm/ldc_seqlock_api.h"], extra_compile_args=CFLAGS),
]

# LDC_EXT=ldc._fastbook builds only that extension (for iterating on one C file)
_only = os.environ.get("LDC_EXT")
setup(ext_modules=[e for e in EXTENSIONS if not _only or e.name == _only])
